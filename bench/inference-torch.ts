// Benchmark 2: onnxruntime-node against PyTorch eager on the same weights (the trainer's best.pt and its model.onnx
// export) and the same inputs, same thread count, on this CPU; reports the speed ratio and the largest difference of
// the outputs. Target: onnxruntime at least 2.5× faster.
//   npm run build && node dist/bench/inference-torch.js [--batch 4] [--runs 10] [--threads <cores>]
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import * as ort from 'onnxruntime-node';
import { validateModelContract } from '../lib/model/contract.js';
import { BENCH_MODEL, ensureTrainedModel, findTrainerPython, repoRoot } from '../lib/model/testing.js';
import { argValue, median } from './inference-support.js';

const run = promisify(execFile);
const batch = Number(argValue('batch', '4'));
const runs = Number(argValue('runs', '10'));
const threads = Number(argValue('threads', String(cpus().length)));

const TORCH = `
import json, sys, time
import numpy as np
import torch
from lcd_training.evaluate import load_checkpoint
checkpoint, inputs, shape, runs, threads, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
torch.set_num_threads(threads)
model, _ = load_checkpoint(checkpoint, torch.device("cpu"))
data = np.fromfile(inputs, dtype="<f4")
half = data.size // 2
a = torch.from_numpy(data[:half].reshape(shape).copy())
b = torch.from_numpy(data[half:].reshape(shape).copy())
times = []
with torch.no_grad():
    logits, _ = model(a, b)
    logits.numpy().astype("<f4").tofile(out)
    model(a, b)
    for _ in range(runs):
        t0 = time.perf_counter()
        model(a, b)
        times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "torch": torch.__version__, "threads": torch.get_num_threads()}))
`;

const model = await ensureTrainedModel(BENCH_MODEL);
if (!model.ok) throw new Error(model.reason);
const python = await findTrainerPython();
if (!python) throw new Error('no Python with torch (set LCD_PYTHON)');
const contract = validateModelContract(model.bytes);
const shape = [batch, contract.bands, contract.tileSize, contract.tileSize];
const count = shape.reduce((a, b) => a * b, 1);
// Seeded normalised inputs: what the worker feeds the model.
let seed = 42;
const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31) * 2 - 1;
const before = Float32Array.from({ length: count }, random);
const after = Float32Array.from({ length: count }, random);
const dir = await mkdtemp(join(tmpdir(), 'lcd-bench-torch-'));
try {
  const inputs = join(dir, 'inputs.bin');
  const torchOut = join(dir, 'torch-logits.bin');
  const joined = new Float32Array(count * 2);
  joined.set(before);
  joined.set(after, count);
  await writeFile(inputs, Buffer.from(joined.buffer));

  const session = await ort.InferenceSession.create(model.bytes, {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
    intraOpNumThreads: threads,
    executionProviders: ['cpu'],
  });
  const feeds = { before: new ort.Tensor('float32', before, shape), after: new ort.Tensor('float32', after, shape) };
  const first = await session.run(feeds);
  await session.run(feeds);
  const ortTimes: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await session.run(feeds);
    ortTimes.push((performance.now() - t0) / 1000);
  }
  const { stdout } = await run(python, ['-c', TORCH, model.checkpoint, inputs, JSON.stringify(shape), String(runs), String(threads), torchOut], {
    cwd: join(repoRoot, 'training'),
    env: { ...process.env, PYTHONPATH: join(repoRoot, 'training'), OMP_NUM_THREADS: String(threads) },
    maxBuffer: 16 * 1024 * 1024,
    timeout: 30 * 60_000,
  });
  const torch = JSON.parse(stdout.trim().split('\n').at(-1)!) as { times: number[]; torch: string; threads: number };
  const torchLogits = new Float32Array((await readFile(torchOut)).buffer.slice(0));
  const ortLogits = first.change_logits!.data as Float32Array;
  let maxDiff = 0;
  for (let i = 0; i < ortLogits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ortLogits[i]! - torchLogits[i]!));
  const ortMedian = median(ortTimes);
  const torchMedian = median(torch.times);
  process.stdout.write(
    `${JSON.stringify(
      {
        benchmark: 'onnxruntime-node vs PyTorch eager, same weights and inputs',
        model: `SNUNet-CBAM w=${contract.baseWidth}`,
        input: `batch ${shape.join('×')}`,
        threads,
        runs,
        onnxruntimeSeconds: Number(ortMedian.toFixed(4)),
        pytorchSeconds: Number(torchMedian.toFixed(4)),
        speedup: Number((torchMedian / ortMedian).toFixed(2)),
        target: 'at least 2.5×',
        maxAbsLogitDifference: maxDiff,
        versions: { onnxruntime: ort.env.versions.node, torch: torch.torch },
      },
      null,
      2,
    )}\n`,
  );
  await session.release();
} finally {
  await rm(dir, { recursive: true, force: true });
}
