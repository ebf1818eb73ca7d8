// 1,000 concurrent graphql-ws subscribers of one job's progress on one gateway: event delivery latency (from the
// event being logged to a subscriber receiving it) p50/p99, and memory per subscription. Each event's `job` field is
// resolved through the federated graph; subscribers with the same selection share one fetch, one execution and one
// serialisation per event.
// The platform runs in this process on the embedded defaults (PGlite, in-process broker); the clients run in a child
// process, so the memory figure is the gateway's (and the platform's) alone.
// The machine is shared, so the same run also measures a reference: a bare WebSocket server in this process that
// writes an already serialised `next` message of the same size to as many official graphql-ws clients (in the same
// child process, measured the same way), halfway between the platform's events. It is the floor this machine sets
// right now for writing one message to 1,000 sockets and reading it in 1,000 clients; the gap between the two is what
// the platform adds (commit, relay, broker, entity fetch, execution, fan-out).
//   npm run bench -- subscriptions [--subscribers 1000] [--events 20] [--interval-ms 200] [--profile out.cpuprofile]
import 'reflect-metadata';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import WebSocket, { WebSocketServer } from 'ws';
import { issueDevToken } from '../lib/auth.js';
import { appendEvents, EventRelay, type LoggedEvent } from '../lib/events/event-log.js';
import { startPlatform } from '../lib/platform.js';
import type { JobsDeps } from '../subgraphs/jobs/schema.js';
import { JobKind } from '../subgraphs/jobs/job.contracts.js';
import { argValue, percentile } from './inference-support.js';

const QUERY = 'subscription($id: ID!) { jobProgress(jobId: $id) { sequence occurredAt status progress job { id pairCount } } }';

interface ClientSetup {
  url: string;
  token: string;
  jobId: string;
  subscribers: number;
}

type ToClients = { connect: 'platform' | 'reference'; setup: ClientSetup };
/** Latencies come as [sequence, milliseconds] pairs. */
type FromClients = { ready?: 'platform' | 'reference'; latencies?: [number, number][]; reference?: [number, number][] };

if (process.argv.includes('--client')) {
  await runClients();
  process.exit(0);
}

/** The subscribers, in their own process: connect, subscribe, and report each event's latency to the parent. */
async function runClients(): Promise<void> {
  const clients: Client[] = [];
  const batches = { latencies: [] as [number, number][], reference: [] as [number, number][] };
  const flush = setInterval(() => {
    if (batches.latencies.length > 0 || batches.reference.length > 0) process.send!({ latencies: batches.latencies, reference: batches.reference } satisfies FromClients);
    batches.latencies = [];
    batches.reference = [];
  }, 100);
  const connect = async ({ url, token, jobId, subscribers }: ClientSetup, into: 'latencies' | 'reference') => {
    let ready = 0;
    await new Promise<void>((resolve) => {
      for (let i = 0; i < subscribers; i++) {
        const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: false });
        clients.push(client);
        client.on('connected', () => {
          ready += 1;
          if (ready === subscribers) resolve();
        });
        client.subscribe<{ jobProgress: { sequence: number; occurredAt: string } }>(
          { query: QUERY, variables: { id: jobId } },
          { next: (result) => result.data && batches[into].push([result.data.jobProgress.sequence, Date.now() - Date.parse(result.data.jobProgress.occurredAt)]), error: (e) => console.error('subscription error', e), complete: () => undefined },
        );
      }
    });
  };
  process.on('message', (message: ToClients) => {
    void connect(message.setup, message.connect === 'platform' ? 'latencies' : 'reference').then(() => process.send!({ ready: message.connect } satisfies FromClients));
  });
  await new Promise((resolve) => process.once('disconnect', resolve));
  clearInterval(flush);
}

/** The reference server: the graphql-transport-ws handshake, then whatever `broadcast` writes to every subscriber. */
async function startReference(): Promise<{ url: string; subscribers: () => number; broadcast: (message: (id: string) => string) => void; close: () => Promise<void> }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: () => 'graphql-transport-ws' });
  await new Promise((resolve) => wss.once('listening', resolve));
  const subscribed: { socket: WebSocket; id: string }[] = [];
  wss.on('connection', (socket) => {
    socket.on('message', (data) => {
      const message = JSON.parse(String(data)) as { type: string; id?: string };
      if (message.type === 'connection_init') socket.send('{"type":"connection_ack"}');
      if (message.type === 'subscribe') subscribed.push({ socket, id: message.id! });
    });
  });
  const { port } = wss.address() as { port: number };
  return {
    url: `ws://127.0.0.1:${port}`,
    subscribers: () => subscribed.length,
    broadcast: (message) => {
      for (const { socket, id } of subscribed) socket.send(message(id));
    },
    close: () =>
      new Promise((resolve) => {
        for (const client of wss.clients) client.terminate();
        wss.close(() => resolve());
      }),
  };
}

