// The training pipeline as a client meets it, through the gateway: a synthetic dataset version, training runs of a
// tiny SNUNet-CBAM on it (metrics, artifacts, the registered version, the evaluation gate, reproducibility), runs that
// are cancelled, fail on a bad config or pass their time limit, bring-your-own ONNX registration with its refusals,
// stage transitions and rollback, the MLflow mirror, and the demo model every tenant sees from the start.
// Training needs PyTorch: without it those tests are skipped with the reason.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findTrainerPython } from '../../lib/model/testing.js';
import { FakeMlflowServer } from '../../subgraphs/models/mlflow-fake-server.js';
import { errorCodes, ok, startTestPlatform, uploadFile, type TestPlatform } from '../support/platform.js';

const python = await findTrainerPython();
const NO_TORCH = python ? null : 'no Python interpreter with torch (set LCD_PYTHON): training tests skipped';
const withTorch = python ? it : it.skip;
if (NO_TORCH) console.warn(NO_TORCH);

let t: TestPlatform;
let mlflow: FakeMlflowServer;
const suffix = randomBytes(4).toString('hex');
const queues = {
  TRAINING_REQUESTS_QUEUE: `training.requests.test-${suffix}`,
  TRAINING_EVENTS_QUEUE: `models.training-events.test-${suffix}`,
  DATASET_VERSION_RESOLUTION_QUEUE: `datasets.resolve-version.test-${suffix}`,
  MLFLOW_MIRROR_QUEUE: `models.mlflow-mirror.test-${suffix}`,
};
let engineer: string;
let approver: string;

/** A tiny configuration: seconds on two cores. */
const TINY = { epochs: 2, baseWidth: 8, batchSize: 4, learningRate: 0.01, seed: 11, tileSize: 64, valFraction: 0.25, numThreads: 1 };

beforeAll(async () => {
  mlflow = new FakeMlflowServer();
  await mlflow.start();
  t = await startTestPlatform({
    ...queues,
    LCD_PYTHON: python ?? undefined,
    // Every tiny model passes the gate; the gate's own rules are tested in subgraphs/models/evaluation-gate.test.ts.
    GATE_MIN_F1: '0',
    GATE_MIN_IOU: '0',
    GATE_MAX_REGRESSION: '1',
    TRAINING_KILL_GRACE_SECONDS: '3',
    TRAINING_METRICS_FLUSH_MS: '200',
    MLFLOW_TRACKING_URI: mlflow.url,
  });
  engineer = await t.token(['ml-engineer'], 'acme', 'engineer-1');
  approver = await t.token(['approver'], 'acme', 'approver-1');
});
afterAll(async () => {
  if (process.env.TEST_AMQP_URL && t) for (const q of Object.values(queues)) await t.platform.runtime.broker.deleteQueue(q).catch(() => undefined);
  await t?.close();
  await mlflow?.close();
});

interface Run {
  id: string;
  status: string;
  error: string | null;
  errorCode: string | null;
  params: Record<string, unknown>;
  codeVersion: string;
  weightsSha256: string | null;
  environment: Record<string, unknown> | null;
  cancelRequested: boolean;
  logKey: string | null;
  artifacts: { name: string; key: string; byteSize: number; sha256: string }[];
  metrics: { name: string; value: number; step: number }[];
  modelVersion: { id: string; version: number; stage: string; sha256: string; artifactKey: string; metrics: Record<string, number>; gate: { passed: boolean; reasons: string[] } | null } | null;
}

const RUN_FIELDS = `id status error errorCode params codeVersion weightsSha256 environment cancelRequested logKey
  artifacts { name key byteSize sha256 } metrics { name value step }
  modelVersion { id version stage sha256 artifactKey metrics gate { passed reasons } }`;

async function getRun(id: string): Promise<Run> {
  return ok(await t.gql<{ trainingRun: Run }>(`query($id: ID!) { trainingRun(id: $id) { ${RUN_FIELDS} } }`, { id }, engineer)).trainingRun;
}

