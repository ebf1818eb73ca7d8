// The registry's side of evaluations on a real database and real broker semantics (the in-process broker), with the
// datasets subgraph's version resolution answered over the broker: which dataset version a model is evaluated on,
// the request an inference worker receives, and what a result does to a version — its evaluation record, and for an
// uploaded version its metrics, the gate decision and the move to STAGING — written whole or not at all; and the
// evaluations whose request or result was lost: sent again with the same requestId, then failed as timed out.
import { randomUUID } from 'node:crypto';
import { GraphQLError } from 'graphql';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { VERSION_RESOLUTION_QUEUE, VERSION_RESOLUTION_TYPES, type VersionResolutionReply, type VersionResolutionRequest } from '../datasets/version-resolution.rpc.js';
import { EVALUATION_DELIVERY_LIMIT, evaluationIdempotencyKey, summarizeConfusion, type EvaluationRequest, type EvaluationResult } from './model-evaluation.contracts.js';
import { sweepLostEvaluations } from './model-evaluation.consumer.js';
import { EVALUATION_GATE_ACTOR, ModelEvaluationService } from './model-evaluation.service.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { ModelStage, ModelVersionSource } from './models.contracts.js';
import { RegisteredModelEntity } from './registered-model.entity.js';
import { anUploadedVersion, aRun, openModelsDatabase, randomSha256 } from './testing.js';

let db: Database;
let close: () => Promise<void>;
let broker: Broker;
let datasets: Subscription;
let worker: Subscription;
const repository = new ModelRegistryRepository();
const registry = new ModelRegistryService(repository);
let evaluations: ModelEvaluationService;
/** What the fake datasets subgraph knows: dataset version id → labelled item count. */
const datasetVersions = new Map<string, number>();
/** What the fake inference worker received. */
const requests: { request: EvaluationRequest; idempotencyKey?: string; tenant: string }[] = [];

const REQUESTS_QUEUE = 'inference.evaluate.service-test';
const gate = { minimums: { f1: 0.7, iou: 0.5 }, maxRegression: 0.02 };

/** The service as the models subgraph wires it, on this file's broker and queues. */
const serviceOptions = () => ({
  broker,
  requestsQueue: REQUESTS_QUEUE,
  resultsQueue: 'models.evaluation-results.service-test',
  datasetVersionQueue: VERSION_RESOLUTION_QUEUE,
  rpcTimeoutMs: 2000,
  gate,
});

beforeAll(async () => {
  ({ db, close } = await openModelsDatabase());
  broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
  datasets = await broker.serveRpc<VersionResolutionRequest, VersionResolutionReply>(VERSION_RESOLUTION_QUEUE, async (d) => {
    const { versionId, tenant } = d.envelope.payload;
    const labelled = datasetVersions.get(`${tenant}/${versionId}`);
    const reply: VersionResolutionReply =
      labelled === undefined
        ? { found: false, reason: `dataset version ${versionId} was not found` }
        : { found: true, versionId, datasetId: randomUUID(), datasetName: 'eval', manifestKey: `datasets/${tenant}/manifests/${versionId}.json`, itemCount: 10, labelledCount: labelled, synthetic: null };
    return createEnvelope(VERSION_RESOLUTION_TYPES.reply, reply, { tenant });
  });
  // Declared as the inference workers declare it (the sender asserts the same delivery limit).
  worker = await broker.consume<EvaluationRequest>(
    REQUESTS_QUEUE,
    async (d) => void requests.push({ request: d.envelope.payload, idempotencyKey: d.envelope.idempotencyKey, tenant: d.envelope.tenant }),
    { deliveryLimit: EVALUATION_DELIVERY_LIMIT },
  );
  evaluations = new ModelEvaluationService(repository, registry, serviceOptions());
});
afterAll(async () => {
  await worker?.close();
  await datasets?.close();
  await broker?.close();
  await close();
});
beforeEach(() => {
  requests.length = 0;
});

const caller = (tenant = 'acme') => ({ tenant, subject: `engineer-of-${tenant}` });

