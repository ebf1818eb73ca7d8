// The RabbitMQ broker: quorum queues with a dead-letter queue each, confirmed publishes, one topic exchange for events,
// direct reply-to RPC. rabbitmq-client reconnects on its own; its consumers and publisher redo their setup afterwards.
//
// Dead letters: the consumer that gives up on a message publishes it to `<queue>.dlq` itself (confirmed, with the
// reason in `x-death-reason`) and only then acks it. RabbitMQ's own dead-lettering cannot carry the handler's error
// message (x-death says only `rejected` or `delivery_limit`), and the reason is what an operator needs. A crash between
// the publish and the ack leaves the message to be redelivered and dead-lettered again: at least once, never lost.
// The quorum queue's own `x-delivery-limit` and dead-letter exchange stay as a safety net for messages whose consumer
// dies while handling them (a process killed on a poison input never gets to dead-letter it); those, and RPC requests
// that expire before any server takes them, arrive in the same `.dlq` with RabbitMQ's `x-death` header.
import { createHash, randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import {
  Connection,
  ConsumerStatus,
  type AsyncMessage,
  type Channel,
  type Consumer,
  type ConsumerProps,
  type Envelope as AmqpEnvelope,
  type MethodParams,
  type Cmd,
  type Publisher,
} from 'rabbitmq-client';
import type { z } from 'zod';
import { serviceLogger } from '../telemetry.js';
import type {
  Broker,
  ConsumeOptions,
  DeadLetter,
  QueueDepth,
  QueueOptions,
  RpcOptions,
  SubscribeOptions,
  Subscription,
} from './broker.js';
import {
  DEAD_LETTER_MAX_LENGTH,
  DEATH_HEADERS,
  EVENTS_EXCHANGE,
  RPC_ERROR_HEADER,
  checkBindingKey,
  checkQueueName,
  deadLetterQueueName,
  processDelivery,
  readDeadLetter,
  readRpcReply,
  resolvePrefetch,
  resolveQueueOptions,
  serializeEnvelope,
  type Delivery,
  type DeliveryHandler,
  type DeliveryOutcome,
  type ResolvedQueueOptions,
} from './delivery.js';
import type { Envelope } from './envelope.js';
import { BrokerClosedError, BrokerError, BrokerTimeoutError, BrokerUnroutableError } from './errors.js';

type QueueDeclareParams = MethodParams[Cmd.QueueDeclare];
type Headers = Record<string, unknown>;

/** Marks each publish so that a `basic.return` (unroutable) can be matched to the send that caused it. */
const PUBLISH_ID_HEADER = 'x-publish-id';
const DIRECT_REPLY_TO = 'amq.rabbitmq.reply-to';
/** AMQP sends all message properties in one frame (8 KiB by default): keep recorded reasons well under that. */
const MAX_REASON_LENGTH = 2000;
const CONSUMER_READY_TIMEOUT_MS = 15_000;

const EVENTS_EXCHANGE_DECLARATION = { exchange: EVENTS_EXCHANGE, type: 'topic', durable: true } as const;

export interface RabbitMqBrokerOptions {
  url: string;
  service?: string;
  connectTimeoutMs?: number;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function amqpCode(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : undefined;
}

function redactUrl(url: string): string {
  return url.replace(/\/\/([^:@/]+):([^@/]*)@/, '//$1:***@');
}

function toBuffer(body: unknown): Buffer {
  if (Buffer.isBuffer(body)) return body;
  return Buffer.from(typeof body === 'string' ? body : (JSON.stringify(body) ?? 'null'));
}

/** Headers to carry over when a message is moved: without the ones RabbitMQ or this broker set per delivery. */
function carriedHeaders(headers: Headers | undefined): Headers {
  const carried: Headers = {};
  for (const [key, value] of Object.entries(headers ?? {})) {
    if (key === 'x-delivery-count' || key === PUBLISH_ID_HEADER) continue;
    carried[key] = value;
  }
  return carried;
}

function deadLetterFree(headers: Headers | undefined): Headers {
  const carried = carriedHeaders(headers);
  for (const key of [...Object.values(DEATH_HEADERS), 'x-death', 'x-first-death-exchange', 'x-first-death-queue', 'x-first-death-reason']) {
    delete carried[key];
  }
  return carried;
}

export function queueDeclaration(name: string, opts: ResolvedQueueOptions): QueueDeclareParams {
  const args: Record<string, unknown> = {
    'x-queue-type': 'quorum',
    'x-delivery-limit': opts.deliveryLimit,
    'x-dead-letter-exchange': '',
    'x-dead-letter-routing-key': deadLetterQueueName(name),
  };
  if (opts.maxLength !== undefined) {
    args['x-max-length'] = opts.maxLength;
    args['x-overflow'] = 'reject-publish';
  }
  return { queue: name, durable: true, arguments: args };
}

function deadLetterQueueDeclaration(name: string): QueueDeclareParams {
  return {
    queue: deadLetterQueueName(name),
    durable: true,
    arguments: { 'x-queue-type': 'quorum', 'x-max-length': DEAD_LETTER_MAX_LENGTH, 'x-overflow': 'drop-head' },
  };
}

interface PendingRpc {
  queue: string;
  timer: NodeJS.Timeout;
  replySchema: z.ZodType<unknown> | undefined;
  resolve: (envelope: Envelope<unknown>) => void;
  reject: (err: Error) => void;
}

/**
 * RPC calls over direct reply-to on one channel of their own. rabbitmq-client's RPCClient has one timeout per client
 * and makes close() wait for every pending call; here each call has its own timeout and close fails pending calls.
 */
class RpcCaller {
  private channel: Channel | undefined;
  private setup: Promise<Channel> | undefined;
  private readonly pending = new Map<string, PendingRpc>();
  private closed = false;

  constructor(
    private readonly connection: Connection,
    private readonly log: Logger,
  ) {}

  async call<Res>(
    queue: string,
    body: Buffer,
    props: AmqpEnvelope,
    timeoutMs: number,
    replySchema: z.ZodType<Res> | undefined,
  ): Promise<Envelope<Res>> {
    const channel = await this.ready();
    const correlationId = randomUUID();
    const result = new Promise<Envelope<Res>>((resolve, reject) => {
      const timer = setTimeout(() => this.settle(correlationId, new BrokerTimeoutError(queue, timeoutMs)), timeoutMs);
      this.pending.set(correlationId, {
        queue,
        timer,
        replySchema,
        resolve: resolve as (envelope: Envelope<unknown>) => void,
        reject,
      });
    });
    // Not awaited here: the reply may come before the publisher confirm, and a failure settles `result`.
    void channel
      .basicPublish(
        {
          ...props,
          exchange: '',
          routingKey: queue,
          mandatory: true,
          replyTo: DIRECT_REPLY_TO,
          correlationId,
          expiration: String(timeoutMs),
        },
        body,
      )
      .catch((err: unknown) => {
        this.settle(correlationId, new BrokerError(`RPC to queue "${queue}" could not be sent: ${errorMessage(err)}`, { cause: err }));
      });
    return result;
  }

  close(): void {
    this.closed = true;
    this.failAll(new BrokerClosedError());
    const channel = this.channel;
    this.channel = undefined;
    if (channel?.active) channel.close().catch((err: unknown) => this.log.debug({ err }, 'RPC channel close failed'));
  }

  private settle(correlationId: string, result: Envelope<unknown> | Error): void {
    const pending = this.pending.get(correlationId);
    if (!pending) return;
    this.pending.delete(correlationId);
    clearTimeout(pending.timer);
    if (result instanceof Error) pending.reject(result);
    else pending.resolve(result);
  }

  private failAll(err: Error): void {
    for (const correlationId of [...this.pending.keys()]) this.settle(correlationId, err);
  }

  private async ready(): Promise<Channel> {
    if (this.closed) throw new BrokerClosedError();
    if (this.channel?.active) return this.channel;
    this.setup ??= this.open().finally(() => {
      this.setup = undefined;
    });
    return this.setup;
  }

  private async open(): Promise<Channel> {
    const channel = await this.connection.acquire({ emitErrorsFromChannel: true });
    channel.on('error', (err: unknown) => this.log.warn({ err }, 'RPC channel error'));
    channel.once('close', () => {
      // Replies come only on the channel that sent the request: what is pending there can no longer be answered.
      if (this.channel === channel) this.channel = undefined;
      this.failAll(new BrokerError('RPC channel closed (connection lost?) before the reply came'));
    });
    channel.on('basic.return', (msg) => {
      if (!msg.correlationId) return;
      const pending = this.pending.get(msg.correlationId);
      if (pending) this.settle(msg.correlationId, new BrokerUnroutableError(pending.queue));
    });
    await channel.confirmSelect();
    await channel.basicConsume({ queue: DIRECT_REPLY_TO, noAck: true }, (msg) => {
      if (!msg.correlationId) return;
      const pending = this.pending.get(msg.correlationId);
      if (!pending) return; // a reply after the caller gave up
      this.settle(msg.correlationId, readRpcReply(pending.queue, msg.body, msg.headers, pending.replySchema));
    });
    if (this.closed) {
      await channel.close();
      throw new BrokerClosedError();
    }
    this.channel = channel;
    return channel;
  }
}

interface Processed {
  outcome: DeliveryOutcome;
  deliveryCount: number;
}

interface ConsumerContext<T> {
  queue: string;
  deliveryLimit: number;
  /** False for private subscription queues: a message given up on is logged and dropped. */
  deadLetter: boolean;
  payloadSchema: z.ZodType<T> | undefined;
  /**
   * Deliveries per message, counted here for classic (private) queues, which do not count them. Such a queue lives
   * and dies with this connection, so every redelivery comes back to this consumer.
   */
  localCounts?: Map<string, number>;
}

/** The RabbitMQ implementation of the Broker: one connection per service. */
export class RabbitMqBroker implements Broker {
  readonly kind = 'rabbitmq' as const;
  /** Name of the AMQP connection, as RabbitMQ lists it (`rabbitmqctl list_connections client_properties`). */
  readonly connectionName: string;
  private readonly connection: Connection;
  private readonly publisher: Publisher;
  private readonly rpcCaller: RpcCaller;
  private readonly consumers = new Set<Consumer>();
  private readonly returned = new Set<string>();
  private readonly log: Logger;
  private closed = false;
  private connections = 0;

  /** Connects and declares the events exchange; fails with a message naming the (password-less) URL. */
  static async connect(opts: RabbitMqBrokerOptions): Promise<RabbitMqBroker> {
    const broker = new RabbitMqBroker(opts);
    const fail = (err: unknown): BrokerError =>
      new BrokerError(`cannot connect to RabbitMQ at ${redactUrl(opts.url)}: ${errorMessage(err)}`, { cause: err });
    try {
      // Without auto-close: a connection that auto-closed this way never settles a later close().
      await broker.connection.onConnect(opts.connectTimeoutMs ?? 10_000, true);
    } catch (err) {
      broker.closed = true;
      broker.rpcCaller.close();
      broker.connection.unsafeDestroy();
      throw fail(err);
    }
    try {
      await broker.connection.exchangeDeclare(EVENTS_EXCHANGE_DECLARATION);
    } catch (err) {
      await broker.close().catch(() => undefined);
      throw fail(err);
    }
    return broker;
  }

  private constructor(opts: RabbitMqBrokerOptions) {
    const service = opts.service ?? 'broker';
    this.log = serviceLogger(service).child({ component: 'broker', backend: 'rabbitmq' });
    this.connectionName = `${service}@${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`;
    this.connection = new Connection({
      url: opts.url,
      connectionName: this.connectionName,
      // Reconnect quickly at first, then back off to at most 5 s between attempts.
      retryLow: 200,
      retryHigh: 5_000,
      acquireTimeout: 10_000,
      connectionTimeout: 10_000,
      // rabbitmq-client leaves Nagle's algorithm on: a small publish then waits for the ACK of the previous segment,
      // which the broker's delayed ACK holds for up to 40 ms. Every RPC (detectChanges, model resolution) paid that.
      noDelay: true,
    });
    this.connection.on('error', (err: unknown) => this.log.warn({ err }, 'RabbitMQ connection error'));
    this.connection.on('connection', () => {
      this.connections += 1;
      this.log.info({ connection: this.connectionName, times: this.connections }, 'RabbitMQ connected');
    });
    this.connection.on('connection.blocked', (reason: string) => this.log.warn({ reason }, 'RabbitMQ blocked publishing'));
    this.connection.on('connection.unblocked', () => this.log.info('RabbitMQ unblocked publishing'));
    this.publisher = this.connection.createPublisher({ confirm: true, maxAttempts: 3, exchanges: [EVENTS_EXCHANGE_DECLARATION] });
    this.publisher.on('basic.return', (msg) => {
      const publishId = msg.headers?.[PUBLISH_ID_HEADER];
      if (publishId !== undefined) this.returned.add(String(publishId));
    });
    this.publisher.on('retry', (err: unknown) => this.log.warn({ err }, 'publish failed; retrying'));
    this.rpcCaller = new RpcCaller(this.connection, this.log);
  }

  /** How many times the connection has been established: 1 + reconnections. */
  get connectionCount(): number {
    return this.connections;
  }

  async assertQueue(name: string, opts?: QueueOptions): Promise<void> {
    this.assertOpen();
    checkQueueName(name);
    await this.declare(name, resolveQueueOptions(opts));
  }

  async deleteQueue(name: string): Promise<void> {
    this.assertOpen();
    try {
      await this.connection.queueDelete({ queue: name });
      await this.connection.queueDelete({ queue: deadLetterQueueName(name) });
    } catch (err) {
      throw new BrokerError(`cannot delete queue "${name}": ${errorMessage(err)}`, { cause: err });
    }
  }

  async send<T>(queue: string, envelope: Envelope<T>): Promise<void> {
    const body = Buffer.from(serializeEnvelope(envelope, queue));
    await this.publishConfirmed({ exchange: '', routingKey: queue, ...this.messageProperties(envelope) }, body, queue, true);
  }

  async publish<T>(routingKey: string, envelope: Envelope<T>): Promise<void> {
    const body = Buffer.from(serializeEnvelope(envelope, `${EVENTS_EXCHANGE}/${routingKey}`));
    await this.publishConfirmed(
      { exchange: EVENTS_EXCHANGE, routingKey, ...this.messageProperties(envelope) },
      body,
      `${EVENTS_EXCHANGE}/${routingKey}`,
      false,
    );
  }

  async consume<T>(queue: string, handler: DeliveryHandler<T>, opts?: ConsumeOptions<T>): Promise<Subscription> {
    this.assertOpen();
    checkQueueName(queue);
    const prefetch = resolvePrefetch(opts?.prefetch);
    const resolved = resolveQueueOptions(opts);
    const declaration = await this.declare(queue, resolved);
    const context: ConsumerContext<T> = {
      queue,
      deliveryLimit: resolved.deliveryLimit,
      deadLetter: true,
      payloadSchema: opts?.payloadSchema,
    };
    return this.startConsumer(
      { queue, queueOptions: declaration, qos: { prefetchCount: prefetch }, concurrency: prefetch },
      async (msg) => this.settle(context, msg, await this.process(context, msg, handler)),
      context,
    );
  }

  async subscribe<T>(bindingKeys: string[], handler: DeliveryHandler<T>, opts?: SubscribeOptions<T>): Promise<Subscription> {
    this.assertOpen();
    if (bindingKeys.length === 0) throw new BrokerError('subscribe needs at least one binding key');
    bindingKeys.forEach(checkBindingKey);
    const prefetch = resolvePrefetch(opts?.prefetch);
    const resolved = resolveQueueOptions(opts);
    let props: ConsumerProps;
    let context: ConsumerContext<T>;
    if (opts?.queue) {
      checkQueueName(opts.queue);
      const queue = opts.queue;
      const declaration = await this.declare(queue, resolved);
      props = {
        queue,
        queueOptions: declaration,
        exchanges: [EVENTS_EXCHANGE_DECLARATION],
        queueBindings: bindingKeys.map((routingKey) => ({ exchange: EVENTS_EXCHANGE, queue, routingKey })),
      };
      context = { queue, deliveryLimit: resolved.deliveryLimit, deadLetter: true, payloadSchema: opts.payloadSchema };
    } else {
      // A private classic queue named by the server, re-made with its bindings after a reconnect (events published
      // while disconnected are missed, as befits a subscription that exists only while its subscriber does).
      props = {
        queue: '',
        queueOptions: { exclusive: true, autoDelete: true, durable: false },
        exchanges: [EVENTS_EXCHANGE_DECLARATION],
        queueBindings: bindingKeys.map((routingKey) => ({ exchange: EVENTS_EXCHANGE, routingKey })),
      };
      context = {
        queue: '',
        deliveryLimit: resolved.deliveryLimit,
        deadLetter: false,
        payloadSchema: opts?.payloadSchema,
        localCounts: new Map(),
      };
    }
    return this.startConsumer(
      { ...props, qos: { prefetchCount: prefetch }, concurrency: prefetch },
      async (msg, consumer) => {
        const current = { ...context, queue: context.queue || consumer.queue };
        return this.settle(current, msg, await this.process(current, msg, handler));
      },
      context,
    );
  }

  async rpc<Req, Res>(queue: string, envelope: Envelope<Req>, opts: RpcOptions<Res>): Promise<Envelope<Res>> {
    this.assertOpen();
    const timeoutMs = opts.timeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new BrokerError(`rpc timeoutMs must be positive, got ${timeoutMs}`);
    const body = Buffer.from(serializeEnvelope(envelope, queue));
    return this.rpcCaller.call(queue, body, this.messageProperties(envelope), Math.ceil(timeoutMs), opts.replySchema);
  }

  async serveRpc<Req, Res>(
    queue: string,
    handler: (delivery: Delivery<Req>) => Promise<Envelope<Res>>,
    opts?: ConsumeOptions<Req>,
  ): Promise<Subscription> {
    this.assertOpen();
    checkQueueName(queue);
    const prefetch = resolvePrefetch(opts?.prefetch);
    const resolved = resolveQueueOptions(opts);
    const declaration = await this.declare(queue, resolved);
    const context: ConsumerContext<Req> = {
      queue,
      deliveryLimit: resolved.deliveryLimit,
      deadLetter: true,
      payloadSchema: opts?.payloadSchema,
    };
    return this.startConsumer(
      { queue, queueOptions: declaration, qos: { prefetchCount: prefetch }, concurrency: prefetch },
      async (msg, _consumer, reply) => {
        let response: Buffer | undefined;
        const processed = await this.process(context, msg, async (delivery: Delivery<Req>) => {
          response = Buffer.from(serializeEnvelope(await handler(delivery), 'rpc reply'));
        });
        const { outcome } = processed;
        if (msg.replyTo) {
          // Reply before the ack: a crash in between repeats the work rather than losing the answer. A caller that
          // is gone makes RabbitMQ drop the reply, which is fine.
          try {
            if (outcome.action === 'ack' && response) {
              await reply(response, { contentType: 'application/json' });
            } else if (outcome.action === 'dead-letter') {
              await reply(Buffer.from('null'), {
                contentType: 'application/json',
                headers: { [RPC_ERROR_HEADER]: outcome.reason.slice(0, MAX_REASON_LENGTH) },
              });
            }
          } catch (err) {
            this.log.warn({ err, queue }, 'RPC reply could not be sent');
          }
        }
        return this.settle(context, msg, processed);
      },
      context,
    );
  }

  async deadLetters(queue: string, limit = 100): Promise<DeadLetter[]> {
    this.assertOpen();
    const channel = await this.acquire();
    const letters: DeadLetter[] = [];
    try {
      while (letters.length < limit) {
        const msg = await channel.basicGet({ queue: deadLetterQueueName(queue) });
        if (!msg) break;
        letters.push(readDeadLetter(msg.body, msg.headers, queue));
      }
      return letters;
    } catch (err) {
      if (amqpCode(err) === 'NOT_FOUND') return [];
      throw new BrokerError(`cannot read dead letters of "${queue}": ${errorMessage(err)}`, { cause: err });
    } finally {
      // Closing the channel puts back everything read above, unacknowledged: reading removes nothing.
      await this.closeChannel(channel);
    }
  }

  async requeueDeadLetters(queue: string, limit = Number.POSITIVE_INFINITY): Promise<number> {
    this.assertOpen();
    await this.queueDepth(queue); // fails clearly when the queue to move them to does not exist
    const channel = await this.acquire();
    let moved = 0;
    try {
      await channel.confirmSelect();
      while (moved < limit) {
        const msg = await channel.basicGet({ queue: deadLetterQueueName(queue) });
        if (!msg) break;
        await channel.basicPublish(
          {
            exchange: '',
            routingKey: queue,
            durable: true,
            contentType: msg.contentType,
            messageId: msg.messageId,
            type: msg.type,
            headers: deadLetterFree(msg.headers),
          },
          toBuffer(msg.body),
        );
        channel.basicAck({ deliveryTag: msg.deliveryTag });
        moved += 1;
      }
      return moved;
    } catch (err) {
      if (amqpCode(err) === 'NOT_FOUND') return moved;
      throw new BrokerError(`cannot requeue dead letters of "${queue}": ${errorMessage(err)}`, { cause: err });
    } finally {
      await this.closeChannel(channel);
    }
  }

  async purgeDeadLetters(queue: string): Promise<number> {
    this.assertOpen();
    try {
      const { messageCount } = await this.connection.queuePurge({ queue: deadLetterQueueName(queue) });
      return messageCount;
    } catch (err) {
      if (amqpCode(err) === 'NOT_FOUND') return 0;
      throw new BrokerError(`cannot purge dead letters of "${queue}": ${errorMessage(err)}`, { cause: err });
    }
  }

  async queueDepth(queue: string): Promise<QueueDepth> {
    this.assertOpen();
    try {
      const { messageCount } = await this.connection.queueDeclare({ queue, passive: true });
      return { ready: messageCount };
    } catch (err) {
      if (amqpCode(err) === 'NOT_FOUND') throw new BrokerError(`queue "${queue}" does not exist`, { cause: err });
      throw new BrokerError(`cannot read the depth of "${queue}": ${errorMessage(err)}`, { cause: err });
    }
  }

  isHealthy(): boolean {
    return !this.closed && this.connection.ready;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const consumers = [...this.consumers];
    this.consumers.clear();
    const results = await Promise.allSettled(consumers.map((consumer) => consumer.close()));
    for (const result of results) {
      if (result.status === 'rejected') this.log.warn({ err: result.reason }, 'consumer close failed');
    }
    this.rpcCaller.close();
    await this.publisher.close().catch((err: unknown) => this.log.debug({ err }, 'publisher close failed'));
    await this.connection.close();
  }

  private assertOpen(): void {
    if (this.closed) throw new BrokerClosedError();
  }

  private messageProperties(envelope: Envelope<unknown>): AmqpEnvelope {
    return {
      durable: true,
      contentType: 'application/json',
      messageId: envelope.messageId,
      type: envelope.type,
      timestamp: Math.floor(Date.now() / 1000),
    };
  }

  /** Declares the dead-letter queue, then the queue that dead-letters into it. */
  private async declare(name: string, opts: ResolvedQueueOptions): Promise<QueueDeclareParams> {
    const declaration = queueDeclaration(name, opts);
    try {
      await this.connection.queueDeclare(deadLetterQueueDeclaration(name));
      await this.connection.queueDeclare(declaration);
    } catch (err) {
      if (amqpCode(err) === 'PRECONDITION_FAILED') {
        throw new BrokerError(
          `queue "${name}" already exists with other options (asked for deliveryLimit=${opts.deliveryLimit}, ` +
            `maxLength=${opts.maxLength ?? 'none'}): ${errorMessage(err)}`,
          { cause: err },
        );
      }
      throw new BrokerError(`cannot declare queue "${name}": ${errorMessage(err)}`, { cause: err });
    }
    return declaration;
  }

  private async publishConfirmed(props: AmqpEnvelope, body: Buffer, destination: string, mandatory: boolean): Promise<void> {
    this.assertOpen();
    const publishId = randomUUID();
    try {
      await this.publisher.send({ ...props, mandatory, headers: { ...props.headers, [PUBLISH_ID_HEADER]: publishId } }, body);
    } catch (err) {
      this.returned.delete(publishId);
      throw new BrokerError(`publish to "${destination}" was not confirmed: ${errorMessage(err)}`, { cause: err });
    }
    if (mandatory) {
      // RabbitMQ sends basic.return before the confirm, but rabbitmq-client emits the return on a setImmediate while
      // the confirm resolves at once: one more turn of the event loop and the return, if any, has been seen.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (this.returned.delete(publishId)) throw new BrokerUnroutableError(destination);
    }
  }

  private async startConsumer<T>(
    props: ConsumerProps,
    handle: (
      msg: AsyncMessage,
      consumer: Consumer,
      reply: (body: Buffer, envelope?: AmqpEnvelope) => Promise<void>,
    ) => Promise<ConsumerStatus>,
    context: ConsumerContext<T>,
  ): Promise<Subscription> {
    this.assertOpen();
    // Our handler never throws; should it, rabbitmq-client nacks with requeue.
    const consumer: Consumer = this.connection.createConsumer({ ...props, requeue: true, lazy: true }, (msg, reply) =>
      handle(msg, consumer, reply),
    );
    consumer.on('error', (err: unknown) => this.log.warn({ err, queue: props.queue || consumer.queue }, 'consumer error'));
    // After a reconnect the private queue is new: counts for messages of the old one are stale.
    consumer.on('ready', () => context.localCounts?.clear());
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          cleanup();
          reject(new BrokerError(`consumer for "${props.queue || 'subscription'}" not ready after ${CONSUMER_READY_TIMEOUT_MS} ms`));
        }, CONSUMER_READY_TIMEOUT_MS);
        const onReady = (): void => {
          cleanup();
          resolve();
        };
        const onError = (err: unknown): void => {
          cleanup();
          reject(new BrokerError(`cannot consume "${props.queue || 'subscription'}": ${errorMessage(err)}`, { cause: err }));
        };
        const cleanup = (): void => {
          clearTimeout(timer);
          consumer.off('ready', onReady);
          consumer.off('error', onError);
        };
        consumer.once('ready', onReady);
        consumer.once('error', onError);
        consumer.start();
      });
    } catch (err) {
      await consumer.close().catch(() => undefined);
      throw err;
    }
    this.consumers.add(consumer);
    return {
      get queue() {
        return props.queue || consumer.queue;
      },
      close: async () => {
        this.consumers.delete(consumer);
        await consumer.close();
      },
    };
  }

  private deliveryCount<T>(context: ConsumerContext<T>, msg: AsyncMessage): number {
    if (!context.localCounts) {
      // Quorum queues count returns in x-delivery-count: absent on the first delivery.
      return (Number(msg.headers?.['x-delivery-count'] ?? 0) || 0) + 1;
    }
    const key = this.localKey(msg);
    const count = (context.localCounts.get(key) ?? 0) + 1;
    context.localCounts.set(key, count);
    return count;
  }

  private localKey(msg: AsyncMessage): string {
    return msg.messageId ?? `sha1:${createHash('sha1').update(toBuffer(msg.body)).digest('hex')}`;
  }

  private async process<T>(context: ConsumerContext<T>, msg: AsyncMessage, handler: DeliveryHandler<T>): Promise<Processed> {
    const deliveryCount = this.deliveryCount(context, msg);
    const outcome = await processDelivery(
      { body: msg.body, queue: context.queue, routingKey: msg.routingKey, redelivered: msg.redelivered, deliveryCount },
      handler,
      { deliveryLimit: context.deliveryLimit, payloadSchema: context.payloadSchema, log: this.log },
    );
    return { outcome, deliveryCount };
  }

  /** Turns the outcome into an ack or a requeue, dead-lettering first where it says so. */
  private async settle<T>(context: ConsumerContext<T>, msg: AsyncMessage, processed: Processed): Promise<ConsumerStatus> {
    const { outcome, deliveryCount } = processed;
    if (outcome.action === 'retry') return ConsumerStatus.REQUEUE;
    context.localCounts?.delete(this.localKey(msg));
    if (outcome.action === 'ack') return ConsumerStatus.ACK;
    if (!context.deadLetter) {
      this.log.error({ queue: context.queue, reason: outcome.reason, deliveryCount }, 'event given up on and dropped');
      return ConsumerStatus.ACK;
    }
    try {
      await this.deadLetter(context.queue, msg, outcome.reason, deliveryCount);
      return ConsumerStatus.ACK;
    } catch (err) {
      // Not recorded, so not acked: it comes back and is dead-lettered then.
      this.log.error({ err, queue: context.queue }, 'dead-lettering failed; message requeued');
      return ConsumerStatus.REQUEUE;
    }
  }

  private async deadLetter(queue: string, msg: AsyncMessage, reason: string, deliveryCount: number): Promise<void> {
    const dlq = deadLetterQueueName(queue);
    const props: AmqpEnvelope = {
      exchange: '',
      routingKey: dlq,
      durable: true,
      contentType: msg.contentType,
      messageId: msg.messageId,
      type: msg.type,
      headers: {
        ...carriedHeaders(msg.headers),
        [DEATH_HEADERS.reason]: reason.slice(0, MAX_REASON_LENGTH),
        [DEATH_HEADERS.queue]: queue,
        [DEATH_HEADERS.at]: new Date().toISOString(),
        [DEATH_HEADERS.deliveryCount]: deliveryCount,
      },
    };
    const body = toBuffer(msg.body);
    try {
      await this.publishConfirmed(props, body, dlq, true);
    } catch (err) {
      if (!(err instanceof BrokerUnroutableError)) throw err;
      // Someone deleted the dead-letter queue: make it again rather than lose the message.
      await this.connection.queueDeclare(deadLetterQueueDeclaration(queue));
      await this.publishConfirmed(props, body, dlq, true);
    }
    this.log.warn({ queue, reason, deliveryCount, messageId: msg.messageId }, 'message dead-lettered');
  }

  private async acquire(): Promise<Channel> {
    try {
      return await this.connection.acquire();
    } catch (err) {
      throw new BrokerError(`cannot open a RabbitMQ channel: ${errorMessage(err)}`, { cause: err });
    }
  }

  private async closeChannel(channel: Channel): Promise<void> {
    if (!channel.active) return;
    await channel.close().catch((err: unknown) => this.log.debug({ err }, 'channel close failed'));
  }
}

