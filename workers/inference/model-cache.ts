// Owns the worker's loaded models: one onnxruntime session per model version, fetched from object storage, checked
// against its sha256 and the model-file contract, warmed up, and kept in a small LRU. Work leases a version for its
// whole run, so a promotion never changes the model under a pair in progress; an evicted session is released when
// its last lease ends. Which version serves a model is asked of the models subgraph (`models.resolve`) and cached
// until a `model.<name>.stage` event or a time limit says otherwise.
import { z } from 'zod';
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { Envelope } from '../../lib/broker/broker.js';
import { LOGGED_EVENT_TYPE } from '../../lib/events/event-log.js';
import { ModelContractError, validateModelContract, type ModelContract } from '../../lib/model/contract.js';
import { OrtSession, SessionCreateError, type ExecutionProvider, type SessionSettings } from '../../lib/model/ort-session.js';
import { ObjectNotFoundError, type ObjectStore } from '../../lib/storage/index.js';
import type { ModelResolutionReply, ModelResolutionRequest } from '../../subgraphs/models/model-resolution.rpc.js';
import { PLATFORM_TENANT } from '../../subgraphs/models/models.contracts.js';
import { TRAINING_LOGGED_EVENT_TYPES } from '../../subgraphs/models/training.contracts.js';
import type { InferenceMetrics } from './metrics.js';
import { PairInputError, type ModelRunner } from './processor.js';

/** A stage change as the worker acts on it: which model of which tenant (`*`: the platform's, seen by every tenant). */
export interface StageChange {
  tenant: string;
  modelName: string;
  versionId: string;
  stage: string;
  previousStage?: string;
}

/**
 * The models subgraph appends a stage change to its event log (subgraphs/models/model-events.ts) and the event relay
 * publishes it as an `event.logged` envelope whose payload is the logged event, the change itself in its `payload`.
 * The same change is logged a second time on the tenant's stream (`models.<tenant>.stage`): only the model stream's
 * copy (`model.<name>.stage`, stream `model:<tenant>:<name>`) counts, so that each change is acted on once.
 */
const loggedStageChangeSchema = z.object({
  stream: z.string().startsWith('model:'),
  type: z.literal(TRAINING_LOGGED_EVENT_TYPES.modelStage),
  routingKey: z.string().startsWith('model.'),
  payload: z.object({
    tenant: z.string().min(1),
    modelName: z.string().min(1),
    versionId: z.string().min(1),
    stage: z.string().min(1),
    previousStage: z.string().optional(),
  }),
});

/** The stage change an event carries, or null for anything else on the exchange (it is ignored). */
export function stageChangeOf(envelope: Envelope<unknown>): StageChange | null {
  if (envelope.type !== LOGGED_EVENT_TYPE) return null;
  const parsed = loggedStageChangeSchema.safeParse(envelope.payload);
  if (!parsed.success) return null;
  const { tenant, modelName, versionId, stage, previousStage } = parsed.data.payload;
  return { tenant, modelName, versionId, stage, ...(previousStage !== undefined && { previousStage }) };
}

/** The model is unavailable for now (resolution or storage did not answer): worth a retry. */
export class ModelUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelUnavailableError';
  }
}

export interface ModelLease {
  readonly runner: ModelRunner;
  readonly versionId: string;
  readonly modelName: string;
  readonly executionProvider: ExecutionProvider;
  /** Object-store key of the version's reference statistics for drift monitoring (null: none). */
  readonly referenceStatsKey: string | null;
  release(): void;
}

interface Entry {
  versionId: string;
  modelName: string;
  contract: ModelContract;
  session: OrtSession;
  leases: number;
  evicted: boolean;
}

/** One onnxruntime session as the processor's ModelRunner. */
export class OrtModelRunner implements ModelRunner {
  constructor(
    readonly contract: ModelContract,
    private readonly session: OrtSession,
    private readonly onRun?: (seconds: number) => void,
  ) {}

  async run(before: Float32Array, after: Float32Array, n: number, height: number, width: number) {
    const dims = [n, this.contract.bands, height, width];
    const { outputs, seconds } = await this.session.runTimed({ before: { data: before, dims }, after: { data: after, dims } });
    this.onRun?.(seconds);
    const logits = outputs.change_logits;
    const embedding = outputs.embedding;
    if (!logits || !embedding) throw new Error('the model did not return change_logits and embedding');
    if (logits.dims.length !== 4 || logits.dims[0] !== n || logits.dims[1] !== 1 || logits.dims[2] !== height || logits.dims[3] !== width) {
      throw new Error(`change_logits has shape [${logits.dims.join(', ')}], expected [${n}, 1, ${height}, ${width}]`);
    }
    return { logits: logits.data, embedding: embedding.data, seconds };
  }
}

