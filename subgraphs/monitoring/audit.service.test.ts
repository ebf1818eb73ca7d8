import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { AuditEventEntity } from './audit-event.entity.js';
import { AuditService, REDACTED, redactSecrets } from './audit.service.js';
import { AuditOutcome } from './monitoring.contracts.js';
import { MonitoringRepository } from './monitoring.repository.js';
import { anAuditEvent, codeOf, openMonitoringDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;
const service = new AuditService(new MonitoringRepository());

beforeAll(async () => {
  ({ db, close } = await openMonitoringDatabase());
});
afterAll(async () => {
  await close();
});

const ids = (page: { edges: { node: AuditEventEntity }[] }) => page.edges.map((e) => e.node.id);
const list = (tenant: string, filter: Parameters<AuditService['list']>[2], page: { first?: number; after?: string | null } = {}) =>
  service.list(db.fork(), { tenant, subject: `admin@${tenant}` }, filter, page, (e) => e);

describe('redactSecrets', () => {
  it('replaces values under secret-looking names at any depth, and JWT-looking strings anywhere', () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz';
    expect(
      redactSecrets({
        input: { name: 'forest', password: 'hunter2', nested: [{ apiKey: 'k', clientSecret: 's', note: jwt }] },
        authorization: 'Bearer x',
        accessToken: 'x',
        idempotencyKey: 'submit-1',
        objectKey: 'uploads/acme/1',
        count: 3,
        enabled: true,
        nothing: null,
      }),
    ).toEqual({
      input: { name: 'forest', password: REDACTED, nested: [{ apiKey: REDACTED, clientSecret: REDACTED, note: REDACTED }] },
      authorization: REDACTED,
      accessToken: REDACTED,
      idempotencyKey: 'submit-1',
      objectKey: 'uploads/acme/1',
      count: 3,
      enabled: true,
      nothing: null,
    });
  });

  it('cuts long strings, long lists and deep nesting', () => {
    const value = redactSecrets({ text: 'x'.repeat(1500), list: Array.from({ length: 150 }, (_, i) => i) }) as {
      text: string;
      list: unknown[];
    };
    expect(value.text).toBe(`${'x'.repeat(1000)}…[500 more characters]`);
    expect(value.list).toHaveLength(101);
    expect(value.list.at(-1)).toBe('…[50 more items]');
    let deep: Record<string, unknown> = { leaf: 1 };
    for (let i = 0; i < 20; i += 1) deep = { deeper: deep };
    expect(JSON.stringify(redactSecrets(deep))).toContain('[TRUNCATED]');
  });
});

describe('record', () => {
  it('stores the event with its variables redacted', async () => {
    const at = new Date('2026-03-01T10:00:00Z');
    const stored = await service.record(
      db.fork(),
      anAuditEvent('acme', {
        variables: { input: { name: 'forest', token: 'abc' } },
        outcome: AuditOutcome.ERROR,
        errorCode: 'CONFLICT',
        traceId: 'a'.repeat(32),
        at,
      }),
    );
    const row = await db.fork().findOneOrFail(AuditEventEntity, stored.id);
    expect(row).toMatchObject({
      tenant: 'acme',
      actor: 'analyst@acme',
      roles: ['analyst'],
      operationName: 'Submit',
      fieldName: 'submitChangeDetectionJob',
      variables: { input: { name: 'forest', token: REDACTED } },
      outcome: AuditOutcome.ERROR,
      errorCode: 'CONFLICT',
      traceId: 'a'.repeat(32),
      createdAt: at,
    });
  });

  it('stores a redelivered event once, even when both deliveries race', async () => {
    const id = randomUUID();
    const first = await service.record(db.fork(), anAuditEvent('acme', { id }));
    const again = await service.record(db.fork(), anAuditEvent('acme', { id }));
    expect(again.id).toBe(first.id);
    const raced = randomUUID();
    await Promise.all(Array.from({ length: 4 }, () => service.record(db.fork(), anAuditEvent('acme', { id: raced }))));
    expect(await db.fork().count(AuditEventEntity, { id: { $in: [id, raced] } })).toBe(2);
  });

  it('refuses a malformed event with BAD_USER_INPUT', async () => {
    expect(await codeOf(service.record(db.fork(), anAuditEvent('acme', { fieldName: 'not a field' })))).toBe('BAD_USER_INPUT');
    expect(await codeOf(service.record(db.fork(), anAuditEvent('acme', { id: 'nope' })))).toBe('BAD_USER_INPUT');
    expect(await codeOf(service.record(db.fork(), anAuditEvent('acme', { outcome: 'MAYBE' as AuditOutcome })))).toBe('BAD_USER_INPUT');
    expect(await codeOf(service.record(db.fork(), anAuditEvent('acme', { traceId: 'xyz' })))).toBe('BAD_USER_INPUT');
    expect(await codeOf(service.record(db.fork(), anAuditEvent('', {})))).toBe('BAD_USER_INPUT');
  });
});

