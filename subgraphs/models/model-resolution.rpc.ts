// The models subgraph answers "which model version should run, and where are its weights?" over RabbitMQ
// (`models.resolve`), so that inference workers never read this subgraph's tables. A tenant's own model comes first,
// else the platform-wide one (tenant `*`). Also here: registering a platform model from an ONNX file (the demo model
// of an embedded start), through the registry service like any other version.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { createEnvelope, PermanentMessageError, type Broker, type Envelope, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { isUuid } from '../../lib/ids.js';
import { registryContract, validateModelContract } from '../../lib/model/contract.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { serviceLogger } from '../../lib/telemetry.js';
import { ModelStage, ModelVersionSource, PLATFORM_TENANT } from './models.contracts.js';
import type { ModelRegistryRepository } from './model-registry.repository.js';
import type { ModelRegistryService } from './model-registry.service.js';
import type { ModelVersionEntity } from './model-version.entity.js';

export const MODEL_RESOLUTION_QUEUE = 'models.resolve';
export const MODEL_RESOLUTION_TYPES = { request: 'models.resolve.request', reply: 'models.resolve.reply' } as const;

export const modelResolutionRequestSchema = z
  .object({
    tenant: z.string().min(1).max(200),
    modelName: z.string().min(1).max(100).optional(),
    /** Only PRODUCTION is resolved by stage; give versionId for a pinned version. */
    stage: z.literal('PRODUCTION').optional(),
    versionId: z.string().min(1).max(100).optional(),
  })
  .refine((r) => r.versionId !== undefined || r.modelName !== undefined, { message: 'give modelName or versionId' });
export type ModelResolutionRequest = z.infer<typeof modelResolutionRequestSchema>;

export const modelResolutionReplySchema = z.discriminatedUnion('found', [
  z.object({
    found: z.literal(true),
    versionId: z.string(),
    modelName: z.string(),
    /** The tenant that owns the model: the caller's, or `*` for a platform model. */
    owner: z.string(),
    version: z.number().int(),
    stage: z.string(),
    artifactKey: z.string(),
    sha256: z.string(),
    byteSize: z.number().int(),
    contract: z.record(z.string(), z.unknown()),
    /** The version's evaluation metrics (f1, iou, …); absent in replies of older models subgraphs. */
    metrics: z.record(z.string(), z.number()).optional(),
    /** Object-store key of the version's reference_stats.json (drift monitoring); null when it has none. */
    referenceStatsKey: z.string().nullable().optional(),
  }),
  z.object({ found: z.literal(false), reason: z.string() }),
]);
export type ModelResolutionReply = z.infer<typeof modelResolutionReplySchema>;

export interface ModelResolutionDeps {
  service: ModelRegistryService;
  repository: ModelRegistryRepository;
}

function found(version: ModelVersionEntity, modelName: string): ModelResolutionReply {
  return {
    found: true,
    versionId: version.id,
    modelName,
    owner: version.tenant,
    version: version.version,
    stage: version.stage,
    artifactKey: version.artifactKey,
    sha256: version.sha256,
    byteSize: version.byteSize,
    contract: version.contract as unknown as Record<string, unknown>,
    metrics: { ...version.metrics },
    referenceStatsKey: version.referenceStatsKey ?? null,
  };
}

/** Resolves one request against the registry; never throws for an unknown model (the reply says so). */
export async function resolveModel(deps: ModelResolutionDeps, db: Database, request: ModelResolutionRequest): Promise<ModelResolutionReply> {
  const em = db.fork();
  const { tenant } = request;
  if (request.versionId !== undefined) {
    const version = isUuid(request.versionId) ? await deps.repository.findVersion(em, tenant, request.versionId) : null;
    if (!version) return { found: false, reason: `model version ${request.versionId} does not exist or is not visible to tenant ${tenant}` };
    await em.populate(version, ['registeredModel']);
    const name = version.registeredModel.name;
    if (request.modelName !== undefined && request.modelName !== name) {
      return { found: false, reason: `model version ${request.versionId} belongs to model ${name}, not ${request.modelName}` };
    }
    return found(version, name);
  }
  const modelName = request.modelName!;
  // The tenant's own model first; when it has no Production version, the platform's model of that name serves.
  const owners = tenant === PLATFORM_TENANT ? [PLATFORM_TENANT] : [tenant, PLATFORM_TENANT];
  let known = false;
  for (const owner of owners) {
    const model = await deps.repository.findRegisteredModelByName(em, owner, modelName);
    if (!model || model.tenant !== owner) continue;
    known = true;
    const production = await deps.repository.productionVersion(em, owner, model.id);
    if (production) return found(production, modelName);
  }
  return {
    found: false,
    reason: known ? `model ${modelName} has no Production version` : `no model named ${modelName} for tenant ${tenant} or the platform`,
  };
}

