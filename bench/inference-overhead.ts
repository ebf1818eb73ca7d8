// Benchmark 1: the worker end to end (fetch, decode, tile, run, stitch, encode, store) against the bare onnxruntime
// session running exactly the same tiles in the same batches, in one process, alternating, medians of several runs.
// Target: overhead at most 15 %. Also reported: the overhead within each end-to-end run, its wall time against the
// onnxruntime time the worker itself measured on the same tiles in that run (the least sensitive to a shared
// machine's load changing between runs).
//   npm run bench -- inference-overhead [--size 1024] [--runs 5]   (INFERENCE_ORT_SPIN_WAIT=true: worker threads spin too)
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { openRaster } from '../lib/imaging/raster-source.js';
import { validateModelContract } from '../lib/model/contract.js';
import { BENCH_MODEL, ensureTrainedModel } from '../lib/model/testing.js';
import type { ChangeResultPayload } from '../workers/inference/contracts.js';
import { processPair, type ModelRunner } from '../workers/inference/processor.js';
import { argValue, median, startWorkerHarness, writeScene } from './inference-support.js';

const size = Number(argValue('size', '1024'));
const runs = Number(argValue('runs', '5'));

const model = await ensureTrainedModel(BENCH_MODEL);
if (!model.ok) throw new Error(model.reason);
const dir = await mkdtemp(join(tmpdir(), 'lcd-bench-overhead-'));
try {
  const scene = await writeScene(dir, size);
  // INFERENCE_ORT_SPIN_WAIT=true compares with onnxruntime's threads spinning between runs, as the bare session's do.
  const spin = process.env.INFERENCE_ORT_SPIN_WAIT;
  const harness = await startWorkerHarness(dir, model.bytes, spin ? { INFERENCE_ORT_SPIN_WAIT: spin } : {});
  await harness.put('uploads/bench/before', await readFile(scene.before));
  await harness.put('uploads/bench/after', await readFile(scene.after));

  // The tiles the worker runs, recorded once through the same processor.
  const contract = validateModelContract(model.bytes);
  const session = await ort.InferenceSession.create(model.bytes, { graphOptimizationLevel: 'all', executionMode: 'sequential', interOpNumThreads: 1, executionProviders: ['cpu'] });
  const batches: { before: Float32Array; after: Float32Array; dims: number[] }[] = [];
  const recorder: ModelRunner = {
    contract,
    async run(before, after, n, height, width) {
      batches.push({ before: before.slice(), after: after.slice(), dims: [n, contract.bands, height, width] });
      const plane = n * height * width;
      return { logits: new Float32Array(plane), embedding: new Float32Array(n * contract.embeddingDim) };
    },
  };
  const batchSize = 4; // INFERENCE_BATCH_SIZE default
  await processPair(
    await openRaster({ kind: 'file', path: scene.before }),
    await openRaster({ kind: 'file', path: scene.after }),
    recorder,
    { writeRows: async () => undefined },
    { threshold: 0.5, batchSize, minRegionPixels: 4, simplifyTolerance: 0.5 },
  );
  // The reference: onnxruntime called directly, on this thread, with nothing around it.
  const bare = {
    run: async (before: Float32Array, after: Float32Array, n: number, height: number, width: number) => {
      const dims = [n, contract.bands, height, width];
      await session.run({ before: new ort.Tensor('float32', before, dims), after: new ort.Tensor('float32', after, dims) });
    },
  };
  const runBare = async () => {
    const t0 = performance.now();
    for (const b of batches) await bare.run(b.before, b.after, b.dims[0]!, b.dims[2]!, b.dims[3]!);
    return (performance.now() - t0) / 1000;
  };

  // Warm both up, then alternate.
  await harness.detect('uploads/bench/before', 'uploads/bench/after');
  await runBare();
  const endToEnd: number[] = [];
  const bareTimes: number[] = [];
  const workerOrt: number[] = [];
  const latest: { result: ChangeResultPayload | null } = { result: null };
  const runEndToEnd = async () => {
    const t0 = performance.now();
    latest.result = await harness.detect('uploads/bench/before', 'uploads/bench/after');
    const seconds = (performance.now() - t0) / 1000;
    workerOrt.push(latest.result.timings.inference!);
    return seconds;
  };
  // Back to back, in alternating order, so that the load of a shared machine falls on both alike; the overhead is
  // taken per pair of runs.
  for (let i = 0; i < runs; i++) {
    if (i % 2 === 0) {
      endToEnd.push(await runEndToEnd());
      bareTimes.push(await runBare());
    } else {
      bareTimes.push(await runBare());
      endToEnd.push(await runEndToEnd());
    }
  }
  const e2e = median(endToEnd);
  const ortOnly = median(bareTimes);
  const pairedOverheads = endToEnd.map((e, i) => (e - bareTimes[i]!) / bareTimes[i]!);
  const tiles = batches.reduce((n, b) => n + b.dims[0]!, 0);
  const result = {
    benchmark: 'worker end to end vs bare onnxruntime on the same tiles',
    scene: `${size}×${size} RGB PNG pair`,
    model: `SNUNet-CBAM w=${contract.baseWidth}, tile ${contract.tileSize}, batch ${batchSize}`,
    tiles,
    runs,
    endToEndSeconds: Number(e2e.toFixed(3)),
    bareOrtSeconds: Number(ortOnly.toFixed(3)),
    overheadPercent: Number((median(pairedOverheads) * 100).toFixed(1)),
    overheadOfMediansPercent: Number((((e2e - ortOnly) / ortOnly) * 100).toFixed(1)),
    inRunOverheadPercent: Number((median(endToEnd.map((e, i) => (e - workerOrt[i]!) / workerOrt[i]!)) * 100).toFixed(1)),
    target: 'at most 15 %',
    endToEndRuns: endToEnd.map((v) => Number(v.toFixed(3))),
    bareOrtRuns: bareTimes.map((v) => Number(v.toFixed(3))),
    workerOrtRuns: workerOrt.map((v) => Number(v.toFixed(3))),
    lastRunStages: latest.result?.timings,
    cpus: (await import('node:os')).cpus().length,
  };
  process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  await session.release();
  await harness.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
