// Evaluation of a model version on a dataset version, with the project's real trained model and the pairs it was
// trained on: the worker counts what the trainer's own evaluator counts, takes the test split when there is one,
// names the item and the problem when the model or an item is bad, and reports on the results queue over the broker.
import { execFile } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker, type Subscription } from '../../lib/broker/broker.js';
import { rawPng } from '../../lib/imaging/testing.js';
import { ensureTrainedModel, findTrainerPython, repoRoot, type TrainedModel } from '../../lib/model/testing.js';
import { createObjectStore, type ObjectStore } from '../../lib/storage/index.js';
import {
  EVALUATION_MESSAGE_TYPES,
  summarizeConfusion,
  type EvaluationRequest,
  type EvaluationResult,
} from '../../subgraphs/models/model-evaluation.contracts.js';
import { loadInferenceConfig } from './config.js';
import { consumeEvaluations, EvaluationError, ModelEvaluator } from './evaluation.js';

const run = promisify(execFile);

let model: TrainedModel;
let dir: string;
let store: ObjectStore;
let evaluator: ModelEvaluator;
let modelKey = '';
let modelSha = '';
/** The training pairs of the test model as stored dataset items (content-addressed keys). */
let items: { before: StoredFile; after: StoredFile; label: StoredFile | null; split?: string }[] = [];
const config = () => loadInferenceConfig({ INFERENCE_EXECUTION_PROVIDERS: 'cpu', INFERENCE_TMP_DIR: join(dir, 'tmp') });

interface StoredFile {
  key: string;
  sha256: string;
  size: number;
}

async function putContent(bytes: Buffer): Promise<StoredFile> {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const key = `datasets/acme/objects/${sha256}`;
  await store.put(key, bytes);
  return { key, sha256, size: bytes.length };
}

/** Stores a manifest as the datasets subgraph does and returns a request for it. */
async function requestFor(manifestItems: typeof items, overrides: Partial<EvaluationRequest> = {}): Promise<EvaluationRequest> {
  const bytes = Buffer.from(JSON.stringify({ datasetId: randomUUID(), items: manifestItems.map((i) => ({ width: 64, height: 64, bands: 3, ...i })) }));
  const datasetVersionId = createHash('sha256').update(bytes).digest('hex');
  const manifestKey = `datasets/acme/manifests/${datasetVersionId}.json`;
  await store.put(manifestKey, bytes);
  return {
    requestId: randomUUID(),
    modelVersionId: randomUUID(),
    modelName: 'byo',
    artifactKey: modelKey,
    sha256: modelSha,
    datasetVersionId,
    manifestKey,
    resultsQueue: 'models.evaluation-results',
    ...overrides,
  };
}

async function failure(promise: Promise<unknown>): Promise<{ code: string; message: string }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof EvaluationError) return { code: error.code, message: error.message };
    throw error;
  }
  throw new Error('expected the evaluation to fail');
}

beforeAll(async () => {
  model = await ensureTrainedModel();
  if (!model.ok) return;
  dir = await mkdtemp(join(tmpdir(), 'lcd-evaluation-'));
  store = createObjectStore({ url: undefined, localDir: join(dir, 'objects'), publicBaseUrl: 'http://127.0.0.1:1', signingSecret: randomBytes(32) });
  modelSha = createHash('sha256').update(model.bytes).digest('hex');
  modelKey = `models/acme/byo/${modelSha}.onnx`;
  await store.put(modelKey, model.bytes);
  const data = join(model.dir, 'data');
  const manifest = JSON.parse(await readFile(join(data, 'manifest.json'), 'utf8')) as { items: { before: string; after: string; label: string }[] };
  items = [];
  for (const item of manifest.items) {
    const [before, after, label] = await Promise.all([item.before, item.after, item.label].map(async (p) => putContent(await readFile(join(data, p)))));
    items.push({ before: before!, after: after!, label: label! });
  }
  evaluator = new ModelEvaluator(store, config());
}, 20 * 60_000);

afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

function requireModel(ctx: { skip: (note?: string) => void }) {
  if (!model.ok) ctx.skip(model.reason);
}

