// The demo model committed in training/demo-model/ (model.onnx, evaluation.json, reference_stats.json) is registered
// platform-wide (tenant `*`) when the models subgraph starts, so that change detection works right after `npm start`.
// Idempotent by sha256 and safe with several replicas starting at once: everything happens under the row lock of the
// registered model. It becomes Production only when the model has no Production version, or when the Production
// version is an earlier demo model: a version an operator promoted is never replaced by a restart.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Database } from '../../lib/db.js';
import { registryContract } from '../../lib/model/contract.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { checkModelFile } from './model-file.check.js';
import type { ModelRegistryRepository } from './model-registry.repository.js';
import type { ModelRegistryService } from './model-registry.service.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { ModelStage, ModelVersionSource, PLATFORM_TENANT, type EvaluationMetrics } from './models.contracts.js';
import { modelArtifactKey } from './training.contracts.js';

/** Who registers the demo model: also how a restart recognises a Production version it may replace. */
export const DEMO_MODEL_CREATOR = 'platform:demo-model';
const METRIC_KEYS = ['f1', 'iou', 'precision', 'recall', 'kappa', 'accuracy'] as const;

/** training/demo-model of the repository, found by walking up from this module (sources and dist/ alike). */
export function defaultDemoModelDir(start: string = dirname(fileURLToPath(import.meta.url))): string | null {
  let dir = start;
  for (;;) {
    const candidate = join(dir, 'training', 'demo-model');
    if (existsSync(join(candidate, 'model.onnx'))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) return null;
    dir = parent;
  }
}

export interface DemoModelResult {
  versionId: string;
  version: number;
  /** True when this call registered the version (false: it was there already). */
  registered: boolean;
  stage: ModelStage;
}

async function readJson(path: string): Promise<Record<string, unknown> | null> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return null;
  }
}

export async function ensureDemoModel(
  deps: { repository: ModelRegistryRepository; service: ModelRegistryService },
  db: Database,
  store: ObjectStore,
  options: { name: string; dir: string },
): Promise<DemoModelResult> {
  const bytes = await readFile(join(options.dir, 'model.onnx'));
  const contract = registryContract(await checkModelFile(bytes));
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const evaluation = await readJson(join(options.dir, 'evaluation.json'));
  const metrics: EvaluationMetrics = {};
  for (const key of METRIC_KEYS) {
    const value = evaluation?.[key];
    if (typeof value === 'number' && Number.isFinite(value)) metrics[key] = value;
  }

  // Objects first (content-addressed: a concurrent replica writes the same bytes to the same keys).
  const artifactKey = modelArtifactKey(PLATFORM_TENANT, options.name, sha256);
  const head = await store.head(artifactKey);
  if (!head || head.size !== bytes.length) await store.put(artifactKey, bytes, { contentType: 'application/octet-stream' });
  const statsPath = join(options.dir, 'reference_stats.json');
  let referenceStatsKey: string | null = null;
  if (existsSync(statsPath)) {
    referenceStatsKey = artifactKey.replace(/\.onnx$/, '.reference_stats.json');
    if (!(await store.head(referenceStatsKey))) await store.put(referenceStatsKey, await readFile(statsPath), { contentType: 'application/json' });
  }

  const em = db.fork();
  return em.transactional(async (tx) => {
    await deps.repository.ensureRegisteredModel(tx, PLATFORM_TENANT, options.name);
    const model = await deps.repository.lockRegisteredModel(tx, PLATFORM_TENANT, { name: options.name });
    if (!model) throw new Error(`the platform model ${options.name} could not be created`);
    const [known] = await deps.repository.findVersionsBySha256(tx, PLATFORM_TENANT, model.id, sha256);
    if (known) return { versionId: known.id, version: known.version, registered: false, stage: known.stage };
    const registered = await deps.service.registerVersion(tx, {
      tenant: PLATFORM_TENANT,
      modelName: options.name,
      artifactKey,
      sha256,
      byteSize: bytes.length,
      metrics,
      contract,
      source: ModelVersionSource.UPLOADED,
      createdBy: DEMO_MODEL_CREATOR,
    });
    const version = await tx.findOneOrFail(ModelVersionEntity, { id: registered.id }, { refresh: true });
    version.referenceStatsKey = referenceStatsKey;
    await tx.flush();
    const production = await deps.repository.productionVersion(tx, PLATFORM_TENANT, model.id, { refresh: true });
    if (!production || production.createdBy === DEMO_MODEL_CREATOR) {
      await deps.service.setStage(tx, PLATFORM_TENANT, version.id, ModelStage.PRODUCTION, {
        changedBy: 'platform',
        reason: production ? `demo model updated (sha256 ${sha256.slice(0, 12)})` : 'demo model registered on first start',
      });
      return { versionId: version.id, version: version.version, registered: true, stage: ModelStage.PRODUCTION };
    }
    return { versionId: version.id, version: version.version, registered: true, stage: version.stage };
  });
}
