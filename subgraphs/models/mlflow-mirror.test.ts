// The MLflow mirror against a fake tracking server that checks every request against MLflow's documented shapes and
// limits: runs with params, metrics (in batches within the log-batch limits), artifacts and status; versions with the
// stage aliases; retries; failures that leave the registry untouched.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import type { Database } from '../../lib/db.js';
import type { LoggedEvent } from '../../lib/events/event-log.js';
import { LocalObjectStore } from '../../lib/storage/index.js';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LOG_BATCH_LIMITS, MlflowClient, MlflowError } from './mlflow-client.js';
import { FakeMlflowServer } from './mlflow-fake-server.js';
import { MlflowMirror } from './mlflow-mirror.js';
import { progressEvent, type ProgressKind, type TrainingProgressPayload } from './model-events.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelStage, ModelVersionSource, TrainingRunStatus } from './models.contracts.js';
import { anUploadedVersion, aRun, openModelsDatabase } from './testing.js';
import type { TrainingRunEntity } from './training-run.entity.js';

let db: Database;
let close: () => Promise<void>;
let fake: FakeMlflowServer;
let mirror: MlflowMirror;
let store: LocalObjectStore;
let dir: string;
const repository = new ModelRegistryRepository();
const registry = new ModelRegistryService(repository);

beforeAll(async () => {
  ({ db, close } = await openModelsDatabase());
  fake = new FakeMlflowServer();
  await fake.start();
  dir = await mkdtemp(join(tmpdir(), 'lcd-mlflow-'));
  store = new LocalObjectStore({ root: dir, publicBaseUrl: 'http://127.0.0.1:1', signingSecret: Buffer.alloc(32, 1) });
  const client = new MlflowClient({ trackingUri: fake.url, attempts: 3, backoffMs: 10 });
  mirror = new MlflowMirror({ db, store, repository, log: pino({ level: 'silent' }) }, { client, experimentPrefix: 'lcd', artifactMaxBytes: 1024 * 1024 });
});
afterAll(async () => {
  await fake?.close();
  await close();
  await rm(dir, { recursive: true, force: true });
});

let sequence = 0;
function logged(run: TrainingRunEntity, kind: ProgressKind, extra: Partial<TrainingProgressPayload> = {}): LoggedEvent {
  const e = progressEvent({ runId: run.id, tenant: run.tenant, modelName: run.modelName, kind, status: TrainingRunStatus.RUNNING, ...extra });
  return { ...e, sequence: ++sequence, occurredAt: new Date().toISOString() };
}

function stageLogged(payload: Record<string, unknown>): LoggedEvent {
  return { stream: `model:${String(payload.tenant)}:${String(payload.modelName)}`, sequence: ++sequence, type: 'model.stage', tenant: String(payload.tenant), routingKey: `model.${String(payload.modelName)}.stage`, payload, occurredAt: new Date().toISOString() };
}