const subscribers = Number(argValue('subscribers', '1000'));
const eventCount = Number(argValue('events', '20'));
const intervalMs = Number(argValue('interval-ms', '200'));
const profilePath = argValue('profile', '');
const gc = (globalThis as { gc?: () => void }).gc;
const load = () => loadavg().map((l) => Math.round(l * 100) / 100);
const loadBefore = load();

const stateDir = await mkdtemp(join(tmpdir(), 'lcd-bench-subs-'));
const platform = await startPlatform({
  env: { NODE_ENV: 'production', LOG_LEVEL: 'warn', STATE_DIR: stateDir, SUPERGRAPH_CONFIG: join(process.cwd(), 'supergraph.yaml'), RATE_LIMIT_ENABLED: 'false', MAX_SUBSCRIPTIONS_PER_CONNECTION: '10' },
  ephemeralPorts: true,
  stateDir: null,
});
const jobsDb = platform.subgraphs.jobs.db;
const deps = platform.subgraphs.jobs.deps as JobsDeps;
const job = await deps.service.createJob(jobsDb.fork(), {
  tenant: 'bench',
  requestedBy: 'bench',
  kind: JobKind.BATCH,
  modelName: 'lcd-demo',
  pairs: Array.from({ length: eventCount }, (_, i) => ({ beforeKey: `uploads/bench/b${i}`, afterKey: `uploads/bench/a${i}` })),
});
const token = await issueDevToken(stateDir, { subject: 'bench', tenant: 'bench', roles: ['viewer'] });
const url = platform.gateway.url.replace(/^http/, 'ws');
const reference = await startReference();

gc?.();
const before = process.memoryUsage();
const child = fork(fileURLToPath(import.meta.url), ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const latencies: [number, number][] = [];
const referenceLatencies: [number, number][] = [];
const readyWaiters = new Map<string, () => void>();
child.on('message', (message: FromClients) => {
  if (message.ready) readyWaiters.get(message.ready)?.();
  if (message.latencies) latencies.push(...message.latencies);
  if (message.reference) referenceLatencies.push(...message.reference);
});
const connectClients = (connect: 'platform' | 'reference', setup: ClientSetup) =>
  new Promise<void>((resolve) => {
    readyWaiters.set(connect, resolve);
    child.send({ connect, setup } satisfies ToClients);
  });
await connectClients('platform', { url, token, jobId: job.id, subscribers });
// Every subscription is checked (can this subscriber read the job?) before it starts: wait until all are live.
const activeSubscriptions = async () =>
  Number(/lcd_subscriptions_active\{[^}]*\} (\d+)/.exec(await (await fetch(platform.gateway.url.replace(/\/graphql$/, '/metrics'))).text())?.[1] ?? 0);
for (let waited = 0; (await activeSubscriptions()) < subscribers && waited < 300_000; waited += 250) await new Promise((r) => setTimeout(r, 250));
const liveSubscriptions = await activeSubscriptions();
gc?.();
const after = process.memoryUsage();
await connectClients('reference', { url: reference.url, token, jobId: job.id, subscribers });
while (reference.subscribers() < subscribers) await new Promise((r) => setTimeout(r, 50));

