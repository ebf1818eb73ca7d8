// Benchmark 3: a batch pair of 1k, 4k, 8k and 16k pixels a side through the worker (in a fresh process per size):
// wall time and peak resident memory. Targets: time linear in area (constant seconds per megapixel), memory flat,
// at most 1.5 GB at 16k. The scenes tile a real LEVIR-CD pair and are written as PNG row by row.
//   npm run bench -- inference-scaling [--sizes 1024,4096,8192,16384] [--model test|bench]
// `--model test` (default) is the small test model (w=8, 64-px tiles), which keeps 16k to minutes on 2 cores;
// `--model bench` is w=16 with 256-px tiles (the architecture's working size), about 8× slower per pixel.
import { execFile } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { readFile } from 'node:fs/promises';
import { BENCH_MODEL, ensureTrainedModel, TEST_MODEL } from '../lib/model/testing.js';
import { argValue, startWorkerHarness, writeScene } from './inference-support.js';

const run = promisify(execFile);

async function child(): Promise<void> {
  const size = Number(argValue('size', '1024'));
  const dir = argValue('dir', '');
  const bytes = await readFile(argValue('model-path', ''));
  const work = join(dir, `worker-${size}`);
  await mkdir(work, { recursive: true });
  const harness = await startWorkerHarness(work, bytes);
  await harness.put(`uploads/bench/before-${size}`, createReadStream(join(dir, `before-${size}.png`)));
  await harness.put(`uploads/bench/after-${size}`, createReadStream(join(dir, `after-${size}.png`)));
  const t0 = performance.now();
  const result = await harness.batch(`uploads/bench/before-${size}`, `uploads/bench/after-${size}`);
  const seconds = (performance.now() - t0) / 1000;
  const peakBytes = process.resourceUsage().maxRSS * 1024;
  await harness.close();
  await rm(work, { recursive: true, force: true });
  process.stdout.write(`${JSON.stringify({ size, seconds, peakBytes, tiles: result.tiles, stages: result.timings })}\n`);
}

async function parent(): Promise<void> {
  const sizes = argValue('sizes', '1024,4096,8192,16384').split(',').map(Number);
  const which = argValue('model', 'test');
  const model = await ensureTrainedModel(which === 'bench' ? BENCH_MODEL : TEST_MODEL);
  if (!model.ok) throw new Error(model.reason);
  const dir = await mkdtemp(join(tmpdir(), 'lcd-bench-scaling-'));
  const rows: Record<string, unknown>[] = [];
  try {
    for (const size of sizes) {
      const scene = await writeScene(dir, size);
      const inputBytes = (await stat(scene.before)).size + (await stat(scene.after)).size;
      const { stdout } = await run(process.execPath, [fileURLToPath(import.meta.url), '--child', '--size', String(size), '--dir', dir, '--model-path', model.path], {
        maxBuffer: 16 * 1024 * 1024,
        timeout: 4 * 3600_000,
      });
      const r = JSON.parse(stdout.trim().split('\n').at(-1)!) as { size: number; seconds: number; peakBytes: number; tiles: number; stages: Record<string, number> };
      const megapixels = (size * size) / 1e6;
      const row = {
        size: `${size}×${size}`,
        megapixels: Number(megapixels.toFixed(2)),
        inputMiB: Math.round(inputBytes / 1024 / 1024),
        tiles: r.tiles,
        seconds: Number(r.seconds.toFixed(2)),
        secondsPerMegapixel: Number((r.seconds / megapixels).toFixed(3)),
        peakMiB: Math.round(r.peakBytes / 1024 / 1024),
        stages: Object.fromEntries(Object.entries(r.stages).map(([k, v]) => [k, Number(v.toFixed(2))])),
      };
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
      await rm(scene.before, { force: true });
      await rm(scene.after, { force: true });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  process.stdout.write(`${JSON.stringify({ benchmark: 'scaling of one batch pair', model: which, rows, target: 'time linear in area; peak memory flat, ≤ 1.5 GB at 16k' }, null, 2)}\n`);
}

if (process.argv.includes('--child')) await child();
else await parent();
