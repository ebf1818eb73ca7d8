import { UniqueConstraintViolationException } from '@mikro-orm/core';
import { GraphQLError } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { ModelStage, ModelVersionSource, PLATFORM_TENANT } from './models.contracts.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { TrainingRunEntity } from './training-run.entity.js';
import { aContract, anUploadedVersion, aRun, openModelsDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;
const service = new ModelRegistryService(new ModelRegistryRepository());

beforeAll(async () => {
  ({ db, close } = await openModelsDatabase());
});
afterAll(async () => {
  await close();
});

async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof GraphQLError) return error.extensions.code;
    throw error;
  }
  throw new Error('expected an API error');
}

const stagesOf = async (tenant: string, modelName: string) => {
  const rows = await db.fork().find(ModelVersionEntity, { tenant, registeredModel: { name: modelName, tenant } }, { orderBy: { version: 'asc' } });
  return rows.map((v) => `${v.version}:${v.stage}`);
};

describe('createTrainingRun', () => {
  it('queues a run with its configuration', async () => {
    const run = await service.createTrainingRun(db.fork(), aRun('acme'));
    const stored = await db.fork().findOneOrFail(TrainingRunEntity, run.id);
    expect(stored).toMatchObject({
      tenant: 'acme',
      status: 'QUEUED',
      modelName: 'snunet',
      params: { epochs: 2, learningRate: 0.001, loss: { bce: 0.5, dice: 0.5 } },
      artifacts: [],
      error: null,
      startedAt: null,
      modelVersion: null,
    });
  });

  it('returns the same run for a repeated idempotency key, and refuses the key for another request', async () => {
    const first = await service.createTrainingRun(db.fork(), aRun('acme', { idempotencyKey: 'start-1' }));
    const again = await service.createTrainingRun(db.fork(), aRun('acme', { idempotencyKey: 'start-1' }));
    expect(again.id).toBe(first.id);
    expect(await codeOf(service.createTrainingRun(db.fork(), aRun('acme', { idempotencyKey: 'start-1', modelName: 'other' })))).toBe('CONFLICT');
    // Keys are per tenant.
    const elsewhere = await service.createTrainingRun(db.fork(), aRun('globex', { idempotencyKey: 'start-1' }));
    expect(elsewhere.id).not.toBe(first.id);
  });

  it('makes one run when the same key arrives twice at once', async () => {
    const runs = await Promise.all([1, 2, 3].map(() => service.createTrainingRun(db.fork(), aRun('acme', { idempotencyKey: 'race' }))));
    expect(new Set(runs.map((r) => r.id)).size).toBe(1);
    expect(await db.fork().count(TrainingRunEntity, { tenant: 'acme', idempotencyKey: 'race' })).toBe(1);
  });

  it('refuses a malformed request with BAD_USER_INPUT', async () => {
    expect(await codeOf(service.createTrainingRun(db.fork(), aRun('acme', { datasetVersionId: 'v1' })))).toBe('BAD_USER_INPUT');
    expect(await codeOf(service.createTrainingRun(db.fork(), aRun('acme', { modelName: 'a.b' })))).toBe('BAD_USER_INPUT');
    expect(await codeOf(service.createTrainingRun(db.fork(), aRun('acme', { params: [] as never })))).toBe('BAD_USER_INPUT');
  });
});

describe('recordMetrics', () => {
  it('is idempotent on (run, name, step): a redelivered report changes nothing', async () => {
    const run = await service.createTrainingRun(db.fork(), aRun('acme'));
    const report = [
      { name: 'train/loss', step: 1, epoch: 0, value: 0.9 },
      { name: 'train/loss', step: 2, epoch: 0, value: 0.7 },
      { name: 'val/iou', step: 2, epoch: 0, value: 0.4 },
    ];
    expect(await service.recordMetrics(db.fork(), 'acme', run.id, report)).toBe(3);
    expect(await service.recordMetrics(db.fork(), 'acme', run.id, report)).toBe(0);
    const more = [...report.map((m) => ({ ...m, value: 123 })), { name: 'train/loss', step: 3, value: 0.5 }];
    expect(await service.recordMetrics(db.fork(), 'acme', run.id, more)).toBe(1);
    const stored = await new ModelRegistryRepository().metrics(db.fork(), run.id);
    expect(stored.map((m) => [m.name, m.step, m.value, m.epoch])).toEqual([
      ['train/loss', 1, 0.9, 0],
      ['train/loss', 2, 0.7, 0],
      ['train/loss', 3, 0.5, null],
      ['val/iou', 2, 0.4, 0],
    ]);
  });

  it("does not write to another tenant's run, and refuses values GraphQL cannot return", async () => {
    const run = await service.createTrainingRun(db.fork(), aRun('acme'));
    expect(await codeOf(service.recordMetrics(db.fork(), 'globex', run.id, [{ name: 'loss', step: 1, value: 1 }]))).toBe('NOT_FOUND');
    expect(await codeOf(service.recordMetrics(db.fork(), 'acme', 'not-a-uuid', []))).toBe('NOT_FOUND');
    expect(await codeOf(service.recordMetrics(db.fork(), 'acme', run.id, [{ name: 'loss', step: 1, value: Number.NaN }]))).toBe('BAD_USER_INPUT');
    expect(await codeOf(service.recordMetrics(db.fork(), 'acme', run.id, [{ name: 'loss', step: -1, value: 1 }]))).toBe('BAD_USER_INPUT');
  });
});

