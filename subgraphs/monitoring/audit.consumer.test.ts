import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { AUDIT_RECORD_TYPE, type AuditRecordPayload } from '../../lib/security/audit.js';
import { AuditEventEntity } from './audit-event.entity.js';
import { consumeAuditRecords } from './audit.consumer.js';
import { AuditService, REDACTED } from './audit.service.js';
import { MonitoringRepository } from './monitoring.repository.js';
import { openMonitoringDatabase } from './testing.js';

const QUEUE = 'monitoring.audit.test';
let db: Database;
let close: () => Promise<void>;
let broker: Broker;
let subscription: Subscription;

beforeAll(async () => {
  ({ db, close } = await openMonitoringDatabase());
  broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
  subscription = await consumeAuditRecords({ broker, queue: QUEUE, db, audit: new AuditService(new MonitoringRepository()), log: pino({ level: 'silent' }) });
});
afterAll(async () => {
  await subscription?.close();
  await broker?.close();
  await close();
});

const aRecord = (overrides: Partial<AuditRecordPayload> = {}): AuditRecordPayload => ({
  id: randomUUID(),
  tenant: 'acme',
  actor: 'alice',
  roles: ['analyst'],
  operationName: 'Upload',
  fieldName: 'createUpload',
  variables: { input: { filename: 'a.png', secret: 's' } },
  outcome: 'SUCCESS',
  errorCode: null,
  traceId: 'b'.repeat(32),
  at: '2026-05-01T10:00:00.000Z',
  ...overrides,
});

const send = (payload: unknown, tenant = 'acme', type = AUDIT_RECORD_TYPE) => broker.send(QUEUE, createEnvelope(type, payload, { tenant }));

describe('audit record consumer', () => {
  it('stores a record once however often it is delivered, with its variables redacted', async () => {
    const record = aRecord();
    await send(record);
    await send(record);
    await expect.poll(() => db.fork().count(AuditEventEntity, { id: record.id })).toBe(1);
    await new Promise((r) => setTimeout(r, 100));
    const row = await db.fork().findOneOrFail(AuditEventEntity, record.id);
    expect(row).toMatchObject({ tenant: 'acme', actor: 'alice', fieldName: 'createUpload', outcome: 'SUCCESS', traceId: 'b'.repeat(32) });
    expect(row.variables).toEqual({ input: { filename: 'a.png', secret: REDACTED } });
    expect(row.createdAt.toISOString()).toBe(record.at);
  });

  it('stores a burst in batches, each record once, and dead-letters only the invalid one among them', async () => {
    const records = Array.from({ length: 40 }, (_, i) => aRecord({ fieldName: `mutation${i}` }));
    const invalid = aRecord({ traceId: 'not-a-trace-id' });
    const before = (await broker.deadLetters(QUEUE)).length;
    await Promise.all([...records.slice(0, 20), invalid, ...records.slice(20), records[3]!].map((r) => send(r)));
    const ids = records.map((r) => r.id);
    await expect.poll(() => db.fork().count(AuditEventEntity, { id: { $in: ids } })).toBe(40);
    await expect.poll(async () => (await broker.deadLetters(QUEUE)).length).toBe(before + 1);
    expect(await db.fork().count(AuditEventEntity, { id: invalid.id })).toBe(0);
    expect((await db.fork().findOneOrFail(AuditEventEntity, records[7]!.id)).fieldName).toBe('mutation7');
  });

  it('dead-letters what can never be stored, and stores nothing of it', async () => {
    const invalid = [
      { payload: { ...aRecord(), outcome: 'MAYBE' } },
      { payload: aRecord({ fieldName: 'not a field' }) },
      { payload: aRecord({ tenant: 'globex' }) }, // the envelope says acme
      { payload: aRecord(), type: 'something.else' },
    ];
    for (const m of invalid) await send(m.payload, 'acme', m.type);
    await expect.poll(async () => (await broker.deadLetters(QUEUE)).length).toBe(invalid.length);
    const ids = invalid.map((m) => (m.payload as { id: string }).id);
    expect(await db.fork().count(AuditEventEntity, { id: { $in: ids } })).toBe(0);
  });
});
