// Subscriptions under abuse and failure, driven with the official graphql-ws client: a flood of subscribe messages
// on one socket is closed with 4429, a subscriber that stops reading is closed with 4408 while the others keep
// receiving, and (on RabbitMQ) a gateway that loses its broker connection mid-stream still gives its subscriber every
// event exactly once, caught up from the event log by sequence.
import net from 'node:net';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { appendEvents, EventRelay } from '../../lib/events/event-log.js';
import { JobKind } from '../../subgraphs/jobs/job.contracts.js';
import type { JobsDeps } from '../../subgraphs/jobs/schema.js';
import { privateVhost, startTestPlatform, type TestPlatform } from '../support/platform.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, probe: () => T | Promise<T>, timeoutMs = 30_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function client(t: TestPlatform, token: string, webSocketImpl: unknown = WebSocket): Client {
  return createClient({ url: t.url.replace(/^http/, 'ws'), webSocketImpl, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: true });
}

function closedWith(c: Client): Promise<{ code: number; reason: string }> {
  return new Promise((resolve) => c.on('closed', (event) => resolve(event as { code: number; reason: string })));
}

/** A batch job of `tenant` that nothing processes: its progress events are written by the test. */
async function createJob(t: TestPlatform, tenant: string, pairs = 2): Promise<string> {
  const deps = t.platform.subgraphs.jobs.deps as JobsDeps;
  const job = await deps.service.createJob(t.platform.subgraphs.jobs.db.fork(), {
    tenant,
    requestedBy: 'test',
    kind: JobKind.BATCH,
    modelName: 'lcd-demo',
    pairs: Array.from({ length: pairs }, (_, i) => ({ beforeKey: `uploads/${tenant}/b${i}`, afterKey: `uploads/${tenant}/a${i}` })),
  });
  return job.id;
}

/** Logs one progress event of the job, on its own stream and its tenant's, as the jobs subgraph does. */
async function logProgress(t: TestPlatform, tenant: string, jobId: string, status: string): Promise<void> {
  const payload = { jobId, tenant, status, progress: status === 'SUCCEEDED' ? 1 : 0.5, pairCount: 2, succeededCount: 0, failedCount: 0, pair: null };
  await t.platform.subgraphs.jobs.db.fork().transactional((em) =>
    appendEvents(em, [
      { stream: `job:${jobId}`, type: 'job.progress', tenant, routingKey: `job.${jobId}.progress`, payload },
      { stream: `jobs:${tenant}`, type: 'job.progress', tenant, routingKey: `jobs.${tenant}.progress`, payload },
    ]),
  );
}

async function gatewayMetric(t: TestPlatform, line: RegExp): Promise<number> {
  const text = await (await fetch(t.url.replace(/\/graphql$/, '/metrics'))).text();
  return Number(line.exec(text)?.[1] ?? 0);
}

interface Watched {
  sequences: number[];
  errors: unknown[];
  completed: boolean;
  done: Promise<void>;
  dispose: () => void;
}

function watch(c: Client, query: string, variables: Record<string, unknown> = {}): Watched {
  let finish: () => void = () => undefined;
  const watched: Watched = { sequences: [], errors: [], completed: false, done: new Promise((r) => (finish = r)), dispose: () => undefined };
  watched.dispose = c.subscribe<Record<string, { sequence: number }>>(
    { query, variables },
    {
      next: (result) => {
        if (result.errors) watched.errors.push(...result.errors);
        const event = result.data && Object.values(result.data)[0];
        if (event) watched.sequences.push(event.sequence);
      },
      error: (error) => {
        watched.errors.push(error);
        finish();
      },
      complete: () => {
        watched.completed = true;
        finish();
      },
    },
  );
  return watched;
}

const consecutive = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

