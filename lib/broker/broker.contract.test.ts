// The behaviour every service relies on from the broker, asserted once against each backend: the in-process broker
// always, RabbitMQ when TEST_AMQP_URL points at one (e.g. amqp://guest:guest@127.0.0.1:5672).
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { Connection } from 'rabbitmq-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseTraceparent } from '../telemetry.js';
import {
  BrokerClosedError,
  BrokerError,
  BrokerRpcError,
  BrokerTimeoutError,
  BrokerUnroutableError,
  MemoryBroker,
  MemoryBrokerServer,
  PermanentMessageError,
  RabbitMqBroker,
  createBroker,
  createEnvelope,
  topicMatches,
  type Broker,
  type Delivery,
  type Envelope,
} from './broker.js';

const amqpUrl = process.env.TEST_AMQP_URL;
const execFileAsync = promisify(execFile);

interface BackendSession {
  connect(): Promise<Broker>;
  /** Puts a body that need not be an envelope on a queue, as a foreign or broken producer would. */
  sendRaw(queue: string, body: string): Promise<void>;
  dispose(queues: string[]): Promise<void>;
}

interface Backend {
  open(): Promise<BackendSession>;
}

const memoryBackend: Backend = {
  async open() {
    const server = new MemoryBrokerServer();
    const injector = new MemoryBroker(server);
    return {
      connect: () => createBroker({ memoryServer: server }),
      sendRaw: async (queue, body) => injector.injectRaw(queue, body),
      dispose: () => injector.close(),
    };
  },
};