describe('registerVersion', () => {
  it('numbers versions 1, 2, 3 and creates the registered model on the first', async () => {
    const versions = [];
    for (let i = 0; i < 3; i++) versions.push(await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'sequential' })));
    expect(versions.map((v) => v.version)).toEqual([1, 2, 3]);
    expect(new Set(versions.map((v) => v.registeredModel.id)).size).toBe(1);
    const model = await service.getRegisteredModel(db.fork(), 'acme', 'sequential');
    expect(model.latestVersionNumber).toBe(3);
    expect(versions[0]).toMatchObject({ stage: 'NONE', aliases: [], source: 'UPLOADED', tenant: 'acme', trainingRun: null });
  });

  it('hands out distinct numbers to concurrent registrations', async () => {
    const versions = await Promise.all(
      Array.from({ length: 6 }, () => service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'concurrent' }))),
    );
    expect(versions.map((v) => v.version).sort((a, b) => a - b)).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('keeps tenants apart: the same name is another model with its own numbering', async () => {
    const a = await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'shared-name' }));
    const b = await service.registerVersion(db.fork(), anUploadedVersion('globex', { modelName: 'shared-name' }));
    expect([a.version, b.version]).toEqual([1, 1]);
    expect(a.registeredModel.id).not.toBe(b.registeredModel.id);
    expect(await codeOf(service.getModelVersion(db.fork(), 'globex', a.id))).toBe('NOT_FOUND');
    expect((await service.getRegisteredModel(db.fork(), 'globex', 'shared-name')).id).toBe(b.registeredModel.id);
  });

  it('shows platform-wide models to every tenant, preferring a tenant model of the same name', async () => {
    const platform = await service.registerVersion(db.fork(), anUploadedVersion(PLATFORM_TENANT, { modelName: 'demo' }));
    expect((await service.getModelVersion(db.fork(), 'acme', platform.id)).id).toBe(platform.id);
    expect((await service.getRegisteredModel(db.fork(), 'globex', 'demo')).tenant).toBe(PLATFORM_TENANT);
    // A tenant registering the same name gets a model of its own; the platform's is untouched.
    const own = await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'demo' }));
    expect(own.version).toBe(1);
    expect((await service.getRegisteredModel(db.fork(), 'acme', 'demo')).tenant).toBe('acme');
    expect((await service.getRegisteredModel(db.fork(), 'globex', 'demo')).tenant).toBe(PLATFORM_TENANT);
  });

  it('links a trained version and its run both ways, once', async () => {
    const run = await service.createTrainingRun(db.fork(), aRun('acme', { modelName: 'trained' }));
    const input = anUploadedVersion('acme', { modelName: 'trained', source: ModelVersionSource.TRAINED, trainingRunId: run.id });
    const version = await service.registerVersion(db.fork(), input);
    expect(version.trainingRun?.id).toBe(run.id);
    const reloaded = await db.fork().findOneOrFail(TrainingRunEntity, run.id);
    expect(reloaded.modelVersion?.id).toBe(version.id);
    expect(await codeOf(service.registerVersion(db.fork(), input))).toBe('CONFLICT');
    expect(await codeOf(service.registerVersion(db.fork(), { ...input, tenant: 'globex' }))).toBe('NOT_FOUND');
    expect(await codeOf(service.registerVersion(db.fork(), { ...input, modelName: 'another' }))).toBe('BAD_USER_INPUT');
  });

  it('refuses inconsistent or invalid input, naming the field', async () => {
    const cases: [Partial<Parameters<typeof anUploadedVersion>[1]>, string][] = [
      [{ source: ModelVersionSource.TRAINED }, 'trainingRunId'],
      [{ trainingRunId: '5f0c7b8e-2c1a-4d1e-9a3b-7c6d5e4f3a2b' }, 'trainingRunId'],
      [{ sha256: 'abc' }, 'sha256'],
      [{ byteSize: 0 }, 'byteSize'],
      [{ artifactKey: '../escape.onnx' }, 'artifactKey'],
      [{ metrics: { iou: Number.POSITIVE_INFINITY } }, 'metrics.iou'],
      [{ contract: aContract({ bandNames: ['red'] }) }, 'contract.bandNames'],
      [{ contract: aContract({ threshold: 1 }) }, 'contract.threshold'],
      [{ contract: aContract({ outputs: [{ name: 'change_logits', dtype: 'float32', shape: ['N', 1, 'H', 'W'] }] }) }, 'contract.outputs'],
    ];
    for (const [overrides, field] of cases) {
      const error = await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'invalid', ...overrides })).catch((e: unknown) => e);
      expect(error, field).toBeInstanceOf(GraphQLError);
      expect((error as GraphQLError).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field });
    }
  });
});

