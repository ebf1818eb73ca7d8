// The models subgraph's side of training on a real database: queueing a run (the dataset version resolved over the
// broker, the request sent once), cancellation, and applying the training service's reports in any order and any
// number of times, with the registration, the gate against the Production version and the events in the log.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { replayEvents } from '../../lib/events/event-log.js';
import { VERSION_RESOLUTION_QUEUE, VERSION_RESOLUTION_TYPES, type VersionResolutionReply } from '../datasets/version-resolution.rpc.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelStage, TrainingRunStatus } from './models.contracts.js';
import { aContract, openModelsDatabase, randomSha256 } from './testing.js';
import { TrainingRunService } from './training-run.service.js';
import type { RegistrationReport, TrainingEvent, TrainingRequest } from './training.contracts.js';

let db: Database;
let close: () => Promise<void>;
let broker: Broker;
const requests: TrainingRequest[] = [];
const repository = new ModelRegistryRepository();
const registry = new ModelRegistryService(repository);
let service: TrainingRunService;
const datasetVersionId = randomSha256();
const actor = { tenant: 'acme', subject: 'engineer-1' };

beforeAll(async () => {
  ({ db, close } = await openModelsDatabase());
  broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
  await broker.serveRpc(VERSION_RESOLUTION_QUEUE, async (d) => {
    const { versionId, tenant } = d.envelope.payload as { versionId: string; tenant: string };
    const reply: VersionResolutionReply =
      versionId === datasetVersionId && tenant === 'acme'
        ? { found: true, versionId, datasetId: randomUUID(), datasetName: 'd', manifestKey: `datasets/acme/x/manifests/${versionId}.json`, itemCount: 3, labelledCount: 3, synthetic: null }
        : { found: false, reason: 'not found' };
    return createEnvelope(VERSION_RESOLUTION_TYPES.reply, reply, { tenant });
  });
  await broker.consume<TrainingRequest>('training.requests', async (d) => {
    requests.push(d.envelope.payload);
  });
  service = new TrainingRunService(repository, registry, {
    broker,
    requestsQueue: 'training.requests',
    datasetVersionQueue: VERSION_RESOLUTION_QUEUE,
    rpcTimeoutMs: 5000,
    defaultTimeLimitSeconds: 3600,
    maxTimeLimitSeconds: 7200,
    gate: { minimums: { f1: 0.7, iou: 0.5 }, maxRegression: 0.02 },
  });
});
afterAll(async () => {
  await broker?.close();
  await close();
});

const CONFIG = { epochs: 1, baseWidth: 8, batchSize: 2, learningRate: 0.01, seed: 1 };

function registration(metrics: Record<string, number>): RegistrationReport {
  const sha256 = randomSha256();
  return {
    artifactKey: `models/acme/snunet/${sha256}.onnx`,
    sha256,
    byteSize: 1000,
    contract: aContract() as unknown as Record<string, unknown>,
    metrics,
    evaluationSplit: 'val',
    referenceStatsKey: 'training/acme/x/reference_stats.json',
    weightsSha256: 'w'.repeat(64),
    parityMaxAbsDiff: 1e-6,
  };
}

async function queued(modelName = 'snunet') {
  const run = await service.startTraining(db.fork(), actor, { datasetVersionId, modelName, config: CONFIG });
  await expect.poll(() => requests.some((r) => r.runId === run.id)).toBe(true);
  return run;
}

const apply = (event: TrainingEvent) => service.applyEvent(db.fork(), 'acme', event);
const status = async (id: string) => (await repository.findRun(db.fork(), 'acme', id))!;

