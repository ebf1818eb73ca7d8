// The in-process broker: a small model of the RabbitMQ setup the platform uses (bounded queues, per-consumer
// prefetch, redelivery counting, dead-letter queues, one topic exchange, direct-reply RPC), for `npm start` and tests.
// A MemoryBrokerServer plays the RabbitMQ server and a MemoryBroker one service's connection to it, so that services
// sharing a process talk through the same queues while each closes its own consumers.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
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
  DEFAULT_MEMORY_MAX_LENGTH,
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
  topicMatches,
  type Delivery,
  type DeliveryHandler,
  type DeliveryOutcome,
} from './delivery.js';
import type { Envelope } from './envelope.js';
import { BrokerClosedError, BrokerError, BrokerTimeoutError, BrokerUnroutableError } from './errors.js';

interface StoredMessage {
  /** JSON text, as it would be on the wire: a consumer never shares objects with the producer. */
  body: string;
  routingKey: string;
  headers: Record<string, string | number>;
  /** Deliveries so far. */
  deliveries: number;
  redelivered: boolean;
  replyTo?: string;
  correlationId?: string;
  /** Epoch ms after which the message is dead-lettered instead of delivered (RPC requests). */
  expiresAt?: number;
}

interface QueueSpec {
  deliveryLimit: number;
  maxLength: number;
  /** What is full: refuse new messages (work queues) or drop the oldest (dead-letter queues). */
  overflow: 'reject-publish' | 'drop-head';
  /** False for private subscription queues and dead-letter queues: a message given up on is logged and dropped. */
  deadLetter: boolean;
  /** Set for a private queue: deleted with the connection that made it, usable by it alone. */
  owner?: MemoryBroker;
}

class MemoryConsumer {
  active = true;
  inFlight = 0;
  private readonly running = new Set<Promise<void>>();

  constructor(
    readonly queue: MemoryQueue,
    readonly prefetch: number,
    readonly process: (msg: StoredMessage) => Promise<DeliveryOutcome>,
  ) {}

  track(work: Promise<void>): void {
    this.running.add(work);
    void work.finally(() => this.running.delete(work));
  }

  async idle(): Promise<void> {
    while (this.running.size > 0) await Promise.allSettled([...this.running]);
  }
}

class MemoryQueue {
  readonly ready: StoredMessage[] = [];
  unacked = 0;
  readonly consumers: MemoryConsumer[] = [];
  scheduled = false;
  private nextConsumer = 0;

  constructor(
    readonly name: string,
    readonly spec: QueueSpec,
  ) {}

  /** Round robin over the consumers that have room under their prefetch. */
  pickConsumer(): MemoryConsumer | undefined {
    for (let i = 0; i < this.consumers.length; i++) {
      const consumer = this.consumers[(this.nextConsumer + i) % this.consumers.length]!;
      if (consumer.active && consumer.inFlight < consumer.prefetch) {
        this.nextConsumer = (this.nextConsumer + i + 1) % this.consumers.length;
        return consumer;
      }
    }
    return undefined;
  }
}

/** The shared state of the in-process broker: queues, bindings on the topic exchange, RPC reply addresses. */
export class MemoryBrokerServer {
  private readonly queues = new Map<string, MemoryQueue>();
  /** queue name → binding keys on the topic exchange */
  private readonly bindings = new Map<string, Set<string>>();
  private readonly replyTargets = new Map<string, (msg: StoredMessage) => void>();
  private readonly log: Logger = serviceLogger('broker').child({ backend: 'memory' });

  declareQueue(name: string, spec: QueueSpec): MemoryQueue {
    const existing = this.queues.get(name);
    if (!existing) {
      const queue = new MemoryQueue(name, spec);
      this.queues.set(name, queue);
      return queue;
    }
    if (existing.spec.owner && existing.spec.owner !== spec.owner) {
      throw new BrokerError(`queue "${name}" is private to another connection`);
    }
    const { deliveryLimit, maxLength } = existing.spec;
    if (deliveryLimit !== spec.deliveryLimit || maxLength !== spec.maxLength) {
      throw new BrokerError(
        `queue "${name}" already exists with deliveryLimit=${deliveryLimit}, maxLength=${maxLength}; ` +
          `asked for deliveryLimit=${spec.deliveryLimit}, maxLength=${spec.maxLength}`,
      );
    }
    return existing;
  }