describe('setStage', () => {
  it('archives the previous Production version when another is promoted', async () => {
    const versions = [];
    for (let i = 0; i < 3; i++) versions.push(await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'lifecycle' })));
    await service.setStage(db.fork(), 'acme', versions[0]!.id, ModelStage.PRODUCTION);
    await service.setStage(db.fork(), 'acme', versions[1]!.id, ModelStage.STAGING);
    expect(await stagesOf('acme', 'lifecycle')).toEqual(['1:PRODUCTION', '2:STAGING', '3:NONE']);
    const promoted = await service.setStage(db.fork(), 'acme', versions[1]!.id, ModelStage.PRODUCTION);
    expect(promoted.stage).toBe('PRODUCTION');
    expect(await stagesOf('acme', 'lifecycle')).toEqual(['1:ARCHIVED', '2:PRODUCTION', '3:NONE']);
    // Rolling back promotes the archived version again.
    await service.setStage(db.fork(), 'acme', versions[0]!.id, ModelStage.PRODUCTION);
    expect(await stagesOf('acme', 'lifecycle')).toEqual(['1:PRODUCTION', '2:ARCHIVED', '3:NONE']);
    // Same stage again changes nothing.
    await service.setStage(db.fork(), 'acme', versions[0]!.id, ModelStage.PRODUCTION);
    expect(await stagesOf('acme', 'lifecycle')).toEqual(['1:PRODUCTION', '2:ARCHIVED', '3:NONE']);
  });

  it('leaves exactly one Production version when promotions race', async () => {
    const versions = [];
    for (let i = 0; i < 4; i++) versions.push(await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'race' })));
    await Promise.all(versions.map((v) => service.setStage(db.fork(), 'acme', v.id, ModelStage.PRODUCTION)));
    const stages = await stagesOf('acme', 'race');
    expect(stages.filter((s) => s.endsWith(':PRODUCTION'))).toHaveLength(1);
    expect(stages.filter((s) => s.endsWith(':ARCHIVED'))).toHaveLength(3);
  });

  it("never changes another tenant's or the platform's versions", async () => {
    const own = await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'guarded' }));
    const platform = await service.registerVersion(db.fork(), anUploadedVersion(PLATFORM_TENANT, { modelName: 'guarded' }));
    expect(await codeOf(service.setStage(db.fork(), 'globex', own.id, ModelStage.PRODUCTION))).toBe('NOT_FOUND');
    expect(await codeOf(service.setStage(db.fork(), 'acme', platform.id, ModelStage.PRODUCTION))).toBe('NOT_FOUND');
    expect(await codeOf(service.setStage(db.fork(), 'acme', 'nope', ModelStage.PRODUCTION))).toBe('NOT_FOUND');
    expect(await codeOf(service.setStage(db.fork(), 'acme', own.id, 'LIVE' as ModelStage))).toBe('BAD_USER_INPUT');
    expect(await stagesOf('acme', 'guarded')).toEqual(['1:NONE']);
  });

  it('is backed by a partial unique index that refuses a second PRODUCTION row', async () => {
    const a = await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'sql-guard' }));
    const b = await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'sql-guard' }));
    await service.setStage(db.fork(), 'acme', a.id, ModelStage.PRODUCTION);
    const em = db.fork();
    await expect(em.nativeUpdate(ModelVersionEntity, { id: b.id }, { stage: ModelStage.PRODUCTION })).rejects.toBeInstanceOf(
      UniqueConstraintViolationException,
    );
    // Other stages may repeat freely.
    await em.nativeUpdate(ModelVersionEntity, { id: b.id }, { stage: ModelStage.ARCHIVED });
    expect(await stagesOf('acme', 'sql-guard')).toEqual(['1:PRODUCTION', '2:ARCHIVED']);
  });
});
