// The demo model's registration at start: Production on an empty registry, idempotent by content, one version when
// replicas start together, an updated demo model replaces an earlier one but never a version an operator promoted.
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { LocalObjectStore } from '../../lib/storage/index.js';
import { defaultDemoModelDir, ensureDemoModel } from './demo-model.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelStage, PLATFORM_TENANT } from './models.contracts.js';
import { anUploadedVersion, openModelsDatabase } from './testing.js';

const demoDir = defaultDemoModelDir();
const repository = new ModelRegistryRepository();
const service = new ModelRegistryService(repository);
const deps = { repository, service };
let dir: string;
let store: LocalObjectStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lcd-demo-model-'));
  store = new LocalObjectStore({ root: join(dir, 'objects'), publicBaseUrl: 'http://127.0.0.1:1', signingSecret: Buffer.alloc(32, 3) });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The demo model with one more metadata entry: other bytes, still a valid model. */
async function variant(name: string, marker: string): Promise<string> {
  const target = join(dir, name);
  await mkdir(target, { recursive: true });
  const bytes = await readFile(join(demoDir!, 'model.onnx'));
  const key = Buffer.from('lcd.note');
  const value = Buffer.from(marker);
  const entry = Buffer.concat([Buffer.from([0x0a, key.length]), key, Buffer.from([0x12, value.length]), value]);
  await writeFile(join(target, 'model.onnx'), Buffer.concat([bytes, Buffer.from([0x72, entry.length]), entry]));
  await copyFile(join(demoDir!, 'evaluation.json'), join(target, 'evaluation.json'));
  return target;
}

async function withDatabase<T>(fn: (db: Database) => Promise<T>): Promise<T> {
  const { db, close } = await openModelsDatabase();
  try {
    return await fn(db);
  } finally {
    await close();
  }
}

describe.skipIf(!demoDir)('the demo model', () => {
  it('becomes the platform Production version on an empty registry, once however often the platform starts', async () => {
    await withDatabase(async (db) => {
      const first = await ensureDemoModel(deps, db, store, { name: 'lcd-demo', dir: demoDir! });
      expect(first).toMatchObject({ registered: true, stage: ModelStage.PRODUCTION, version: 1 });
      const again = await ensureDemoModel(deps, db, store, { name: 'lcd-demo', dir: demoDir! });
      expect(again).toEqual({ ...first, registered: false });
      const version = (await repository.findVersion(db.fork(), 'acme', first.versionId))!;
      expect(version.tenant).toBe(PLATFORM_TENANT);
      expect(version.metrics.f1).toBeGreaterThan(0.85);
      expect(version.referenceStatsKey).toMatch(/^models\/platform\/lcd-demo\/[0-9a-f]{64}\.reference_stats\.json$/);
      expect((await store.head(version.artifactKey))?.size).toBe(version.byteSize);
    });
  });

  it('registers one version when several replicas start at once', async () => {
    await withDatabase(async (db) => {
      const results = await Promise.all([1, 2, 3].map(() => ensureDemoModel(deps, db, store, { name: 'lcd-demo', dir: demoDir! })));
      expect(new Set(results.map((r) => r.versionId)).size).toBe(1);
      expect(results.filter((r) => r.registered)).toHaveLength(1);
      const model = (await repository.findRegisteredModelByName(db.fork(), PLATFORM_TENANT, 'lcd-demo'))!;
      expect(model.latestVersionNumber).toBe(1);
    });
  });

  it('replaces an earlier demo model in Production, but not a version an operator promoted', async () => {
    await withDatabase(async (db) => {
      await ensureDemoModel(deps, db, store, { name: 'lcd-demo', dir: demoDir! });
      const updated = await ensureDemoModel(deps, db, store, { name: 'lcd-demo', dir: await variant('v2', 'two') });
      expect(updated).toMatchObject({ registered: true, stage: ModelStage.PRODUCTION, version: 2 });

      const chosen = await service.registerVersion(db.fork(), anUploadedVersion(PLATFORM_TENANT, { modelName: 'lcd-demo' }));
      await service.setStage(db.fork(), PLATFORM_TENANT, chosen.id, ModelStage.PRODUCTION, { changedBy: 'operator' });
      const next = await ensureDemoModel(deps, db, store, { name: 'lcd-demo', dir: await variant('v3', 'three') });
      expect(next).toMatchObject({ registered: true, stage: ModelStage.NONE });
      const model = (await repository.findRegisteredModelByName(db.fork(), PLATFORM_TENANT, 'lcd-demo'))!;
      expect((await repository.productionVersion(db.fork(), PLATFORM_TENANT, model.id))!.id).toBe(chosen.id);
    });
  });
});