  getQueue(name: string): MemoryQueue | undefined {
    return this.queues.get(name);
  }

  /** Deletes a queue: its messages go, its consumers stop getting messages (running handlers finish). */
  deleteQueue(name: string): void {
    const queue = this.queues.get(name);
    if (!queue) return;
    this.queues.delete(name);
    this.bindings.delete(name);
    for (const consumer of queue.consumers) consumer.active = false;
    queue.consumers.length = 0;
    queue.ready.length = 0;
  }

  bind(queue: string, bindingKey: string): void {
    let keys = this.bindings.get(queue);
    if (!keys) this.bindings.set(queue, (keys = new Set()));
    keys.add(bindingKey);
  }

  /** Stores a message on a queue; throws like a confirmed, mandatory publish that RabbitMQ refused. */
  enqueue(name: string, msg: StoredMessage): void {
    const queue = this.queues.get(name);
    if (!queue) throw new BrokerUnroutableError(name);
    if (!this.hasRoom(queue)) throw new BrokerError(`queue "${name}" is full (${queue.spec.maxLength} messages)`);
    this.store(queue, msg);
  }

  /** Routes an event to every queue bound with a matching key, once per queue; refused whole if one is full. */
  route(routingKey: string, msg: StoredMessage): void {
    const targets: MemoryQueue[] = [];
    for (const [name, keys] of this.bindings) {
      const queue = this.queues.get(name);
      if (!queue) continue;
      for (const key of keys) {
        if (topicMatches(key, routingKey)) {
          targets.push(queue);
          break;
        }
      }
    }
    const full = targets.find((queue) => !this.hasRoom(queue));
    if (full) throw new BrokerError(`queue "${full.name}" is full (${full.spec.maxLength} messages)`);
    for (const queue of targets) this.store(queue, { ...msg, headers: { ...msg.headers } });
  }

  addConsumer(consumer: MemoryConsumer): void {
    consumer.queue.consumers.push(consumer);
    this.schedule(consumer.queue);
  }

  removeConsumer(consumer: MemoryConsumer): void {
    consumer.active = false;
    const index = consumer.queue.consumers.indexOf(consumer);
    if (index >= 0) consumer.queue.consumers.splice(index, 1);
  }

  registerReplyTarget(address: string, deliver: (msg: StoredMessage) => void): void {
    this.replyTargets.set(address, deliver);
  }

  unregisterReplyTarget(address: string): void {
    this.replyTargets.delete(address);
  }

  /** Like direct reply-to: a reply to a caller that is gone is dropped. Delivered asynchronously. */
  reply(address: string, msg: StoredMessage): void {
    setImmediate(() => this.replyTargets.get(address)?.(msg));
  }

  /** Queues private to a connection, for it to delete when it closes. */
  queuesOwnedBy(owner: MemoryBroker): string[] {
    return [...this.queues.values()].filter((queue) => queue.spec.owner === owner).map((queue) => queue.name);
  }

  private hasRoom(queue: MemoryQueue): boolean {
    return queue.spec.overflow === 'drop-head' || queue.ready.length + queue.unacked < queue.spec.maxLength;
  }

  private store(queue: MemoryQueue, msg: StoredMessage): void {
    if (queue.spec.overflow === 'drop-head') {
      while (queue.ready.length >= queue.spec.maxLength) queue.ready.shift();
    }
    queue.ready.push(msg);
    this.schedule(queue);
  }

  /** Deliveries always happen on a later turn of the event loop, never inside `send`. */
  private schedule(queue: MemoryQueue): void {
    if (queue.scheduled) return;
    queue.scheduled = true;
    setImmediate(() => this.drain(queue));
  }

  private drain(queue: MemoryQueue): void {
    queue.scheduled = false;
    if (this.queues.get(queue.name) !== queue) return;
    while (queue.ready.length > 0) {
      const head = queue.ready[0]!;
      if (head.expiresAt !== undefined && head.expiresAt <= Date.now()) {
        queue.ready.shift();
        this.deadLetter(queue, head, 'broker: expired');
        continue;
      }
      const consumer = queue.pickConsumer();
      if (!consumer) return;
      queue.ready.shift();
      head.deliveries += 1;
      queue.unacked += 1;
      consumer.inFlight += 1;
      consumer.track(this.deliver(queue, consumer, head));
    }
  }