describe('subscription limits', () => {
  let t: TestPlatform;
  let relay: EventRelay;
  beforeAll(async () => {
    // A small send buffer, and room for the wide selection the stuck client asks for (5,200 aliases).
    t = await startTestPlatform({ MAX_SUBSCRIPTION_BUFFER_BYTES: String(64 * 1024), MAX_QUERY_ALIASES: '100000' });
    // Publishes what the test logs at once (the jobs subgraph's own relay would within a second).
    relay = new EventRelay({ fork: t.platform.subgraphs.jobs.db.fork, broker: t.platform.runtime.broker });
  }, 300_000);
  afterAll(async () => {
    await relay?.stop();
    await t?.close();
  });

  it('closes a connection that floods subscribe messages with 4429; the gateway keeps serving', async () => {
    const token = await t.token(['viewer'], 'flood-co');
    const flooder = client(t, token);
    const closed = closedWith(flooder);
    const errors: unknown[] = [];
    const subscribe = (n: number) => {
      for (let i = 0; i < n; i++) {
        flooder.subscribe({ query: 'subscription { jobUpdates { sequence } }' }, { next: () => undefined, error: (e) => errors.push(e), complete: () => undefined });
      }
    };
    // 100 subscriptions a connection are served; the 101st is refused with a typed error, the socket stays open.
    subscribe(101);
    await until('the 101st subscription to be refused', () => errors.length > 0);
    expect(errors.length).toBe(1);
    expect(JSON.stringify(errors[0])).toMatch(/OPERATION_LIMIT/);
    // More than 300 subscribe messages in a minute: the connection is closed.
    subscribe(220);
    const { code, reason } = await closed;
    await flooder.dispose();
    expect(code).toBe(4429);
    expect(reason).toMatch(/Too many subscribe messages/);
    expect(await gatewayMetric(t, /lcd_subscription_closed_total\{[^}]*reason="subscribe_flood"[^}]*\} (\d+)/)).toBeGreaterThanOrEqual(1);

    const jobId = await createJob(t, 'flood-co');
    const fresh = client(t, token);
    const watched = watch(fresh, 'subscription($id: ID!) { jobProgress(jobId: $id, afterSequence: 0) { sequence status } }', { id: jobId });
    await logProgress(t, 'flood-co', jobId, 'RUNNING');
    await logProgress(t, 'flood-co', jobId, 'SUCCEEDED');
    await relay.flush();
    await watched.done;
    await fresh.dispose();
    expect(watched.errors).toEqual([]);
    expect(watched.completed).toBe(true);
    expect(watched.sequences).toEqual([1, 2]);
  });

  it('closes a subscriber that stops reading with 4408 once its buffer is full; others keep receiving', async () => {
    const tenant = 'slow-co';
    const token = await t.token(['viewer'], tenant);
    const jobId = await createJob(t, tenant);
    const activeBefore = await gatewayMetric(t, /lcd_subscriptions_active\{[^}]*\} (\d+)/);

    // A client whose socket stops reading as soon as the connection is acknowledged (a stuck browser tab).
    const made: WebSocket[] = [];
    class PausingWebSocket extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        super(address, protocols);
        made.push(this);
      }
    }
    const slow = client(t, token, PausingWebSocket);
    slow.on('connected', () => made[0]?.pause());
    const slowClosed = closedWith(slow);
    // A wide selection (200 aliases of the job, 25 of its id each: ~225 KB an event) fills the socket buffers in
    // a few dozen events rather than tens of thousands.
    const ids = Array.from({ length: 25 }, (_, i) => `a${i}: id`).join(' ');
    const jobs = Array.from({ length: 200 }, (_, i) => `j${i}: job { ...Wide }`).join(' ');
    const wideEvents = watch(slow, `subscription { jobUpdates { sequence ${jobs} } } fragment Wide on Job { ${ids} }`);

    const healthyClient = client(t, token);
    const healthy = watch(healthyClient, 'subscription { jobUpdates { sequence job { id status } } }');
    await until('both subscriptions to be live', async () => made.length > 0 && (await gatewayMetric(t, /lcd_subscriptions_active\{[^}]*\} (\d+)/)) >= activeBefore + 2);

    const slowClosedMetric = /lcd_subscription_closed_total\{[^}]*reason="slow_consumer"[^}]*\} (\d+)/;
    let logged = 0;
    for (let batch = 0; batch < 30 && (await gatewayMetric(t, slowClosedMetric)) === 0; batch++) {
      for (let i = 0; i < 5; i++) {
        await logProgress(t, tenant, jobId, 'RUNNING');
        logged += 1;
      }
      await relay.flush();
      await until('the healthy subscriber to keep up', () => healthy.sequences.length >= logged);
    }
    await until('the stuck subscriber to be cut off', async () => (await gatewayMetric(t, slowClosedMetric)) === 1);

    // The gateway still delivers to the subscriber that reads, including what is logged after the cut.
    await logProgress(t, tenant, jobId, 'RUNNING');
    logged += 1;
    await relay.flush();
    await until('the healthy subscriber to have every event', () => healthy.sequences.length >= logged);
    expect(healthy.sequences).toEqual(consecutive(1, logged));
    expect(healthy.errors).toEqual([]);

    // The stuck client, once it reads again, finds what was buffered and then the close frame with the reason.
    made[0]!.resume();
    const { code, reason } = await slowClosed;
    await slow.dispose();
    await healthyClient.dispose();
    expect(code).toBe(4408);
    expect(reason).toMatch(/Slow consumer/);
    expect(wideEvents.errors.filter((e) => !(e instanceof Object && 'code' in e))).toEqual([]);
    expect(wideEvents.sequences.length).toBeLessThan(logged);
  });
});

