// Test support for model files: a protobuf encoder that builds small ONNX ModelProtos with chosen inputs, outputs and
// metadata (for the contract's failure cases), and a real SNUNet-CBAM model exported by the project's own trainer,
// cached under the OS temp folder by the hash of the training sources. Imported by tests and benchmarks only.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const compiledOrSource = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** The repository root, also when this runs compiled from dist/ (benchmarks). */
export const repoRoot = basename(compiledOrSource) === 'dist' ? dirname(compiledOrSource) : compiledOrSource;

/**
 * The real change-detection sample pairs (never copied into the repository): `LCD_SHARED_DATA` when set, else the
 * nearest `shared/data` beside the repository or beside one of its parent folders, so that a clone in a subfolder of
 * the workspace finds them too.
 */
export const sharedData = findSharedData();

function findSharedData(): string {
  if (process.env.LCD_SHARED_DATA) return resolve(process.env.LCD_SHARED_DATA);
  for (let dir = dirname(repoRoot); ; dir = dirname(dir)) {
    const candidate = join(dir, 'shared', 'data');
    if (existsSync(candidate)) return candidate;
    if (dirname(dir) === dir) return resolve(repoRoot, '..', 'shared', 'data');
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// ONNX encoder (only what the tests need)
// ---------------------------------------------------------------------------------------------------------------------
function varint(value: number): number[] {
  const out: number[] = [];
  let v = value;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}
const tag = (field: number, wire: number) => varint(field * 8 + wire);
const lenField = (field: number, payload: Uint8Array | number[]): number[] => [...tag(field, 2), ...varint(payload.length), ...payload];
const strField = (field: number, s: string) => lenField(field, [...Buffer.from(s, 'utf8')]);
const intField = (field: number, v: number) => [...tag(field, 0), ...varint(v)];

const ELEM: Record<string, number> = { float32: 1, uint8: 2, int64: 7, float64: 11, float16: 10 };

export interface FakeTensor {
  name: string;
  dtype?: string;
  shape?: (number | string)[];
}

function valueInfo(t: FakeTensor): number[] {
  const dims = (t.shape ?? []).flatMap((d) => lenField(1, typeof d === 'number' ? intField(1, d) : strField(2, d)));
  const tensorType = [...intField(1, ELEM[t.dtype ?? 'float32'] ?? 1), ...lenField(2, dims)];
  return [...strField(1, t.name), ...lenField(2, lenField(1, tensorType))];
}

export interface FakeModelOptions {
  inputs?: FakeTensor[];
  outputs?: FakeTensor[];
  metadata?: Record<string, string>;
  /** Initializers (weights) by name; IR < 4 also lists them among the inputs. */
  initializers?: string[];
  irVersion?: number | null;
  nodes?: number;
}

export const CONTRACT_METADATA: Readonly<Record<string, string>> = Object.freeze({
  'lcd.contract_version': '1',
  'lcd.architecture': 'SNUNet-CBAM',
  'lcd.base_width': '8',
  'lcd.bands': '3',
  'lcd.band_names': '["red","green","blue"]',
  'lcd.normalization': '{"mean":[0.4,0.4,0.4],"std":[0.2,0.2,0.2],"scale":255}',
  'lcd.tile_size': '64',
  'lcd.size_multiple': '16',
  'lcd.threshold': '0.5',
  'lcd.output_activation': 'sigmoid',
  'lcd.dataset_version': 'synthetic-v1-test',
  'lcd.config_hash': 'a'.repeat(64),
  'lcd.code_version': 'src-sha256:test',
  'lcd.embedding_dim': '32',
});

/** A ModelProto with an Identity-free fake graph: enough for the metadata reader and the contract check. */
export function fakeOnnxModel(options: FakeModelOptions = {}): Uint8Array {
  const inputs = options.inputs ?? [
    { name: 'before', shape: ['batch', 3, 'height', 'width'] },
    { name: 'after', shape: ['batch', 3, 'height', 'width'] },
  ];
  const outputs = options.outputs ?? [
    { name: 'change_logits', shape: ['batch', 1, 'height', 'width'] },
    { name: 'embedding', shape: ['batch', 32] },
  ];
  const metadata = options.metadata ?? CONTRACT_METADATA;
  const graph: number[] = [];
  for (let i = 0; i < (options.nodes ?? 1); i++) graph.push(...lenField(1, [...strField(4, 'Conv'), ...strField(3, `node${i}`)]));
  graph.push(...strField(2, 'fake'));
  for (const name of options.initializers ?? []) graph.push(...lenField(5, [...intField(2, 1), ...strField(8, name), ...lenField(9, [0, 0, 0, 0])]));
  for (const t of inputs) graph.push(...lenField(11, valueInfo(t)));
  for (const t of outputs) graph.push(...lenField(12, valueInfo(t)));
  const model: number[] = [];
  if (options.irVersion !== null) model.push(...intField(1, options.irVersion ?? 8));
  model.push(...strField(2, 'pytorch'), ...strField(3, '1.13'));
  model.push(...lenField(8, [...strField(1, ''), ...intField(2, 17)]));
  model.push(...lenField(7, graph));
  for (const [key, value] of Object.entries(metadata)) model.push(...lenField(14, [...strField(1, key), ...strField(2, value)]));
  return Uint8Array.from(model);
}

// ---------------------------------------------------------------------------------------------------------------------
// A real model from the project's trainer
// ---------------------------------------------------------------------------------------------------------------------
export interface TrainedModelOptions {
  baseWidth: number;
  tileSize: number;
  pairs: number;
  size: number;
  epochs: number;
  learningRate: number;
}

/** Small and fast (about 40 s on 2 cores, once): a usable change detector on 64×64 synthetic pairs. */
export const TEST_MODEL: TrainedModelOptions = { baseWidth: 8, tileSize: 64, pairs: 24, size: 64, epochs: 6, learningRate: 0.01 };
/** The architecture's working size for benchmarks (weights barely trained: timing does not depend on them). */
export const BENCH_MODEL: TrainedModelOptions = { baseWidth: 16, tileSize: 256, pairs: 4, size: 256, epochs: 1, learningRate: 0.001 };

export type TrainedModel = { ok: true; path: string; bytes: Buffer; checkpoint: string; dir: string } | { ok: false; reason: string };

async function importsTorch(python: string): Promise<boolean> {
  try {
    await run(python, ['-c', 'import torch'], { timeout: 60_000 });
    return true;
  } catch {
    return false;
  }
}

/** LCD_PYTHON, else the first of /usr/bin/python3 and python3 that imports torch; null when none does. */
export async function findTrainerPython(env: Record<string, string | undefined> = process.env): Promise<string | null> {
  const candidates = env.LCD_PYTHON ? [env.LCD_PYTHON] : ['/usr/bin/python3', 'python3'];
  for (const python of candidates) {
    if ((python.includes('/') && !existsSync(python)) || !(await importsTorch(python))) continue;
    return python;
  }
  return null;
}

async function trainingSourcesHash(options: TrainedModelOptions): Promise<string> {
  const dir = join(repoRoot, 'training', 'lcd_training');
  const hash = createHash('sha256').update(JSON.stringify(options));
  for (const name of (await readdir(dir)).filter((n) => n.endsWith('.py')).sort()) {
    hash.update(name).update(await readFile(join(dir, name)));
  }
  return hash.digest('hex').slice(0, 16);
}

async function waitForLock(lock: string, timeoutMs: number): Promise<void> {
  const started = Date.now();
  for (;;) {
    try {
      await mkdir(lock);
      return;
    } catch {
      const info = await stat(lock).catch(() => null);
      // A lock older than the timeout belongs to a run that died.
      if (info && Date.now() - info.mtimeMs > timeoutMs) await rm(lock, { recursive: true, force: true });
      if (Date.now() - started > timeoutMs) throw new Error(`timed out waiting for ${lock}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}

/**
 * The ONNX export of a model trained by `training/lcd_training` with `options`, trained on first use and cached in
 * `$TMPDIR/lcd-test-models/<hash of options and training sources>/`. `{ok: false, reason}` when no Python with torch is
 * available, for tests to skip with that reason.
 */
export async function ensureTrainedModel(options: TrainedModelOptions = TEST_MODEL): Promise<TrainedModel> {
  const key = await trainingSourcesHash(options);
  const dir = join(tmpdir(), 'lcd-test-models', key);
  const path = join(dir, 'run', 'model.onnx');
  const checkpoint = join(dir, 'run', 'best.pt');
  const done = async (): Promise<TrainedModel> => ({ ok: true, path, bytes: await readFile(path), checkpoint, dir });
  if (existsSync(path)) return done();
  const python = await findTrainerPython();
  if (!python) return { ok: false, reason: 'no Python interpreter with torch (set LCD_PYTHON): cannot train the test model' };
  await mkdir(dirname(dir), { recursive: true });
  const lock = `${dir}.lock`;
  await waitForLock(lock, 15 * 60_000);
  try {
    if (existsSync(path)) return await done();
    const work = `${dir}.tmp-${process.pid}`;
    await rm(work, { recursive: true, force: true });
    await mkdir(work, { recursive: true });
    const cwd = join(repoRoot, 'training');
    const env = { ...process.env, PYTHONPATH: cwd, OMP_NUM_THREADS: process.env.OMP_NUM_THREADS ?? '2' };
    const data = join(work, 'data');
    await run(python, ['-m', 'lcd_training.synthetic', '--out', data, '--pairs', String(options.pairs), '--size', String(options.size), '--seed', '1', '--nuisance-only-fraction', '0'], {
      cwd,
      env,
      timeout: 10 * 60_000,
    });
    const config = {
      epochs: options.epochs,
      baseWidth: options.baseWidth,
      batchSize: 4,
      tileSize: options.tileSize,
      valFraction: 0.2,
      learningRate: options.learningRate,
      seed: 42,
    };
    try {
      await run(python, ['-m', 'lcd_training.train', '--manifest', join(data, 'manifest.json'), '--out', join(work, 'run'), '--config', JSON.stringify(config)], {
        cwd,
        env,
        timeout: 14 * 60_000,
        maxBuffer: 64 * 1024 * 1024,
      });
    } catch (error) {
      const stdout = String((error as { stdout?: unknown }).stdout ?? '');
      return { ok: false, reason: `the trainer failed: ${stdout.split('\n').filter(Boolean).at(-1) ?? (error as Error).message}` };
    }
    await writeFile(join(work, 'options.json'), JSON.stringify(options));
    await rm(dir, { recursive: true, force: true });
    await rename(work, dir);
    return await done();
  } finally {
    await rm(lock, { recursive: true, force: true });
  }
}