  private async deliver(queue: MemoryQueue, consumer: MemoryConsumer, msg: StoredMessage): Promise<void> {
    let outcome: DeliveryOutcome;
    try {
      outcome = await consumer.process(msg);
    } catch (err) {
      // processDelivery never throws; this guards the reply path around it.
      outcome = { action: 'retry', reason: err instanceof Error ? err.message : String(err) };
    }
    consumer.inFlight -= 1;
    queue.unacked -= 1;
    const live = this.queues.get(queue.name) === queue;
    switch (outcome.action) {
      case 'ack':
        break;
      case 'retry':
        msg.redelivered = true;
        // Back at the head, where AMQP puts a requeued message when it can.
        if (live) queue.ready.unshift(msg);
        break;
      case 'dead-letter':
        if (live) this.deadLetter(queue, msg, outcome.reason);
        break;
      default: {
        const never: never = outcome;
        throw new Error(`unknown outcome ${String(never)}`);
      }
    }
    if (live) this.schedule(queue);
  }

  private deadLetter(queue: MemoryQueue, msg: StoredMessage, reason: string): void {
    const dlq = queue.spec.deadLetter ? this.queues.get(deadLetterQueueName(queue.name)) : undefined;
    if (!dlq) {
      this.log.error({ queue: queue.name, reason, deliveryCount: msg.deliveries }, 'message given up on and dropped');
      return;
    }
    this.store(dlq, {
      body: msg.body,
      routingKey: msg.routingKey,
      headers: {
        ...msg.headers,
        [DEATH_HEADERS.reason]: reason,
        [DEATH_HEADERS.queue]: queue.name,
        [DEATH_HEADERS.at]: new Date().toISOString(),
        [DEATH_HEADERS.deliveryCount]: msg.deliveries,
      },
      deliveries: 0,
      redelivered: false,
    });
  }
}

let processServer: MemoryBrokerServer | undefined;

/** The in-process broker shared by every service started in this Node process. */
export function defaultMemoryServer(): MemoryBrokerServer {
  processServer ??= new MemoryBrokerServer();
  return processServer;
}

interface PendingRpc {
  queue: string;
  timer: NodeJS.Timeout;
  replySchema: z.ZodType<unknown> | undefined;
  resolve: (envelope: Envelope<unknown>) => void;
  reject: (err: Error) => void;
}

/** One service's connection to the in-process broker. */
export class MemoryBroker implements Broker {
  readonly kind = 'memory' as const;
  private closed = false;
  private readonly consumers = new Set<MemoryConsumer>();
  private readonly replyAddress = `amq.rabbitmq.reply-to.${randomUUID()}`;
  private readonly pendingRpcs = new Map<string, PendingRpc>();
  private readonly log: Logger;

  constructor(
    private readonly server: MemoryBrokerServer,
    opts: { service?: string } = {},
  ) {
    this.log = serviceLogger(opts.service ?? 'broker').child({ component: 'broker', backend: 'memory' });
    server.registerReplyTarget(this.replyAddress, (msg) => this.onReply(msg));
  }

  /** Puts a raw body on a queue, bypassing the envelope: for tests of what consumers do with malformed messages. */
  injectRaw(queue: string, body: string): void {
    this.assertOpen();
    this.server.enqueue(queue, { body, routingKey: queue, headers: {}, deliveries: 0, redelivered: false });
  }

  async assertQueue(name: string, opts?: QueueOptions): Promise<void> {
    this.assertOpen();
    checkQueueName(name);
    this.declareDurable(name, opts);
  }

  async deleteQueue(name: string): Promise<void> {
    this.assertOpen();
    this.server.deleteQueue(name);
    this.server.deleteQueue(deadLetterQueueName(name));
  }

  async send<T>(queue: string, envelope: Envelope<T>): Promise<void> {
    this.assertOpen();
    const body = serializeEnvelope(envelope, queue);
    this.server.enqueue(queue, { body, routingKey: queue, headers: {}, deliveries: 0, redelivered: false });
  }

  async publish<T>(routingKey: string, envelope: Envelope<T>): Promise<void> {
    this.assertOpen();
    const body = serializeEnvelope(envelope, `${EVENTS_EXCHANGE}/${routingKey}`);
    this.server.route(routingKey, { body, routingKey, headers: {}, deliveries: 0, redelivered: false });
  }

