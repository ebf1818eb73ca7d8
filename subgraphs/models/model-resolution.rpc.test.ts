import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { fakeOnnxModel } from '../../lib/model/testing.js';
import { createObjectStore, type ObjectStore } from '../../lib/storage/index.js';
import { ModelStage } from './models.contracts.js';
import { ensurePlatformModel, resolveModel, type ModelResolutionDeps } from './model-resolution.rpc.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { anUploadedVersion, openModelsDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;
let dir: string;
let store: ObjectStore;
const repository = new ModelRegistryRepository();
const deps: ModelResolutionDeps = { repository, service: new ModelRegistryService(repository) };

beforeAll(async () => {
  ({ db, close } = await openModelsDatabase());
  dir = await mkdtemp(join(tmpdir(), 'lcd-models-'));
  store = createObjectStore({ url: undefined, localDir: dir, publicBaseUrl: 'http://127.0.0.1:1', signingSecret: randomBytes(32) });
});
afterAll(async () => {
  await close();
  await rm(dir, { recursive: true, force: true });
});

async function production(tenant: string, modelName: string) {
  const version = await deps.service.registerVersion(db.fork(), anUploadedVersion(tenant, { modelName }));
  await deps.service.setStage(db.fork(), tenant, version.id, ModelStage.PRODUCTION);
  return version;
}

describe('models.resolve', () => {
  it("resolves the tenant's own Production version first, else the platform's", async () => {
    const platform = await production('*', 'shared-model');
    expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'shared-model' })).toMatchObject({ found: true, versionId: platform.id, owner: '*' });
    const own = await production('acme', 'shared-model');
    expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'shared-model' })).toMatchObject({
      found: true,
      versionId: own.id,
      owner: 'acme',
      artifactKey: own.artifactKey,
      sha256: own.sha256,
    });
    expect(await resolveModel(deps, db, { tenant: 'globex', modelName: 'shared-model' })).toMatchObject({ versionId: platform.id });
  });

  it("never resolves another tenant's model or version", async () => {
    const theirs = await production('globex', 'private-model');
    expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'private-model' })).toEqual({
      found: false,
      reason: 'no model named private-model for tenant acme or the platform',
    });
    expect((await resolveModel(deps, db, { tenant: 'acme', versionId: theirs.id })).found).toBe(false);
    expect(await resolveModel(deps, db, { tenant: 'globex', versionId: theirs.id })).toMatchObject({ found: true, modelName: 'private-model' });
  });

  it('says when a model has no Production version', async () => {
    await deps.service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'staged-only' }));
    expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'staged-only' })).toEqual({ found: false, reason: 'model staged-only has no Production version' });
  });

  describe('name@alias', () => {
    /** Points `alias` of the version's model at it, as setModelAlias does. */
    async function alias(tenant: string, versionId: string, name: string) {
      await db.fork().transactional(async (tx) => {
        const locked = await deps.service.lockOwnVersion(tx, tenant, versionId);
        await deps.service.applyAlias(tx, locked.model, locked.version, name, { changedBy: 'engineer-1', reason: '' });
      });
    }

    it('resolves to the version the alias points to, not the Production one', async () => {
      const serving = await production('acme', 'aliased');
      const challenger = await deps.service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'aliased' }));
      await alias('acme', challenger.id, 'challenger');
      expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'aliased@challenger', stage: 'PRODUCTION' })).toMatchObject({
        found: true,
        versionId: challenger.id,
        modelName: 'aliased',
        alias: 'challenger',
        owner: 'acme',
        stage: ModelStage.NONE,
        artifactKey: challenger.artifactKey,
        sha256: challenger.sha256,
      });
      // The plain name still serves Production; moving the alias moves what name@alias serves.
      const plain = await resolveModel(deps, db, { tenant: 'acme', modelName: 'aliased' });
      expect(plain).toMatchObject({ found: true, versionId: serving.id, stage: ModelStage.PRODUCTION });
      expect(plain).not.toHaveProperty('alias');
      await alias('acme', serving.id, 'challenger');
      expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'aliased@challenger' })).toMatchObject({ versionId: serving.id });
    });

    it("uses the tenant's own model first, else the platform's, and never another tenant's", async () => {
      const platform = await deps.service.registerVersion(db.fork(), anUploadedVersion('*', { modelName: 'shared-aliased' }));
      await alias('*', platform.id, 'champion');
      expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'shared-aliased@champion' })).toMatchObject({ found: true, versionId: platform.id, owner: '*' });
      // acme's own model of that name without the alias: the platform's alias still serves.
      const own = await deps.service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'shared-aliased' }));
      expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'shared-aliased@champion' })).toMatchObject({ versionId: platform.id });
      await alias('acme', own.id, 'champion');
      expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'shared-aliased@champion' })).toMatchObject({ versionId: own.id, owner: 'acme' });
      expect(await resolveModel(deps, db, { tenant: 'globex', modelName: 'shared-aliased@champion' })).toMatchObject({ versionId: platform.id, owner: '*' });

      const theirs = await deps.service.registerVersion(db.fork(), anUploadedVersion('globex', { modelName: 'globex-only' }));
      await alias('globex', theirs.id, 'champion');
      expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'globex-only@champion' })).toEqual({
        found: false,
        reason: 'no model named globex-only for tenant acme or the platform',
      });
    });

    it('answers not found naming the alias when the model has no such alias, and refuses a malformed one', async () => {
      await production('acme', 'no-alias');
      expect(await resolveModel(deps, db, { tenant: 'acme', modelName: 'no-alias@challenger' })).toEqual({ found: false, reason: 'model no-alias has no alias challenger' });
      for (const bad of ['no-alias@', 'no-alias@Champion', '@challenger', 'no-alias@a@b']) {
        const reply = await resolveModel(deps, db, { tenant: 'acme', modelName: bad });
        expect(reply, bad).toMatchObject({ found: false, reason: expect.stringContaining('is not a model reference') });
      }
    });
  });

  it('registers a platform model from an ONNX file once, checked against the contract', async () => {
    const bytes = fakeOnnxModel();
    const first = await ensurePlatformModel(deps, db, store, { name: 'demo', bytes });
    expect(first.registered).toBe(true);
    expect(await ensurePlatformModel(deps, db, store, { name: 'demo', bytes })).toEqual({ versionId: first.versionId, registered: false });
    const resolved = await resolveModel(deps, db, { tenant: 'acme', modelName: 'demo' });
    expect(resolved).toMatchObject({ found: true, versionId: first.versionId, owner: '*' });
    expect(await store.get((resolved as { artifactKey: string }).artifactKey)).toEqual(Buffer.from(bytes));
    await expect(ensurePlatformModel(deps, db, store, { name: 'demo', bytes: Buffer.from('not onnx') })).rejects.toThrow('not an ONNX model');
  });
});
