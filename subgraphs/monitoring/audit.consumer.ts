// Stores the audit records the gateway sends, one per mutation root field: validated on receipt, stored a batch at a
// time (one statement per batch, off the path of the mutations being audited), once per record id however often the
// queue delivers it; a record that can never be stored goes to the dead-letter queue. Each message is acknowledged
// once its batch is stored.
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { Batcher, type BatcherOptions } from '../../lib/broker/batcher.js';
import { PermanentMessageError, type Broker, type Delivery, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { AUDIT_QUEUE_OPTIONS, AUDIT_RECORD_TYPE, auditRecordPayloadSchema, type AuditRecordPayload } from '../../lib/security/audit.js';
import type { AuditEventRecord, AuditService } from './audit.service.js';
import { AuditOutcome } from './monitoring.contracts.js';

export async function consumeAuditRecords(options: {
  broker: Broker;
  queue: string;
  db: Database;
  audit: AuditService;
  log: Logger;
  batch?: BatcherOptions;
}): Promise<Subscription> {
  const { db, audit, log } = options;
  const batch = options.batch ?? { maxItems: 32, maxWaitMs: 100 };
  const batcher = new Batcher<AuditEventRecord, true | GraphQLError>((records) => audit.recordMany(db.fork(), records), batch);
  return options.broker.consume<AuditRecordPayload>(
    options.queue,
    async ({ envelope }: Delivery<AuditRecordPayload>) => {
      if (envelope.type !== AUDIT_RECORD_TYPE) throw new PermanentMessageError(`unexpected message type ${envelope.type}`);
      const record = envelope.payload;
      if (record.tenant !== envelope.tenant) throw new PermanentMessageError('the record tenant differs from the envelope tenant');
      let outcome: true | GraphQLError;
      try {
        outcome = await batcher.add({
          id: record.id,
          tenant: record.tenant,
          actor: record.actor,
          roles: record.roles,
          operationName: record.operationName,
          fieldName: record.fieldName,
          variables: record.variables,
          outcome: record.outcome as AuditOutcome,
          errorCode: record.errorCode,
          traceId: record.traceId,
          at: new Date(record.at),
        });
      } catch (error) {
        log.warn({ err: error, recordId: record.id }, 'audit record not stored yet; it will be retried');
        throw error;
      }
      // Invalid content never becomes valid: dead-letter at once. Anything else (database down) is retried.
      if (outcome instanceof GraphQLError) throw new PermanentMessageError(`invalid audit record: ${outcome.message}`);
    },
    { ...AUDIT_QUEUE_OPTIONS, payloadSchema: auditRecordPayloadSchema, prefetch: batch.maxItems },
  );
}