async function codeOf(promise: Promise<unknown>): Promise<{ code: unknown; field: unknown }> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof GraphQLError) return { code: error.extensions.code, field: error.extensions.field };
    throw error;
  }
  throw new Error('expected an API error');
}

function aDatasetVersion(tenant = 'acme', labelled = 10): string {
  const id = randomSha256();
  datasetVersions.set(`${tenant}/${id}`, labelled);
  return id;
}

async function uploaded(modelName: string, tenant = 'acme'): Promise<ModelVersionEntity> {
  return registry.registerVersion(db.fork(), anUploadedVersion(tenant, { modelName, metrics: {} }));
}

/** A trained version of `modelName` whose run trained on `datasetVersionId`. */
async function trained(modelName: string, datasetVersionId: string, metrics = { f1: 0.8, iou: 0.66 }): Promise<ModelVersionEntity> {
  const run = await registry.createTrainingRun(db.fork(), aRun('acme', { modelName, datasetVersionId }));
  return registry.registerVersion(db.fork(), anUploadedVersion('acme', { modelName, metrics, source: ModelVersionSource.TRAINED, trainingRunId: run.id }));
}

const reload = (id: string) => db.fork().findOneOrFail(ModelVersionEntity, id, { populate: ['registeredModel'] });

async function waitForRequest(versionId: string): Promise<(typeof requests)[number]> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const found = requests.find((r) => r.request.modelVersionId === versionId);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no evaluation request for ${versionId}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function success(request: EvaluationRequest, confusion = { tp: 900, fp: 100, fn: 100, tn: 8900 }): EvaluationResult {
  return {
    ok: true,
    requestId: request.requestId,
    modelVersionId: request.modelVersionId,
    datasetVersionId: request.datasetVersionId,
    split: 'all-labelled',
    items: 10,
    threshold: 0.5,
    metrics: summarizeConfusion(confusion),
    confusion,
  };
}

describe('the evaluation dataset of a model', () => {
  it('is the one set, else the dataset version of the Production version, else of the newest trained version', async () => {
    const first = aDatasetVersion();
    const second = aDatasetVersion();
    const v1 = await trained('choice', first);
    const model = () => db.fork().findOneOrFail(RegisteredModelEntity, { tenant: 'acme', name: 'choice' });
    expect(await evaluations.evaluationDatasetOf(db.fork(), await model())).toEqual({ datasetVersionId: first, origin: 'LATEST_TRAINING_RUN' });
    await trained('choice', second);
    expect(await evaluations.evaluationDatasetOf(db.fork(), await model())).toEqual({ datasetVersionId: second, origin: 'LATEST_TRAINING_RUN' });
    await registry.setStage(db.fork(), 'acme', v1.id, ModelStage.PRODUCTION);
    expect(await evaluations.evaluationDatasetOf(db.fork(), await model())).toEqual({ datasetVersionId: first, origin: 'PRODUCTION_TRAINING_RUN' });

    const frozen = aDatasetVersion();
    const set = await evaluations.setEvaluationDataset(db.fork(), caller(), 'choice', frozen);
    expect(set.evaluationDatasetVersionId).toBe(frozen);
    expect(await evaluations.evaluationDatasetOf(db.fork(), await model())).toEqual({ datasetVersionId: frozen, origin: 'SET' });
    await evaluations.setEvaluationDataset(db.fork(), caller(), 'choice', null);
    expect(await evaluations.evaluationDatasetOf(db.fork(), await model())).toMatchObject({ origin: 'PRODUCTION_TRAINING_RUN' });
  });

  it('is refused when it is not a dataset version of the tenant with labelled items, and nothing changes', async () => {
    await uploaded('refusals');
    const set = (modelName: string, id: string, tenant = 'acme') => evaluations.setEvaluationDataset(db.fork(), caller(tenant), modelName, id);
    expect(await codeOf(set('refusals', 'v1'))).toEqual({ code: 'BAD_USER_INPUT', field: 'datasetVersionId' });
    expect(await codeOf(set('refusals', randomSha256()))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await codeOf(set('refusals', aDatasetVersion('globex')))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await codeOf(set('refusals', aDatasetVersion('acme', 0)))).toEqual({ code: 'BAD_USER_INPUT', field: 'datasetVersionId' });
    expect(await codeOf(set('not a name', aDatasetVersion()))).toMatchObject({ code: 'BAD_USER_INPUT' });
    expect(await codeOf(evaluations.setEvaluationDataset(db.fork(), caller(), 'never-made', null))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await db.fork().count(RegisteredModelEntity, { name: 'never-made' })).toBe(0);
    const model = await db.fork().findOneOrFail(RegisteredModelEntity, { tenant: 'acme', name: 'refusals' });
    expect(model.evaluationDatasetVersionId).toBeNull();
    // Another tenant's choice is its own model's: acme's is untouched.
    const theirs = aDatasetVersion('globex');
    await set('refusals', theirs, 'globex');
    expect((await db.fork().findOneOrFail(RegisteredModelEntity, { tenant: 'globex', name: 'refusals' })).evaluationDatasetVersionId).toBe(theirs);
    expect((await db.fork().findOneOrFail(RegisteredModelEntity, { tenant: 'acme', name: 'refusals' })).evaluationDatasetVersionId).toBeNull();
  });
});

