// The models subgraph answers "which model version should run, and where are its weights?" over RabbitMQ
// (`models.resolve`), so that inference workers never read this subgraph's tables. A model is named `name` (its
// Production version) or `name@alias` (the version the alias points to, e.g. `lcd-demo@challenger`). A tenant's own
// model comes first, else the platform-wide one (tenant `*`). Also here: registering a platform model from an ONNX file (the demo model
// of an embedded start), through the registry service like any other version.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { createEnvelope, PermanentMessageError, type Broker, type Envelope, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { isUuid } from '../../lib/ids.js';
import { registryContract, validateModelContract } from '../../lib/model/contract.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { serviceLogger } from '../../lib/telemetry.js';
import { ALIAS_PATTERN } from './lifecycle.contracts.js';
import { ModelStage, ModelVersionSource, PLATFORM_TENANT } from './models.contracts.js';
import type { ModelRegistryRepository } from './model-registry.repository.js';
import type { ModelRegistryService } from './model-registry.service.js';
import type { ModelVersionEntity } from './model-version.entity.js';

export const MODEL_RESOLUTION_QUEUE = 'models.resolve';
export const MODEL_RESOLUTION_TYPES = { request: 'models.resolve.request', reply: 'models.resolve.reply' } as const;

export const modelResolutionRequestSchema = z
  .object({
    tenant: z.string().min(1).max(200),
    /** `name` (its Production version) or `name@alias` (the version the alias points to): 100 + 1 + 40 characters at most. */
    modelName: z.string().min(1).max(141).optional(),
    /** Only PRODUCTION is resolved by stage, and only for a name without `@alias`; give versionId for a pinned version. */
    stage: z.literal('PRODUCTION').optional(),
    versionId: z.string().min(1).max(100).optional(),
  })
  .refine((r) => r.versionId !== undefined || r.modelName !== undefined, { message: 'give modelName or versionId' });
export type ModelResolutionRequest = z.infer<typeof modelResolutionRequestSchema>;

export const modelResolutionReplySchema = z.discriminatedUnion('found', [
  z.object({
    found: z.literal(true),
    versionId: z.string(),
    /** The registered model's name, without `@alias`. */
    modelName: z.string(),
    /** The alias the request named (`name@alias`); absent when it asked for the Production version or a pinned one. */
    alias: z.string().optional(),
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

/** A model named by a serving request: `name`, or `name@alias` for the version an alias points to. */
export interface ModelReference {
  name: string;
  alias: string | null;
}

/**
 * Splits `name@alias` (model names never hold `@`). Null when the alias part is not an alias name: a request naming
 * `lcd-demo@` or `lcd-demo@Champion` is refused, never served by the Production version instead.
 */
export function parseModelReference(modelName: string): ModelReference | null {
  const at = modelName.indexOf('@');
  if (at < 0) return { name: modelName, alias: null };
  const name = modelName.slice(0, at);
  const alias = modelName.slice(at + 1);
  if (name === '' || !ALIAS_PATTERN.test(alias)) return null;
  return { name, alias };
}

function found(version: ModelVersionEntity, modelName: string, alias: string | null = null): ModelResolutionReply {
  return {
    found: true,
    versionId: version.id,
    modelName,
    ...(alias !== null && { alias }),
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
  const reference = parseModelReference(request.modelName!);
  if (!reference) {
    return { found: false, reason: `${JSON.stringify(request.modelName)} is not a model reference: give a model name, or name@alias (e.g. lcd-demo@challenger)` };
  }
  const { name: modelName, alias } = reference;
  // The tenant's own model first; when it has no Production version (or not the alias asked for), the platform's
  // model of that name serves. An alias wins over `stage`: `name@alias` asks for that version, whatever its stage.
  const owners = tenant === PLATFORM_TENANT ? [PLATFORM_TENANT] : [tenant, PLATFORM_TENANT];
  let known = false;
  for (const owner of owners) {
    const model = await deps.repository.findRegisteredModelByName(em, owner, modelName);
    if (!model || model.tenant !== owner) continue;
    known = true;
    if (alias !== null) {
      const pointer = await deps.repository.findAlias(em, owner, model.id, alias);
      if (pointer) return found(pointer.modelVersion, modelName, alias);
      continue;
    }
    const production = await deps.repository.productionVersion(em, owner, model.id);
    if (production) return found(production, modelName);
  }
  if (!known) return { found: false, reason: `no model named ${modelName} for tenant ${tenant} or the platform` };
  return { found: false, reason: alias !== null ? `model ${modelName} has no alias ${alias}` : `model ${modelName} has no Production version` };
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
