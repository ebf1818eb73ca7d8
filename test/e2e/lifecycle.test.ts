// The registry lifecycle as its people meet it, through the gateway with real JWTs: two tiny trained versions pass
// the gate to STAGING; an engineer requests promotion (the evidence carries the evaluation on the frozen dataset
// version and the drift report fetched from the monitoring subgraph); the requester may not approve; a second
// approver does; two approvers racing on the next request get one success and one CONFLICT; another tenant sees
// nothing; aliases; a rollback restores the old version for the inference workers; the history shows every step and
// answers which version served when. Training needs PyTorch: without it the tests are skipped with the reason.
// Without training: jobs run on the version `name@alias` names, and a requester withdraws a pending request.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findTrainerPython } from '../../lib/model/testing.js';
import { requestModelResolution } from '../../subgraphs/models/model-resolution.rpc.js';
import { errorCodes, ok, sharedData, startTestPlatform, TINY_TRAINING, until, uploadFile, type TestPlatform } from '../support/platform.js';

const python = await findTrainerPython();
const NO_TORCH = python ? null : 'no Python interpreter with torch (set LCD_PYTHON): lifecycle tests skipped';
const withTorch = python ? it : it.skip;
if (NO_TORCH) console.warn(NO_TORCH);

const MODEL = 'lifecycle-snunet';
const suffix = randomBytes(4).toString('hex');
const queues = {
  TRAINING_REQUESTS_QUEUE: `training.requests.lifecycle-${suffix}`,
  TRAINING_EVENTS_QUEUE: `models.training-events.lifecycle-${suffix}`,
  DATASET_VERSION_RESOLUTION_QUEUE: `datasets.resolve-version.lifecycle-${suffix}`,
};

let t: TestPlatform;
let engineer: string;
/** Holds both roles: may request, may approve others' requests, never their own. */
let lead: string;
let approver1: string;
let approver2: string;
let outsider: string;
let datasetVersionId = '';
const versions: { id: string; version: number }[] = [];

beforeAll(async () => {
  t = await startTestPlatform({
    ...queues,
    LCD_PYTHON: python ?? undefined,
    // Every tiny model passes the gate; the gate's own rules are tested in subgraphs/models/evaluation-gate.test.ts.
    GATE_MIN_F1: '0',
    GATE_MIN_IOU: '0',
    GATE_MAX_REGRESSION: '1',
    TRAINING_METRICS_FLUSH_MS: '200',
  });
  engineer = await t.token(['ml-engineer'], 'acme', 'engineer-1');
  lead = await t.token(['ml-engineer', 'approver'], 'acme', 'lead-1');
  approver1 = await t.token(['approver'], 'acme', 'approver-1');
  approver2 = await t.token(['approver'], 'acme', 'approver-2');
  outsider = await t.token(['approver', 'ml-engineer'], 'globex', 'approver-globex');
});
afterAll(async () => {
  if (process.env.TEST_AMQP_URL && t) for (const q of Object.values(queues)) await t.platform.runtime.broker.deleteQueue(q).catch(() => undefined);
  await t?.close();
});

const REQUEST_FIELDS = `id status requestedBy reason decidedBy decidedAt decisionReason createdAt
  modelVersion { id version stage }
  evidence { evaluation { source passed metrics datasetVersionId gate { passed } } driftReport { id drifted } driftNote collectedAt }`;

interface PromotionRequest {
  id: string;
  status: string;
  requestedBy: string;
  decidedBy: string | null;
  modelVersion: { id: string; version: number; stage: string };
  evidence: {
    evaluation: { source: string; passed: boolean; metrics: Record<string, number>; datasetVersionId: string | null; gate: { passed: boolean } | null };
    driftReport: { id: string } | null;
    driftNote: string | null;
  };
}

const requestPromotion = (modelVersionId: string, reason: string, token: string) =>
  t.gql<{ requestPromotion: PromotionRequest }>(
    `mutation($input: RequestPromotionInput!) { requestPromotion(input: $input) { ${REQUEST_FIELDS} } }`,
    { input: { modelVersionId, reason } },
    token,
  );