async function waitFor(id: string, done: (run: Run) => boolean, timeoutMs = 150_000): Promise<Run> {
  const started = Date.now();
  for (;;) {
    const run = await getRun(id);
    if (done(run)) return run;
    if (Date.now() - started > timeoutMs) throw new Error(`run ${id} still ${run.status} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 300));
  }
}
const finished = (run: Run) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(run.status);

async function startTraining(config: Record<string, unknown>, options: { modelName?: string; idempotencyKey?: string; datasetVersionId?: string } = {}) {
  return t.gql<{ startTraining: Run }>(
    `mutation($input: StartTrainingInput!) { startTraining(input: $input) { ${RUN_FIELDS} } }`,
    { input: { datasetVersionId: options.datasetVersionId ?? datasetVersionId, modelName: options.modelName ?? 'e2e-snunet', config, idempotencyKey: options.idempotencyKey } },
    engineer,
  );
}

let datasetVersionId = '';
let firstRun: Run;

describe('synthetic dataset versions', () => {
  it('generates pairs with the project generator, stored content-addressed, with the generator parameters', async () => {
    const query = `mutation($input: CreateSyntheticDatasetVersionInput!) {
      createSyntheticDatasetVersion(input: $input) { id itemCount labelledCount synthetic dataset { name } }
    }`;
    const input = { name: 'synthetic-e2e', pairs: 12, size: 64, seed: 7 };
    const made = ok(await t.gql<{ createSyntheticDatasetVersion: { id: string; itemCount: number; labelledCount: number; synthetic: Record<string, unknown>; dataset: { name: string } } }>(query, { input }, engineer))
      .createSyntheticDatasetVersion;
    expect(made).toMatchObject({ itemCount: 12, labelledCount: 12, dataset: { name: 'synthetic-e2e' } });
    expect(made.synthetic).toMatchObject({ generator: 'lcd_training.synthetic', pairs: 12, size: 64, seed: 7 });
    datasetVersionId = made.id;
    // Content-addressed: the same request gives the same version.
    const again = ok(await t.gql<{ createSyntheticDatasetVersion: { id: string } }>(query, { input }, engineer)).createSyntheticDatasetVersion;
    expect(again.id).toBe(made.id);
    // Bad sizes are refused before anything runs; a viewer may not generate at all.
    expect(errorCodes(await t.gql(query, { input: { ...input, size: 8 } }, engineer))).toEqual(['BAD_USER_INPUT']);
    expect(errorCodes(await t.gql(query, { input }, await t.token(['viewer'])))).toEqual(['FORBIDDEN']);
  });
});

describe('training runs', () => {
  withTorch('train a tiny model end to end: metrics, artifacts in storage, a registered version and the gate decision', async () => {
    const started = ok(await startTraining(TINY, { idempotencyKey: `first-${suffix}` })).startTraining;
    expect(started.status).toBe('QUEUED');
    expect(started.params).toEqual(TINY);
    // Repeating the start with its key returns the same run.
    expect(ok(await startTraining(TINY, { idempotencyKey: `first-${suffix}` })).startTraining.id).toBe(started.id);

    const run = await waitFor(started.id, finished);
    expect(run.error).toBeNull();
    expect(run.status).toBe('SUCCEEDED');
    const names = new Set(run.metrics.map((m) => m.name));
    for (const name of ['train/loss', 'train/lr', 'epoch/train_loss', 'val/f1', 'val/iou', 'eval/f1', 'eval/iou']) expect(names, name).toContain(name);
    expect(run.metrics.filter((m) => m.name === 'val/f1').map((m) => m.step)).toEqual([1, 2]);

    const artifacts = Object.fromEntries(run.artifacts.map((a) => [a.name, a]));
    for (const name of ['model.onnx', 'best.pt', 'evaluation.json', 'reference_stats.json', 'parity/index.json', 'config.json']) expect(artifacts[name], name).toBeDefined();
    for (const a of run.artifacts) expect((await t.platform.runtime.store.head(a.key))?.size, a.key).toBe(a.byteSize);
    expect(run.logKey).toMatch(/trainer\.log$/);

    // Reproducibility facts: code version, resolved config, weights hash.
    expect(run.codeVersion).not.toMatch(/pending/);
    expect(run.environment).toMatchObject({ device: 'cpu', threads: 1, resolvedConfig: expect.objectContaining({ seed: 11, epochs: 2 }) });
    expect(run.weightsSha256).toMatch(/^[0-9a-f]{64}$/);

    const version = run.modelVersion!;
    expect(version.sha256).toBe(artifacts['model.onnx']!.sha256);
    expect(version.artifactKey).toBe(artifacts['model.onnx']!.key);
    expect(version.metrics).toMatchObject({ f1: expect.any(Number), iou: expect.any(Number) });
    expect(version.gate?.passed).toBe(true);
    expect(version.stage).toBe('STAGING');
    firstRun = run;
  });

  withTorch('give the same weights hash and metrics for the same dataset version, config and seed', async () => {
    expect(firstRun, 'needs the first run').toBeDefined();
    const again = await waitFor(ok(await startTraining(TINY)).startTraining.id, finished);
    expect(again.status).toBe('SUCCEEDED');
    expect(again.weightsSha256).toBe(firstRun.weightsSha256);
    expect(again.modelVersion!.sha256).toBe(firstRun.modelVersion!.sha256);
    const evalOf = (r: Run) => r.metrics.filter((m) => m.name.startsWith('eval/')).map((m) => [m.name, m.value]);
    expect(evalOf(again)).toEqual(evalOf(firstRun));
  });

  withTorch('fail on a config the trainer refuses, naming the key, with the artifacts kept', async () => {
    const run = await waitFor(ok(await startTraining({ ...TINY, baseWidth: 7 })).startTraining.id, finished);
    expect(run.status).toBe('FAILED');
    expect(run.errorCode).toBe('invalid_config');
    expect(run.error).toMatch(/baseWidth/);
    expect(run.modelVersion).toBeNull();
    expect(run.logKey).not.toBeNull();
    expect(run.artifacts.map((a) => a.name)).toContain('config.json');
  });

  withTorch('stop a run that passes its time limit and fail it with that reason', async () => {
    const run = await waitFor(ok(await startTraining({ ...TINY, epochs: 500, timeLimitSeconds: 2 })).startTraining.id, finished);
    expect(run.status).toBe('FAILED');
    expect(run.errorCode).toBe('time_limit');
    expect(run.error).toMatch(/time limit of 2 s/);
    expect(run.params.timeLimitSeconds).toBe(2);
  });

  withTorch('cancel a queued run at once and a running one once its trainer has stopped', async () => {
    const long = ok(await startTraining({ ...TINY, epochs: 500 })).startTraining;
    const queued = ok(await startTraining({ ...TINY, epochs: 500 })).startTraining;
    await waitFor(long.id, (r) => r.status === 'RUNNING' && r.environment !== null);
    // The service takes one run at a time: the second one waits in the queue.
    const cancelQueued = ok(await t.gql<{ cancelTraining: Run }>(`mutation($id: ID!) { cancelTraining(id: $id) { ${RUN_FIELDS} } }`, { id: queued.id }, engineer)).cancelTraining;
    expect(cancelQueued.status).toBe('CANCELLED');
    const cancelRunning = ok(await t.gql<{ cancelTraining: Run }>(`mutation($id: ID!) { cancelTraining(id: $id) { ${RUN_FIELDS} } }`, { id: long.id }, engineer)).cancelTraining;
    expect(cancelRunning).toMatchObject({ status: 'RUNNING', cancelRequested: true });
    const cancelled = await waitFor(long.id, finished, 60_000);
    expect(cancelled.status).toBe('CANCELLED');
    expect(cancelled.logKey).not.toBeNull();
    // Cancelling again changes nothing; a finished run cannot be cancelled.
    expect(errorCodes(await t.gql(`mutation($id: ID!) { cancelTraining(id: $id) { id } }`, { id: long.id }, engineer))).toEqual([]);
    if (firstRun) expect(errorCodes(await t.gql(`mutation($id: ID!) { cancelTraining(id: $id) { id } }`, { id: firstRun.id }, engineer))).toEqual(['CONFLICT']);
    // The queued run reached the service later and was skipped: it stays cancelled.
    await new Promise((r) => setTimeout(r, 1500));
    expect((await getRun(queued.id)).status).toBe('CANCELLED');
  });

  it('refuse bad starts before anything is queued', async () => {
    expect(errorCodes(await startTraining(TINY, { datasetVersionId: 'f'.repeat(64) }))).toEqual(['NOT_FOUND']);
    expect(errorCodes(await startTraining({ ...TINY, timeLimitSeconds: -1 }))).toEqual(['BAD_USER_INPUT']);
    expect(errorCodes(await startTraining(TINY, { modelName: 'no.dots' }))).toEqual(['BAD_USER_INPUT']);
    const asAnalyst = await t.gql(`mutation($input: StartTrainingInput!) { startTraining(input: $input) { id } }`, { input: { datasetVersionId, modelName: 'x', config: TINY } }, await t.token(['analyst']));
    expect(errorCodes(asAnalyst)).toEqual(['FORBIDDEN']);
  });
});

describe('model versions', () => {
  withTorch('register an uploaded ONNX file that meets the contract, once per content', async () => {
    expect(firstRun, 'needs the first run').toBeDefined();
    const bytes = await t.platform.runtime.store.get(firstRun.modelVersion!.artifactKey);
    const upload = await uploadFile(t, bytes, 'mine.onnx', 'application/octet-stream', engineer);
    const query = `mutation($input: RegisterModelVersionInput!) { registerModelVersion(input: $input) { id version stage source sha256 } }`;
    const version = ok(await t.gql<{ registerModelVersion: { id: string; stage: string; source: string; sha256: string } }>(query, { input: { modelName: 'byo', uploadId: upload } }, engineer))
      .registerModelVersion;
    expect(version).toMatchObject({ stage: 'NONE', source: 'UPLOADED', sha256: firstRun.modelVersion!.sha256 });
    const again = ok(await t.gql<{ registerModelVersion: { id: string } }>(query, { input: { modelName: 'byo', uploadId: upload } }, engineer)).registerModelVersion;
    expect(again.id).toBe(version.id);

    // Not a model at all, and a model whose inputs are not named `before` and `after`: refused, nothing registered.
    const junk = await uploadFile(t, randomBytes(4096), 'junk.onnx', 'application/octet-stream', engineer);
    const junkRes = await t.gql(query, { input: { modelName: 'byo', uploadId: junk } }, engineer);
    expect(errorCodes(junkRes)).toEqual(['BAD_USER_INPUT']);
    expect(junkRes.errors![0]!.message).toMatch(/not an ONNX model/);
    const renamed = Buffer.from(bytes);
    for (let i = renamed.indexOf('before'); i >= 0; i = renamed.indexOf('before', i + 1)) renamed.write('pre_im', i);
    const wrong = await uploadFile(t, renamed, 'renamed.onnx', 'application/octet-stream', engineer);
    const wrongRes = await t.gql(query, { input: { modelName: 'byo', uploadId: wrong } }, engineer);
    expect(errorCodes(wrongRes)).toEqual(['BAD_USER_INPUT']);
    expect(wrongRes.errors![0]!.message).toMatch(/inputs must be named before and after; missing before/);
    const versions = ok(await t.gql<{ registeredModel: { versions: { totalCount: number } } }>(`{ registeredModel(name: "byo") { versions { totalCount } } }`, {}, engineer));
    expect(versions.registeredModel.versions.totalCount).toBe(1);
  });

  withTorch('move versions between stages by role, and roll back to the previous Production version', async () => {
    const model = ok(
      await t.gql<{ registeredModel: { versions: { edges: { node: { id: string; version: number; stage: string } }[] } } }>(
        `{ registeredModel(name: "e2e-snunet") { versions(first: 100) { edges { node { id version stage } } } } }`,
        {},
        engineer,
      ),
    ).registeredModel.versions.edges.map((e) => e.node);
    const [v1, v2] = [...model].sort((a, b) => a.version - b.version);
    expect(v1 && v2, 'needs two trained versions').toBeTruthy();
    const transition = (id: string, stage: string, token: string) =>
      t.gql<{ transitionModelVersion: { id: string; stage: string } }>(`mutation($id: ID!, $stage: ModelStage!) { transitionModelVersion(id: $id, stage: $stage) { id stage } }`, { id, stage }, token);

    // PRODUCTION is reached only by an approved promotion request (test/e2e/lifecycle.test.ts tells that story).
    expect(errorCodes(await transition(v1!.id, 'PRODUCTION', approver))).toEqual(['BAD_USER_INPUT']);
    const promote = async (id: string) => {
      const requested = ok(
        await t.gql<{ requestPromotion: { id: string } }>(`mutation($id: ID!) { requestPromotion(input: {modelVersionId: $id, reason: "e2e"}) { id } }`, { id }, engineer),
      ).requestPromotion;
      return ok(await t.gql<{ approvePromotion: { modelVersion: { stage: string } } }>(`mutation($r: ID!) { approvePromotion(requestId: $r) { modelVersion { stage } } }`, { r: requested.id }, approver))
        .approvePromotion.modelVersion.stage;
    };
    expect(await promote(v1!.id)).toBe('PRODUCTION');
    expect(await promote(v2!.id)).toBe('PRODUCTION');
    // The engineer may stage and archive, but not take the Production version out of Production.
    expect(errorCodes(await transition(v2!.id, 'NONE', engineer))).toEqual(['FORBIDDEN']);

    expect(errorCodes(await t.gql(`mutation { rollbackModel(modelName: "e2e-snunet") { id } }`, {}, engineer))).toEqual(['FORBIDDEN']);
    const restored = ok(await t.gql<{ rollbackModel: { id: string; stage: string } }>(`mutation { rollbackModel(modelName: "e2e-snunet") { id stage } }`, {}, approver)).rollbackModel;
    expect(restored).toEqual({ id: v1!.id, stage: 'PRODUCTION' });
    const after = ok(
      await t.gql<{ registeredModel: { productionVersion: { id: string }; stageHistory: { versionId: string; fromStage: string; toStage: string; changedBy: string }[] } }>(
        `{ registeredModel(name: "e2e-snunet") { productionVersion { id } stageHistory { versionId fromStage toStage changedBy } } }`,
        {},
        engineer,
      ),
    ).registeredModel;
    expect(after.productionVersion.id).toBe(v1!.id);
    expect(after.stageHistory.slice(0, 2)).toEqual([
      { versionId: v1!.id, fromStage: 'ARCHIVED', toStage: 'PRODUCTION', changedBy: 'approver-1' },
      { versionId: v2!.id, fromStage: 'PRODUCTION', toStage: 'ARCHIVED', changedBy: 'approver-1' },
    ]);
    expect(after.stageHistory.some((c) => c.changedBy === 'evaluation-gate' && c.toStage === 'STAGING')).toBe(true);
  });

  it('serve the demo model as the platform-wide Production version to every tenant from the start', async () => {
    const query = `{ registeredModel(name: "lcd-demo") { platformWide productionVersion { stage sha256 source metrics contract } } }`;
    for (const tenant of ['acme', 'globex']) {
      const model = ok(await t.gql<{ registeredModel: { platformWide: boolean; productionVersion: { stage: string; sha256: string; metrics: Record<string, number> } } }>(query, {}, await t.token(['viewer'], tenant)))
        .registeredModel;
      expect(model.platformWide).toBe(true);
      expect(model.productionVersion.stage).toBe('PRODUCTION');
      expect(model.productionVersion.sha256).toMatch(/^[0-9a-f]{64}$/);
      expect(model.productionVersion.metrics.f1).toBeGreaterThan(0.85);
    }
  });
});

describe('MLflow mirror', () => {
  withTorch('mirrors the run, its params, metrics, artifacts and the registered version with its stage alias', async () => {
    expect(firstRun, 'needs the first run').toBeDefined();
    await expect.poll(() => mlflow.runByTag('lcd.run_id', firstRun.id)?.info.status, { timeout: 20_000 }).toBe('FINISHED');
    const run = mlflow.runByTag('lcd.run_id', firstRun.id)!;
    expect(run.params.get('config.epochs')).toBe('2');
    expect(run.params.get('environment.codeVersion')).toBe(firstRun.codeVersion);
    expect(run.metrics.filter((m) => m.key === 'val/f1').map((m) => m.step)).toEqual([1, 2]);
    expect(mlflow.artifacts.has(`${run.info.experiment_id}/${run.info.run_id}/artifacts/model.onnx`)).toBe(true);
    await expect.poll(() => mlflow.registeredModels.get('lcd.acme.e2e-snunet')?.versions.length ?? 0, { timeout: 20_000 }).toBeGreaterThan(0);
    const model = mlflow.registeredModels.get('lcd.acme.e2e-snunet')!;
    expect(model.versions[0]!.run_id).toBe(run.info.run_id);
    await expect.poll(() => model.aliases.get('production'), { timeout: 20_000 }).toBeDefined();
  });
});