  async consume<T>(queue: string, handler: DeliveryHandler<T>, opts?: ConsumeOptions<T>): Promise<Subscription> {
    this.assertOpen();
    checkQueueName(queue);
    const prefetch = resolvePrefetch(opts?.prefetch);
    const declared = this.declareDurable(queue, opts);
    return this.startConsumer(declared, prefetch, (msg) => this.runHandler(declared, msg, handler, opts?.payloadSchema));
  }

  async subscribe<T>(bindingKeys: string[], handler: DeliveryHandler<T>, opts?: SubscribeOptions<T>): Promise<Subscription> {
    this.assertOpen();
    if (bindingKeys.length === 0) throw new BrokerError('subscribe needs at least one binding key');
    bindingKeys.forEach(checkBindingKey);
    const prefetch = resolvePrefetch(opts?.prefetch);
    let queue: MemoryQueue;
    if (opts?.queue) {
      checkQueueName(opts.queue);
      queue = this.declareDurable(opts.queue, opts);
    } else {
      const { deliveryLimit } = resolveQueueOptions(opts);
      queue = this.server.declareQueue(`amq.gen-${randomUUID()}`, {
        deliveryLimit,
        maxLength: DEFAULT_MEMORY_MAX_LENGTH,
        overflow: 'reject-publish',
        deadLetter: false,
        owner: this,
      });
    }
    for (const key of bindingKeys) this.server.bind(queue.name, key);
    const subscription = this.startConsumer(queue, prefetch, (msg) => this.runHandler(queue, msg, handler, opts?.payloadSchema));
    if (opts?.queue) return subscription;
    return {
      queue: queue.name,
      close: async () => {
        await subscription.close();
        this.server.deleteQueue(queue.name);
      },
    };
  }