const approve = (requestId: string, token: string) =>
  t.gql<{ approvePromotion: PromotionRequest }>(`mutation($id: ID!) { approvePromotion(requestId: $id) { ${REQUEST_FIELDS} } }`, { id: requestId }, token);
const productionId = async () =>
  ok(await t.gql<{ registeredModel: { productionVersion: { id: string } | null } }>(`{ registeredModel(name: "${MODEL}") { productionVersion { id } } }`, {}, engineer))
    .registeredModel.productionVersion?.id ?? null;

/** A synthetic dataset version of 64-px pairs, made by the engineer. */
async function syntheticDataset(name: string, pairs: number, seed: number): Promise<{ id: string }> {
  return ok(
    await t.gql<{ createSyntheticDatasetVersion: { id: string } }>(
      `mutation($input: CreateSyntheticDatasetVersionInput!) { createSyntheticDatasetVersion(input: $input) { id } }`,
      { input: { name, pairs, size: 64, seed } },
      engineer,
    ),
  ).createSyntheticDatasetVersion;
}

async function trainOne(): Promise<{ id: string; version: number; stage: string }> {
  const started = ok(
    await t.gql<{ startTraining: { id: string } }>(
      `mutation($input: StartTrainingInput!) { startTraining(input: $input) { id } }`,
      { input: { datasetVersionId, modelName: MODEL, config: TINY_TRAINING } },
      engineer,
    ),
  ).startTraining;
  const deadline = Date.now() + 280_000;
  for (;;) {
    const run = ok(
      await t.gql<{ trainingRun: { status: string; error: string | null; modelVersion: { id: string; version: number; stage: string } | null } }>(
        `query($id: ID!) { trainingRun(id: $id) { status error modelVersion { id version stage } } }`,
        { id: started.id },
        engineer,
      ),
    ).trainingRun;
    if (['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(run.status)) {
      expect(run.error).toBeNull();
      expect(run.status).toBe('SUCCEEDED');
      return run.modelVersion!;
    }
    if (Date.now() > deadline) throw new Error(`training run ${started.id} still ${run.status}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('model lifecycle through the gateway', () => {
  withTorch('two trained versions pass the gate to STAGING', async () => {
    const made = await syntheticDataset('lifecycle-e2e', 8, 5);
    datasetVersionId = made.id;
    for (let i = 0; i < 2; i++) {
      const version = await trainOne();
      expect(version.stage).toBe('STAGING');
      versions.push(version);
    }
    expect(versions.map((v) => v.version)).toEqual([1, 2]);
  }, 600_000);

  withTorch('promotes only by request and four-eyes approval, with the evidence attached', async () => {
    const [v1] = versions;
    expect(v1, 'needs the trained versions').toBeDefined();
    // The shortcut is closed, for approvers too.
    const shortcut = await t.gql(`mutation($id: ID!) { transitionModelVersion(id: $id, stage: PRODUCTION) { id } }`, { id: v1!.id }, approver1);
    expect(errorCodes(shortcut)).toEqual(['BAD_USER_INPUT']);
    expect(shortcut.errors![0]!.message).toMatch(/requestPromotion/);
    // A viewer or a plain approver may not request; an engineer may not approve.
    expect(errorCodes(await requestPromotion(v1!.id, 'ship', await t.token(['viewer'], 'acme')))).toEqual(['FORBIDDEN']);

    const request = ok(await requestPromotion(v1!.id, 'first release of the lifecycle model', lead)).requestPromotion;
    expect(request).toMatchObject({ status: 'PENDING', requestedBy: 'lead-1', decidedBy: null, modelVersion: { id: v1!.id, stage: 'STAGING' } });
    expect(request.evidence.evaluation).toMatchObject({ source: 'TRAINING_GATE', passed: true, datasetVersionId, gate: { passed: true } });
    expect(Object.keys(request.evidence.evaluation.metrics)).toEqual(expect.arrayContaining(['f1', 'iou']));
    // Fetched from the running monitoring subgraph over the broker: no report for this model yet.
    expect(request.evidence.driftReport).toBeNull();
    expect(request.evidence.driftNote).toMatch(/No drift report exists yet/);

    expect(errorCodes(await approve(request.id, engineer))).toEqual(['FORBIDDEN']);
    const own = await approve(request.id, lead);
    expect(errorCodes(own)).toEqual(['FORBIDDEN']);
    expect(own.errors![0]!.message).toMatch(/Four eyes/);
    // Another tenant sees neither the request nor the version.
    expect(errorCodes(await approve(request.id, outsider))).toEqual(['NOT_FOUND']);
    expect(errorCodes(await requestPromotion(v1!.id, 'theirs', outsider))).toEqual(['NOT_FOUND']);
    expect(await productionId()).toBeNull();

    const approved = ok(await approve(request.id, approver1)).approvePromotion;
    expect(approved).toMatchObject({ status: 'APPROVED', decidedBy: 'approver-1', modelVersion: { id: v1!.id, stage: 'PRODUCTION' } });
    expect(await productionId()).toBe(v1!.id);
  });

  withTorch('lets exactly one of two approvers racing on a request win', async () => {
    const [v1, v2] = versions;
    expect(v2, 'needs the trained versions').toBeDefined();
    const request = ok(await requestPromotion(v2!.id, 'better on the new tiles', engineer)).requestPromotion;
    const [a, b] = await Promise.all([approve(request.id, approver1), approve(request.id, approver2)]);
    const codes = [errorCodes(a), errorCodes(b)];
    expect(codes.filter((c) => c.length === 0)).toHaveLength(1);
    expect(codes.filter((c) => c.length === 1 && c[0] === 'CONFLICT')).toHaveLength(1);
    const listed = ok(
      await t.gql<{ promotionRequests: { id: string; status: string; decidedBy: string }[] }>(
        `query($m: String!) { promotionRequests(modelName: $m, status: APPROVED) { id status decidedBy } }`,
        { m: MODEL },
        engineer,
      ),
    ).promotionRequests;
    expect(listed.map((r) => r.id)).toContain(request.id);
    const winner = (a.errors ? b : a).data!.approvePromotion.decidedBy;
    expect(listed.find((r) => r.id === request.id)!.decidedBy).toBe(winner);
    const stages = ok(
      await t.gql<{ registeredModel: { versions: { edges: { node: { id: string; stage: string } }[] } } }>(
        `{ registeredModel(name: "${MODEL}") { versions(first: 10) { edges { node { id stage } } } } }`,
        {},
        engineer,
      ),
    ).registeredModel.versions.edges.map((e) => e.node);
    expect(stages).toEqual(expect.arrayContaining([{ id: v1!.id, stage: 'ARCHIVED' }, { id: v2!.id, stage: 'PRODUCTION' }]));
  });

  withTorch('rolls back to the previous version, which the inference workers then resolve, with the history of every step', async () => {
    const [v1, v2] = versions;
    expect(v2, 'needs the trained versions').toBeDefined();
    ok(await t.gql(`mutation($id: ID!) { setModelAlias(input: {modelVersionId: $id, alias: "challenger", reason: "A/B"}) { aliases } }`, { id: v1!.id }, engineer));
    const beforeRollback = new Date().toISOString();
    await new Promise((r) => setTimeout(r, 5));
    expect(errorCodes(await t.gql(`mutation { rollbackModel(modelName: "${MODEL}") { id } }`, {}, engineer))).toEqual(['FORBIDDEN']);
    const restored = ok(
      await t.gql<{ rollbackModel: { id: string; stage: string } }>(`mutation { rollbackModel(modelName: "${MODEL}", reason: "v2 misses new roofs") { id stage } }`, {}, approver2),
    ).rollbackModel;
    expect(restored).toEqual({ id: v1!.id, stage: 'PRODUCTION' });
    const resolved = await requestModelResolution(t.platform.runtime.broker, { tenant: 'acme', modelName: MODEL, stage: 'PRODUCTION' }, 10_000);
    expect(resolved).toMatchObject({ found: true, versionId: v1!.id });

    const history = ok(
      await t.gql<{ stageHistory: { kind: string; modelVersion: { id: string }; fromStage: string; toStage: string; alias: string | null; actor: string; reason: string; at: string }[] }>(
        `query($m: String!) { stageHistory(modelName: $m) { kind modelVersion { id } fromStage toStage alias actor reason at } }`,
        { m: MODEL },
        engineer,
      ),
    ).stageHistory;
    const steps = history.map((c) => [c.kind, c.modelVersion.id === v1!.id ? 'v1' : 'v2', c.fromStage, c.toStage, c.alias, c.actor]);
    expect(steps).toEqual([
      ['STAGE', 'v1', 'NONE', 'STAGING', null, 'evaluation-gate'],
      ['STAGE', 'v2', 'NONE', 'STAGING', null, 'evaluation-gate'],
      ['STAGE', 'v1', 'STAGING', 'PRODUCTION', null, 'approver-1'],
      ['STAGE', 'v1', 'PRODUCTION', 'ARCHIVED', null, steps[4]![5]],
      ['STAGE', 'v2', 'STAGING', 'PRODUCTION', null, steps[4]![5]],
      ['ALIAS_SET', 'v1', 'ARCHIVED', 'ARCHIVED', 'challenger', 'engineer-1'],
      ['STAGE', 'v2', 'PRODUCTION', 'ARCHIVED', null, 'approver-2'],
      ['STAGE', 'v1', 'ARCHIVED', 'PRODUCTION', null, 'approver-2'],
    ]);
    expect(history.at(-1)!.reason).toBe('rollback from version 2 to version 1: v2 misses new roofs');
    const times = history.map((c) => Date.parse(c.at));
    expect([...times].sort((x, y) => x - y)).toEqual(times);

    const at = async (moment: string) =>
      ok(
        await t.gql<{ modelVersionAt: { id: string } | null }>(
          `query($m: String!, $at: DateTimeISO!) { modelVersionAt(modelName: $m, stage: PRODUCTION, at: $at) { id } }`,
          { m: MODEL, at: moment },
          engineer,
        ),
      ).modelVersionAt?.id ?? null;
    expect(await at(beforeRollback)).toBe(v2!.id);
    expect(await at(new Date().toISOString())).toBe(v1!.id);
    expect(await at('2000-01-01T00:00:00Z')).toBeNull();
    // Nothing to roll back to for a model that never had two Production versions; another tenant has no such model.
    expect(errorCodes(await t.gql(`mutation { rollbackModel(modelName: "${MODEL}") { id } }`, {}, outsider))).toEqual(['NOT_FOUND']);
  });
});

// No training needed: the platform's demo model (training/demo-model) is registered again by a tenant, as anyone may
// bring their own ONNX file, and a synthetic dataset version (numpy and PIL only) evaluates it.
describe('serving by alias and withdrawing a promotion request, on the demo model', () => {
  const levir = (dir: 'A' | 'B') => readFile(join(sharedData, 'levir-cd-256', dir, 'test_7_0256_0512.png'));
  const VERSION = `id stage evaluation { status errorCode } gate { passed }`;
  let demoBytes: Buffer;

  async function registerDemo(modelName: string): Promise<{ id: string; stage: string }> {
    if (!demoBytes) {
      const demo = ok(await t.gql<{ registeredModel: { productionVersion: { artifactKey: string } } }>(`{ registeredModel(name: "lcd-demo") { productionVersion { artifactKey } } }`, {}, engineer));
      demoBytes = await t.platform.runtime.store.get(demo.registeredModel.productionVersion.artifactKey);
    }
    const upload = await uploadFile(t, demoBytes, 'demo.onnx', 'application/octet-stream', engineer);
    return ok(
      await t.gql<{ registerModelVersion: { id: string; stage: string } }>(
        `mutation($input: RegisterModelVersionInput!) { registerModelVersion(input: $input) { ${VERSION} } }`,
        { input: { modelName, uploadId: upload } },
        engineer,
      ),
    ).registerModelVersion;
  }

  it('runs detectChanges and batch jobs on the version name@alias points to', async () => {
    const version = await registerDemo('aliased-demo');
    expect(version.stage).toBe('NONE');
    ok(await t.gql(`mutation($id: ID!) { setModelAlias(input: {modelVersionId: $id, alias: "challenger"}) { aliases } }`, { id: version.id }, engineer));
    const resolved = await requestModelResolution(t.platform.runtime.broker, { tenant: 'acme', modelName: 'aliased-demo@challenger', stage: 'PRODUCTION' }, 10_000);
    expect(resolved).toMatchObject({ found: true, versionId: version.id, modelName: 'aliased-demo', alias: 'challenger' });

    const beforeUploadId = await uploadFile(t, await levir('A'), 'before.png', 'image/png', engineer);
    const afterUploadId = await uploadFile(t, await levir('B'), 'after.png', 'image/png', engineer);
    const detected = ok(
      await t.gql<{ detectChanges: { modelVersion: { id: string } } }>(
        `mutation($input: DetectChangesInput!) { detectChanges(input: $input) { modelVersion { id } } }`,
        { input: { beforeUploadId, afterUploadId, modelName: 'aliased-demo@challenger' } },
        engineer,
      ),
    ).detectChanges;
    expect(detected.modelVersion.id).toBe(version.id);

    const SUBMIT = `mutation($input: SubmitChangeDetectionJobInput!) { submitChangeDetectionJob(input: $input) { id modelName modelVersion { id } } }`;
    const job = ok(
      await t.gql<{ submitChangeDetectionJob: { id: string; modelName: string; modelVersion: { id: string } } }>(
        SUBMIT,
        { input: { pairs: [{ beforeUploadId, afterUploadId }], modelName: 'aliased-demo@challenger' } },
        engineer,
      ),
    ).submitChangeDetectionJob;
    expect(job).toMatchObject({ modelName: 'aliased-demo@challenger', modelVersion: { id: version.id } });
    const finished = await until(
      async () => ok(await t.gql<{ job: { status: string } }>(`query($id: ID!) { job(id: $id) { status } }`, { id: job.id }, engineer)).job.status,
      (status) => ['SUCCEEDED', 'FAILED', 'PARTIAL', 'CANCELLED'].includes(status),
      'the job on aliased-demo@challenger',
      120_000,
    );
    expect(finished).toBe('SUCCEEDED');

    // An alias the model does not have is refused, naming it; the plain name has no Production version.
    const unknown = await t.gql(SUBMIT, { input: { pairs: [{ beforeUploadId, afterUploadId }], modelName: 'aliased-demo@champion' } }, engineer);
    expect(errorCodes(unknown)).toEqual(['BAD_USER_INPUT']);
    expect(unknown.errors![0]!.message).toBe('modelName: model aliased-demo has no alias champion');
    const plain = await t.gql(SUBMIT, { input: { pairs: [{ beforeUploadId, afterUploadId }], modelName: 'aliased-demo' } }, engineer);
    expect(plain.errors![0]!.message).toBe('modelName: model aliased-demo has no Production version');
    // A reference that is not `name` or `name@alias` is refused before any work starts, naming the field.
    for (const modelName of ['aliased-demo@', 'aliased-demo@Champion', 'a@b@c']) {
      const malformed = await t.gql(SUBMIT, { input: { pairs: [{ beforeUploadId, afterUploadId }], modelName } }, engineer);
      expect(errorCodes(malformed)).toEqual(['BAD_USER_INPUT']);
      expect(malformed.errors![0]!.message).toMatch(/modelName/);
    }
  });

  it('lets only the requester (or an admin) cancel a pending request; it is CANCELLED and in the history', async () => {
    const made = await syntheticDataset('cancel-e2e', 4, 9);
    ok(await t.gql(`mutation($m: String!, $d: String) { setEvaluationDataset(modelName: $m, datasetVersionId: $d) { name } }`, { m: 'cancel-demo', d: made.id }, engineer));
    const registered = await registerDemo('cancel-demo');
    // Evaluated by an inference worker; the gate here takes anything, so it goes to STAGING.
    const staged = await until(
      async () => ok(await t.gql<{ modelVersion: { stage: string; evaluation: { status: string } } }>(`query($id: ID!) { modelVersion(id: $id) { ${VERSION} } }`, { id: registered.id }, engineer)).modelVersion,
      (v) => v.evaluation.status !== 'PENDING',
      'the evaluation of cancel-demo',
      180_000,
    );
    expect(staged).toMatchObject({ stage: 'STAGING', evaluation: { status: 'SUCCEEDED' } });

    const request = ok(await requestPromotion(registered.id, 'demo for the field team', engineer)).requestPromotion;
    const CANCEL = `mutation($id: ID!, $reason: String!) { cancelPromotionRequest(id: $id, reason: $reason) { ${REQUEST_FIELDS} } }`;
    expect(errorCodes(await t.gql(CANCEL, { id: request.id, reason: 'no' }, await t.token(['viewer'], 'acme')))).toEqual(['FORBIDDEN']);
    const notYours = await t.gql(CANCEL, { id: request.id, reason: 'mine' }, lead);
    expect(errorCodes(notYours)).toEqual(['FORBIDDEN']);
    expect(notYours.errors![0]!.message).toMatch(/made by engineer-1: only they, or an admin of the tenant, may cancel it/);
    expect(errorCodes(await t.gql(CANCEL, { id: request.id, reason: 'theirs' }, outsider))).toEqual(['NOT_FOUND']);

    const cancelled = ok(await t.gql<{ cancelPromotionRequest: PromotionRequest & { decisionReason: string } }>(CANCEL, { id: request.id, reason: 'wrong dataset' }, engineer))
      .cancelPromotionRequest;
    expect(cancelled).toMatchObject({ status: 'CANCELLED', decidedBy: 'engineer-1', decisionReason: 'wrong dataset', modelVersion: { id: registered.id, stage: 'STAGING' } });
    const late = await approve(request.id, approver1);
    expect(errorCodes(late)).toEqual(['CONFLICT']);
    expect(errorCodes(await t.gql(CANCEL, { id: request.id, reason: 'again' }, engineer))).toEqual(['CONFLICT']);

    const history = ok(
      await t.gql<{ stageHistory: { kind: string; modelVersion: { id: string }; fromStage: string; toStage: string; actor: string; reason: string }[] }>(
        `query($m: String!) { stageHistory(modelName: $m) { kind modelVersion { id } fromStage toStage actor reason } }`,
        { m: 'cancel-demo' },
        engineer,
      ),
    ).stageHistory;
    expect(history.at(-1)).toEqual({
      kind: 'PROMOTION_CANCELLED',
      modelVersion: { id: registered.id },
      fromStage: 'STAGING',
      toStage: 'STAGING',
      actor: 'engineer-1',
      reason: `promotion request ${request.id} by engineer-1 cancelled: wrong dataset`,
    });

    // An admin of the tenant may withdraw someone else's request.
    const second = ok(await requestPromotion(registered.id, 'second try', engineer)).requestPromotion;
    const admin = await t.token(['admin'], 'acme', 'admin-7');
    expect(ok(await t.gql<{ cancelPromotionRequest: { status: string; decidedBy: string } }>(CANCEL, { id: second.id, reason: 'release freeze' }, admin)).cancelPromotionRequest).toMatchObject({
      status: 'CANCELLED',
      decidedBy: 'admin-7',
    });
  });
});