describe('queueing a run', () => {
  it('resolves the dataset version, keeps the config as params, and sends the request once', async () => {
    const run = await service.startTraining(db.fork(), actor, { datasetVersionId, modelName: 'snunet', config: { ...CONFIG, timeLimitSeconds: 60 }, idempotencyKey: 'k-1' });
    const again = await service.startTraining(db.fork(), actor, { datasetVersionId, modelName: 'snunet', config: CONFIG, idempotencyKey: 'k-1' });
    expect(again.id).toBe(run.id);
    await expect.poll(() => requests.filter((r) => r.runId === run.id).length).toBe(1);
    const request = requests.find((r) => r.runId === run.id)!;
    expect(request).toMatchObject({ tenant: 'acme', modelName: 'snunet', datasetVersionId, config: CONFIG, timeLimitSeconds: 60, requestedBy: 'engineer-1' });
    expect(request.manifestKey).toContain(datasetVersionId);
    expect(run.params).toEqual({ ...CONFIG, timeLimitSeconds: 60 });
    expect((await replayEvents(db.fork(), `training:${run.id}`, 0)).map((e) => e.payload.kind)).toEqual(['queued']);
  });

  it('refuses an unknown dataset version, another tenant’s, and a time limit out of range', async () => {
    await expect(service.startTraining(db.fork(), actor, { datasetVersionId: randomSha256(), modelName: 'snunet', config: CONFIG })).rejects.toMatchObject({ extensions: { code: 'NOT_FOUND' } });
    await expect(service.startTraining(db.fork(), { ...actor, tenant: 'globex' }, { datasetVersionId, modelName: 'snunet', config: CONFIG })).rejects.toMatchObject({
      extensions: { code: 'NOT_FOUND' },
    });
    await expect(service.startTraining(db.fork(), actor, { datasetVersionId, modelName: 'snunet', config: { timeLimitSeconds: 9999 } })).rejects.toMatchObject({
      extensions: { code: 'BAD_USER_INPUT', field: 'config.timeLimitSeconds' },
    });
    await expect(service.startTraining(db.fork(), actor, { datasetVersionId, modelName: 'snunet', config: [1, 2] })).rejects.toMatchObject({ extensions: { code: 'BAD_USER_INPUT' } });
  });
});

