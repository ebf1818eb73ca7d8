// The models subgraph's side of retraining policies on a real database: which model a policy may name, which models
// were trained on a dataset, and starting a run for a decision with the defaults of the model's latest succeeded run,
// exactly once per decision. The datasets subgraph's version resolution answers over the in-process broker.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { VERSION_RESOLUTION_QUEUE, VERSION_RESOLUTION_TYPES, type VersionResolutionReply } from '../datasets/version-resolution.rpc.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { TrainingRunStatus } from './models.contracts.js';
import { lineage, retrain, RETRAINING_REQUESTER, retrainingIdempotencyKey, type RetrainRequest } from './retraining.consumer.js';
import { aRun, openModelsDatabase, randomSha256 } from './testing.js';
import { TrainingRunEntity } from './training-run.entity.js';
import { TrainingRunService } from './training-run.service.js';

let db: Database;
let close: () => Promise<void>;
let broker: Broker;
const repository = new ModelRegistryRepository();
const registry = new ModelRegistryService(repository);
let service: TrainingRunService;
const known = new Set<string>();
const OLD = randomSha256();
const NEWER = randomSha256();
const NEW = randomSha256();

beforeAll(async () => {
  ({ db, close } = await openModelsDatabase());
  broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
  for (const v of [OLD, NEWER, NEW]) known.add(v);
  await broker.serveRpc(VERSION_RESOLUTION_QUEUE, async (d) => {
    const { versionId, tenant } = d.envelope.payload as { versionId: string; tenant: string };
    const reply: VersionResolutionReply =
      known.has(versionId) && tenant === 'acme'
        ? { found: true, versionId, datasetId: randomUUID(), datasetName: 'd', manifestKey: `datasets/acme/x/manifests/${versionId}.json`, itemCount: 3, labelledCount: 3, synthetic: null }
        : { found: false, reason: 'not found' };
    return createEnvelope(VERSION_RESOLUTION_TYPES.reply, reply, { tenant });
  });
  await broker.consume('training.requests', async () => undefined);
  service = new TrainingRunService(repository, registry, {
    broker,
    requestsQueue: 'training.requests',
    datasetVersionQueue: VERSION_RESOLUTION_QUEUE,
    rpcTimeoutMs: 5000,
    defaultTimeLimitSeconds: 3600,
    maxTimeLimitSeconds: 7200,
    gate: { minimums: { f1: 0.7, iou: 0.5 }, maxRegression: 0.02 },
  });
  // acme's snunet: an old succeeded run on OLD, a newer succeeded one on NEWER, a failed one after both.
  const runs: [string, string, string][] = [
    [OLD, TrainingRunStatus.SUCCEEDED, '2026-01-01T00:00:00Z'],
    [NEWER, TrainingRunStatus.SUCCEEDED, '2026-02-01T00:00:00Z'],
    [NEW, TrainingRunStatus.FAILED, '2026-03-01T00:00:00Z'],
  ];
  for (const [datasetVersionId, status, finishedAt] of runs) {
    const run = await registry.createTrainingRun(db.fork(), aRun('acme', { datasetVersionId, params: { epochs: datasetVersionId === NEWER ? 7 : 1 } }));
    await db.fork().nativeUpdate(TrainingRunEntity, { id: run.id }, { status: status as TrainingRunStatus, finishedAt: new Date(finishedAt) });
  }
  // A model with a run that never succeeded.
  await registry.createTrainingRun(db.fork(), aRun('acme', { modelName: 'fresh', datasetVersionId: OLD }));
});
afterAll(async () => {
  await broker?.close();
  await close();
});

const request = (overrides: Partial<RetrainRequest> = {}): RetrainRequest => ({
  tenant: 'acme',
  modelName: 'snunet',
  trigger: 'MANUAL',
  decisionId: randomUUID(),
  reason: 'test',
  ...overrides,
});

describe('models.retrain', () => {
  it("starts a run on the latest succeeded run's dataset version and config, once per decision", async () => {
    const r = request();
    const reply = await retrain(service, db.fork(), r);
    expect(reply).toMatchObject({ outcome: 'STARTED', datasetVersionId: NEWER });
    const runId = (reply as { trainingRunId: string }).trainingRunId;
    const run = await db.fork().findOneOrFail(TrainingRunEntity, { id: runId });
    expect(run).toMatchObject({ tenant: 'acme', modelName: 'snunet', datasetVersionId: NEWER, params: { epochs: 7 }, requestedBy: RETRAINING_REQUESTER, idempotencyKey: retrainingIdempotencyKey(r.decisionId), status: 'QUEUED' });
    // The same decision asked again (a redelivery, the scheduler retrying a PENDING decision): the same run.
    expect(await retrain(service, db.fork(), r)).toEqual(reply);
  });

  it("trains on the dataset version and config it is given", async () => {
    const reply = await retrain(service, db.fork(), request({ trigger: 'NEW_DATASET_VERSION', datasetVersionId: NEW, config: { epochs: 2 } }));
    expect(reply).toMatchObject({ outcome: 'STARTED', datasetVersionId: NEW });
    const run = await db.fork().findOneOrFail(TrainingRunEntity, { id: (reply as { trainingRunId: string }).trainingRunId });
    expect(run.params).toEqual({ epochs: 2 });
  });

  it('skips an unknown model, another tenant’s model and a model with nothing to train on; fails a gone dataset version', async () => {
    expect(await retrain(service, db.fork(), request({ modelName: 'nope' }))).toEqual({ outcome: 'SKIPPED', reason: 'no model named nope for tenant acme' });
    expect(await retrain(service, db.fork(), request({ tenant: 'globex' }))).toMatchObject({ outcome: 'SKIPPED', reason: expect.stringContaining('no model named snunet') });
    expect(await retrain(service, db.fork(), request({ modelName: 'fresh' }))).toMatchObject({ outcome: 'SKIPPED', reason: expect.stringMatching(/^no dataset version/) });
    const gone = randomSha256();
    expect(await retrain(service, db.fork(), request({ datasetVersionId: gone }))).toMatchObject({ outcome: 'FAILED', error: expect.stringContaining(gone) });
  });
});

describe('models.lineage', () => {
  it("lists the tenant's models, and those trained on given dataset versions", async () => {
    expect(await lineage(db.fork(), { tenant: 'acme', modelNames: ['snunet', 'nope'] })).toEqual({ modelNames: ['snunet'] });
    expect(await lineage(db.fork(), { tenant: 'globex', modelNames: ['snunet'] })).toEqual({ modelNames: [] });
    expect(await lineage(db.fork(), { tenant: 'acme', trainedOnDatasetVersionIds: [OLD] })).toEqual({ modelNames: ['fresh', 'snunet'] });
    expect(await lineage(db.fork(), { tenant: 'acme', modelNames: ['snunet'], trainedOnDatasetVersionIds: [randomSha256()] })).toEqual({ modelNames: [] });
  });
});