describe('evaluating a version on a dataset version', () => {
  it("counts what the trainer's own evaluator counts on the same pairs", async (ctx) => {
    requireModel(ctx);
    const python = await findTrainerPython();
    if (!python || !model.ok) return ctx.skip('no Python with torch for the reference evaluation');
    const outcome = await evaluator.evaluate(await requestFor(items));
    expect(outcome).toMatchObject({ split: 'all-labelled', items: items.length, threshold: 0.5 });
    const { tp, fp, fn, tn } = outcome.confusion;
    expect(tp + fp + fn + tn).toBe(items.length * 64 * 64);

    const cwd = join(repoRoot, 'training');
    const { stdout } = await run(python, ['-m', 'lcd_training.evaluate', '--checkpoint', model.checkpoint, '--manifest', join(model.dir, 'data', 'manifest.json'), '--split', 'all', '--device', 'cpu'], {
      cwd,
      env: { ...process.env, PYTHONPATH: cwd, OMP_NUM_THREADS: '1' },
      timeout: 5 * 60_000,
    });
    const reference = JSON.parse(stdout.trim().split('\n').at(-1)!) as { f1: number; iou: number; confusion: { tp: number; fp: number; fn: number; tn: number } };
    // onnxruntime and PyTorch differ in the last bits: a pixel right at the threshold may fall either way.
    const pixels = items.length * 64 * 64;
    for (const k of ['tp', 'fp', 'fn', 'tn'] as const) expect(Math.abs(outcome.confusion[k] - reference.confusion[k])).toBeLessThanOrEqual(pixels * 0.001);
    const metrics = summarizeConfusion(outcome.confusion);
    expect(metrics.f1).toBeCloseTo(reference.f1, 2);
    expect(metrics.iou).toBeCloseTo(reference.iou, 2);
    // A model trained on these pairs finds their changes.
    expect(metrics.f1).toBeGreaterThan(0.5);
  });

  it('takes only the test items when the version has a test split, and only labelled items', async (ctx) => {
    requireModel(ctx);
    const marked = items.map((item, i) => ({ ...item, split: i < 4 ? 'test' : 'train' }));
    const outcome = await evaluator.evaluate(await requestFor([...marked, { ...items[5]!, label: null }]));
    expect(outcome.split).toBe('test');
    expect(outcome.items).toBe(4);
    const { tp, fp, fn, tn } = outcome.confusion;
    expect(tp + fp + fn + tn).toBe(4 * 64 * 64);

    const unlabelled = await failure(evaluator.evaluate(await requestFor(items.map((i) => ({ ...i, label: null })))));
    expect(unlabelled.code).toBe('NO_LABELLED_ITEMS');
  });

  it('names the item and the problem: a label of the wrong size, a non-binary label, images the model cannot take', async (ctx) => {
    requireModel(ctx);
    const small = await putContent(rawPng({ width: 32, height: 32, bitDepth: 8, colorType: 0, scanlines: Buffer.alloc(32 * 32) }));
    const wrongSize = await failure(evaluator.evaluate(await requestFor([items[0]!, { ...items[1]!, label: small }])));
    expect(wrongSize).toEqual({ code: 'LABEL_SIZE', message: 'item 1: the label is 32×32 but the pair is 64×64' });

    const grey = await putContent(rawPng({ width: 64, height: 64, bitDepth: 8, colorType: 0, scanlines: Buffer.alloc(64 * 64, 128) }));
    const notBinary = await failure(evaluator.evaluate(await requestFor([{ ...items[0]!, label: grey }])));
    expect(notBinary.code).toBe('LABEL_NOT_BINARY');
    expect(notBinary.message).toMatch(/^item 0: the label is not binary/);

    // One band where the model takes three: the inference worker's own code for it.
    const bands = await failure(evaluator.evaluate(await requestFor([{ ...items[0]!, before: grey, after: grey }])));
    expect(bands.code).toBe('BAND_COUNT');
    expect(bands.message).toMatch(/^item 0: before image has 1 band\(s\); the model takes 3/);

    const gone = await failure(evaluator.evaluate(await requestFor([{ ...items[0]!, after: { ...items[0]!.after, key: 'datasets/acme/objects/missing' } }])));
    expect(gone).toEqual({ code: 'ITEM_INVALID', message: 'item 0: the after file is missing (datasets/acme/objects/missing)' });
  });

  it('loads only the exact registered file, and refuses a missing dataset', async (ctx) => {
    requireModel(ctx);
    const request = await requestFor(items.slice(0, 2));
    const tampered = await failure(evaluator.evaluate({ ...request, sha256: 'f'.repeat(64) }));
    expect(tampered.code).toBe('MODEL_INVALID');
    expect(tampered.message).toMatch(/has sha256 [0-9a-f]{64}, the registry says f{64}/);

    const junkKey = 'models/acme/byo/junk.onnx';
    const junk = randomBytes(2048);
    await store.put(junkKey, junk);
    const notOnnx = await failure(evaluator.evaluate({ ...request, artifactKey: junkKey, sha256: createHash('sha256').update(junk).digest('hex') }));
    expect(notOnnx.code).toBe('MODEL_INVALID');

    const noManifest = await failure(evaluator.evaluate({ ...request, manifestKey: 'datasets/acme/manifests/none.json' }));
    expect(noManifest.code).toBe('DATASET_NOT_FOUND');
  });
});