  async rpc<Req, Res>(queue: string, envelope: Envelope<Req>, opts: RpcOptions<Res>): Promise<Envelope<Res>> {
    this.assertOpen();
    const timeoutMs = opts.timeoutMs;
    if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) throw new BrokerError(`rpc timeoutMs must be positive, got ${timeoutMs}`);
    const body = serializeEnvelope(envelope, queue);
    const correlationId = randomUUID();
    return new Promise<Envelope<Res>>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingRpcs.delete(correlationId);
        reject(new BrokerTimeoutError(queue, timeoutMs));
      }, timeoutMs);
      this.pendingRpcs.set(correlationId, {
        queue,
        timer,
        replySchema: opts.replySchema,
        resolve: resolve as (envelope: Envelope<unknown>) => void,
        reject,
      });
      try {
        this.server.enqueue(queue, {
          body,
          routingKey: queue,
          headers: {},
          deliveries: 0,
          redelivered: false,
          replyTo: this.replyAddress,
          correlationId,
          expiresAt: Date.now() + timeoutMs,
        });
      } catch (err) {
        clearTimeout(timer);
        this.pendingRpcs.delete(correlationId);
        reject(err as Error);
      }
    });
  }

  async serveRpc<Req, Res>(
    queue: string,
    handler: (delivery: Delivery<Req>) => Promise<Envelope<Res>>,
    opts?: ConsumeOptions<Req>,
  ): Promise<Subscription> {
    this.assertOpen();
    checkQueueName(queue);
    const prefetch = resolvePrefetch(opts?.prefetch);
    const declared = this.declareDurable(queue, opts);
    return this.startConsumer(declared, prefetch, async (msg) => {
      let response: string | undefined;
      const outcome = await this.runHandler(
        declared,
        msg,
        async (delivery: Delivery<Req>) => {
          response = serializeEnvelope(await handler(delivery), msg.replyTo ?? 'rpc reply');
        },
        opts?.payloadSchema,
      );
      if (msg.replyTo && msg.correlationId) {
        const reply = { routingKey: msg.replyTo, deliveries: 0, redelivered: false, correlationId: msg.correlationId };
        if (outcome.action === 'ack' && response !== undefined) {
          this.server.reply(msg.replyTo, { ...reply, body: response, headers: {} });
        } else if (outcome.action === 'dead-letter') {
          this.server.reply(msg.replyTo, { ...reply, body: 'null', headers: { [RPC_ERROR_HEADER]: outcome.reason } });
        }
      }
      return outcome;
    });
  }

  async deadLetters(queue: string, limit = 100): Promise<DeadLetter[]> {
    this.assertOpen();
    const dlq = this.server.getQueue(deadLetterQueueName(queue));
    if (!dlq) return [];
    return dlq.ready.slice(0, limit).map((msg) => readDeadLetter(msg.body, msg.headers, queue));
  }

  async requeueDeadLetters(queue: string, limit = Number.POSITIVE_INFINITY): Promise<number> {
    this.assertOpen();
    const dlq = this.server.getQueue(deadLetterQueueName(queue));
    if (!dlq) return 0;
    let moved = 0;
    while (moved < limit && dlq.ready.length > 0) {
      const msg = dlq.ready[0]!;
      this.server.enqueue(queue, { body: msg.body, routingKey: msg.routingKey, headers: {}, deliveries: 0, redelivered: false });
      dlq.ready.shift();
      moved += 1;
    }
    return moved;
  }

  async purgeDeadLetters(queue: string): Promise<number> {
    this.assertOpen();
    const dlq = this.server.getQueue(deadLetterQueueName(queue));
    if (!dlq) return 0;
    const dropped = dlq.ready.length;
    dlq.ready.length = 0;
    return dropped;
  }

  async queueDepth(queue: string): Promise<QueueDepth> {
    this.assertOpen();
    const found = this.server.getQueue(queue);
    if (!found) throw new BrokerError(`queue "${queue}" does not exist`);
    return { ready: found.ready.length, unacked: found.unacked };
  }

  isHealthy(): boolean {
    return !this.closed;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const consumers = [...this.consumers];
    for (const consumer of consumers) this.server.removeConsumer(consumer);
    await Promise.all(consumers.map((consumer) => consumer.idle()));
    this.consumers.clear();
    for (const name of this.server.queuesOwnedBy(this)) this.server.deleteQueue(name);
    this.server.unregisterReplyTarget(this.replyAddress);
    for (const [correlationId, pending] of this.pendingRpcs) {
      clearTimeout(pending.timer);
      pending.reject(new BrokerClosedError());
      this.pendingRpcs.delete(correlationId);
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new BrokerClosedError();
  }

  /** A durable queue with its dead-letter queue, as assertQueue makes them on RabbitMQ. */
  private declareDurable(name: string, opts: QueueOptions | undefined): MemoryQueue {
    const { deliveryLimit, maxLength } = resolveQueueOptions(opts);
    const queue = this.server.declareQueue(name, {
      deliveryLimit,
      maxLength: maxLength ?? DEFAULT_MEMORY_MAX_LENGTH,
      overflow: 'reject-publish',
      deadLetter: true,
    });
    this.server.declareQueue(deadLetterQueueName(name), {
      deliveryLimit: 1,
      maxLength: DEAD_LETTER_MAX_LENGTH,
      overflow: 'drop-head',
      deadLetter: false,
    });
    return queue;
  }

  private startConsumer(
    queue: MemoryQueue,
    prefetch: number,
    process: (msg: StoredMessage) => Promise<DeliveryOutcome>,
  ): Subscription {
    const consumer = new MemoryConsumer(queue, prefetch, process);
    this.consumers.add(consumer);
    this.server.addConsumer(consumer);
    return {
      queue: queue.name,
      close: async () => {
        this.server.removeConsumer(consumer);
        await consumer.idle();
        this.consumers.delete(consumer);
      },
    };
  }

  private runHandler<T>(
    queue: MemoryQueue,
    msg: StoredMessage,
    handler: DeliveryHandler<T>,
    payloadSchema: z.ZodType<T> | undefined,
  ): Promise<DeliveryOutcome> {
    return processDelivery(
      { body: msg.body, queue: queue.name, routingKey: msg.routingKey, redelivered: msg.redelivered, deliveryCount: msg.deliveries },
      handler,
      { deliveryLimit: queue.spec.deliveryLimit, payloadSchema, log: this.log },
    );
  }

  private onReply(msg: StoredMessage): void {
    const pending = msg.correlationId ? this.pendingRpcs.get(msg.correlationId) : undefined;
    if (!pending || !msg.correlationId) return;
    this.pendingRpcs.delete(msg.correlationId);
    clearTimeout(pending.timer);
    const result = readRpcReply(pending.queue, msg.body, msg.headers, pending.replySchema);
    if (result instanceof Error) pending.reject(result);
    else pending.resolve(result);
  }
}