describe('MLflow mirror', () => {
  it('mirrors a run: experiment, tags, params, metrics within the batch limits, artifacts and final status', async () => {
    const run = await registry.createTrainingRun(db.fork(), aRun('acme', { params: { epochs: 2, learningRate: 0.01, loss: { bce: 1 } } }));
    await mirror.apply(logged(run, 'queued'));
    const mirrored = fake.runByTag('lcd.run_id', run.id)!;
    expect(mirrored).toBeDefined();
    expect(fake.experiments.has('lcd/acme/snunet')).toBe(true);
    expect(mirrored.tags.get('lcd.dataset_version')).toBe(run.datasetVersionId);
    expect(Object.fromEntries(mirrored.params)).toMatchObject({ 'config.epochs': '2', 'config.learningRate': '0.01', 'config.loss': '{"bce":1}' });
    expect((await repository.findRun(db.fork(), 'acme', run.id))!.mlflowRunId).toBe(mirrored.info.run_id);

    await mirror.apply(logged(run, 'started'));
    expect(mirrored.info.status).toBe('RUNNING');

    // 150 resolved config keys and 2 500 metric values: more than one request may carry.
    const resolvedConfig = Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`k${i}`, i]));
    await mirror.apply(logged(run, 'environment', { environment: { codeVersion: 'a'.repeat(40), torch: '2.3', resolvedConfig } }));
    const metrics = Array.from({ length: 2500 }, (_, i) => ({ name: 'train/loss', step: i, epoch: 1, value: 1 / (i + 1), at: 1_700_000_000_000 + i }));
    const before = fake.requests.length;
    await mirror.apply(logged(run, 'metrics', { metrics }));
    const batches = fake.requests.slice(before).filter((r) => r.path.endsWith('runs/log-batch'));
    expect(batches).toHaveLength(3);
    for (const b of batches) expect((b.body as { metrics: unknown[] }).metrics.length).toBeLessThanOrEqual(LOG_BATCH_LIMITS.metrics);
    expect(mirrored.metrics.filter((m) => m.key === 'train/loss')).toHaveLength(2500);
    expect(mirrored.params.get('resolved.k149')).toBe('149');
    expect(mirrored.tags.get('mlflow.source.git.commit')).toBe('a'.repeat(40));

    await store.put('training/acme/r/evaluation.json', Buffer.from('{"f1":0.5}'));
    await mirror.apply(logged(run, 'artifacts', { artifacts: [{ name: 'evaluation.json', key: 'training/acme/r/evaluation.json', byteSize: 10, sha256: 'x' }], logKey: null }));
    expect(fake.artifacts.get(`${mirrored.info.experiment_id}/${mirrored.info.run_id}/artifacts/evaluation.json`)?.toString()).toBe('{"f1":0.5}');
    expect(mirrored.tags.get('lcd.artifact.evaluation.json')).toBe('training/acme/r/evaluation.json');

    await mirror.apply(logged(run, 'failed', { error: 'invalid_config: config.baseWidth …', errorCode: 'invalid_config' }));
    expect(mirrored.info.status).toBe('FAILED');
    expect(mirrored.tags.get('lcd.error_code')).toBe('invalid_config');
    // A redelivered event logs the same params again, which MLflow accepts.
    await mirror.apply(logged(run, 'queued'));
  });

  it('registers a trained version with its run and moves the stage aliases', async () => {
    const run = await registry.createTrainingRun(db.fork(), aRun('acme', { modelName: 'aliased' }));
    const version = await registry.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'aliased', source: ModelVersionSource.TRAINED, trainingRunId: run.id }));
    await registry.setStage(db.fork(), 'acme', version.id, ModelStage.STAGING);
    await mirror.apply(logged(run, 'succeeded', { modelVersion: { id: version.id, version: 1, stage: 'STAGING', sha256: version.sha256, artifactKey: version.artifactKey, metrics: {}, gatePassed: true } }));
    const model = fake.registeredModels.get('lcd.acme.aliased')!;
    expect(model.versions).toHaveLength(1);
    expect(model.versions[0]!.run_id).toBe(fake.runByTag('lcd.run_id', run.id)!.info.run_id);
    expect(model.versions[0]!.tags.get('lcd.version_id')).toBe(version.id);
    expect(model.aliases.get('staging')).toBe('1');
    expect(fake.runByTag('lcd.run_id', run.id)!.info.status).toBe('FINISHED');

    await mirror.apply(stageLogged({ modelName: 'aliased', versionId: version.id, stage: 'PRODUCTION', previousStage: 'STAGING', tenant: 'acme' }));
    expect(model.aliases.get('production')).toBe('1');
    expect(model.aliases.has('staging')).toBe(false);
    // Mirrored once: a second success event does not create another version.
    await mirror.apply(logged(run, 'succeeded', { modelVersion: { id: version.id, version: 1, stage: 'PRODUCTION', sha256: version.sha256, artifactKey: version.artifactKey, metrics: {}, gatePassed: true } }));
    expect(model.versions).toHaveLength(1);
  });

  it('creates an uploaded version (no run) on its first stage change', async () => {
    const version = await registry.registerVersion(db.fork(), anUploadedVersion('*', { modelName: 'demo' }));
    await registry.setStage(db.fork(), '*', version.id, ModelStage.PRODUCTION);
    await mirror.apply(stageLogged({ modelName: 'demo', versionId: version.id, stage: 'PRODUCTION', previousStage: 'NONE', tenant: '*' }));
    const model = fake.registeredModels.get('lcd.platform.demo')!;
    expect(model.versions[0]!.source).toBe(`lcd://objects/${version.artifactKey}`);
    expect(model.aliases.get('production')).toBe('1');
  });

  it('retries a server that fails for a while, and leaves the registry alone when it keeps failing', async () => {
    const run = await registry.createTrainingRun(db.fork(), aRun('acme', { modelName: 'flaky' }));
    fake.failNext = 2;
    await mirror.apply(logged(run, 'queued'));
    expect(fake.runByTag('lcd.run_id', run.id)).toBeDefined();

    fake.failNext = 100;
    await expect(mirror.apply(logged(run, 'started'))).rejects.toBeInstanceOf(MlflowError);
    fake.failNext = 0;
    expect((await repository.findRun(db.fork(), 'acme', run.id))!.status).toBe(TrainingRunStatus.QUEUED);
  });

  it('is refused by the fake for requests MLflow would refuse (the fake is strict)', async () => {
    const client = new MlflowClient({ trackingUri: fake.url, attempts: 1 });
    const res = await fetch(`${fake.url}/api/2.0/mlflow/runs/log-batch`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ run_id: 'x', metrics: Array.from({ length: 1001 }, (_, i) => ({ key: 'm', value: 1, timestamp: 1, step: i })) }),
    });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ error_code: 'INVALID_PARAMETER_VALUE' });
    await expect(client.createRun({ experimentId: 'nope', runName: 'r', startTime: 1, tags: [] })).rejects.toMatchObject({ errorCode: 'RESOURCE_DOES_NOT_EXIST' });
    const unknownField = await fetch(`${fake.url}/api/2.0/mlflow/runs/update`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ run_id: 'x', state: 'DONE' }) });
    expect(unknownField.status).toBe(400);
  });
});