describe('evaluating an uploaded version', () => {
  it('of a model whose evaluation dataset was set before its first version: evaluated on it', async () => {
    const dataset = aDatasetVersion();
    await evaluations.setEvaluationDataset(db.fork(), caller(), 'first-upload', dataset);
    const version = await uploaded('first-upload');
    const pending = await evaluations.evaluateRegistered(db.fork(), caller(), version);
    expect(pending.evaluation).toMatchObject({ status: 'PENDING', datasetVersionId: dataset });
    expect((await waitForRequest(version.id)).request.datasetVersionId).toBe(dataset);
  });

  it('without an evaluation dataset: stays NONE with the reason as its gate decision, and nothing is sent', async () => {
    const version = await uploaded('nothing-to-evaluate-on');
    const evaluated = await evaluations.evaluateRegistered(db.fork(), caller(), version);
    expect(evaluated.stage).toBe(ModelStage.NONE);
    expect(evaluated.evaluation).toMatchObject({ status: 'FAILED', datasetVersionId: null, metrics: null, error: { code: 'NO_EVALUATION_DATASET' } });
    expect(evaluated.gate).toMatchObject({ passed: false, reasons: [expect.stringMatching(/^not evaluated: no evaluation dataset: set one with setEvaluationDataset/)] });
    expect(evaluated.metrics).toEqual({});
    await new Promise((r) => setTimeout(r, 50));
    expect(requests).toHaveLength(0);
  });

  it('sends the exact file and the frozen dataset to the workers, then stores the metrics, passes the gate and moves to STAGING', async () => {
    const dataset = aDatasetVersion();
    const version = await uploaded('byo');
    await evaluations.setEvaluationDataset(db.fork(), caller(), 'byo', dataset);
    const pending = await evaluations.evaluateRegistered(db.fork(), caller(), version);
    expect(pending.evaluation).toMatchObject({ status: 'PENDING', datasetVersionId: dataset, requestedBy: 'engineer-of-acme', metrics: null });
    const sent = await waitForRequest(version.id);
    expect(sent.tenant).toBe('acme');
    expect(sent.idempotencyKey).toBe(evaluationIdempotencyKey(version.id, dataset));
    expect(sent.request).toEqual({
      requestId: pending.evaluation!.requestId,
      modelVersionId: version.id,
      modelName: 'byo',
      artifactKey: version.artifactKey,
      sha256: version.sha256,
      datasetVersionId: dataset,
      manifestKey: `datasets/acme/manifests/${dataset}.json`,
      resultsQueue: 'models.evaluation-results.service-test',
    });
    // Registered again (the same file): evaluated once.
    await evaluations.evaluateRegistered(db.fork(), caller(), await reload(version.id));

    const result = success(sent.request);
    expect(await evaluations.applyResult(db.fork(), 'acme', result)).toBe(true);
    const done = await reload(version.id);
    expect(done.stage).toBe(ModelStage.STAGING);
    expect(done.metrics).toEqual(result.ok && result.metrics);
    expect(done.evaluation).toMatchObject({ status: 'SUCCEEDED', datasetVersionId: dataset, split: 'all-labelled', items: 10, confusion: { tp: 900, fp: 100, fn: 100, tn: 8900 }, error: null });
    expect(done.gate).toMatchObject({ passed: true, comparedWith: null });
    expect(done.gate!.reasons).toEqual([
      `evaluated on dataset version ${dataset} (all its labelled items: it has no test split, 10 items)`,
      'f1 0.9000 ≥ minimum 0.7000',
      'iou 0.8182 ≥ minimum 0.5000',
      'no Production version to compare with',
    ]);
    const history = await repository.stageHistory(db.fork(), 'acme', done.registeredModel.id);
    expect(history.map((c) => ({ to: c.toStage, by: c.changedBy, reason: c.reason }))).toEqual([
      { to: 'STAGING', by: EVALUATION_GATE_ACTOR, reason: done.gate!.reasons.join('; ') },
    ]);
    expect(requests.filter((r) => r.request.modelVersionId === version.id)).toHaveLength(1);

    // The same result delivered again changes nothing.
    expect(await evaluations.applyResult(db.fork(), 'acme', result)).toBe(false);
    expect((await reload(version.id)).updatedAt).toEqual(done.updatedAt);
  });

  it('is compared with the Production version on the same dataset, and stays NONE when it is worse', async () => {
    const dataset = aDatasetVersion();
    const production = await trained('compared', dataset, { f1: 0.95, iou: 0.9 });
    await registry.setStage(db.fork(), 'acme', production.id, ModelStage.PRODUCTION);
    // Production's own evaluation on the frozen dataset is what the candidate is held against.
    const onDataset = await evaluations.evaluateVersion(db.fork(), caller(), production.id);
    expect(onDataset.evaluation?.datasetVersionId).toBe(dataset);
    await evaluations.applyResult(db.fork(), 'acme', success((await waitForRequest(production.id)).request, { tp: 950, fp: 50, fn: 50, tn: 8950 }));
    const evaluatedProduction = await reload(production.id);
    // A trained version keeps its trainer's metrics and gate; its evaluation is kept beside them.
    expect(evaluatedProduction.metrics).toEqual({ f1: 0.95, iou: 0.9 });
    expect(evaluatedProduction.evaluation).toMatchObject({ status: 'SUCCEEDED', metrics: { f1: 0.95 } });

    const candidate = await uploaded('compared');
    await evaluations.evaluateRegistered(db.fork(), caller(), candidate);
    await evaluations.applyResult(db.fork(), 'acme', success((await waitForRequest(candidate.id)).request));
    const done = await reload(candidate.id);
    expect(done.stage).toBe(ModelStage.NONE);
    expect(done.evaluation?.status).toBe('SUCCEEDED');
    expect(done.gate).toMatchObject({ passed: false, comparedWith: { versionId: production.id, metrics: evaluatedProduction.evaluation!.metrics } });
    expect(done.gate!.reasons).toContain(`f1 0.9000 is worse than Production v1 (0.9500) by more than 0.0200`);
  });

  it('records a failed evaluation whole: the error, no metrics, stage NONE; an answer to an older attempt is ignored', async () => {
    const dataset = aDatasetVersion();
    const version = await uploaded('fails');
    await evaluations.setEvaluationDataset(db.fork(), caller(), 'fails', dataset);
    await evaluations.evaluateRegistered(db.fork(), caller(), version);
    const first = (await waitForRequest(version.id)).request;
    expect(
      await evaluations.applyResult(db.fork(), 'acme', {
        ok: false,
        requestId: first.requestId,
        modelVersionId: version.id,
        datasetVersionId: dataset,
        code: 'LABEL_SIZE',
        message: 'item 3: the label is 32×32 but the pair is 64×64',
      }),
    ).toBe(true);
    const failed = await reload(version.id);
    expect(failed).toMatchObject({ stage: ModelStage.NONE, metrics: {} });
    expect(failed.evaluation).toMatchObject({ status: 'FAILED', metrics: null, confusion: null, error: { code: 'LABEL_SIZE', message: 'item 3: the label is 32×32 but the pair is 64×64' } });
    expect(failed.gate).toMatchObject({ passed: false, reasons: ['not evaluated: item 3: the label is 32×32 but the pair is 64×64'] });

    // Asked again: a new attempt; a late answer to the first one changes nothing, the second one's result applies.
    requests.length = 0;
    const again = await evaluations.evaluateVersion(db.fork(), caller(), version.id);
    expect(again.evaluation).toMatchObject({ status: 'PENDING', error: null });
    const second = (await waitForRequest(version.id)).request;
    expect(second.requestId).not.toBe(first.requestId);
    expect(await evaluations.applyResult(db.fork(), 'acme', success(first))).toBe(false);
    expect((await reload(version.id)).evaluation?.status).toBe('PENDING');
    expect(await evaluations.applyResult(db.fork(), 'acme', success(second))).toBe(true);
    expect(await reload(version.id)).toMatchObject({ stage: ModelStage.STAGING, evaluation: { status: 'SUCCEEDED', requestId: second.requestId } });
  });

  it('refuses to evaluate a version the tenant does not own', async () => {
    const version = await uploaded('private');
    expect(await codeOf(evaluations.evaluateVersion(db.fork(), caller('globex'), version.id))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await codeOf(evaluations.evaluateVersion(db.fork(), caller(), 'not-a-uuid'))).toMatchObject({ code: 'NOT_FOUND' });
    expect((await reload(version.id)).evaluation).toBeNull();
  });

  it('says so when the evaluation dataset has disappeared', async () => {
    const gone = randomSha256();
    await trained('lost-dataset', gone);
    const version = await uploaded('lost-dataset');
    const evaluated = await evaluations.evaluateRegistered(db.fork(), caller(), version);
    expect(evaluated).toMatchObject({ stage: ModelStage.NONE, evaluation: { status: 'FAILED', datasetVersionId: gone, error: { code: 'DATASET_NOT_FOUND' } } });
  });
});

