// Versions brought with registerModelVersion are evaluated before any gate looks at them, as a client meets it through
// the gateway: a real SNUNet-CBAM exported by the project's trainer is uploaded and registered for a model whose
// frozen evaluation dataset is a synthetic dataset version; an inference worker runs it on every labelled pair, the
// version gets its evaluation, metrics and gate decision, and goes to STAGING when it passes. A dataset the model
// cannot take fails the evaluation, which says why, and leaves the version in NONE until it is evaluated again.
// (Evaluations whose request or result is lost: model-evaluation-lost.test.ts, on a platform of its own.)
import { randomBytes } from 'node:crypto';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureTrainedModel, findTrainerPython, type TrainedModel } from '../../lib/model/testing.js';
import { errorCodes, ok, startTestPlatform, uploadFile, type TestPlatform } from '../support/platform.js';

const python = await findTrainerPython();
const withTorch = python ? it : it.skip;
if (!python) console.warn('no Python interpreter with torch (set LCD_PYTHON): evaluation tests skipped');

let t: TestPlatform;
let model: TrainedModel;
let engineer: string;
let viewer: string;
const suffix = randomBytes(4).toString('hex');
// Queues of their own, for RabbitMQ servers shared without a virtual host per platform.
const queues = {
  MODEL_EVALUATION_REQUESTS_QUEUE: `inference.evaluate.test-${suffix}`,
  INFERENCE_EVALUATION_QUEUE: `inference.evaluate.test-${suffix}`,
  MODEL_EVALUATION_RESULTS_QUEUE: `models.evaluation-results.test-${suffix}`,
  DATASET_VERSION_RESOLUTION_QUEUE: `datasets.resolve-version.test-${suffix}`,
};

beforeAll(async () => {
  model = python ? await ensureTrainedModel() : { ok: false, reason: 'no torch' };
  t = await startTestPlatform({
    ...queues,
    LCD_PYTHON: python ?? undefined,
    // Low enough for the tiny test model on pairs it has not seen; the gate's own rules are tested in evaluation-gate.test.ts.
    GATE_MIN_F1: '0.3',
    GATE_MIN_IOU: '0.2',
  });
  engineer = await t.token(['ml-engineer'], 'acme', 'engineer-1');
  viewer = await t.token(['viewer'], 'acme', 'viewer-1');
}, 20 * 60_000);
afterAll(async () => {
  if (process.env.TEST_AMQP_URL && t) for (const q of new Set(Object.values(queues))) await t.platform.runtime.broker.deleteQueue(q).catch(() => undefined);
  await t?.close();
});

interface Version {
  id: string;
  stage: string;
  source: string;
  metrics: Record<string, number>;
  gate: { passed: boolean; reasons: string[] } | null;
  evaluation: {
    status: string;
    datasetVersionId: string | null;
    split: string | null;
    items: number | null;
    threshold: number | null;
    metrics: Record<string, number> | null;
    confusion: { tp: number; fp: number; fn: number; tn: number } | null;
    errorCode: string | null;
    error: string | null;
    evaluatedAt: string | null;
  } | null;
}
const VERSION_FIELDS = `id stage source metrics gate { passed reasons }
  evaluation { status datasetVersionId split items threshold metrics confusion { tp fp fn tn } errorCode error evaluatedAt }`;

async function evaluated(id: string, timeoutMs = 180_000): Promise<Version> {
  const started = Date.now();
  for (;;) {
    const version = ok(await t.gql<{ modelVersion: Version }>(`query($id: ID!) { modelVersion(id: $id) { ${VERSION_FIELDS} } }`, { id }, engineer)).modelVersion;
    if (version.evaluation && version.evaluation.status !== 'PENDING') return version;
    if (Date.now() - started > timeoutMs) throw new Error(`version ${id} still not evaluated: ${JSON.stringify(version.evaluation)}`);
    await new Promise((r) => setTimeout(r, 300));
  }
}

const setEvaluationDataset = (modelName: string, datasetVersionId: string | null, token = engineer) =>
  t.gql<{ setEvaluationDataset: { name: string; evaluationDatasetVersionId: string | null; evaluationDataset: { datasetVersionId: string; origin: string } | null } }>(
    `mutation($modelName: String!, $datasetVersionId: String) {
      setEvaluationDataset(modelName: $modelName, datasetVersionId: $datasetVersionId) { name evaluationDatasetVersionId evaluationDataset { datasetVersionId origin } }
    }`,
    { modelName, datasetVersionId },
    token,
  );