const relay = new EventRelay({ fork: jobsDb.fork, broker: platform.runtime.broker });
// Where the time goes: logged → on the topic exchange (commit, relay, broker), and logged → written to the sockets
// (the gateway's own lag histogram: also the entity fetch, the execution and the fan-out).
const onExchange = new Map<number, number>();
const probe = await platform.runtime.broker.subscribe<LoggedEvent>([`job.${job.id}.progress`], async (delivery) => {
  const event = delivery.envelope.payload;
  if (!onExchange.has(event.sequence)) onExchange.set(event.sequence, Date.now() - Date.parse(event.occurredAt));
});
const gatewayLag = async () => {
  const text = await (await fetch(platform.gateway.url.replace(/\/graphql$/, '/metrics'))).text();
  const read = (name: string) => Number(new RegExp(`${name}\\{[^}]*\\} ([0-9.e+-]+)`).exec(text)?.[1] ?? 0);
  return { sum: read('lcd_subscription_delivery_lag_seconds_sum'), count: read('lcd_subscription_delivery_lag_seconds_count') };
};
const lagBefore = await gatewayLag();
const fetchesBefore = platform.gateway.subscriptions.fetcher.fetches;
const executions = () => (platform.gateway.subscriptions as { results?: { executions: number } }).results?.executions ?? Number.NaN;
const executionsBefore = executions();
const session = profilePath ? new Session() : null;
if (session) {
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.start');
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
for (let i = 1; i <= eventCount; i++) {
  await jobsDb.fork().transactional((em) =>
    appendEvents(em, [
      {
        stream: `job:${job.id}`,
        type: 'job.progress',
        tenant: 'bench',
        routingKey: `job.${job.id}.progress`,
        payload: { jobId: job.id, status: i === eventCount ? 'SUCCEEDED' : 'RUNNING', progress: i / eventCount, pairCount: eventCount, succeededCount: i, failedCount: 0, pair: null },
      },
    ]),
  );
  relay.kick(); // as the jobs subgraph does after each commit
  await sleep(intervalMs / 2);
  const payload = JSON.stringify({
    data: { jobProgress: { sequence: i, occurredAt: new Date().toISOString(), status: 'RUNNING', progress: i / eventCount, job: { id: job.id, pairCount: eventCount } } },
  });
  reference.broadcast((id) => `{"id":${JSON.stringify(id)},"type":"next","payload":${payload}}`);
  await sleep(intervalMs / 2);
}
const deadline = Date.now() + 30_000;
while ((latencies.length < subscribers * eventCount || referenceLatencies.length < subscribers * eventCount) && Date.now() < deadline) await sleep(100);
if (session) {
  const { profile } = await session.post('Profiler.stop');
  await writeFile(profilePath, JSON.stringify(profile));
  session.disconnect();
}
const fetches = platform.gateway.subscriptions.fetcher.fetches - fetchesBefore;
const lagAfter = await gatewayLag();
await probe.close();
const executionsDone = executions() - executionsBefore;
const metrics = await (await fetch(platform.gateway.url.replace(/\/graphql$/, '/metrics'))).text();
const closedLines = metrics.split('\n').filter((l) => l.startsWith('lcd_subscription_closed_total'));

const summary = (pairs: [number, number][]) => {
  const values = pairs.map(([, ms]) => ms);
  const bySequence = new Map<number, number[]>();
  for (const [sequence, ms] of pairs) bySequence.set(sequence, [...(bySequence.get(sequence) ?? []), ms]);
  return {
    delivered: values.length,
    p50: percentile(values, 50),
    p99: percentile(values, 99),
    max: Math.max(...values),
    // The last subscriber's latency for each event, in order: one slow event (a pause of the whole machine) or all?
    lastPerEvent: [...bySequence.entries()].sort(([a], [b]) => a - b).map(([, ms]) => Math.max(...ms)),
  };
};
const report = {
  subscribers,
  liveSubscriptions,
  events: eventCount,
  intervalMs,
  machine: { cpus: cpus().length, loadAverageBefore: loadBefore, loadAverageAfter: load() },
  latencyMs: {
    platform: { ...summary(latencies), expected: subscribers * eventCount },
    reference: { ...summary(referenceLatencies), expected: subscribers * eventCount },
  },
  stagesMs: {
    loggedToExchange: { p50: percentile([...onExchange.values()], 50), max: Math.max(...onExchange.values()) },
    loggedToSocketMean: Math.round(((lagAfter.sum - lagBefore.sum) / Math.max(1, lagAfter.count - lagBefore.count)) * 1000),
  },
  entityFetchesPerEvent: fetches / eventCount,
  executionsPerEvent: executionsDone / eventCount,
  gatewayClosed: closedLines,
  memoryPerSubscriptionKiB: {
    heap: Math.round((after.heapUsed - before.heapUsed) / subscribers / 102.4) / 10,
    rss: Math.round((after.rss - before.rss) / subscribers / 102.4) / 10,
  },
  ...(profilePath ? { profile: profilePath } : {}),
};
console.log(JSON.stringify(report, null, 2));
child.kill();
await relay.stop();
await reference.close();
await platform.close();
await rm(stateDir, { recursive: true, force: true });
process.exit(0);