function rabbitBackend(url: string): Backend {
  return {
    async open() {
      let raw: Connection | undefined;
      return {
        connect: () => createBroker({ url, service: 'broker-contract-test' }),
        async sendRaw(queue, body) {
          raw ??= new Connection({ url, connectionName: 'broker-contract-test-raw' });
          const channel = await raw.acquire();
          try {
            await channel.confirmSelect();
            await channel.basicPublish({ routingKey: queue, contentType: 'application/json' }, Buffer.from(body));
          } finally {
            await channel.close();
          }
        },
        async dispose(queues) {
          await raw?.close();
          if (queues.length === 0) return;
          const cleaner = await createBroker({ url, service: 'broker-contract-test-cleanup' });
          try {
            for (const queue of queues) await cleaner.deleteQueue(queue);
          } finally {
            await cleaner.close();
          }
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// helpers

interface Deferred<T = void> {
  promise: Promise<T>;
  resolve: (value: T) => void;
}

function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries an assertion until it passes or `timeoutMs` runs out (then its last error is thrown). */
async function eventually<T>(assertion: () => T | Promise<T>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await assertion();
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(25);
    }
  }
}

/** Rejects after `ms`, so that a broken close() fails the test instead of hanging it. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

const job = (n: number, tenant = 'tenant-a'): Envelope<{ n: number }> => createEnvelope('test.job', { n }, { tenant });

class Harness {
  private readonly brokers: Broker[] = [];
  private readonly queues: string[] = [];

  private constructor(readonly session: BackendSession) {}

  static async open(backend: Backend): Promise<Harness> {
    return new Harness(await backend.open());
  }

  async broker(): Promise<Broker> {
    const broker = await this.session.connect();
    this.brokers.push(broker);
    return broker;
  }

  /** A queue name unique to this test, deleted (with its .dlq) afterwards. */
  queue(label: string): string {
    const name = `test.broker.${label}.${randomUUID().slice(0, 8)}`;
    this.queues.push(name);
    return name;
  }

  async dispose(): Promise<void> {
    await Promise.allSettled(this.brokers.map((broker) => within(broker.close(), 10_000, 'broker.close()')));
    await this.session.dispose(this.queues);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// the contract

function brokerContract(backend: Backend): void {
  let h: Harness;
  let broker: Broker;

  beforeEach(async () => {
    h = await Harness.open(backend);
    broker = await h.broker();
  });

  afterEach(async () => {
    await h.dispose();
  });

  it('delivers sent messages once each and acknowledges them after the handler resolves', async () => {
    const queue = h.queue('ack');
    await broker.assertQueue(queue);
    await broker.assertQueue(queue); // idempotent
    const sent = [job(1), job(2), job(3)];
    for (const envelope of sent) await broker.send(queue, envelope);

    const received: Delivery<{ n: number }>[] = [];
    await broker.consume<{ n: number }>(queue, async (delivery) => {
      received.push(delivery);
    });

    await eventually(() => expect(received).toHaveLength(3));
    expect(received.map((d) => d.envelope)).toEqual(sent);
    for (const delivery of received) {
      expect(delivery).toMatchObject({ redelivered: false, deliveryCount: 1, queue, routingKey: queue });
    }
    await eventually(async () => expect((await broker.queueDepth(queue)).ready).toBe(0));
    await sleep(100);
    expect(received).toHaveLength(3);
  });

  it('redelivers a message whose handler throws, then dead-letters it with the error after deliveryLimit deliveries', async () => {
    const queue = h.queue('retry');
    const envelope = job(7);
    const seen: Array<{ count: number; redelivered: boolean }> = [];
    await broker.consume(
      queue,
      async (delivery) => {
        seen.push({ count: delivery.deliveryCount, redelivered: delivery.redelivered });
        throw new Error(`render failed for n=${(delivery.envelope.payload as { n: number }).n}`);
      },
      { deliveryLimit: 3 },
    );
    await broker.send(queue, envelope);

    const [letter] = await eventually(async () => {
      const letters = await broker.deadLetters(queue);
      expect(letters).toHaveLength(1);
      return letters;
    });
    expect(letter).toMatchObject({ queue, reason: 'render failed for n=7', deliveryCount: 3, envelope });
    expect(Number.isNaN(Date.parse(letter!.at))).toBe(false);
    expect(seen).toEqual([
      { count: 1, redelivered: false },
      { count: 2, redelivered: true },
      { count: 3, redelivered: true },
    ]);
    await sleep(150);
    expect(seen).toHaveLength(3);
    expect((await broker.queueDepth(queue)).ready).toBe(0);
  });

  it('acknowledges a redelivered message once its handler succeeds', async () => {
    const queue = h.queue('flaky');
    const counts: number[] = [];
    await broker.consume(queue, async (delivery) => {
      counts.push(delivery.deliveryCount);
      if (delivery.deliveryCount < 2) throw new Error('transient');
    });
    await broker.send(queue, job(1));
    await eventually(() => expect(counts).toEqual([1, 2]));
    await sleep(150);
    expect(counts).toEqual([1, 2]);
    expect(await broker.deadLetters(queue)).toEqual([]);
  });

  it('dead-letters at once, without retries, when the handler throws PermanentMessageError', async () => {
    const queue = h.queue('permanent');
    let calls = 0;
    await broker.consume(queue, async () => {
      calls += 1;
      throw new PermanentMessageError('image pair has different sizes');
    });
    const envelope = job(1);
    await broker.send(queue, envelope);
    const letters = await eventually(async () => {
      const found = await broker.deadLetters(queue);
      expect(found).toHaveLength(1);
      return found;
    });
    expect(letters[0]).toMatchObject({ reason: 'image pair has different sizes', deliveryCount: 1, envelope });
    await sleep(100);
    expect(calls).toBe(1);
  });

  it('dead-letters a body that is not a valid envelope, naming the problem, and never shows it to the handler', async () => {
    const queue = h.queue('invalid');
    await broker.assertQueue(queue);
    const handled: unknown[] = [];
    await broker.consume(queue, async (delivery) => {
      handled.push(delivery.envelope);
    });
    await h.session.sendRaw(queue, 'this is not json');
    await h.session.sendRaw(queue, JSON.stringify({ ...job(1), messageId: 'not-a-uuid' }));
    const { messageId: _dropped, ...withoutId } = job(2);
    await h.session.sendRaw(queue, JSON.stringify(withoutId));
    await broker.send(queue, job(3));

    const letters = await eventually(async () => {
      const found = await broker.deadLetters(queue);
      expect(found).toHaveLength(3);
      return found;
    });
    const byBody = new Map(letters.map((letter) => [letter.rawBody, letter]));
    expect(byBody.get('this is not json')?.reason).toMatch(/^invalid envelope: body is not JSON/);
    for (const letter of letters) {
      expect(letter.reason).toMatch(/^invalid envelope/);
      expect(letter.envelope).toBeUndefined();
      expect(letter.rawBody).toBeTypeOf('string');
    }
    expect(letters.filter((letter) => letter.reason.includes('messageId'))).toHaveLength(2);
    await eventually(() => expect(handled).toHaveLength(1));
    expect((handled[0] as Envelope<{ n: number }>).payload).toEqual({ n: 3 });
  });

  it('dead-letters a payload that fails the consumer schema', async () => {
    const queue = h.queue('payload');
    const handled: number[] = [];
    await broker.consume(queue, async (delivery) => void handled.push(delivery.envelope.payload.n), {
      payloadSchema: z.object({ n: z.number().int().positive() }),
    });
    await broker.send(queue, job(-1));
    await broker.send(queue, job(5));
    const letters = await eventually(async () => {
      const found = await broker.deadLetters(queue);
      expect(found).toHaveLength(1);
      return found;
    });
    expect(letters[0]!.reason).toMatch(/^invalid payload for test.job v1: n:/);
    await eventually(() => expect(handled).toEqual([5]));
  });

  it('requeues and purges dead letters', async () => {
    const queue = h.queue('requeue');
    let fail = true;
    const delivered: number[] = [];
    await broker.consume(queue, async (delivery) => {
      if (fail) throw new PermanentMessageError('not yet');
      delivered.push(delivery.deliveryCount);
    });
    await broker.send(queue, job(1));
    await broker.send(queue, job(2));
    await eventually(async () => expect(await broker.deadLetters(queue)).toHaveLength(2));
    fail = false;
    let moved = 0;
    await eventually(async () => {
      moved += await broker.requeueDeadLetters(queue, 1);
      expect(moved).toBe(1);
    });
    await eventually(() => expect(delivered).toEqual([1]));
    await eventually(async () => expect(await broker.purgeDeadLetters(queue)).toBe(1));
    expect(await broker.deadLetters(queue)).toEqual([]);
  });

  it('bounds the handlers running at once by prefetch', async () => {
    const queue = h.queue('prefetch');
    await broker.assertQueue(queue);
    for (let n = 0; n < 12; n++) await broker.send(queue, job(n));
    let running = 0;
    let most = 0;
    const done: number[] = [];
    await broker.consume<{ n: number }>(
      queue,
      async (delivery) => {
        running += 1;
        most = Math.max(most, running);
        await sleep(30);
        running -= 1;
        done.push(delivery.envelope.payload.n);
      },
      { prefetch: 3 },
    );
    await eventually(() => expect(done).toHaveLength(12));
    expect(most).toBe(3);
  });

  it('shares a queue between consumers', async () => {
    const queue = h.queue('shared');
    const other = await h.broker();
    const a: number[] = [];
    const b: number[] = [];
    const slow = (into: number[]) => async (delivery: Delivery<{ n: number }>) => {
      await sleep(20);
      into.push(delivery.envelope.payload.n);
    };
    await broker.consume(queue, slow(a), { prefetch: 1 });
    await other.consume(queue, slow(b), { prefetch: 1 });
    for (let n = 0; n < 6; n++) await broker.send(queue, job(n));
    await eventually(() => expect(a.length + b.length).toBe(6));
    expect(a.length).toBeGreaterThan(0);
    expect(b.length).toBeGreaterThan(0);
    expect([...a, ...b].sort()).toEqual([0, 1, 2, 3, 4, 5]);
  });

  it('routes events to every subscription whose binding key matches (AMQP topic wildcards)', async () => {
    const prefix = `t${randomUUID().slice(0, 8)}`; // other test runs may share the exchange
    const got = { one: [] as string[], many: [] as string[], model: [] as string[], all: [] as string[] };
    const record = (into: string[]) => async (delivery: Delivery<unknown>) => {
      if (delivery.routingKey.startsWith(prefix)) into.push(delivery.routingKey.slice(prefix.length + 1));
    };
    const subscriptions = [
      await broker.subscribe([`${prefix}.job.*.progress`], record(got.one)),
      await broker.subscribe([`${prefix}.job.#`], record(got.many)),
      await broker.subscribe([`${prefix}.model.*.stage`, `${prefix}.drift.alert`], record(got.model)),
      await broker.subscribe(['#'], record(got.all)),
    ];
    const keys = ['job.1.progress', 'job.1.done', 'job.1.progress.tile', 'job', 'model.snunet.stage', 'drift.alert', 'other'];
    const publisher = await h.broker();
    for (const key of keys) await publisher.publish(`${prefix}.${key}`, createEnvelope('test.event', { key }, { tenant: 't' }));

    await eventually(() => expect(got.all).toHaveLength(keys.length));
    await eventually(() => expect(got.many).toHaveLength(4));
    await sleep(100);
    expect(got.one).toEqual(['job.1.progress']);
    expect(got.many.sort()).toEqual(['job', 'job.1.done', 'job.1.progress', 'job.1.progress.tile']);
    expect(got.model.sort()).toEqual(['drift.alert', 'model.snunet.stage']);
    expect(got.all.sort()).toEqual([...keys].sort());

    for (const subscription of subscriptions) await subscription.close();
    await publisher.publish(`${prefix}.job.2.progress`, createEnvelope('test.event', {}, { tenant: 't' }));
    await sleep(100);
    expect(got.one).toEqual(['job.1.progress']);
  });

  it('keeps events for a durable named subscription while nobody consumes it', async () => {
    const queue = h.queue('durable-sub');
    const prefix = `t${randomUUID().slice(0, 8)}`;
    const first: string[] = [];
    const subscription = await broker.subscribe([`${prefix}.drift.*`], async (d) => void first.push(d.routingKey), { queue });
    await subscription.close();
    await broker.publish(`${prefix}.drift.alert`, createEnvelope('test.event', {}, { tenant: 't' }));
    await eventually(async () => expect((await broker.queueDepth(queue)).ready).toBe(1));
    const later: string[] = [];
    await broker.subscribe([`${prefix}.drift.*`], async (d) => void later.push(d.routingKey), { queue });
    await eventually(() => expect(later).toEqual([`${prefix}.drift.alert`]));
    expect(first).toEqual([]);
  });

  it('answers an RPC with the reply envelope, in the caller’s trace', async () => {
    const queue = h.queue('rpc');
    const server = await h.broker();
    await server.serveRpc<{ n: number }, { doubled: number }>(queue, async (delivery) =>
      createEnvelope('test.reply', { doubled: delivery.envelope.payload.n * 2 }, { tenant: delivery.envelope.tenant }),
    );
    const request = job(21, 'tenant-b');
    const reply = await broker.rpc<{ n: number }, { doubled: number }>(queue, request, {
      timeoutMs: 5_000,
      replySchema: z.object({ doubled: z.number() }),
    });
    expect(reply).toMatchObject({ type: 'test.reply', tenant: 'tenant-b', payload: { doubled: 42 } });
    expect(reply.messageId).not.toBe(request.messageId);
    expect(parseTraceparent(reply.traceparent)?.traceId).toBe(parseTraceparent(request.traceparent)?.traceId);
  });

  it('correlates many concurrent RPCs with their replies', async () => {
    const queue = h.queue('rpc-many');
    const server = await h.broker();
    await server.serveRpc<{ n: number }, { n: number }>(
      queue,
      async (delivery) => {
        await sleep(Math.floor(Math.random() * 15));
        return createEnvelope('test.reply', { n: delivery.envelope.payload.n }, { tenant: 't' });
      },
      { prefetch: 8 },
    );
    const replies = await Promise.all(
      Array.from({ length: 40 }, (_, n) => broker.rpc<{ n: number }, { n: number }>(queue, job(n), { timeoutMs: 10_000 })),
    );
    expect(replies.map((reply) => reply.payload.n)).toEqual(Array.from({ length: 40 }, (_, n) => n));
  });

  it('fails an RPC with BrokerTimeoutError naming the queue when no reply comes in time', async () => {
    const queue = h.queue('rpc-slow');
    const server = await h.broker();
    const release = deferred();
    await server.serveRpc(queue, async () => {
      await release.promise;
      return createEnvelope('test.reply', {}, { tenant: 't' });
    });
    const started = Date.now();
    const error = await broker.rpc(queue, job(1), { timeoutMs: 150 }).catch((err: unknown) => err);
    release.resolve();
    expect(error).toBeInstanceOf(BrokerTimeoutError);
    expect(error).toMatchObject({ queue, timeoutMs: 150 });
    expect((error as Error).message).toContain(queue);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('fails an RPC at once with BrokerRpcError when the server dead-letters the request', async () => {
    const queue = h.queue('rpc-refused');
    await broker.serveRpc(queue, async () => {
      throw new PermanentMessageError('model version not found');
    });
    const error = await broker.rpc(queue, job(1), { timeoutMs: 5_000 }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(BrokerRpcError);
    expect(error).toMatchObject({ queue, reason: 'model version not found' });
    await eventually(async () => expect(await broker.deadLetters(queue)).toHaveLength(1));
  });

  it('refuses to send to, or call, a queue that does not exist', async () => {
    const queue = h.queue('missing');
    await expect(broker.send(queue, job(1))).rejects.toBeInstanceOf(BrokerUnroutableError);
    await expect(broker.rpc(queue, job(1), { timeoutMs: 5_000 })).rejects.toBeInstanceOf(BrokerUnroutableError);
    await expect(broker.queueDepth(queue)).rejects.toBeInstanceOf(BrokerError);
  });

  it('refuses to redeclare a queue with another delivery limit', async () => {
    const queue = h.queue('conflict');
    await broker.assertQueue(queue, { deliveryLimit: 3 });
    await expect(broker.assertQueue(queue, { deliveryLimit: 4 })).rejects.toBeInstanceOf(BrokerError);
    await expect(broker.assertQueue(queue, { deliveryLimit: 3 })).resolves.toBeUndefined();
  });

  it('stops a closed subscription taking messages, finishing the one in hand', async () => {
    const queue = h.queue('sub-close');
    const entered = deferred();
    const release = deferred();
    const finished: number[] = [];
    const subscription = await broker.consume<{ n: number }>(queue, async (delivery) => {
      entered.resolve();
      await release.promise;
      finished.push(delivery.envelope.payload.n);
    });
    await broker.send(queue, job(1));
    await within(entered.promise, 5_000, 'first delivery');
    const closing = subscription.close();
    await sleep(50);
    release.resolve();
    await within(closing, 10_000, 'subscription.close()');
    expect(finished).toEqual([1]);
    await broker.send(queue, job(2));
    await sleep(150);
    expect(finished).toEqual([1]);
    await eventually(async () => expect((await broker.queueDepth(queue)).ready).toBe(1));
  });

  it('close() waits for running handlers, stops consuming and fails pending RPCs', async () => {
    const queue = h.queue('close');
    const rpcQueue = h.queue('close-rpc');
    const entered = deferred();
    const release = deferred();
    let handled = 0;
    await broker.consume(queue, async () => {
      entered.resolve();
      await release.promise;
      handled += 1;
    });
    await broker.assertQueue(rpcQueue);
    await broker.send(queue, job(1));
    await within(entered.promise, 5_000, 'first delivery');
    const pendingRpc = broker.rpc(rpcQueue, job(2), { timeoutMs: 30_000 }).catch((err: unknown) => err);

    let closed = false;
    const closing = broker.close().then(() => (closed = true));
    await sleep(100);
    expect(closed).toBe(false); // still waiting for the handler
    release.resolve();
    await within(closing, 10_000, 'broker.close()');
    expect(handled).toBe(1);
    expect(broker.isHealthy()).toBe(false);
    expect(await within(pendingRpc, 5_000, 'pending rpc')).toBeInstanceOf(BrokerClosedError);
    await expect(broker.send(queue, job(3))).rejects.toBeInstanceOf(BrokerClosedError);

    const other = await h.broker();
    await other.send(queue, job(4));
    await sleep(150);
    expect(handled).toBe(1);
    // The message handled before close was acknowledged: only the new one waits.
    await eventually(async () => expect((await other.queueDepth(queue)).ready).toBe(1));
  });
}

describe('topic matching', () => {
  it('follows AMQP topic semantics', () => {
    expect(topicMatches('job.*.progress', 'job.42.progress')).toBe(true);
    expect(topicMatches('job.*.progress', 'job.42.tile.progress')).toBe(false);
    expect(topicMatches('job.#', 'job')).toBe(true);
    expect(topicMatches('job.#', 'job.1.progress')).toBe(true);
    expect(topicMatches('#.alert', 'drift.alert')).toBe(true);
    expect(topicMatches('#', 'anything.at.all')).toBe(true);
    expect(topicMatches('*', 'two.words')).toBe(false);
    expect(topicMatches('a.#.z', 'a.z')).toBe(true);
    expect(topicMatches('a.#.z', 'a.b.c.z')).toBe(true);
    expect(topicMatches('a.#.z', 'a.b.c')).toBe(false);
  });
});

describe('broker contract: memory', { timeout: 15_000 }, () => {
  brokerContract(memoryBackend);

  it('connects every service of the process to one in-process broker by default', async () => {
    const a = await createBroker();
    const b = await createBroker();
    const queue = `test.broker.default.${randomUUID().slice(0, 8)}`;
    try {
      const got = deferred<number>();
      await b.consume<{ n: number }>(queue, async (d) => got.resolve(d.envelope.payload.n));
      await a.send(queue, job(9));
      expect(await within(got.promise, 5_000, 'delivery')).toBe(9);
      expect(a.kind).toBe('memory');
    } finally {
      await a.deleteQueue(queue);
      await a.close();
      await b.close();
    }
  });

  it('never calls a handler inside send', async () => {
    const h = await Harness.open(memoryBackend);
    try {
      const broker = await h.broker();
      const queue = h.queue('async');
      let called = false;
      await broker.consume(queue, async () => void (called = true));
      await broker.send(queue, job(1));
      expect(called).toBe(false);
      await eventually(() => expect(called).toBe(true));
    } finally {
      await h.dispose();
    }
  });

  it('refuses messages beyond a bounded queue’s length', async () => {
    const h = await Harness.open(memoryBackend);
    try {
      const broker = await h.broker();
      const queue = h.queue('bounded');
      await broker.assertQueue(queue, { maxLength: 2 });
      await broker.send(queue, job(1));
      await broker.send(queue, job(2));
      await expect(broker.send(queue, job(3))).rejects.toThrow(/full/);
    } finally {
      await h.dispose();
    }
  });
});

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((dir) => dir && existsSync(join(dir, command)));
}

describe.skipIf(!amqpUrl)('broker contract: rabbitmq (set TEST_AMQP_URL)', { timeout: 20_000 }, () => {
  brokerContract(rabbitBackend(amqpUrl ?? ''));

  it('fails to start with a clear error when RabbitMQ cannot be reached', async () => {
    const error = await createBroker({ url: 'amqp://guest:secret@127.0.0.1:1', connectTimeoutMs: 500 }).catch((err: unknown) => err);
    expect(error).toBeInstanceOf(BrokerError);
    expect((error as Error).message).toContain('127.0.0.1:1');
    expect((error as Error).message).not.toContain('secret');
  });

  it('dead-letters through RabbitMQ itself a message whose consumers keep dying before they settle it', async () => {
    const h = await Harness.open(rabbitBackend(amqpUrl ?? ''));
    const crashing = new Connection({ url: amqpUrl ?? '', connectionName: 'broker-contract-test-crashing' });
    try {
      const broker = await h.broker();
      const queue = h.queue('crash');
      await broker.assertQueue(queue, { deliveryLimit: 1 });
      const envelope = job(1);
      await broker.send(queue, envelope);
      // A consumer that takes the message and dies (its channel closes) without ack or nack, until none is left.
      for (let attempt = 0; attempt < 5; attempt++) {
        const channel = await crashing.acquire();
        const msg = await channel.basicGet({ queue });
        await channel.close();
        if (!msg) break;
      }
      const letters = await eventually(async () => {
        const found = await broker.deadLetters(queue);
        expect(found).toHaveLength(1);
        return found;
      });
      expect(letters[0]).toMatchObject({ queue, reason: 'broker: delivery_limit', envelope });
    } finally {
      await crashing.close();
      await h.dispose();
    }
  });

  it.skipIf(!onPath('rabbitmqctl'))('reconnects after the connection drops and keeps consuming', async () => {
    const h = await Harness.open(rabbitBackend(amqpUrl ?? ''));
    try {
      const broker = (await h.broker()) as RabbitMqBroker;
      const queue = h.queue('reconnect');
      const received: number[] = [];
      await broker.consume<{ n: number }>(queue, async (d) => void received.push(d.envelope.payload.n));
      await broker.send(queue, job(1));
      await eventually(() => expect(received).toEqual([1]));

      const connectionPid = async (): Promise<string | undefined> => {
        const { stdout } = await execFileAsync('rabbitmqctl', ['list_connections', 'pid', 'client_properties', '-q', '--no-table-headers'], {
          timeout: 10_000,
        });
        return stdout
          .split('\n')
          .find((line) => line.includes(`"${broker.connectionName}"`))
          ?.split('\t')[0];
      };
      const pid = await connectionPid();
      expect(pid).toBeDefined();
      expect(broker.connectionCount).toBe(1);
      await execFileAsync('rabbitmqctl', ['close_connection', pid!, 'broker contract test: simulated drop'], { timeout: 10_000 });

      // Sent once the connection is back (the publisher waits for it); the consumer must have come back too.
      await broker.send(queue, job(2));
      await eventually(() => expect(received).toEqual([1, 2]), 10_000);
      expect(broker.isHealthy()).toBe(true);
      expect(broker.connectionCount).toBe(2);
    } finally {
      await h.dispose();
    }
  });
});