/** Serves `models.resolve` until the returned function is called (a subgraph `background`). */
export async function serveModelResolution(deps: ModelResolutionDeps, ctx: { db: Database; runtime: { broker: Broker } }): Promise<() => Promise<void>> {
  const log = serviceLogger('models-subgraph').child({ component: 'model-resolution' });
  const subscription: Subscription = await ctx.runtime.broker.serveRpc<ModelResolutionRequest, ModelResolutionReply>(
    MODEL_RESOLUTION_QUEUE,
    async (delivery) => {
      const request = delivery.envelope.payload;
      if (request.tenant !== delivery.envelope.tenant) throw new PermanentMessageError('the request names another tenant than its envelope');
      const reply = await resolveModel(deps, ctx.db, request);
      log.debug({ tenant: request.tenant, modelName: request.modelName, versionId: request.versionId, found: reply.found }, 'model resolved');
      return createEnvelope(MODEL_RESOLUTION_TYPES.reply, reply, { tenant: request.tenant });
    },
    { payloadSchema: modelResolutionRequestSchema as unknown as z.ZodType<ModelResolutionRequest>, prefetch: 8 },
  );
  return () => subscription.close();
}

/** Asks the models subgraph; resolves to its reply (found or not), rejects on broker errors. */
export async function requestModelResolution(broker: Broker, request: ModelResolutionRequest, timeoutMs: number): Promise<ModelResolutionReply> {
  const envelope: Envelope<ModelResolutionRequest> = createEnvelope(MODEL_RESOLUTION_TYPES.request, request, { tenant: request.tenant });
  const reply = await broker.rpc(MODEL_RESOLUTION_QUEUE, envelope, { timeoutMs, replySchema: modelResolutionReplySchema });
  return reply.payload;
}

/**
 * Registers `bytes` as the Production version of the platform-wide model `name` unless that version already is it
 * (same sha256): the demo model of an embedded start. The file is checked against the model contract first.
 */
export async function ensurePlatformModel(
  deps: ModelResolutionDeps,
  db: Database,
  store: ObjectStore,
  model: { name: string; bytes: Uint8Array; createdBy?: string },
): Promise<{ versionId: string; registered: boolean }> {
  const sha256 = createHash('sha256').update(model.bytes).digest('hex');
  const contract = validateModelContract(model.bytes);
  const em = db.fork();
  const existing = await deps.repository.findRegisteredModelByName(em, PLATFORM_TENANT, model.name);
  if (existing) {
    const production = await deps.repository.productionVersion(em, PLATFORM_TENANT, existing.id);
    if (production?.sha256 === sha256) return { versionId: production.id, registered: false };
  }
  const artifactKey = `models/platform/${model.name}/${sha256}.onnx`;
  const head = await store.head(artifactKey);
  if (!head || head.size !== model.bytes.byteLength) await store.put(artifactKey, model.bytes, { contentType: 'application/octet-stream' });
  const version = await deps.service.registerVersion(db.fork(), {
    tenant: PLATFORM_TENANT,
    modelName: model.name,
    artifactKey,
    sha256,
    byteSize: model.bytes.byteLength,
    metrics: {},
    contract: registryContract(contract),
    source: ModelVersionSource.UPLOADED,
    createdBy: model.createdBy ?? 'platform',
  });
  await deps.service.setStage(db.fork(), PLATFORM_TENANT, version.id, ModelStage.PRODUCTION);
  return { versionId: version.id, registered: true };
}
