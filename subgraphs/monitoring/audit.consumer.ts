// Stores the audit records the gateway sends, one per mutation root field: validated on receipt, stored once per
// record id however often the queue delivers it; a record that can never be stored goes to the dead-letter queue.
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { PermanentMessageError, type Broker, type Delivery, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { AUDIT_QUEUE_OPTIONS, AUDIT_RECORD_TYPE, auditRecordPayloadSchema, type AuditRecordPayload } from '../../lib/security/audit.js';
import type { AuditService } from './audit.service.js';
import { AuditOutcome } from './monitoring.contracts.js';

export async function consumeAuditRecords(options: {
  broker: Broker;
  queue: string;
  db: Database;
  audit: AuditService;
  log: Logger;
}): Promise<Subscription> {
  const { db, audit, log } = options;
  return options.broker.consume<AuditRecordPayload>(
    options.queue,
    async ({ envelope }: Delivery<AuditRecordPayload>) => {
      if (envelope.type !== AUDIT_RECORD_TYPE) throw new PermanentMessageError(`unexpected message type ${envelope.type}`);
      const record = envelope.payload;
      if (record.tenant !== envelope.tenant) throw new PermanentMessageError('the record tenant differs from the envelope tenant');
      try {
        await audit.record(db.fork(), {
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
        // Invalid content never becomes valid: dead-letter at once. Anything else (database down) is retried.
        if (error instanceof GraphQLError && error.extensions.code === 'BAD_USER_INPUT') {
          throw new PermanentMessageError(`invalid audit record: ${error.message}`);
        }
        log.warn({ err: error, recordId: record.id }, 'audit record not stored yet; it will be retried');
        throw error;
      }
    },
    { ...AUDIT_QUEUE_OPTIONS, payloadSchema: auditRecordPayloadSchema, prefetch: 8 },
  );
}