async function register(modelName: string): Promise<Version> {
  if (!model.ok) throw new Error(model.reason);
  const upload = await uploadFile(t, model.bytes, 'mine.onnx', 'application/octet-stream', engineer);
  return ok(
    await t.gql<{ registerModelVersion: Version }>(
      `mutation($input: RegisterModelVersionInput!) { registerModelVersion(input: $input) { ${VERSION_FIELDS} } }`,
      { input: { modelName, uploadId: upload } },
      engineer,
    ),
  ).registerModelVersion;
}

function greyPng(value: (x: number, y: number) => number): Buffer {
  const png = new PNG({ width: 64, height: 64, colorType: 0, inputColorType: 6 } as never);
  const grey = Buffer.alloc(64 * 64);
  for (let y = 0; y < 64; y++) for (let x = 0; x < 64; x++) grey[y * 64 + x] = value(x, y);
  // pngjs writes from RGBA; a grey PNG stores the first channel.
  for (let i = 0; i < 64 * 64; i++) png.data.set([grey[i]!, grey[i]!, grey[i]!, 255], i * 4);
  return PNG.sync.write(png, { colorType: 0, inputColorType: 6 } as never);
}

let syntheticVersionId = '';

describe('evaluating uploaded versions', () => {
  withTorch('evaluates a registered version on the frozen dataset, records the metrics and the gate, and stages it when it passes', async (ctx) => {
    if (!model.ok) return ctx.skip(model.reason);
    const made = ok(
      await t.gql<{ createSyntheticDatasetVersion: { id: string; labelledCount: number } }>(
        `mutation($input: CreateSyntheticDatasetVersionInput!) { createSyntheticDatasetVersion(input: $input) { id labelledCount } }`,
        { input: { name: 'evaluation-e2e', pairs: 6, size: 64, seed: 5 } },
        engineer,
      ),
    ).createSyntheticDatasetVersion;
    syntheticVersionId = made.id;

    // Chosen before the model has a version: a viewer may not choose it; an engineer may, and the model exists then.
    expect(errorCodes(await setEvaluationDataset('byo-evaluated', made.id, viewer))).toEqual(['FORBIDDEN']);
    expect(errorCodes(await setEvaluationDataset('byo-evaluated', 'f'.repeat(64)))).toEqual(['NOT_FOUND']);
    const chosen = ok(await setEvaluationDataset('byo-evaluated', made.id)).setEvaluationDataset;
    expect(chosen).toEqual({ name: 'byo-evaluated', evaluationDatasetVersionId: made.id, evaluationDataset: { datasetVersionId: made.id, origin: 'SET' } });

    const registered = await register('byo-evaluated');
    expect(registered).toMatchObject({ stage: 'NONE', source: 'UPLOADED', evaluation: { status: 'PENDING', datasetVersionId: made.id } });

    const version = await evaluated(registered.id);
    const evaluation = version.evaluation!;
    expect(evaluation).toMatchObject({ status: 'SUCCEEDED', datasetVersionId: made.id, split: 'all-labelled', items: 6, threshold: 0.5, errorCode: null, error: null });
    const { tp, fp, fn, tn } = evaluation.confusion!;
    expect(tp + fp + fn + tn).toBe(6 * 64 * 64);
    expect(evaluation.metrics!.f1).toBeCloseTo((2 * tp) / (2 * tp + fp + fn), 5);
    expect(evaluation.metrics!.iou).toBeCloseTo(tp / (tp + fp + fn), 5);
    // The uploaded version's metrics are its evaluation's; the gate read them.
    expect(version.metrics).toEqual(evaluation.metrics);
    expect(version.gate!.reasons[0]).toBe(`evaluated on dataset version ${made.id} (all its labelled items: it has no test split, 6 items)`);
    expect(version.gate!.reasons).toContain(`f1 ${evaluation.metrics!.f1.toFixed(4)} ≥ minimum 0.3000`);
    expect(version.gate!.passed).toBe(true);
    expect(version.stage).toBe('STAGING');

    const history = ok(
      await t.gql<{ registeredModel: { stageHistory: { versionId: string; toStage: string; changedBy: string; reason: string }[] } }>(
        `{ registeredModel(name: "byo-evaluated") { stageHistory { versionId toStage changedBy reason } } }`,
        {},
        engineer,
      ),
    ).registeredModel.stageHistory;
    expect(history).toEqual([{ versionId: version.id, toStage: 'STAGING', changedBy: 'evaluation-gate', reason: version.gate!.reasons.join('; ') }]);
  });

  withTorch('records a failed evaluation and leaves the version in NONE; evaluated again on a usable dataset, it passes', async (ctx) => {
    if (!model.ok) return ctx.skip(model.reason);
    expect(syntheticVersionId, 'needs the synthetic dataset of the first test').not.toBe('');
    // Grey images where the model takes three bands: a dataset version the datasets service accepts, the model cannot use.
    const before = await uploadFile(t, greyPng(() => 60), 'before.png', 'image/png', engineer);
    const after = await uploadFile(t, greyPng((x) => (x < 32 ? 60 : 200)), 'after.png', 'image/png', engineer);
    const label = await uploadFile(t, greyPng((x) => (x < 32 ? 0 : 255)), 'label.png', 'image/png', engineer);
    const dataset = ok(await t.gql<{ createDataset: { id: string } }>(`mutation { createDataset(input: { name: "grey-pairs" }) { id } }`, {}, engineer)).createDataset;
    const grey = ok(
      await t.gql<{ createDatasetVersion: { id: string } }>(
        `mutation($datasetId: ID!, $items: [DatasetItemInput!]!) { createDatasetVersion(datasetId: $datasetId, items: $items) { id } }`,
        { datasetId: dataset.id, items: [{ before, after, label }] },
        engineer,
      ),
    ).createDatasetVersion;
    ok(await setEvaluationDataset('byo-grey', grey.id));

    const registered = await register('byo-grey');
    const failed = await evaluated(registered.id);
    expect(failed).toMatchObject({ stage: 'NONE', metrics: {}, evaluation: { status: 'FAILED', datasetVersionId: grey.id, errorCode: 'BAND_COUNT', metrics: null, confusion: null } });
    expect(failed.evaluation!.error).toMatch(/^item 0: before image has 1 band\(s\); the model takes 3/);
    expect(failed.gate).toEqual({ passed: false, reasons: [`not evaluated: ${failed.evaluation!.error}`] });

    // Another dataset, and asked again: evaluated, gated, staged.
    ok(await setEvaluationDataset('byo-grey', syntheticVersionId));
    const again = ok(
      await t.gql<{ evaluateModelVersion: Version }>(`mutation($id: ID!) { evaluateModelVersion(id: $id) { ${VERSION_FIELDS} } }`, { id: registered.id }, engineer),
    ).evaluateModelVersion;
    expect(again.evaluation).toMatchObject({ status: 'PENDING', datasetVersionId: syntheticVersionId, errorCode: null });
    const passed = await evaluated(registered.id);
    expect(passed).toMatchObject({ stage: 'STAGING', gate: { passed: true }, evaluation: { status: 'SUCCEEDED', datasetVersionId: syntheticVersionId, items: 6 } });

    expect(errorCodes(await t.gql(`mutation($id: ID!) { evaluateModelVersion(id: $id) { id } }`, { id: registered.id }, viewer))).toEqual(['FORBIDDEN']);
  });

  it('leaves a version of a model with no evaluation dataset in NONE, and says why', async () => {
    const upload = await uploadFile(t, await (async () => {
      // Any file that passes the contract: the committed demo model.
      const demo = ok(await t.gql<{ registeredModel: { productionVersion: { artifactKey: string } } }>(`{ registeredModel(name: "lcd-demo") { productionVersion { artifactKey } } }`, {}, engineer));
      return t.platform.runtime.store.get(demo.registeredModel.productionVersion.artifactKey);
    })(), 'demo.onnx', 'application/octet-stream', engineer);
    const version = ok(
      await t.gql<{ registerModelVersion: Version }>(`mutation($input: RegisterModelVersionInput!) { registerModelVersion(input: $input) { ${VERSION_FIELDS} } }`, { input: { modelName: 'no-dataset', uploadId: upload } }, engineer),
    ).registerModelVersion;
    expect(version).toMatchObject({ stage: 'NONE', metrics: {}, evaluation: { status: 'FAILED', datasetVersionId: null, errorCode: 'NO_EVALUATION_DATASET' } });
    expect(version.gate!.passed).toBe(false);
    expect(version.gate!.reasons[0]).toMatch(/^not evaluated: no evaluation dataset: set one with setEvaluationDataset/);
  });
});
