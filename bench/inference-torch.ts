// Benchmark 2: onnxruntime-node against PyTorch eager on the same weights (the trainer's best.pt and its model.onnx
// export) and the same inputs, same thread count, on this CPU; reports the speed ratio and the largest difference of
// the outputs. Target: onnxruntime at least 2.5× faster. The two alternate run by run (PyTorch in a Python process
// that stays up and runs the model when told), so that a shared machine's changing load falls on both alike; the
// ratio is the median of the per-round ratios.
//   npm run bench -- inference-torch [--batch 4] [--runs 10] [--threads <cores>]
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { validateModelContract } from '../lib/model/contract.js';
import { BENCH_MODEL, ensureTrainedModel, findTrainerPython, repoRoot } from '../lib/model/testing.js';
import { argValue, median } from './inference-support.js';

const batch = Number(argValue('batch', '4'));
const runs = Number(argValue('runs', '10'));
const threads = Number(argValue('threads', String(cpus().length)));

const TORCH = `
import json, sys, time
import numpy as np
import torch
from lcd_training.evaluate import load_checkpoint
checkpoint, inputs, shape, threads, out = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
model, _ = load_checkpoint(checkpoint, torch.device("cpu"))
data = np.fromfile(inputs, dtype="<f4")
half = data.size // 2
a = torch.from_numpy(data[:half].reshape(shape).copy())
b = torch.from_numpy(data[half:].reshape(shape).copy())
with torch.no_grad():
    logits, _ = model(a, b)
    logits.numpy().astype("<f4").tofile(out)
    model(a, b)
    print(json.dumps({"ready": True, "torch": torch.__version__, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        t0 = time.perf_counter()
        model(a, b)
        print(json.dumps({"seconds": time.perf_counter() - t0}), flush=True)
`;

const model = await ensureTrainedModel(BENCH_MODEL);
if (!model.ok) throw new Error(model.reason);
const pythonPath = await findTrainerPython();
if (!pythonPath) throw new Error('no Python with torch (set LCD_PYTHON)');
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
  const python = spawn(pythonPath, ['-c', TORCH, model.checkpoint, inputs, JSON.stringify(shape), String(threads), torchOut], {
    cwd: join(repoRoot, 'training'),
    env: { ...process.env, PYTHONPATH: join(repoRoot, 'training'), OMP_NUM_THREADS: String(threads) },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: python.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const line = await lines.next();
    if (line.done) throw new Error('the PyTorch process ended early');
    return JSON.parse(line.value) as { ready?: boolean; torch?: string; seconds?: number };
  };
  const torch = await next();
  const torchRun = async () => {
    python.stdin.write('run\n');
    return (await next()).seconds!;
  };
  const ortRun = async () => {
    const t0 = performance.now();
    await session.run(feeds);
    return (performance.now() - t0) / 1000;
  };
  const ortTimes: number[] = [];
  const torchTimes: number[] = [];
  for (let i = 0; i < runs; i++) {
    // Alternating which goes first, round by round.
    if (i % 2 === 0) {
      ortTimes.push(await ortRun());
      torchTimes.push(await torchRun());
    } else {
      torchTimes.push(await torchRun());
      ortTimes.push(await ortRun());
    }
  }
  python.stdin.end();
  await new Promise((resolve) => python.once('close', resolve));
  const torchLogits = new Float32Array((await readFile(torchOut)).buffer.slice(0));
  const ortLogits = first.change_logits!.data as Float32Array;
  let maxDiff = 0;
  for (let i = 0; i < ortLogits.length; i++) maxDiff = Math.max(maxDiff, Math.abs(ortLogits[i]! - torchLogits[i]!));
  const ortMedian = median(ortTimes);
  const torchMedian = median(torchTimes);
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
        speedup: Number(median(torchTimes.map((t, i) => t / ortTimes[i]!)).toFixed(2)),
        speedupOfMedians: Number((torchMedian / ortMedian).toFixed(2)),
        onnxruntimeRuns: ortTimes.map((v) => Number(v.toFixed(4))),
        pytorchRuns: torchTimes.map((v) => Number(v.toFixed(4))),
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
