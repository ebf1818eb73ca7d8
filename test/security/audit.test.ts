// The audit log as an administrator reads it: every mutation root field that reached the gateway with a known
// identity — done, failed or refused — is stored by the monitoring subgraph with who, tenant, roles, operation,
// redacted arguments, outcome, trace id and time, and only that tenant's admins can read it.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../lib/auth.js';
import { startTestPlatform, type TestPlatform } from '../support/platform.js';
import { codes, expectNoInternals } from './support.js';

let t: TestPlatform;
beforeAll(async () => {
  t = await startTestPlatform({
    RATE_LIMIT_BURST: '20',
    RATE_LIMIT_REFILL_PER_SECOND: '0.05',
    RATE_LIMIT_COSTS: 'createUpload=15',
    RATE_LIMIT_KEY_PREFIX: `lcd:test:${randomUUID()}:`,
    MAX_QUERY_ALIASES: '5',
  });
});
afterAll(async () => {
  await t?.close();
});

interface AuditEventView {
  id: string;
  actor: string;
  roles: string[];
  operationName: string | null;
  fieldName: string;
  variables: Record<string, unknown>;
  outcome: 'SUCCESS' | 'DENIED' | 'ERROR';
  errorCode: string | null;
  traceId: string | null;
  at: string;
}

const EVENTS = `query($filter: AuditEventFilter, $first: Int, $after: String) {
  auditEvents(filter: $filter, first: $first, after: $after) {
    totalCount pageInfo { hasNextPage endCursor }
    edges { node { id actor roles operationName fieldName variables outcome errorCode traceId at } } } }`;

type Page = { auditEvents: { totalCount: number; pageInfo: { hasNextPage: boolean; endCursor: string | null }; edges: { node: AuditEventView }[] } };

/** Reads the audit log as an admin of `tenant` (a fresh caller each time: polling must not spend anyone's budget). */
async function auditLog(tenant: string, filter: Record<string, unknown> = {}, page: { first?: number; after?: string | null } = {}) {
  const token = await t.token(['admin'], tenant, `auditor-${randomUUID()}`);
  const res = await t.gql<Page>(EVENTS, { filter, ...page }, token);
  expect(res.errors).toBeUndefined();
  return res.data!.auditEvents;
}

/** Waits until the consumer has stored `count` events matching the filter (the gateway publishes, a queue carries). */
async function eventually(tenant: string, filter: Record<string, unknown>, count: number): Promise<AuditEventView[]> {
  let events: AuditEventView[] = [];
  for (let i = 0; i < 100; i++) {
    events = (await auditLog(tenant, filter, { first: 100 })).edges.map((e) => e.node);
    if (events.length >= count) return events;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`expected ${count} audit events for ${JSON.stringify(filter)} in ${tenant}, found ${events.length}`);
}

const caller = (roles: Role[], tenant: string, subject = `user-${randomUUID()}`) => t.token(roles, tenant, subject).then((token) => ({ token, subject }));

