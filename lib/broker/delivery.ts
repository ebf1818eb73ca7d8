// What both broker backends share at run time: names, defaults, option checks, topic matching and the handling of one
// delivery (decode, validate, run the handler in the message's trace, decide ack / retry / dead-letter). Keeping that
// decision here is what makes the two backends behave the same.
import type { Logger } from 'pino';
import type { z } from 'zod';
import { newTrace, parseTraceparent, withTrace } from '../telemetry.js';
import type { DeadLetter } from './broker.js';
import { bodyToText, decodeEnvelope, type Envelope } from './envelope.js';
import { BrokerError, BrokerRpcError, PermanentMessageError } from './errors.js';

/** The one topic exchange every event goes through. */
export const EVENTS_EXCHANGE = 'lcd.events';
export const DEFAULT_DELIVERY_LIMIT = 5;
export const DEFAULT_PREFETCH = 4;
/** Bound on an in-memory queue that did not ask for one (RabbitMQ queues are unbounded unless asked). */
export const DEFAULT_MEMORY_MAX_LENGTH = 100_000;
/** Dead-letter queues keep at most this many messages; the oldest go first. */
export const DEAD_LETTER_MAX_LENGTH = 100_000;

/** Headers a dead letter carries, set by the consumer that gave up on it. */
export const DEATH_HEADERS = {
  reason: 'x-death-reason',
  queue: 'x-death-queue',
  at: 'x-death-at',
  deliveryCount: 'x-death-delivery-count',
} as const;
/** Header on an RPC reply whose request was dead-lettered; the value is the reason. */
export const RPC_ERROR_HEADER = 'x-rpc-error';

export function deadLetterQueueName(queue: string): string {
  return `${queue}.dlq`;
}

export interface Delivery<T> {
  envelope: Envelope<T>;
  /** True when this message was delivered before (to this or another consumer). */
  redelivered: boolean;
  /** 1 on the first delivery. */
  deliveryCount: number;
  /** The queue it was consumed from. */
  queue: string;
  /** The routing key it was published with: the queue name for `send`, the event key for `publish`. */
  routingKey: string;
}

export type DeliveryHandler<T> = (delivery: Delivery<T>) => Promise<void>;

export interface ResolvedQueueOptions {
  deliveryLimit: number;
  maxLength: number | undefined;
}

export type DeliveryOutcome =
  | { action: 'ack' }
  | { action: 'retry'; reason: string }
  | { action: 'dead-letter'; reason: string };

export interface IncomingMessage {
  body: unknown;
  queue: string;
  routingKey: string;
  redelivered: boolean;
  deliveryCount: number;
}

function positiveInteger(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw new BrokerError(`${what} must be a positive integer, got ${value}`);
  return value;
}

export function resolveQueueOptions(opts: { deliveryLimit?: number; maxLength?: number } | undefined): ResolvedQueueOptions {
  return {
    deliveryLimit: positiveInteger(opts?.deliveryLimit, DEFAULT_DELIVERY_LIMIT, 'deliveryLimit'),
    maxLength: opts?.maxLength === undefined ? undefined : positiveInteger(opts.maxLength, 0, 'maxLength'),
  };
}

export function resolvePrefetch(prefetch: number | undefined): number {
  return positiveInteger(prefetch, DEFAULT_PREFETCH, 'prefetch');
}

const QUEUE_NAME = /^[A-Za-z0-9_.:-]{1,200}$/;

/** Same rule for both backends, so that a name that works in memory also works on RabbitMQ. */
export function checkQueueName(name: string): void {
  if (!QUEUE_NAME.test(name) || name.startsWith('amq.')) {
    throw new BrokerError(`invalid queue name "${name}": use 1-200 letters, digits, "_", ".", ":" or "-", not starting with "amq."`);
  }
}

/** Checks a binding key for the topic exchange: dot-separated words, `*` for one word, `#` for zero or more. */
export function checkBindingKey(key: string): void {
  if (key.length === 0 || key.length > 255) throw new BrokerError(`invalid binding key "${key}"`);
}

/** AMQP topic matching: `*` matches exactly one word, `#` zero or more words. */
export function topicMatches(pattern: string, routingKey: string): boolean {
  const p = pattern.split('.');
  const k = routingKey.split('.');
  const memo = new Map<number, boolean>();
  const match = (i: number, j: number): boolean => {
    const slot = i * (k.length + 1) + j;
    const known = memo.get(slot);
    if (known !== undefined) return known;
    let result: boolean;
    if (i === p.length) result = j === k.length;
    else if (p[i] === '#') result = match(i + 1, j) || (j < k.length && match(i, j + 1));
    else result = j < k.length && (p[i] === '*' || p[i] === k[j]) && match(i + 1, j + 1);
    memo.set(slot, result);
    return result;
  };
  return match(0, 0);
}

