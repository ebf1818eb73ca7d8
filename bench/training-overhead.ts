// Training throughput through the training service against the trainer run directly, on the same data and config,
// in one run: the service's overhead (queue, dataset materialisation, progress streaming, ONNX contract and parity
// checks, artifact upload) as a share of the training time.
//
//   node scripts/build.mjs && node dist/bench/training-overhead.js
//   BENCH_PAIRS=48 BENCH_SIZE=96 BENCH_EPOCHS=3 BENCH_WIDTH=8 BENCH_REPEATS=3 node dist/bench/training-overhead.js
//
// Both sides run the same interpreter (LCD_PYTHON or /usr/bin/python3) with the same thread count; the runs
// alternate (direct, service, direct, …) so that machine load drifts affect both alike. Two overheads are printed:
// `overheadPercent` compares the medians of the two sides (sensitive to load on a shared machine), and
// `serviceOverheadPercent` compares each service run with its own trainer process (the service's wall time against
// the trainer's, paired, so that the trainer's speed cancels out). Prints one JSON object.
import { execFile, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { createBroker, createEnvelope, MemoryBrokerServer } from '../lib/broker/broker.js';
import { LocalObjectStore } from '../lib/storage/index.js';
import { TRAINING_MESSAGE_TYPES, type TrainingEvent, type TrainingRequest } from '../subgraphs/models/training.contracts.js';
import { loadTrainingConfig } from '../training/service/config.js';
import { findTrainingDir, probePython, pythonEnv, resolvePython } from '../training/service/python-runtime.js';
import { startTrainingService } from '../training/service/service.js';

const env = process.env;
const PAIRS = Number(env.BENCH_PAIRS ?? 48);
const SIZE = Number(env.BENCH_SIZE ?? 96);
const EPOCHS = Number(env.BENCH_EPOCHS ?? 3);
const WIDTH = Number(env.BENCH_WIDTH ?? 8);
const REPEATS = Number(env.BENCH_REPEATS ?? 3);
const THREADS = Number(env.BENCH_THREADS ?? 2);

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function main(): Promise<void> {
  const python = await resolvePython(env.LCD_PYTHON);
  const probe = await probePython(python);
  if (!probe.torch) throw new Error(`no torch in ${python}: ${probe.problem}`);
  const trainingDir = findTrainingDir();
  const work = await mkdtemp(join(tmpdir(), 'lcd-bench-training-'));
  const childEnv = pythonEnv(trainingDir, { OMP_NUM_THREADS: String(THREADS), MKL_NUM_THREADS: String(THREADS) });
  try {
    const data = join(work, 'data');
    await promisify(execFile)(python, ['-m', 'lcd_training.synthetic', '--out', data, '--pairs', String(PAIRS), '--size', String(SIZE), '--seed', '5'], { cwd: trainingDir, env: childEnv });
    const config = { epochs: EPOCHS, baseWidth: WIDTH, batchSize: 8, learningRate: 0.002, seed: 3, tileSize: SIZE - (SIZE % 16), valFraction: 0.1, numThreads: THREADS };

    // The same pairs as a dataset version in object storage, as the datasets subgraph would store it.
    const store = new LocalObjectStore({ root: join(work, 'objects'), publicBaseUrl: 'http://127.0.0.1:1', signingSecret: Buffer.alloc(32, 9) });
    const generated = JSON.parse(await readFile(join(data, 'manifest.json'), 'utf8')) as { items: { before: string; after: string; label: string }[] };
    const put = async (rel: string) => {
      const bytes = await readFile(join(data, rel));
      const key = `datasets/bench/objects/${sha(bytes)}`;
      await store.put(key, bytes);
      return { sha256: sha(bytes), size: bytes.length, key };
    };
    const items = [];
    for (const item of generated.items) items.push({ before: await put(item.before), after: await put(item.after), label: await put(item.label), width: SIZE, height: SIZE, bands: 3 });
    const manifestBytes = Buffer.from(JSON.stringify({ datasetId: randomUUID(), items }));
    const versionId = sha(manifestBytes);
    const manifestKey = `datasets/bench/manifests/${versionId}.json`;
    await store.put(manifestKey, manifestBytes);

    const broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
    const serviceConfig = loadTrainingConfig({ STATE_DIR: join(work, 'state'), LCD_PYTHON: python, TRAINING_THREADS: String(THREADS) });
    const service = await startTrainingService({ runtime: { broker, store }, config: serviceConfig, host: '127.0.0.1', port: 0 });
    const waiters = new Map<string, (e: TrainingEvent) => void>();
    const trainerRates = new Map<string, number[]>();
    await broker.consume<TrainingEvent>(serviceConfig.TRAINING_EVENTS_QUEUE, async (d) => {
      const e = d.envelope.payload;
      if (e.kind === 'metrics') {
        const rates = trainerRates.get(e.runId) ?? [];
        for (const m of e.metrics) if (m.name === 'train/pairs_per_second') rates.push(m.value);
        trainerRates.set(e.runId, rates);
      }
      if (e.kind === 'succeeded' || e.kind === 'failed' || e.kind === 'cancelled') waiters.get(e.runId)?.(e);
    });

    let trainPairs = 0;
    const direct = async () => {
      const out = join(work, `direct-${randomUUID()}`);
      const started = performance.now();
      const child = spawn(python, ['-m', 'lcd_training.train', '--manifest', join(data, 'manifest.json'), '--out', out, '--config', JSON.stringify(config)], { cwd: trainingDir, env: childEnv, stdio: ['ignore', 'pipe', 'ignore'] });
      const rates: number[] = [];
      for await (const line of createInterface({ input: child.stdout })) {
        const e = JSON.parse(line) as { event: string; pairsPerSecond?: number; counts?: { train: number } };
        if (e.event === 'step' && typeof e.pairsPerSecond === 'number') rates.push(e.pairsPerSecond);
        if (e.event === 'start' && e.counts) trainPairs = e.counts.train * EPOCHS;
      }
      const code = await new Promise<number | null>((r) => (child.exitCode !== null ? r(child.exitCode) : child.once('close', r)));
      if (code !== 0) throw new Error(`direct trainer exited ${code}`);
      await rm(out, { recursive: true, force: true });
      return { seconds: (performance.now() - started) / 1000, trainerPairsPerSecond: median(rates) };
    };
    const viaService = async () => {
      const runId = randomUUID();
      const request: TrainingRequest = { runId, tenant: 'bench', modelName: 'bench', datasetVersionId: versionId, manifestKey, config, timeLimitSeconds: 3600, requestedBy: 'bench' };
      const done = new Promise<TrainingEvent>((resolve) => waiters.set(runId, resolve));
      const started = performance.now();
      await broker.send(serviceConfig.TRAINING_REQUESTS_QUEUE, createEnvelope(TRAINING_MESSAGE_TYPES.request, request, { tenant: 'bench' }));
      const result = await done;
      const seconds = (performance.now() - started) / 1000;
      if (result.kind !== 'succeeded') throw new Error(`service run ended ${result.kind}: ${JSON.stringify(result)}`);
      const trainerSeconds = result.timings?.trainerSeconds ?? seconds;
      return { seconds, trainerSeconds, timings: result.timings, trainerPairsPerSecond: median(trainerRates.get(runId) ?? [0]) };
    };

    // The first service run fills the dataset cache: timed on its own, the repeats below use the cache.
    const cold = await viaService();
    const directRuns = [];
    const serviceRuns = [];
    for (let i = 0; i < REPEATS; i++) {
      directRuns.push(await direct());
      serviceRuns.push(await viaService());
    }
    await service.close();
    await broker.close();
    const d = median(directRuns.map((r) => r.seconds));
    const s = median(serviceRuns.map((r) => r.seconds));
    const result = {
      bench: 'training-overhead',
      python,
      torch: probe.torch,
      threads: THREADS,
      data: { pairs: PAIRS, size: SIZE, trainPairsPerRun: trainPairs },
      config,
      repeats: REPEATS,
      direct: { medianSeconds: +d.toFixed(3), pairsPerSecond: +(trainPairs / d).toFixed(3), trainerPairsPerSecond: +median(directRuns.map((r) => r.trainerPairsPerSecond)).toFixed(3), runs: directRuns.map((r) => +r.seconds.toFixed(3)) },
      service: {
        medianSeconds: +s.toFixed(3),
        pairsPerSecond: +(trainPairs / s).toFixed(3),
        trainerPairsPerSecond: +median(serviceRuns.map((r) => r.trainerPairsPerSecond)).toFixed(3),
        runs: serviceRuns.map((r) => +r.seconds.toFixed(3)),
        trainerProcessSeconds: serviceRuns.map((r) => +r.trainerSeconds.toFixed(3)),
        timings: serviceRuns.map((r) => r.timings),
        coldCacheSeconds: +cold.seconds.toFixed(3),
        coldCacheTimings: cold.timings,
      },
      overheadPercent: +(((s - d) / d) * 100).toFixed(2),
      serviceOverheadPercent: +(median(serviceRuns.map((r) => (r.seconds - r.trainerSeconds) / r.trainerSeconds)) * 100).toFixed(2),
      serviceOverheadSeconds: +median(serviceRuns.map((r) => r.seconds - r.trainerSeconds)).toFixed(3),
      workDirLeft: (await readdir(serviceConfig.workDir)).length,
    };
    process.stdout.write(`${JSON.stringify(result, null, 1)}\n`);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