describe('the evaluation consumer', () => {
  let broker: Broker;
  let consumer: Subscription | null = null;
  let resultsSubscription: Subscription | null = null;
  const results: EvaluationResult[] = [];

  beforeAll(async () => {
    if (!model.ok) return;
    broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
    consumer = await consumeEvaluations({ broker, store, config: config(), log: pino({ level: 'silent' }) }, 'inference.evaluate.test');
    resultsSubscription = await broker.consume<EvaluationResult>('evaluation-results.test', async (d) => void results.push(d.envelope.payload));
  });
  afterAll(async () => {
    await consumer?.close();
    await resultsSubscription?.close();
    await broker?.close();
  });

  async function resultOf(requestId: string): Promise<EvaluationResult> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      const found = results.find((r) => r.requestId === requestId);
      if (found) return found;
      if (Date.now() > deadline) throw new Error(`no result for ${requestId}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  it('reports metrics and confusion counts, or the failure, on the results queue the request names', async (ctx) => {
    requireModel(ctx);
    const good = await requestFor(items.slice(0, 3), { resultsQueue: 'evaluation-results.test' });
    const bad = await requestFor(items.slice(0, 3), { resultsQueue: 'evaluation-results.test', sha256: '0'.repeat(64) });
    for (const request of [good, bad]) await broker.send('inference.evaluate.test', createEnvelope(EVALUATION_MESSAGE_TYPES.request, request, { tenant: 'acme' }));

    const ok = await resultOf(good.requestId);
    expect(ok).toMatchObject({ ok: true, modelVersionId: good.modelVersionId, datasetVersionId: good.datasetVersionId, split: 'all-labelled', items: 3, threshold: 0.5 });
    if (!ok.ok) return;
    expect(ok.metrics).toEqual(summarizeConfusion(ok.confusion));
    expect(ok.confusion.tp + ok.confusion.fp + ok.confusion.fn + ok.confusion.tn).toBe(3 * 64 * 64);

    expect(await resultOf(bad.requestId)).toMatchObject({ ok: false, code: 'MODEL_INVALID' });
  });
});

describe('summarizeConfusion', () => {
  it("computes the trainer's metrics, with nothing to find and nothing found counting as perfect", () => {
    expect(summarizeConfusion({ tp: 862, fp: 88, fn: 560, tn: 18970 })).toEqual({
      precision: 0.907368,
      recall: 0.606188,
      f1: 0.726813,
      iou: 0.570861,
      overallAccuracy: 0.968359,
      kappa: 0.710724,
    });
    expect(summarizeConfusion({ tp: 0, fp: 0, fn: 0, tn: 100 })).toMatchObject({ precision: 1, recall: 1, f1: 1, iou: 1, overallAccuracy: 1 });
    expect(summarizeConfusion({ tp: 0, fp: 5, fn: 0, tn: 95 })).toMatchObject({ precision: 0, recall: 0, f1: 0, iou: 0 });
  });
});
