// The audit trail's contract between the gateway, which sees every mutation and its outcome, and the monitoring
// subgraph, which stores it: one `audit.record` message per mutation root field on a durable queue.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { createEnvelope, type Broker, type QueueOptions } from '../broker/broker.js';
import { redactSecrets } from './redact.js';

export const DEFAULT_AUDIT_QUEUE = 'monitoring.audit';
export const AUDIT_RECORD_TYPE = 'audit.record';
/** Both sides assert the queue with these options (RabbitMQ refuses a queue re-declared with others). */
export const AUDIT_QUEUE_OPTIONS: QueueOptions = { deliveryLimit: 5 };

export const AUDIT_OUTCOMES = ['SUCCESS', 'DENIED', 'ERROR'] as const;
export type AuditOutcomeName = (typeof AUDIT_OUTCOMES)[number];

/** Codes that mean the caller was refused (who they are, what they may do, how much) rather than that it failed. */
export const DENIED_CODES: ReadonlySet<string> = new Set(['UNAUTHENTICATED', 'FORBIDDEN', 'RATE_LIMITED', 'OPERATION_LIMIT']);

export const auditRecordPayloadSchema = z.object({
  /** Stored once per id, however often the message is delivered. */
  id: z.uuid(),
  tenant: z.string().min(1).max(200),
  actor: z.string().min(1).max(500),
  roles: z.array(z.string().max(100)).max(50),
  operationName: z.string().max(200).nullable(),
  fieldName: z.string().min(1).max(200),
  variables: z.record(z.string(), z.unknown()),
  outcome: z.enum(AUDIT_OUTCOMES),
  errorCode: z.string().max(64).nullable(),
  traceId: z.string().max(64).nullable(),
  at: z.iso.datetime({ offset: true }),
});
export type AuditRecordPayload = z.infer<typeof auditRecordPayloadSchema>;

interface ErrorLike {
  path?: readonly (string | number)[];
  extensions?: Record<string, unknown>;
}

/**
 * The outcome of one root field from the errors of the response: errors on its path, or errors of the whole request
 * (no path, e.g. a refused operation). The first error decides.
 */
export function auditOutcome(responseKey: string, errors: readonly ErrorLike[] | undefined): { outcome: AuditOutcomeName; errorCode: string | null } {
  const relevant = (errors ?? []).filter((e) => !e.path || e.path.length === 0 || e.path[0] === responseKey);
  if (relevant.length === 0) return { outcome: 'SUCCESS', errorCode: null };
  const denied = relevant.find((e) => DENIED_CODES.has(String(e.extensions?.code)));
  const decisive = denied ?? relevant[0]!;
  const code = typeof decisive.extensions?.code === 'string' ? decisive.extensions.code.slice(0, 64) : 'INTERNAL_SERVER_ERROR';
  return { outcome: denied ? 'DENIED' : 'ERROR', errorCode: /^[A-Za-z0-9_.-]{1,64}$/.test(code) ? code : 'INTERNAL_SERVER_ERROR' };
}

export interface AuditEntry extends Omit<AuditRecordPayload, 'id' | 'at' | 'variables'> {
  variables: Record<string, unknown>;
}

/** Sends audit records; the queue is asserted once before the first. */
export class AuditPublisher {
  private ready: Promise<void> | undefined;
  private readonly inFlight = new Set<Promise<unknown>>();

  constructor(
    private readonly broker: Broker,
    private readonly log: Logger,
    readonly queue = DEFAULT_AUDIT_QUEUE,
  ) {}

  start(): Promise<void> {
    this.ready ??= this.broker.assertQueue(this.queue, AUDIT_QUEUE_OPTIONS);
    return this.ready;
  }

  /**
   * Logs the record and stores it on the queue; resolves once the broker confirmed it. Callers need not wait (the
   * gateway answers first): `drain()` waits for every publish still in flight, before the broker is closed.
   */
  publish(entry: AuditEntry): Promise<AuditRecordPayload> {
    const sent = this.send(entry);
    this.inFlight.add(sent);
    const forget = () => this.inFlight.delete(sent);
    sent.then(forget, forget);
    return sent;
  }

  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  private async send(entry: AuditEntry): Promise<AuditRecordPayload> {
    const payload: AuditRecordPayload = {
      ...entry,
      id: randomUUID(),
      variables: redactSecrets(entry.variables) as Record<string, unknown>,
      at: new Date().toISOString(),
    };
    this.log.info({ audit: payload }, `audit ${payload.fieldName} ${payload.outcome}`);
    await this.start();
    const envelope = createEnvelope(AUDIT_RECORD_TYPE, payload, { tenant: payload.tenant, idempotencyKey: payload.id });
    await this.broker.send(this.queue, envelope);
    return payload;
  }
}