/** A TCP proxy in front of RabbitMQ that the test can cut (every connection dropped, new ones refused) and restore. */
async function startProxy(target: { host: string; port: number }) {
  const sockets = new Set<net.Socket>();
  let up = true;
  const server = net.createServer((downstream) => {
    if (!up) {
      downstream.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    for (const [a, b] of [
      [downstream, upstream],
      [upstream, downstream],
    ] as const) {
      sockets.add(a);
      a.pipe(b);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    cut() {
      up = false;
      for (const socket of sockets) socket.destroy();
    },
    restore() {
      up = true;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

const amqpUrl = process.env.TEST_AMQP_URL;

describe.skipIf(!amqpUrl)('broker connection lost mid-stream (needs TEST_AMQP_URL: the in-process broker has no connection to lose)', () => {
  let t: TestPlatform;
  let proxy: Awaited<ReturnType<typeof startProxy>>;
  let vhost: Awaited<ReturnType<typeof privateVhost>>;
  beforeAll(async () => {
    const base = new URL(amqpUrl!);
    proxy = await startProxy({ host: base.hostname, port: Number(base.port || 5672) });
    // A virtual host of its own (as every test platform on the shared server gets), reached through the proxy.
    vhost = await privateVhost(amqpUrl!);
    const url = new URL(vhost?.url ?? amqpUrl!);
    url.hostname = '127.0.0.1';
    url.port = String(proxy.port);
    t = await startTestPlatform({ AMQP_URL: url.toString() });
  }, 300_000);
  afterAll(async () => {
    await t?.close();
    await proxy?.close();
    await vhost?.drop();
  });

  it('gives the subscriber every event exactly once, in order, after the connection comes back', async () => {
    const tenant = 'outage-co';
    const token = await t.token(['analyst'], tenant);
    const jobId = await createJob(t, tenant);
    const broker = t.platform.runtime.broker;
    const c = client(t, token);
    const watched = watch(c, 'subscription($id: ID!) { jobProgress(jobId: $id, afterSequence: 0) { sequence status job { id } } }', { id: jobId });

    // The jobs subgraph's own relay publishes what is logged (it polls every second, and retries after failures).
    await logProgress(t, tenant, jobId, 'RUNNING');
    await logProgress(t, tenant, jobId, 'RUNNING');
    await until('the first events', () => watched.sequences.length >= 2);

    proxy.cut();
    await until('the broker connection to be lost', () => !broker.isHealthy());
    await logProgress(t, tenant, jobId, 'RUNNING');
    await logProgress(t, tenant, jobId, 'RUNNING');
    await sleep(1500); // the relay tries, and fails, to publish them
    proxy.restore();
    await until('the broker connection to be back', () => broker.isHealthy(), 60_000);
    await logProgress(t, tenant, jobId, 'SUCCEEDED');

    await Promise.race([watched.done, sleep(60_000)]);
    await c.dispose();
    expect(watched.errors).toEqual([]);
    expect(watched.completed).toBe(true);
    expect(watched.sequences).toEqual([1, 2, 3, 4, 5]);
  });
});