async function auditedCount(): Promise<number> {
  const metrics = await (await fetch(t.url.replace(/\/graphql$/, '/metrics'))).text();
  return [...metrics.matchAll(/^lcd_audit_events_total\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

describe('audit of mutations', () => {
  it('stores a mutation with who, tenant, roles, operation, redacted variables, outcome, trace id and time', async () => {
    const tenant = 'audit-success';
    const { token, subject } = await caller(['ml-engineer'], tenant, 'erin');
    const traceId = randomUUID().replace(/-/g, '');
    const secretLooking = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVz';
    const sentAt = Date.now();
    const res = await t.post(
      { query: 'mutation MakeForest($input: CreateDatasetInput!) { createDataset(input: $input) { id } }', variables: { input: { name: 'forest', description: secretLooking } } },
      { token, headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } },
    );
    expect(res.json?.errors).toBeUndefined();
    const [event] = await eventually(tenant, { actor: subject }, 1);
    expect(event).toMatchObject({
      actor: 'erin',
      roles: ['ml-engineer'],
      operationName: 'MakeForest',
      fieldName: 'createDataset',
      variables: { input: { name: 'forest', description: '[REDACTED]' } },
      outcome: 'SUCCESS',
      errorCode: null,
      traceId,
    });
    expect(Math.abs(Date.parse(event!.at) - sentAt)).toBeLessThan(60_000);
  });

  it('stores failures as ERROR with their code and refusals as DENIED, one event per root field', async () => {
    const tenant = 'audit-outcomes';
    const engineer = await caller(['ml-engineer'], tenant);
    const viewer = await caller(['viewer'], tenant);
    await t.post({ query: 'mutation { createDataset(input: {name: "twin"}) { id } }' }, { token: engineer.token });
    const both = await t.post(
      { query: 'mutation Pair { fresh: createDataset(input: {name: "fresh"}) { id } again: createDataset(input: {name: "twin"}) { id } }' },
      { token: engineer.token },
    );
    expect(codes(both)).toEqual(['CONFLICT']);
    const denied = await t.post({ query: 'mutation Sneak { createDataset(input: {name: "sneaky"}) { id } }' }, { token: viewer.token });
    expect(codes(denied)).toEqual(['FORBIDDEN']);

    const engineerEvents = await eventually(tenant, { actor: engineer.subject }, 3);
    // The two fields of one operation are audited at the same moment: compare without order.
    const summary = (e: AuditEventView) => JSON.stringify([e.operationName, e.outcome, e.errorCode, e.variables]);
    expect(engineerEvents.map(summary).sort()).toEqual(
      [
        ['Pair', 'ERROR', 'CONFLICT', { input: { name: 'twin' } }],
        ['Pair', 'SUCCESS', null, { input: { name: 'fresh' } }],
        [null, 'SUCCESS', null, { input: { name: 'twin' } }],
      ]
        .map((e) => JSON.stringify(e))
        .sort(),
    );
    const [refused] = await eventually(tenant, { actor: viewer.subject }, 1);
    expect(refused).toMatchObject({ fieldName: 'createDataset', outcome: 'DENIED', errorCode: 'FORBIDDEN', roles: ['viewer'] });
    const datasets = await t.gql<{ datasets: { edges: { node: { name: string } }[] } }>(`{ datasets { edges { node { name } } } }`, {}, (await caller(['admin'], tenant)).token);
    expect(datasets.data!.datasets.edges.map((e) => e.node.name).sort()).toEqual(['fresh', 'twin']);
  });

  it('audits requests refused by the rate limit or an operation limit as DENIED, and writes nothing else for them', async () => {
    const tenant = 'audit-refused';
    const { token, subject } = await caller(['ml-engineer'], tenant);
    const aliasBomb = await t.post(
      { query: `mutation Bomb { createDataset(input: {name: "bomb"}) { ${Array.from({ length: 6 }, (_, i) => `a${i}: id`).join(' ')} } }` },
      { token },
    );
    expect(aliasBomb.json?.errors?.[0]?.extensions).toMatchObject({ code: 'OPERATION_LIMIT', limit: 'aliases' });
    const upload = () =>
      t.post({ query: 'mutation Upload { createUpload(input: {filename: "a.png", contentType: "image/png", byteSize: 10}) { id } }' }, { token });
    expect((await upload()).status).toBe(200); // costs 15 of 20
    const limited = await upload();
    expect(limited.status).toBe(429);
    expectNoInternals(limited);

    const events = await eventually(tenant, { actor: subject }, 3);
    expect(events.map((e) => [e.operationName, e.fieldName, e.outcome, e.errorCode])).toEqual([
      ['Upload', 'createUpload', 'DENIED', 'RATE_LIMITED'],
      ['Upload', 'createUpload', 'SUCCESS', null],
      ['Bomb', 'createDataset', 'DENIED', 'OPERATION_LIMIT'],
    ]);
    const datasets = await t.gql<{ datasets: { totalCount: number } }>(`{ datasets { totalCount } }`, {}, (await caller(['admin'], tenant)).token);
    expect(datasets.data!.datasets.totalCount).toBe(0);
  });

  it('stores nothing for a request without a valid identity, nor for queries', async () => {
    const before = await auditedCount();
    const anonymous = await t.post({ query: 'mutation { createDataset(input: {name: "anonymous"}) { id } }' }, { token: null });
    expect(anonymous.status).toBe(401);
    await t.post({ query: '{ datasets { totalCount } }' }, { token: (await caller(['admin'], 'audit-quiet')).token });
    expect(await auditedCount()).toBe(before);
  });
});

describe('reading the audit log', () => {
  const tenant = 'audit-read';
  const people: Record<string, { token: string; subject: string }> = {};

  beforeAll(async () => {
    people.ana = await caller(['ml-engineer'], tenant, 'ana');
    people.bo = await caller(['ml-engineer'], tenant, 'bo');
    for (const [who, name] of [
      ['ana', 'a1'],
      ['bo', 'b1'],
      ['ana', 'a2'],
      ['ana', 'a1'],
    ] as const) {
      await t.post({ query: `mutation { createDataset(input: {name: "${name}"}) { id } }` }, { token: people[who]!.token });
    }
    await eventually(tenant, {}, 4);
  });

  it('is for admins of the tenant only', async () => {
    for (const role of ['viewer', 'analyst', 'ml-engineer', 'approver'] as const) {
      const res = await t.post({ query: EVENTS }, { token: (await caller([role], tenant)).token });
      expect(codes(res), role).toEqual(['FORBIDDEN']);
      expect(res.json?.data, role).toEqual({ auditEvents: null });
    }
    expect((await auditLog('another-tenant')).totalCount).toBe(0);
  });

  it('filters by actor, field, outcome and time, and pages newest first without gaps', async () => {
    expect((await auditLog(tenant, { actor: 'ana' })).totalCount).toBe(3);
    expect((await auditLog(tenant, { actor: 'ana', outcome: 'ERROR' })).edges.map((e) => e.node.errorCode)).toEqual(['CONFLICT']);
    expect((await auditLog(tenant, { fieldName: 'createUpload' })).totalCount).toBe(0);
    const all = (await auditLog(tenant, {}, { first: 100 })).edges.map((e) => e.node);
    expect(all.map((e) => e.at)).toEqual([...all.map((e) => e.at)].sort().reverse());
    expect((await auditLog(tenant, { from: all.at(-1)!.at, to: all[0]!.at })).totalCount).toBe(3); // to is exclusive

    const seen: string[] = [];
    let after: string | null = null;
    do {
      const page: Page['auditEvents'] = await auditLog(tenant, {}, { first: 3, after });
      seen.push(...page.edges.map((e) => e.node.id));
      after = page.pageInfo.hasNextPage ? page.pageInfo.endCursor : null;
    } while (after);
    expect(seen).toEqual(all.map((e) => e.id));
  });
});
