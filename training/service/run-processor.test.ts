// One run through the training service's processor, against an in-process broker and a local object store: the bad
// inputs a run must survive (each fails with the trainer's reason and its artifacts kept), the export checks
// (contract and parity with onnxruntime-node), and what is reported to the models subgraph.
import { execFile } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, MemoryBrokerServer, type Broker } from '../../lib/broker/broker.js';
import { findTrainerPython } from '../../lib/model/testing.js';
import { LocalObjectStore } from '../../lib/storage/index.js';
import type { TrainingEvent, TrainingRequest } from '../../subgraphs/models/training.contracts.js';
import { loadTrainingConfig, type TrainingConfig } from './config.js';
import { DatasetCache } from './dataset-cache.js';
import { defaultDemoModelDir } from '../../subgraphs/models/demo-model.js';
import { processTrainingRun, type RunProcessorDeps } from './run-processor.js';
import { findTrainingDir } from './python-runtime.js';

const python = await findTrainerPython();
const fixtures = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');
const demoDir = defaultDemoModelDir();
const hasParity = demoDir !== null && existsSync(join(demoDir, 'parity', 'index.json'));

let dir: string;
let store: LocalObjectStore;
let broker: Broker;
let config: TrainingConfig;
const reports: TrainingEvent[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lcd-run-processor-'));
  store = new LocalObjectStore({ root: join(dir, 'objects'), publicBaseUrl: 'http://127.0.0.1:1', signingSecret: Buffer.alloc(32, 7) });
  broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
  config = loadTrainingConfig({ STATE_DIR: dir, TRAINING_EVENTS_QUEUE: 'events', TRAINING_METRICS_FLUSH_MS: '20', TRAINING_KILL_GRACE_SECONDS: '2' });
  await broker.consume<TrainingEvent>('events', async (d) => {
    reports.push(d.envelope.payload);
  });
});
afterAll(async () => {
  await broker?.close();
  await rm(dir, { recursive: true, force: true });
});