export interface ModelCacheOptions {
  store: ObjectStore;
  resolve: (request: ModelResolutionRequest) => Promise<ModelResolutionReply>;
  capacity: number;
  session: SessionSettings;
  resolutionTtlMs: number;
  log: Logger;
  metrics?: InferenceMetrics;
}

export class ModelCache {
  private readonly entries = new Map<string, Entry>();
  private readonly loading = new Map<string, Promise<Entry>>();
  /** Resolved Production versions by (asking tenant, model name); pinned versions by (tenant, version id). */
  private readonly resolutions = new Map<string, { tenant: string; modelName: string | null; reply: Extract<ModelResolutionReply, { found: true }>; expiresAt: number }>();
  /** Bumped by every invalidation: a resolution that was asked before it is not cached (it may predate the change). */
  private epoch = 0;
  /** Production version per model name, as last resolved, for the model_info metric. */
  private readonly production = new Map<string, string>();

  constructor(private readonly options: ModelCacheOptions) {}

  /**
   * Leases the Production version of `modelName` as the tenant sees it (its own model first, else the platform's), or
   * for `name@alias` the version the alias points to.
   */
  async acquireProduction(tenant: string, modelName: string): Promise<ModelLease> {
    const reply = await this.resolve({ tenant, modelName, stage: 'PRODUCTION' }, `${tenant}\0name:${modelName}`);
    // `name@alias` serves the version the alias names, which is not (necessarily) Production.
    if (reply.alias === undefined) this.production.set(reply.modelName, reply.versionId);
    return this.acquire(reply);
  }

  /** Leases a pinned version, if the tenant may use it. */
  async acquireVersion(tenant: string, versionId: string): Promise<ModelLease> {
    return this.acquire(await this.resolve({ tenant, versionId }, `${tenant}\0version:${versionId}`));
  }

  /**
   * Forgets which version serves `modelName` for `tenant` (a stage changed), so that the next work asks the models
   * subgraph again. A platform model (tenant `*`) is what every tenant without a model of that name gets: its change
   * drops every tenant's resolution of the name. Loaded sessions stay (leased work finishes on them) until evicted.
   */
  invalidate(tenant: string, modelName: string): void {
    this.epoch += 1;
    for (const [key, cached] of this.resolutions) {
      if (cached.modelName === modelName && (tenant === PLATFORM_TENANT || cached.tenant === tenant)) this.resolutions.delete(key);
    }
  }

  /** Forgets every resolution (e.g. stage events may have been missed while the broker was away). */
  invalidateAll(): void {
    this.epoch += 1;
    this.resolutions.clear();
  }

  isLoaded(versionId: string): boolean {
    return this.entries.has(versionId);
  }

  loadedVersions(): { versionId: string; modelName: string; provider: ExecutionProvider; leases: number }[] {
    return [...this.entries.values()].map((e) => ({ versionId: e.versionId, modelName: e.modelName, provider: e.session.provider, leases: e.leases }));
  }

  async close(): Promise<void> {
    for (const entry of this.entries.values()) {
      entry.evicted = true;
      if (entry.leases === 0) await entry.session.release().catch(() => undefined);
    }
    this.entries.clear();
  }

  private async resolve(request: ModelResolutionRequest, key: string) {
    const cached = this.resolutions.get(key);
    if (cached && cached.expiresAt > Date.now()) return cached.reply;
    const epoch = this.epoch;
    let reply: ModelResolutionReply;
    try {
      reply = await this.options.resolve(request);
    } catch (error) {
      throw new ModelUnavailableError(`the models service did not resolve the model: ${(error as Error).message}`, { cause: error });
    }
    if (!reply.found) throw new PairInputError('MODEL_NOT_FOUND', reply.reason);
    if (epoch === this.epoch) {
      // Kept under the model's bare name (the reply's, without any `@alias`): stage and alias events name the model.
      this.resolutions.set(key, { tenant: request.tenant, modelName: request.versionId === undefined ? reply.modelName : null, reply, expiresAt: Date.now() + this.options.resolutionTtlMs });
    }
    return reply;
  }