describe('list', () => {
  const tenant = 'audited';
  const t = (minute: number) => new Date(Date.UTC(2026, 4, 1, 12, minute));
  const made: Record<string, string> = {};

  beforeAll(async () => {
    const events: [string, Parameters<typeof anAuditEvent>[1]][] = [
      ['alice-create', { actor: 'alice', fieldName: 'createDataset', at: t(0) }],
      ['bob-submit', { actor: 'bob', fieldName: 'submitChangeDetectionJob', at: t(1) }],
      ['alice-denied', { actor: 'alice', fieldName: 'promoteModelVersion', outcome: AuditOutcome.DENIED, errorCode: 'FORBIDDEN', at: t(2) }],
      ['alice-submit', { actor: 'alice', fieldName: 'submitChangeDetectionJob', at: t(3) }],
      ['bob-error', { actor: 'bob', fieldName: 'createDataset', outcome: AuditOutcome.ERROR, errorCode: 'CONFLICT', at: t(4) }],
    ];
    for (const [name, overrides] of events) made[name] = (await service.record(db.fork(), anAuditEvent(tenant, overrides))).id;
    await service.record(db.fork(), anAuditEvent('elsewhere', { actor: 'alice', at: t(2) }));
  });

  it("lists your tenant's events newest first, and none of another tenant", async () => {
    const page = await list(tenant, {});
    expect(ids(page)).toEqual(['bob-error', 'alice-submit', 'alice-denied', 'bob-submit', 'alice-create'].map((n) => made[n]));
    expect(page.totalCount).toBe(5);
    expect((await list('nobody', {})).totalCount).toBe(0);
  });

  it('filters by actor, field, outcome and time, combined', async () => {
    expect(ids(await list(tenant, { actor: 'alice' }))).toEqual(['alice-submit', 'alice-denied', 'alice-create'].map((n) => made[n]));
    expect(ids(await list(tenant, { fieldName: 'createDataset' }))).toEqual(['bob-error', 'alice-create'].map((n) => made[n]));
    expect(ids(await list(tenant, { outcome: AuditOutcome.DENIED }))).toEqual([made['alice-denied']]);
    // from inclusive, to exclusive.
    expect(ids(await list(tenant, { from: t(1), to: t(3) }))).toEqual(['alice-denied', 'bob-submit'].map((n) => made[n]));
    expect(ids(await list(tenant, { from: t(3) }))).toEqual(['bob-error', 'alice-submit'].map((n) => made[n]));
    expect(ids(await list(tenant, { to: t(1) }))).toEqual([made['alice-create']]);
    expect(ids(await list(tenant, { actor: 'alice', fieldName: 'submitChangeDetectionJob', from: t(1) }))).toEqual([made['alice-submit']]);
  });

  it('pages through a filter without gaps or repeats, with the filtered total', async () => {
    const seen: string[] = [];
    let after: string | null = null;
    let pages = 0;
    do {
      const page: Awaited<ReturnType<typeof list>> = await list(tenant, { actor: 'alice' }, { first: 2, after });
      expect(page.totalCount).toBe(3);
      seen.push(...ids(page));
      after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
      pages += 1;
    } while (after);
    expect(pages).toBe(2);
    expect(seen).toEqual(['alice-submit', 'alice-denied', 'alice-create'].map((n) => made[n]));
  });

  it('refuses a malformed cursor, a bad page size and an empty time range with BAD_USER_INPUT', async () => {
    expect(await codeOf(list(tenant, {}, { after: 'bm90LWEtY3Vyc29y' }))).toBe('BAD_USER_INPUT');
    expect(await codeOf(list(tenant, {}, { first: 500 }))).toBe('BAD_USER_INPUT');
    expect(await codeOf(list(tenant, { from: t(3), to: t(1) }))).toBe('BAD_USER_INPUT');
  });
});
