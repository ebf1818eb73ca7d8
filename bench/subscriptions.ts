// 1,000 concurrent graphql-ws subscribers of one job's progress on one gateway: event delivery latency (from the
// event being logged to a subscriber receiving it) p50/p99, and memory per subscription. Each event's `job` field is
// resolved through the federated graph; subscribers with the same selection share one fetch per event.
// The platform runs in this process on the embedded defaults (PGlite, in-process broker); the 1,000 clients run in a
// child process, so the memory figure is the gateway's (and the platform's) alone.
//   npm run build && node --expose-gc dist/bench/subscriptions.js [--subscribers 1000] [--events 20] [--interval-ms 200]
import 'reflect-metadata';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createClient, type Client } from 'graphql-ws';
import WebSocket from 'ws';
import { issueDevToken } from '../lib/auth.js';
import { appendEvents, EventRelay } from '../lib/events/event-log.js';
import { startPlatform } from '../lib/platform.js';
import type { JobsDeps } from '../subgraphs/jobs/schema.js';
import { JobKind } from '../subgraphs/jobs/job.contracts.js';
import { argValue, percentile } from './inference-support.js';

if (process.argv.includes('--client')) {
  await runClients();
  process.exit(0);
}

/** The subscribers, in their own process: connect, subscribe, and report each event's latency to the parent. */
async function runClients(): Promise<void> {
  const { url, token, jobId, subscribers } = await new Promise<{ url: string; token: string; jobId: string; subscribers: number }>((resolve) =>
    process.once('message', resolve as never),
  );
  let ready = 0;
  let batch: number[] = [];
  const clients: Client[] = [];
  const flush = setInterval(() => {
    if (batch.length > 0) process.send!({ latencies: batch });
    batch = [];
  }, 100);
  await new Promise<void>((resolve) => {
    for (let i = 0; i < subscribers; i++) {
      const client = createClient({ url, webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: false });
      clients.push(client);
      client.on('connected', () => {
        ready += 1;
        if (ready === subscribers) resolve();
      });
      client.subscribe<{ jobProgress: { occurredAt: string } }>(
        { query: 'subscription($id: ID!) { jobProgress(jobId: $id) { sequence occurredAt status progress job { id pairCount } } }', variables: { id: jobId } },
        { next: (result) => result.data && batch.push(Date.now() - Date.parse(result.data.jobProgress.occurredAt)), error: (e) => console.error('subscription error', e), complete: () => undefined },
      );
    }
  });
  process.send!({ ready: true });
  await new Promise((resolve) => process.once('disconnect', resolve));
  clearInterval(flush);
}

const subscribers = Number(argValue('subscribers', '1000'));
const eventCount = Number(argValue('events', '20'));
const intervalMs = Number(argValue('interval-ms', '200'));
const gc = (globalThis as { gc?: () => void }).gc;

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

gc?.();
const before = process.memoryUsage();
const child = fork(fileURLToPath(import.meta.url), ['--client'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const latencies: number[] = [];
let received = 0;
const childReady = new Promise<void>((resolve) => {
  child.on('message', (message: { ready?: boolean; latencies?: number[] }) => {
    if (message.ready) resolve();
    if (message.latencies) {
      latencies.push(...message.latencies);
      received += message.latencies.length;
    }
  });
});
child.send({ url, token, jobId: job.id, subscribers });
await childReady;
// Every subscription is checked (can this subscriber read the job?) before it starts: wait until all are live.
const activeSubscriptions = async () =>
  Number(/lcd_subscriptions_active\{[^}]*\} (\d+)/.exec(await (await fetch(platform.gateway.url.replace(/\/graphql$/, '/metrics'))).text())?.[1] ?? 0);
for (let waited = 0; (await activeSubscriptions()) < subscribers && waited < 120_000; waited += 250) await new Promise((r) => setTimeout(r, 250));
gc?.();
const after = process.memoryUsage();

const relay = new EventRelay({ fork: jobsDb.fork, broker: platform.runtime.broker });
const fetchesBefore = platform.gateway.subscriptions.fetcher.fetches;
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
  await relay.flush();
  await new Promise((r) => setTimeout(r, intervalMs));
}
const deadline = Date.now() + 30_000;
while (received < subscribers * eventCount && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
const fetches = platform.gateway.subscriptions.fetcher.fetches - fetchesBefore;
const metrics = await (await fetch(platform.gateway.url.replace(/\/graphql$/, '/metrics'))).text();
const closedLines = metrics.split('\n').filter((l) => l.startsWith('lcd_subscription_closed_total') || l.startsWith('lcd_subscriptions_active'));

latencies.sort((a, b) => a - b);
const report = {
  subscribers,
  events: eventCount,
  delivered: received,
  expected: subscribers * eventCount,
  latencyMs: { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: latencies.at(-1) },
  entityFetchesPerEvent: fetches / eventCount,
  gatewayMetrics: closedLines,
  memoryPerSubscriptionKiB: {
    heap: Math.round((after.heapUsed - before.heapUsed) / subscribers / 102.4) / 10,
    rss: Math.round((after.rss - before.rss) / subscribers / 102.4) / 10,
  },
};
console.log(JSON.stringify(report, null, 2));
child.kill();
await relay.stop();
await platform.close();
await rm(stateDir, { recursive: true, force: true });
process.exit(0);
