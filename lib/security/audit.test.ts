import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createBroker, MemoryBrokerServer, type Envelope } from '../broker/broker.js';
import { auditOutcome, AuditPublisher, AUDIT_RECORD_TYPE, auditRecordPayloadSchema } from './audit.js';
import { REDACTED } from './redact.js';

describe('auditOutcome', () => {
  it('is SUCCESS without errors on the field, DENIED for a refusal, ERROR with the code otherwise', () => {
    expect(auditOutcome('createDataset', undefined)).toEqual({ outcome: 'SUCCESS', errorCode: null });
    expect(auditOutcome('a', [{ path: ['b'], extensions: { code: 'CONFLICT' } }])).toEqual({ outcome: 'SUCCESS', errorCode: null });
    expect(auditOutcome('a', [{ path: ['a'], extensions: { code: 'FORBIDDEN' } }])).toEqual({ outcome: 'DENIED', errorCode: 'FORBIDDEN' });
    expect(auditOutcome('a', [{ path: ['a', 'id'], extensions: { code: 'CONFLICT' } }])).toEqual({ outcome: 'ERROR', errorCode: 'CONFLICT' });
    // A request-level error (no path) decides for every field, a refusal before anything else.
    expect(auditOutcome('a', [{ extensions: { code: 'RATE_LIMITED' } }])).toEqual({ outcome: 'DENIED', errorCode: 'RATE_LIMITED' });
    expect(auditOutcome('a', [{ extensions: { code: 'OPERATION_LIMIT' } }])).toEqual({ outcome: 'DENIED', errorCode: 'OPERATION_LIMIT' });
    expect(auditOutcome('a', [{ path: ['a'], extensions: { code: 'BAD_USER_INPUT' } }, { path: ['a'], extensions: { code: 'FORBIDDEN' } }])).toMatchObject({
      outcome: 'DENIED',
    });
    expect(auditOutcome('a', [{ path: ['a'] }])).toEqual({ outcome: 'ERROR', errorCode: 'INTERNAL_SERVER_ERROR' });
    expect(auditOutcome('a', [{ path: ['a'], extensions: { code: 'not a code!' } }])).toEqual({ outcome: 'ERROR', errorCode: 'INTERNAL_SERVER_ERROR' });
  });
});

describe('AuditPublisher', () => {
  const server = new MemoryBrokerServer();
  const brokers: Awaited<ReturnType<typeof createBroker>>[] = [];
  afterAll(async () => {
    for (const b of brokers) await b.close();
  });

  it('sends one valid, redacted record per call to the audit queue, and asserts the queue first', async () => {
    const broker = await createBroker({ memoryServer: server });
    brokers.push(broker);
    const publisher = new AuditPublisher(broker, pino({ level: 'silent' }), 'audit.test');
    const published = await publisher.publish({
      tenant: 'acme',
      actor: 'alice',
      roles: ['analyst'],
      operationName: 'Make',
      fieldName: 'createUpload',
      variables: { input: { filename: 'a.png', password: 'hunter2' } },
      outcome: 'SUCCESS',
      errorCode: null,
      traceId: 'a'.repeat(32),
    });
    const received: Envelope<unknown>[] = [];
    const subscription = await broker.consume('audit.test', async (d) => void received.push(d.envelope), { deliveryLimit: 5 });
    await expect.poll(() => received.length).toBe(1);
    await subscription.close();
    const envelope = received[0]!;
    expect(envelope).toMatchObject({ type: AUDIT_RECORD_TYPE, tenant: 'acme', idempotencyKey: published.id });
    expect(auditRecordPayloadSchema.parse(envelope.payload)).toEqual(published);
    expect(published.variables).toEqual({ input: { filename: 'a.png', password: REDACTED } });
  });
});