  private async acquire(reply: Extract<ModelResolutionReply, { found: true }>): Promise<ModelLease> {
    let entry = this.entries.get(reply.versionId);
    if (entry) {
      // Most recently used last.
      this.entries.delete(reply.versionId);
      this.entries.set(reply.versionId, entry);
    } else {
      let pending = this.loading.get(reply.versionId);
      if (!pending) {
        pending = this.load(reply).finally(() => this.loading.delete(reply.versionId));
        this.loading.set(reply.versionId, pending);
      }
      entry = await pending;
    }
    entry.leases += 1;
    // Evicted only now, so that the version just leased is never the one dropped.
    this.evict();
    const held = entry;
    let released = false;
    return {
      runner: new OrtModelRunner(held.contract, held.session, (s) => this.options.metrics?.runDuration.observe({ execution_provider: held.session.provider }, s)),
      versionId: held.versionId,
      modelName: held.modelName,
      executionProvider: held.session.provider,
      referenceStatsKey: reply.referenceStatsKey ?? null,
      release: () => {
        if (released) return;
        released = true;
        held.leases -= 1;
        if (held.evicted && held.leases === 0) void held.session.release().catch(() => undefined);
      },
    };
  }

  private async load(reply: Extract<ModelResolutionReply, { found: true }>): Promise<Entry> {
    const t0 = performance.now();
    let bytes: Buffer;
    try {
      bytes = await this.options.store.get(reply.artifactKey);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) throw new PairInputError('MODEL_INVALID', `the artifact of model version ${reply.versionId} (${reply.artifactKey}) is missing`);
      throw new ModelUnavailableError(`the artifact of model version ${reply.versionId} could not be read: ${(error as Error).message}`, { cause: error });
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== reply.sha256) {
      throw new PairInputError('MODEL_INVALID', `the artifact of model version ${reply.versionId} has sha256 ${sha256}, the registry says ${reply.sha256}`);
    }
    let contract: ModelContract;
    try {
      contract = validateModelContract(bytes);
    } catch (error) {
      if (error instanceof ModelContractError) throw new PairInputError('MODEL_INVALID', `model version ${reply.versionId}: ${error.message}`);
      throw error;
    }
    const session = await this.createSession(reply.versionId, bytes);
    // Warm-up: the first run allocates and plans; do it before real work (and before the worker says it is ready).
    const dims = [1, contract.bands, contract.tileSize, contract.tileSize];
    const zeros = new Float32Array(contract.bands * contract.tileSize * contract.tileSize);
    await session.run({ before: { data: zeros, dims }, after: { data: zeros, dims } });
    const { provider } = session;
    const entry: Entry = { versionId: reply.versionId, modelName: reply.modelName, contract, session, leases: 0, evicted: false };
    this.entries.set(reply.versionId, entry);
    const seconds = (performance.now() - t0) / 1000;
    this.options.metrics?.modelLoadDuration.observe(seconds);
    this.refreshInfo();
    this.options.log.info({ versionId: reply.versionId, modelName: reply.modelName, provider, seconds, bytes: bytes.length }, 'model version loaded');
    return entry;
  }

  private evict(): void {
    let evicted = false;
    while (this.entries.size > this.options.capacity) {
      evicted = true;
      const [oldest, entry] = this.entries.entries().next().value as [string, Entry];
      this.entries.delete(oldest);
      entry.evicted = true;
      if (entry.leases === 0) void entry.session.release().catch(() => undefined);
      this.options.log.info({ versionId: entry.versionId }, 'model version evicted');
    }
    if (evicted) this.refreshInfo();
  }

  refreshInfo(): void {
    const metric = this.options.metrics?.modelInfo;
    if (!metric) return;
    metric.reset();
    for (const e of this.entries.values()) {
      metric.set({ model_name: e.modelName, version_id: e.versionId, execution_provider: e.session.provider, production: String(this.production.get(e.modelName) === e.versionId) }, 1);
    }
  }

  private async createSession(versionId: string, bytes: Uint8Array): Promise<OrtSession> {
    try {
      return await OrtSession.open(bytes, this.options.session, (reason) => this.options.log.warn({ reason }, 'CUDA execution provider unavailable: running on CPU'));
    } catch (error) {
      if (!(error instanceof SessionCreateError)) throw error;
      // CUDA asked for and absent is the host's problem (another worker may have it); a file onnxruntime refuses is the model's.
      if (error.provider === 'cuda') throw new ModelUnavailableError(error.message, { cause: error });
      throw new PairInputError('MODEL_INVALID', `onnxruntime cannot load model version ${versionId}: ${error.message.split('\n')[0]!.slice(0, 500)}`);
    }
  }
}
