// Benchmark 4: detectChanges through the gateway on a 256×256 pair, as a client sees it: latency p50 and p99, and the
// overhead over the model's own time (onnxruntime's time for the pair, measured in the session's thread, from the
// result's stats: getting the tiles there and the outputs back counts as overhead). Target: at most
// 30 ms overhead at p50. The platform runs in a process of its own, as with `npm start` (embedded defaults: PGlite,
// in-process broker, local storage; or PostgreSQL and RabbitMQ with DATABASE_URL, an empty database, and AMQP_URL),
// and this process is its client; the gateway's rate limit is off so that it does not pace the requests.
//   npm run bench -- inference-gateway [--requests 50] [--model bench|test]
//   BENCH_SERVER_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof" … profiles the platform's process.
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import 'reflect-metadata';
import { issueDevToken } from '../lib/auth.js';
import { BENCH_MODEL, ensureTrainedModel, repoRoot, sharedData, TEST_MODEL } from '../lib/model/testing.js';
import { startPlatform } from '../lib/platform.js';
import { argValue, percentile } from './inference-support.js';

const which = argValue('model', 'bench');
const model = await ensureTrainedModel(which === 'bench' ? BENCH_MODEL : TEST_MODEL);
if (!model.ok) throw new Error(model.reason);

if (process.argv.includes('--serve')) {
  // The platform's side: started, its URL reported on stdout, closed when the client closes stdin.
  const stateDir = argValue('state', '');
  const platform = await startPlatform({
    env: {
      NODE_ENV: 'production',
      RATE_LIMIT_ENABLED: 'false',
      LOG_LEVEL: 'warn',
      STATE_DIR: stateDir,
      SUPERGRAPH_CONFIG: join(repoRoot, 'supergraph.yaml'),
      // The models subgraph registers it as the platform's Production version of lcd-demo as it starts.
      DEMO_MODEL_DIR: dirname(model.path),
      DATABASE_URL: process.env.DATABASE_URL,
      AMQP_URL: process.env.AMQP_URL,
      INFERENCE_ORT_SPIN_WAIT: process.env.INFERENCE_ORT_SPIN_WAIT,
    },
    ephemeralPorts: true,
    stateDir: null,
  });
  process.stdout.write(`${JSON.stringify({ url: platform.gateway.url })}\n`);
  process.stdin.resume();

  process.stdin.on('end', () => void platform.close().then(() => process.exit(0)));
} else {
  await client();
}

async function client() {
  const requests = Number(argValue('requests', '50'));
  const stateDir = await mkdtemp(join(tmpdir(), 'lcd-bench-gateway-'));
  // BENCH_SERVER_NODE_ARGS: node flags for the platform's process (`--cpu-prof`, `--trace-gc`) when looking for where time goes.
  const serverNodeArgs = (process.env.BENCH_SERVER_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const server = spawn(process.execPath, [...serverNodeArgs, fileURLToPath(import.meta.url), '--serve', '--state', stateDir, '--model', which], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, LOG_LEVEL: 'warn' },
  });
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  try {
    const first = await new Promise<string>((resolve, reject) => {
      // Other lines (diagnostics of node flags given in BENCH_SERVER_NODE_ARGS, e.g. --trace-gc) go to this stderr.
      createInterface({ input: server.stdout! }).on('line', (line) => (line.startsWith('{"url"') ? resolve(line) : process.stderr.write(`${line}\n`)));
      server.once('exit', (code) => reject(new Error(`the platform exited (code ${code}) before it was ready`)));
    });
    const url = (JSON.parse(first) as { url: string }).url;
    await measure(url, await issueDevToken(stateDir, { subject: 'bench', tenant: 'bench', roles: ['analyst'] }), requests);
  } finally {
    server.stdin!.end();
    await exited;
    await rm(stateDir, { recursive: true, force: true });
  }
}

async function measure(url: string, token: string, requests: number) {
  const gql = async <T>(query: string, variables: Record<string, unknown>) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
      body: JSON.stringify({ query, variables }),
    });
    return (await res.json()) as { data?: T; errors?: unknown[] };
  };
  const upload = async (bytes: Buffer, filename: string): Promise<string> => {
    const created = await gql<{ createUpload: { id: string; url: string; headers: { name: string; value: string }[] } }>(
      `mutation($input: CreateUploadInput!) { createUpload(input: $input) { id url headers { name value } } }`,
      { input: { filename, contentType: 'image/png', byteSize: bytes.length } },
    );
    const u = created.data!.createUpload;
    const put = await fetch(u.url, { method: 'PUT', headers: Object.fromEntries(u.headers.map((h) => [h.name, h.value])), body: bytes });
    if (!put.ok) throw new Error(`upload failed: ${put.status}`);
    return u.id;
  };
  const levir = (dir: string) => readFile(join(sharedData, 'levir-cd-256', dir, 'test_7_0256_0512.png'));
  const beforeUploadId = await upload(await levir('A'), 'a.png');
  const afterUploadId = await upload(await levir('B'), 'b.png');
  const query = `mutation($input: DetectChangesInput!) { detectChanges(input: $input) { statsUrl stats { changedPixels } } }`;
  const call = async () => {
    const t0 = performance.now();
    const res = await gql<{ detectChanges: { statsUrl: string } }>(query, { input: { beforeUploadId, afterUploadId } });
    const latency = (performance.now() - t0) / 1000;
    if (res.errors) throw new Error(JSON.stringify(res.errors));
    return { latency, statsUrl: res.data!.detectChanges.statsUrl };
  };
  for (let i = 0; i < 5; i++) await call(); // warm-up: JIT, connections, caches
  const samples: { latency: number; statsUrl: string }[] = [];
  for (let i = 0; i < requests; i++) samples.push(await call());
  const modelSeconds: number[] = [];
  const workerSeconds: number[] = [];
  const stages: Record<string, number[]> = {};
  for (const s of samples) {
    const stats = (await (await fetch(s.statsUrl)).json()) as { timings: Record<string, number> };
    modelSeconds.push(stats.timings.inference!);
    workerSeconds.push(stats.timings.total!);
    for (const [k, v] of Object.entries(stats.timings)) (stages[k] ??= []).push(v);
  }
  const latencies = samples.map((s) => s.latency);
  const overheads = samples.map((s, i) => s.latency - modelSeconds[i]!);
  const ms = (v: number) => Number((v * 1000).toFixed(1));
  process.stdout.write(
    `${JSON.stringify(
      {
        benchmark: 'detectChanges through the gateway, 256×256 RGB pair',
        model: which === 'bench' ? 'SNUNet-CBAM w=16, one 256-px tile' : 'SNUNet-CBAM w=8, 64-px tiles',
        backends: process.env.DATABASE_URL ? 'PostgreSQL + ' + (process.env.AMQP_URL ? 'RabbitMQ' : 'in-process broker') : 'embedded (PGlite, in-process broker)',
        requests,
        latencyMs: { p50: ms(percentile(latencies, 50)), p99: ms(percentile(latencies, 99)) },
        modelMs: { p50: ms(percentile(modelSeconds, 50)) },
        overheadMs: { p50: ms(percentile(overheads, 50)), p99: ms(percentile(overheads, 99)) },
        /** Where the overhead goes: the worker's stages (median ms) and what is spent outside the worker. */
        workerStagesMs: Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, ms(percentile(v, 50))])),
        outsideWorkerMs: { p50: ms(percentile(samples.map((s, i) => s.latency - workerSeconds[i]!), 50)) },
        target: 'overhead at most 30 ms at p50',
      },
      null,
      2,
    )}\n`,
  );
}