function png(size: [number, number], bands: 1 | 3, value: (x: number, y: number) => number): Buffer {
  const [w, h] = size;
  const image = new PNG({ width: w, height: h, colorType: bands === 1 ? 0 : 2, inputColorType: bands === 1 ? 0 : 2, inputHasAlpha: false });
  const data = Buffer.alloc(w * h * bands);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) for (let b = 0; b < bands; b++) data[(y * w + x) * bands + b] = value(x, y);
  image.data = data;
  return PNG.sync.write(image, { colorType: bands === 1 ? 0 : 2, inputColorType: bands === 1 ? 0 : 2, inputHasAlpha: false });
}

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A dataset version as the datasets subgraph stores it: content-addressed files and a manifest named by its hash. */
async function storeVersion(items: { before: Buffer; after: Buffer; label: Buffer | null }[]): Promise<{ versionId: string; manifestKey: string }> {
  const file = async (bytes: Buffer) => {
    const key = `datasets/t/objects/${sha(bytes)}`;
    await store.put(key, bytes);
    return { sha256: sha(bytes), size: bytes.length, key };
  };
  const manifest = {
    datasetId: randomUUID(),
    items: await Promise.all(
      items.map(async (item) => ({ before: await file(item.before), after: await file(item.after), label: item.label ? await file(item.label) : null, width: 32, height: 32, bands: 3 })),
    ),
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const versionId = sha(bytes);
  const manifestKey = `datasets/t/${manifest.datasetId}/manifests/${versionId}.json`;
  await store.put(manifestKey, bytes);
  return { versionId, manifestKey };
}

const good = () => ({
  before: png([32, 32], 3, (x) => x * 4),
  after: png([32, 32], 3, (x, y) => (x > 10 && y > 10 && x < 20 && y < 20 ? 250 : x * 4)),
  label: png([32, 32], 1, (x, y) => (x > 10 && y > 10 && x < 20 && y < 20 ? 255 : 0)),
});

function deps(overrides: Partial<RunProcessorDeps> = {}): RunProcessorDeps {
  return {
    config,
    store,
    broker,
    cache: new DatasetCache(store, config.cacheDir),
    python: python ?? 'python3',
    trainingDir: findTrainingDir(),
    log: pino({ level: 'silent' }),
    ...overrides,
  };
}

async function run(version: { versionId: string; manifestKey: string }, trainerConfig: Record<string, unknown>, overrides: Partial<RunProcessorDeps> = {}) {
  const request: TrainingRequest = {
    runId: randomUUID(),
    tenant: 't',
    modelName: 'm',
    datasetVersionId: version.versionId,
    manifestKey: version.manifestKey,
    config: trainerConfig,
    timeLimitSeconds: 120,
    requestedBy: 'tester',
  };
  const result = await processTrainingRun(deps(overrides), request, { attempt: 1, signal: new AbortController().signal });
  await expect.poll(() => reports.some((r) => r.runId === request.runId && ['failed', 'succeeded', 'cancelled'].includes(r.kind))).toBe(true);
  return { result, reports: reports.filter((r) => r.runId === request.runId) };
}

const TINY = { epochs: 1, baseWidth: 4, batchSize: 2, tileSize: 32, valFraction: 0, numThreads: 1 };

describe('a run that cannot train', () => {
  it('fails with a clear message when PyTorch cannot be imported', async () => {
    const { result, reports } = await run(await storeVersion([good()]), TINY, { python: '/nonexistent/python3' });
    expect(result).toMatchObject({ outcome: 'failed', code: 'pytorch_unavailable' });
    expect(result.message).toMatch(/PyTorch cannot be imported by \/nonexistent\/python3 .*set LCD_PYTHON/);
    expect(reports.map((r) => r.kind)).toEqual(['started', 'failed']);
  });

  it('fails when the manifest is missing or does not hash to the version id', async () => {
    const missing = await run({ versionId: 'a'.repeat(64), manifestKey: 'datasets/t/nope.json' }, TINY);
    expect(missing.result).toMatchObject({ outcome: 'failed', code: 'dataset_unavailable' });
    await store.put('datasets/t/swapped.json', Buffer.from('{"datasetId":"x","items":[]}'));
    const swapped = await run({ versionId: 'b'.repeat(64), manifestKey: 'datasets/t/swapped.json' }, TINY);
    expect(swapped.result.message).toMatch(/does not match dataset version/);
  });
});

describe.skipIf(!python)('bad data, refused by the trainer with the item named', () => {
  const cases: [string, () => Promise<{ versionId: string; manifestKey: string }>, string, RegExp][] = [
    ['an empty dataset version', () => storeVersion([]), 'empty_dataset', /dataset is empty/],
    ['a missing label', () => storeVersion([{ ...good(), label: null }]), 'missing_label', /items\[0\].*missing label/],
    ['a non-binary label', () => storeVersion([{ ...good(), label: png([32, 32], 1, (x) => x) }]), 'non_binary_label', /non-binary label/],
    ['before and after of different sizes', () => storeVersion([{ ...good(), after: png([24, 32], 3, () => 9) }]), 'size_mismatch', /size mismatch: before is 32x32x3 but after is 32x24x3/],
  ];
  for (const [what, make, code, message] of cases) {
    it(`fails on ${what}: ${code}`, async () => {
      const { result, reports } = await run(await make(), TINY);
      expect(result).toMatchObject({ outcome: 'failed', code });
      expect(result.message).toMatch(message);
      // The log and config are kept for inspection.
      const artifacts = reports.find((r) => r.kind === 'artifacts');
      expect(artifacts?.kind === 'artifacts' && artifacts.logKey).toMatch(/trainer\.log$/);
      expect(artifacts?.kind === 'artifacts' && artifacts.artifacts.map((a) => a.name)).toContain('config.json');
    });
  }

  it('fails on NaN in a band: nan_in_bands', async () => {
    // Float TIFFs carry NaN (PNG and JPEG cannot); written with PIL, read by the trainer whatever the file is named.
    const script = 'import io,sys,numpy as np\nfrom PIL import Image\na=np.zeros((32,32),np.float32)\na[3,4]=np.nan\nb=io.BytesIO()\nImage.fromarray(a,"F").save(b,format="TIFF")\nsys.stdout.buffer.write(b.getvalue())';
    const { stdout } = await promisify(execFile)(python!, ['-c', script], { encoding: 'buffer' });
    const tiff = stdout as unknown as Buffer;
    const clean = Buffer.from(tiff);
    const { result } = await run(await storeVersion([{ before: tiff, after: clean, label: png([32, 32], 1, () => 0) }]), TINY);
    expect(result).toMatchObject({ outcome: 'failed', code: 'nan_in_bands' });
    expect(result.message).toMatch(/NaN or infinite values in before image band\(s\) \[0\]/);
  });
});

describe.skipIf(!python)('the export checks', () => {
  const fakeDeps = { trainingDir: fixtures, trainerModule: 'fake_trainer' };

  it('refuse a model.onnx that is not a model, keeping it as a run artifact only', async () => {
    const { result, reports } = await run(await storeVersion([good()]), { mode: 'bad-onnx' }, fakeDeps);
    expect(result).toMatchObject({ outcome: 'failed', code: 'contract_violation' });
    expect(result.message).toMatch(/not an ONNX model/);
    const artifacts = reports.find((r) => r.kind === 'artifacts');
    const onnx = artifacts?.kind === 'artifacts' ? artifacts.artifacts.find((a) => a.name === 'model.onnx') : undefined;
    expect(onnx?.key).toMatch(/^training\/t\/.+\/model\.onnx$/);
  });

  it.skipIf(!hasParity)('accept the demo model with its parity tensors and report a registration', async () => {
    const { result, reports } = await run(await storeVersion([good()]), { mode: 'export', model: join(demoDir!, 'model.onnx'), parity: join(demoDir!, 'parity') }, fakeDeps);
    expect(result.outcome).toBe('succeeded');
    const succeeded = reports.find((r) => r.kind === 'succeeded');
    expect(succeeded?.kind === 'succeeded' && succeeded.registration).toMatchObject({
      sha256: sha(await readFile(join(demoDir!, 'model.onnx'))),
      artifactKey: expect.stringMatching(/^models\/t\/m\/[0-9a-f]{64}\.onnx$/),
      metrics: { f1: 0.85, iou: 0.74 },
      referenceStatsKey: expect.stringMatching(/reference_stats\.json$/),
      weightsSha256: 'cd'.repeat(32),
    });
    expect(succeeded?.kind === 'succeeded' && succeeded.registration.parityMaxAbsDiff).toBeLessThan(1e-3);
    expect(reports.map((r) => r.kind)).toEqual(['started', 'environment', 'metrics', 'artifacts', 'succeeded']);
  });

  it.skipIf(!hasParity)('refuse an export whose onnxruntime output differs from PyTorch beyond the tolerance', async () => {
    const { result } = await run(await storeVersion([good()]), { mode: 'export', model: join(demoDir!, 'model.onnx'), parity: join(demoDir!, 'parity'), perturb: 0.01 }, fakeDeps);
    expect(result).toMatchObject({ outcome: 'failed', code: 'parity_mismatch' });
    expect(result.message).toMatch(/max \|difference\| 1\.00e-2 \(change_logits\)/);
  });
});