function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * Handles one delivery and says what to do with the message. The handler never sees a body that is not a valid
 * envelope; it runs inside the message's trace, so its logs and the messages it sends carry the producer's trace id.
 * Never throws.
 */
export async function processDelivery<T>(
  msg: IncomingMessage,
  handler: DeliveryHandler<T>,
  opts: { deliveryLimit: number; payloadSchema?: z.ZodType<T>; log: Logger },
): Promise<DeliveryOutcome> {
  const decoded = decodeEnvelope<T>(msg.body, opts.payloadSchema);
  if (!decoded.ok) {
    opts.log.warn({ queue: msg.queue, reason: decoded.error }, 'message refused: not a valid envelope');
    return { action: 'dead-letter', reason: decoded.error };
  }
  const { envelope } = decoded;
  const trace = newTrace(parseTraceparent(envelope.traceparent));
  return withTrace(trace, async (): Promise<DeliveryOutcome> => {
    const delivery: Delivery<T> = {
      envelope,
      redelivered: msg.redelivered || msg.deliveryCount > 1,
      deliveryCount: msg.deliveryCount,
      queue: msg.queue,
      routingKey: msg.routingKey,
    };
    try {
      await handler(delivery);
      return { action: 'ack' };
    } catch (err) {
      const reason = errorMessage(err);
      const context = { queue: msg.queue, type: envelope.type, messageId: envelope.messageId, deliveryCount: msg.deliveryCount, err };
      if (err instanceof PermanentMessageError) {
        opts.log.warn(context, 'message refused by its handler: dead-lettered');
        return { action: 'dead-letter', reason };
      }
      if (msg.deliveryCount >= opts.deliveryLimit) {
        opts.log.error(context, 'message failed on its last allowed delivery: dead-lettered');
        return { action: 'dead-letter', reason };
      }
      opts.log.warn(context, 'message handler failed: will be redelivered');
      return { action: 'retry', reason };
    }
  });
}

/** A dead letter as read back from a dead-letter queue, from its body and headers. */
export function readDeadLetter(body: unknown, headers: Record<string, unknown> | undefined, fromQueue: string): DeadLetter {
  const h = headers ?? {};
  const letter: DeadLetter = {
    queue: typeof h[DEATH_HEADERS.queue] === 'string' ? (h[DEATH_HEADERS.queue] as string) : fromQueue,
    reason: typeof h[DEATH_HEADERS.reason] === 'string' ? (h[DEATH_HEADERS.reason] as string) : 'unknown',
    at: typeof h[DEATH_HEADERS.at] === 'string' ? (h[DEATH_HEADERS.at] as string) : new Date(0).toISOString(),
    deliveryCount: Number(h[DEATH_HEADERS.deliveryCount] ?? 0) || 0,
  };
  // Dead-lettered by RabbitMQ itself (delivery limit reached after consumer crashes, RPC request expired): it records
  // the reason in the standard `x-death` header instead of ours.
  const xDeath = h['x-death'];
  if (h[DEATH_HEADERS.reason] === undefined && Array.isArray(xDeath) && xDeath.length > 0) {
    const first = xDeath[0] as Record<string, unknown>;
    letter.reason = `broker: ${String(first.reason ?? 'unknown')}`;
    if (typeof first.queue === 'string') letter.queue = first.queue;
    const time = first.time as unknown;
    if (time instanceof Date) letter.at = time.toISOString();
    else if (typeof time === 'number') letter.at = new Date(time * 1000).toISOString();
    // RabbitMQ does not record how many deliveries it made (x-delivery-count here is the dead-letter queue's own):
    // deliveryCount stays 0, for unknown.
  }
  const decoded = decodeEnvelope(body);
  if (decoded.ok) letter.envelope = decoded.envelope;
  else letter.rawBody = bodyToText(body);
  return letter;
}

/** Turns an RPC reply into the caller's result: the reply envelope, or the error to reject with. */
export function readRpcReply<Res>(
  queue: string,
  body: unknown,
  headers: Record<string, unknown> | undefined,
  replySchema: z.ZodType<Res> | undefined,
): Envelope<Res> | BrokerRpcError {
  const remoteError = headers?.[RPC_ERROR_HEADER];
  if (remoteError !== undefined) return new BrokerRpcError(queue, String(remoteError));
  const decoded = decodeEnvelope(body, replySchema);
  if (!decoded.ok) return new BrokerRpcError(queue, `invalid reply: ${decoded.error}`);
  return decoded.envelope;
}

/** JSON text of an envelope, failing with a BrokerError that names the destination. */
export function serializeEnvelope(envelope: Envelope<unknown>, destination: string): string {
  try {
    const text = JSON.stringify(envelope);
    if (typeof text !== 'string') throw new Error('not an object');
    return text;
  } catch (err) {
    throw new BrokerError(`cannot serialise message for "${destination}": ${errorMessage(err)}`, { cause: err });
  }
}
