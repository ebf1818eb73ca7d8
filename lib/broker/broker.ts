// The message broker every service uses: work queues with retries and dead letters, events on one topic exchange,
// and RPC. RabbitMQ when a URL is configured, otherwise an in-process broker with the same semantics.
import type { z } from 'zod';
import type { Delivery, DeliveryHandler } from './delivery.js';
import type { Envelope } from './envelope.js';
import { MemoryBroker, MemoryBrokerServer, defaultMemoryServer } from './memory-broker.js';
import { RabbitMqBroker } from './rabbitmq-broker.js';

export {
  DEFAULT_DELIVERY_LIMIT,
  DEFAULT_PREFETCH,
  EVENTS_EXCHANGE,
  deadLetterQueueName,
  topicMatches,
  type Delivery,
  type DeliveryHandler,
} from './delivery.js';
export { createEnvelope, decodeEnvelope, envelopeSchema, type CreateEnvelopeOptions, type Envelope } from './envelope.js';
export {
  BrokerClosedError,
  BrokerError,
  BrokerRpcError,
  BrokerTimeoutError,
  BrokerUnroutableError,
  PermanentMessageError,
} from './errors.js';
export { MemoryBroker, MemoryBrokerServer } from './memory-broker.js';
export { RabbitMqBroker } from './rabbitmq-broker.js';

export type BrokerKind = 'rabbitmq' | 'memory';

export interface QueueOptions {
  /**
   * Deliveries a message gets before it is dead-lettered (default 5). Part of the queue's definition: asserting the
   * same queue with another value fails.
   */
  deliveryLimit?: number;
  /** Most messages the queue holds; a send beyond it fails. Unbounded on RabbitMQ and 100 000 in memory by default. */
  maxLength?: number;
}

export interface ConsumeOptions<T = unknown> extends QueueOptions {
  /** Most unacknowledged messages this consumer holds, i.e. handlers running at once (default 4). */
  prefetch?: number;
  /** Validates the payload too; a message that fails is dead-lettered with the reason and the handler never sees it. */
  payloadSchema?: z.ZodType<T>;
}

export interface SubscribeOptions<T = unknown> extends ConsumeOptions<T> {
  /**
   * A durable named queue: events published while nobody listens wait there, and failures dead-letter to
   * `<queue>.dlq`. Without it the subscription gets a private queue that lives as long as the subscription; an event
   * its handler keeps failing on is logged and dropped after `deliveryLimit` deliveries.
   */
  queue?: string;
}

export interface RpcOptions<Res = unknown> {
  /** Time to wait for the reply; the request also expires in the queue after it. */
  timeoutMs: number;
  /** Validates the reply payload; a reply that fails rejects with BrokerRpcError. */
  replySchema?: z.ZodType<Res>;
}

export interface Subscription {
  /** The queue consumed (for a private subscription queue on RabbitMQ it changes after a reconnect). */
  readonly queue: string;
  /** Stops taking messages and waits for the handlers already running; what they did not finish is redelivered. */
  close(): Promise<void>;
}

export interface DeadLetter {
  /** The queue the message was dead-lettered from. */
  queue: string;
  /** Why: the handler's error message, `invalid envelope: …`, or what RabbitMQ recorded (`broker: expired`). */
  reason: string;
  /** ISO time it was dead-lettered. */
  at: string;
  /** Deliveries it had had; 0 when RabbitMQ dead-lettered it itself (it does not record the count). */
  deliveryCount: number;
  /** Present when the body is a valid envelope. */
  envelope?: Envelope<unknown>;
  /** The body as text when it is not a valid envelope. */
  rawBody?: string;
}

export interface QueueDepth {
  /** Messages waiting for a consumer. */
  ready: number;
  /** Messages delivered and not yet acknowledged (in-process broker only: RabbitMQ reports it only over HTTP). */
  unacked?: number;
}

export interface Broker {
  readonly kind: BrokerKind;
  /** Creates the queue and its dead-letter queue `<name>.dlq` if missing; idempotent with the same options. */
  assertQueue(name: string, opts?: QueueOptions): Promise<void>;
  /** Deletes a queue and its dead-letter queue, with their messages. */
  deleteQueue(name: string): Promise<void>;
  /** Stores a message on a queue; resolves once the broker has confirmed it. Fails if the queue does not exist. */
  send<T>(queue: string, envelope: Envelope<T>): Promise<void>;
  /** Publishes an event on the topic exchange `lcd.events`; resolves once confirmed (also when nobody subscribes). */
  publish<T>(routingKey: string, envelope: Envelope<T>): Promise<void>;
  /** Consumes a queue (asserting it first). The message is acknowledged only after the handler resolves. */
  consume<T>(queue: string, handler: DeliveryHandler<T>, opts?: ConsumeOptions<T>): Promise<Subscription>;
  /** Receives the events whose routing key matches any of the binding keys (`*` one word, `#` any number). */
  subscribe<T>(bindingKeys: string[], handler: DeliveryHandler<T>, opts?: SubscribeOptions<T>): Promise<Subscription>;
  /** Sends a request to an RPC queue and waits for the correlated reply; BrokerTimeoutError after `timeoutMs`. */
  rpc<Req, Res>(queue: string, envelope: Envelope<Req>, opts: RpcOptions<Res>): Promise<Envelope<Res>>;
  /** Serves an RPC queue: the handler's envelope is the reply. Same retry and dead-letter rules as `consume`; a request
   * that is dead-lettered is answered with an error, so the caller fails at once with BrokerRpcError. */
  serveRpc<Req, Res>(
    queue: string,
    handler: (delivery: Delivery<Req>) => Promise<Envelope<Res>>,
    opts?: ConsumeOptions<Req>,
  ): Promise<Subscription>;
  /** Reads up to `limit` (default 100) dead letters of a queue, oldest first, without removing them. */
  deadLetters(queue: string, limit?: number): Promise<DeadLetter[]>;
  /** Moves up to `limit` dead letters back onto their queue for a fresh set of deliveries; returns how many moved. */
  requeueDeadLetters(queue: string, limit?: number): Promise<number>;
  /** Drops a queue's dead letters; returns how many were dropped. */
  purgeDeadLetters(queue: string): Promise<number>;
  /** Depth of an existing queue. */
  queueDepth(queue: string): Promise<QueueDepth>;
  /** True while connected (in memory: until closed). */
  isHealthy(): boolean;
  /** Stops consumers (waiting for running handlers), fails pending RPCs with BrokerClosedError, disconnects. */
  close(): Promise<void>;
}

export interface CreateBrokerOptions {
  /** `amqp://` or `amqps://` URL: use RabbitMQ. Absent: the in-process broker. */
  url?: string;
  /** Names the logger and the AMQP connection (seen in RabbitMQ's connection list). */
  service?: string;
  /** RabbitMQ: how long `createBroker` waits for the first connection (default 10 s). */
  connectTimeoutMs?: number;
  /** In-process: the shared "server" the broker connects to; by default one per Node process, so that all services
   * started in one process reach each other. Tests pass their own for isolation. */
  memoryServer?: MemoryBrokerServer;
}

/** Connects to RabbitMQ when `url` is set, otherwise to the in-process broker. */
export async function createBroker(opts: CreateBrokerOptions = {}): Promise<Broker> {
  if (opts.url) return RabbitMqBroker.connect({ url: opts.url, service: opts.service, connectTimeoutMs: opts.connectTimeoutMs });
  return new MemoryBroker(opts.memoryServer ?? defaultMemoryServer(), { service: opts.service });
}