describe('applying reports', () => {
  it('moves a run forward only, records metrics once, and registers the trained version through the gate', async () => {
    const run = await queued();
    const metrics: TrainingEvent = { kind: 'metrics', runId: run.id, metrics: [{ name: 'train/loss', step: 1, epoch: 1, value: 0.5 }, { name: 'bad name!', step: 1, value: 1 }] };
    expect(await apply({ kind: 'started', runId: run.id, attempt: 1 })).toBe(true);
    expect(await apply(metrics)).toBe(true);
    expect(await apply(metrics)).toBe(true); // redelivered: nothing new
    expect((await repository.metrics(db.fork(), run.id)).map((m) => [m.name, m.value])).toEqual([['train/loss', 0.5]]);
    expect(await apply({ kind: 'succeeded', runId: run.id, registration: registration({ f1: 0.8, iou: 0.7 }) })).toBe(true);
    // Late or repeated reports of a finished run change nothing.
    expect(await apply({ kind: 'started', runId: run.id, attempt: 2 })).toBe(false);
    expect(await apply({ kind: 'failed', runId: run.id, code: 'x', message: 'late' })).toBe(false);
    expect(await apply({ kind: 'succeeded', runId: run.id, registration: registration({ f1: 0.8, iou: 0.7 }) })).toBe(false);

    const done = await status(run.id);
    expect(done.status).toBe(TrainingRunStatus.SUCCEEDED);
    expect(done.weightsSha256).toBe('w'.repeat(64));
    const version = await repository.findVersion(db.fork(), 'acme', done.modelVersion!.id);
    expect(version).toMatchObject({ stage: ModelStage.STAGING, referenceStatsKey: 'training/acme/x/reference_stats.json', gate: { passed: true } });
    const kinds = (await replayEvents(db.fork(), `training:${run.id}`, 0)).map((e) => e.payload.kind);
    expect(kinds).toEqual(['queued', 'started', 'metrics', 'metrics', 'succeeded']);
    const stage = await replayEvents(db.fork(), 'model:acme:snunet', 0);
    expect(stage.at(-1)).toMatchObject({ routingKey: 'model.snunet.stage', payload: { modelName: 'snunet', versionId: version!.id, stage: 'STAGING', tenant: 'acme' } });
  });

  it('keeps a version below the gate at NONE, and one worse than Production by more than the margin', async () => {
    const low = await queued('gated');
    await apply({ kind: 'succeeded', runId: low.id, registration: registration({ f1: 0.6, iou: 0.6 }) });
    const lowVersion = (await repository.findVersion(db.fork(), 'acme', (await status(low.id)).modelVersion!.id))!;
    expect(lowVersion.stage).toBe(ModelStage.NONE);
    expect(lowVersion.gate?.reasons).toContain('f1 0.6000 < minimum 0.7000');

    const good = await queued('gated');
    await apply({ kind: 'succeeded', runId: good.id, registration: registration({ f1: 0.9, iou: 0.8 }) });
    const goodVersion = (await status(good.id)).modelVersion!;
    await registry.setStage(db.fork(), 'acme', goodVersion.id, ModelStage.PRODUCTION);

    const worse = await queued('gated');
    await apply({ kind: 'succeeded', runId: worse.id, registration: registration({ f1: 0.85, iou: 0.79 }) });
    const worseVersion = (await repository.findVersion(db.fork(), 'acme', (await status(worse.id)).modelVersion!.id))!;
    expect(worseVersion.stage).toBe(ModelStage.NONE);
    expect(worseVersion.gate?.comparedWith?.versionId).toBe(goodVersion.id);
    expect(worseVersion.gate?.passed).toBe(false);
  });

  it('fails a run whose registration the registry refuses, registering nothing', async () => {
    const run = await queued('refused');
    const bad = { ...registration({ f1: 0.9 }), contract: { bands: 0 } };
    await apply({ kind: 'succeeded', runId: run.id, registration: bad });
    const failed = await status(run.id);
    expect(failed).toMatchObject({ status: TrainingRunStatus.FAILED, errorCode: 'registration_refused', modelVersion: null });
    expect(failed.error).toMatch(/contract.bands/);
    expect(await repository.findRegisteredModelByName(db.fork(), 'acme', 'refused')).toBeNull();
  });

  it('ignores reports for runs it does not hold or of another tenant', async () => {
    const run = await queued();
    expect(await service.applyEvent(db.fork(), 'globex', { kind: 'started', runId: run.id, attempt: 1 })).toBe(false);
    expect(await apply({ kind: 'started', runId: randomUUID(), attempt: 1 })).toBe(false);
  });
});

describe('cancelling', () => {
  it('cancels a queued run at once, and tells the service again when it picks the run up later', async () => {
    const run = await queued();
    const cancelled = await service.cancelTraining(db.fork(), actor, run.id);
    expect(cancelled.status).toBe(TrainingRunStatus.CANCELLED);
    expect(await apply({ kind: 'started', runId: run.id, attempt: 1 })).toBe(true);
    expect((await status(run.id)).status).toBe(TrainingRunStatus.CANCELLED);
    const routing = (await replayEvents(db.fork(), `training:${run.id}`, 0)).map((e) => e.routingKey);
    expect(routing.filter((k) => k === `training.${run.id}.cancel`)).toHaveLength(2);
  });

  it('asks a running run to stop, then records CANCELLED when the service says so; a finished run is a conflict', async () => {
    const run = await queued();
    await apply({ kind: 'started', runId: run.id, attempt: 1 });
    const asked = await service.cancelTraining(db.fork(), actor, run.id);
    expect(asked).toMatchObject({ status: TrainingRunStatus.RUNNING });
    expect(asked.cancelRequestedAt).not.toBeNull();
    await apply({ kind: 'cancelled', runId: run.id, message: 'cancelled on request' });
    expect((await status(run.id)).status).toBe(TrainingRunStatus.CANCELLED);

    const finished = await queued();
    await apply({ kind: 'failed', runId: finished.id, code: 'invalid_config', message: 'invalid_config: config.baseWidth must be …' });
    await expect(service.cancelTraining(db.fork(), actor, finished.id)).rejects.toMatchObject({ extensions: { code: 'CONFLICT' } });
  });
});