describe('lost evaluations', () => {
  // A minute without a result counts as lost here; each sweep is given its clock, so nothing waits for it.
  const lost = { timeoutMinutes: 1, maxAttempts: 3 };
  let sweeper: ModelEvaluationService;
  const later = (minutes: number) => new Date(Date.now() + minutes * 60_000);
  const requestsFor = (versionId: string) => requests.filter((r) => r.request.modelVersionId === versionId);

  beforeAll(() => {
    sweeper = new ModelEvaluationService(repository, registry, { ...serviceOptions(), lost });
  });

  async function pendingUpload(modelName: string): Promise<{ version: ModelVersionEntity; first: EvaluationRequest }> {
    const dataset = aDatasetVersion();
    await evaluations.setEvaluationDataset(db.fork(), caller(), modelName, dataset);
    const version = await uploaded(modelName);
    const pending = await evaluations.evaluateRegistered(db.fork(), caller(), version);
    expect(pending.evaluation).toMatchObject({ status: 'PENDING', attempts: 1 });
    return { version, first: (await waitForRequest(version.id)).request };
  }

  async function waitForRequests(versionId: string, count: number): Promise<EvaluationRequest[]> {
    const deadline = Date.now() + 5000;
    while (requestsFor(versionId).length < count) {
      if (Date.now() > deadline) throw new Error(`${requestsFor(versionId).length} of ${count} evaluation requests for ${versionId}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    return requestsFor(versionId).map((r) => r.request);
  }

  it('sends a PENDING evaluation again after the timeout, with the same requestId; the first result applies once', async () => {
    const { version, first } = await pendingUpload('lost-result');
    // Within the timeout nothing is sent again.
    await sweeper.resendLost(db.fork(), later(0.5));
    expect((await reload(version.id)).evaluation).toMatchObject({ status: 'PENDING', attempts: 1 });

    await sweeper.resendLost(db.fork(), later(1.5));
    const sent = await waitForRequests(version.id, 2);
    expect(sent[1]).toEqual(first);
    expect((await reload(version.id)).evaluation).toMatchObject({ status: 'PENDING', attempts: 2, requestId: first.requestId });
    // A sweep shortly after the re-send (another replica, or the next pass) leaves it alone.
    await sweeper.resendLost(db.fork(), later(2));
    expect((await reload(version.id)).evaluation?.attempts).toBe(2);

    // Both attempts answer (the first was only late): the first answer applies, the second changes nothing.
    expect(await evaluations.applyResult(db.fork(), 'acme', success(sent[1]!))).toBe(true);
    const done = await reload(version.id);
    expect(done).toMatchObject({ stage: ModelStage.STAGING, evaluation: { status: 'SUCCEEDED', attempts: 2, requestId: first.requestId } });
    expect(await evaluations.applyResult(db.fork(), 'acme', success(first, { tp: 10, fp: 500, fn: 500, tn: 8990 }))).toBe(false);
    expect(await reload(version.id)).toMatchObject({ metrics: done.metrics, updatedAt: done.updatedAt });
    const history = await repository.stageHistory(db.fork(), 'acme', done.registeredModel.id);
    expect(history.map((c) => c.toStage)).toEqual(['STAGING']);
    // Finished evaluations are never sent again.
    await sweeper.resendLost(db.fork(), later(10));
    await new Promise((r) => setTimeout(r, 50));
    expect(requestsFor(version.id)).toHaveLength(2);
  });

  it('fails an evaluation still without a result after every attempt, saying it timed out after that many', async () => {
    const { version, first } = await pendingUpload('never-answered');
    await sweeper.resendLost(db.fork(), later(1.5));
    await sweeper.resendLost(db.fork(), later(3));
    expect((await reload(version.id)).evaluation).toMatchObject({ status: 'PENDING', attempts: 3 });
    expect((await waitForRequests(version.id, 3)).map((r) => r.requestId)).toEqual([first.requestId, first.requestId, first.requestId]);

    await sweeper.resendLost(db.fork(), later(4.5));
    const failed = await reload(version.id);
    const message = 'the evaluation timed out after 3 attempts: no result came within 1 minutes of any of them; ask again with evaluateModelVersion';
    expect(failed).toMatchObject({ stage: ModelStage.NONE, metrics: {}, evaluation: { status: 'FAILED', attempts: 3, metrics: null, error: { code: 'TIMED_OUT', message } } });
    expect(failed.gate).toMatchObject({ passed: false, reasons: [`not evaluated: ${message}`] });
    // A result that comes after all is for an attempt that is over: ignored.
    expect(await evaluations.applyResult(db.fork(), 'acme', success(first))).toBe(false);
    expect((await reload(version.id)).evaluation?.status).toBe('FAILED');
    await new Promise((r) => setTimeout(r, 50));
    expect(requestsFor(version.id)).toHaveLength(3);

    // Asked again, it is a new evaluation with attempts of its own.
    const again = await evaluations.evaluateVersion(db.fork(), caller(), version.id);
    expect(again.evaluation).toMatchObject({ status: 'PENDING', attempts: 1, error: null });
    expect(again.evaluation?.requestId).not.toBe(first.requestId);
  });

  it('is swept in the background with a short timeout until it fails', async () => {
    const quick = new ModelEvaluationService(repository, registry, {
      ...serviceOptions(),
      // 0.6 s per attempt, two attempts.
      lost: { timeoutMinutes: 0.01, maxAttempts: 2 },
    });
    const { version, first } = await pendingUpload('swept');
    const stop = sweepLostEvaluations({ evaluations: quick, db, log: pino({ level: 'silent' }) }, { timeoutMinutes: 0.01 });
    try {
      const deadline = Date.now() + 30_000;
      while ((await reload(version.id)).evaluation?.status === 'PENDING') {
        if (Date.now() > deadline) throw new Error('the evaluation was not swept');
        await new Promise((r) => setTimeout(r, 100));
      }
    } finally {
      await stop();
    }
    expect((await reload(version.id)).evaluation).toMatchObject({ status: 'FAILED', attempts: 2, error: { code: 'TIMED_OUT', message: expect.stringMatching(/^the evaluation timed out after 2 attempts/) } });
    expect((await waitForRequests(version.id, 2)).map((r) => r.requestId)).toEqual([first.requestId, first.requestId]);
  });
});
