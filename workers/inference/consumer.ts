// The inference worker's lifecycle and its messages: consumes batch pairs (`inference.pairs`) and serves synchronous
// requests (`inference.detect`), acknowledging a pair only once its outputs are stored and its result reported;
// listens for model stage changes (reload without restart) and job cancellations; keeps the platform's default model
// loaded and says it is ready only then.
import { createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import {
  BrokerError,
  createEnvelope,
  PermanentMessageError,
  type Broker,
  type Delivery,
  type Envelope,
  type Subscription,
} from '../../lib/broker/broker.js';
import { ImageDecodeError } from '../../lib/imaging/probe.js';
import { openRaster, type RasterInput, type RasterLimits, type RasterSource } from '../../lib/imaging/raster-source.js';
import { ObjectNotFoundError, type ObjectStore } from '../../lib/storage/index.js';
import { PLATFORM_TENANT } from '../../subgraphs/models/models.contracts.js';
import { requestModelResolution } from '../../subgraphs/models/model-resolution.rpc.js';
import { sessionSettings, type InferenceConfig } from './config.js';
import {
  detectRequestSchema,
  EVENT_KEYS,
  INFERENCE_QUEUES,
  JOBS_PAIR_RESULTS_QUEUE,
  jobCancelledEventSchema,
  MESSAGE_TYPES,
  PAIR_DELIVERY_LIMIT,
  pairRequestSchema,
  resultPrefix,
  TRANSIENT_ERROR_CODES,
  type ChangeResultPayload,
  type DetectReply,
  type DetectRequest,
  type JobCancelledEvent,
  type PairError,
  type PairRequest,
} from './contracts.js';
import type { InferenceMetrics, WorkKind } from './metrics.js';
import { ModelCache, ModelUnavailableError, stageChangeOf, type ModelLease, type StageChange } from './model-cache.js';
import { PairInputError, pairErrorFromDecode, planPair, processPair, type Side } from './processor.js';
import { DriftSampleSender, PairOutputs, PairReporter } from './writer.js';

/** Thrown into a pair whose job was cancelled while it ran: the message is acknowledged with no result. */
export class JobCancelledError extends Error {
  constructor(readonly jobId: string) {
    super(`job ${jobId} was cancelled`);
    this.name = 'JobCancelledError';
  }
}

export interface WorkerDeps {
  broker: Broker;
  store: ObjectStore;
  config: InferenceConfig;
  log: Logger;
  metrics: InferenceMetrics;
}

interface PairWork {
  tenant: string;
  jobId: string;
  pairIndex: number;
  beforeKey: string;
  afterKey: string;
  threshold: number | null;
  kind: WorkKind;
  lease: ModelLease;
  limits: RasterLimits;
  deadline?: number;
  signal?: AbortSignal;
  /** Sizes already checked against the store (detectChanges): see fetchInput. */
  bytes?: { before?: number; after?: number };
}

/** What went wrong, as a pair error, and whether trying again could help. */
export function classifyFailure(error: unknown): { error: PairError; transient: boolean } {
  if (error instanceof PairInputError) return { error: { code: error.code, message: error.message }, transient: TRANSIENT_ERROR_CODES.includes(error.code) };
  if (error instanceof ModelUnavailableError || error instanceof BrokerError) {
    return { error: { code: 'MODEL_UNAVAILABLE', message: (error as Error).message.slice(0, 2000) }, transient: true };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { error: { code: 'INTERNAL', message: `internal error: ${message}`.slice(0, 2000) }, transient: true };
}

const CANCELLED_REMEMBERED = 10_000;

export class InferenceWorker {
  private readonly cache: ModelCache;
  private readonly reporter: PairReporter;
  private readonly driftSamples: DriftSampleSender;
  private readonly subscriptions: Subscription[] = [];
  private readonly stops: (() => void)[] = [];
  private readonly cancelled = new Set<string>();
  private readonly running = new Map<string, Set<AbortController>>();
  private defaultVersion: string | null = null;
  private warmTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly deps: WorkerDeps) {
    const { config } = deps;
    this.cache = new ModelCache({
      store: deps.store,
      resolve: (request) => requestModelResolution(deps.broker, request, config.INFERENCE_RPC_TIMEOUT_MS),
      capacity: config.INFERENCE_MODEL_CACHE_SIZE,
      session: sessionSettings(config),
      resolutionTtlMs: config.INFERENCE_RESOLUTION_TTL_SECONDS * 1000,
      log: deps.log,
      metrics: deps.metrics,
    });
    this.reporter = new PairReporter(deps.broker);
    this.driftSamples = new DriftSampleSender(deps.broker, deps.log);
  }

  /** Ready: connected to the broker, and the Production version of the default model loaded and warmed up. */
  isReady(): boolean {
    return !this.closed && this.deps.broker.isHealthy() && this.defaultVersion !== null && this.cache.isLoaded(this.defaultVersion);
  }

  readiness(): Record<string, boolean> {
    return { broker: this.deps.broker.isHealthy(), model: this.defaultVersion !== null && this.cache.isLoaded(this.defaultVersion) };
  }

  /** The model versions loaded now (for health pages and tests). */
  loadedVersions() {
    return this.cache.loadedVersions();
  }

  async start(): Promise<void> {
    const { broker, config, metrics } = this.deps;
    await mkdir(config.INFERENCE_TMP_DIR, { recursive: true });
    // The worker reports there; the jobs subgraph consumes it. Declared here too so that reports are never unroutable.
    await broker.assertQueue(JOBS_PAIR_RESULTS_QUEUE);
    this.subscriptions.push(
      // A private (exclusive, auto-delete) queue per worker: every replica hears every stage change. The relay publishes
      // them as `event.logged` envelopes (lib/events/event-log.ts); stageChangeOf reads the change out of one.
      await broker.subscribe<unknown>([EVENT_KEYS.allModelStages], async (d) => {
        const change = stageChangeOf(d.envelope);
        if (change) await this.onStageChange(change);
      }),
      await broker.subscribe<JobCancelledEvent>([EVENT_KEYS.allJobCancellations], (d) => this.onJobCancelled(d.envelope.payload), {
        payloadSchema: jobCancelledEventSchema,
      }),
      await broker.consume<PairRequest>(INFERENCE_QUEUES.pairs, (d) => this.handlePair(d), {
        payloadSchema: pairRequestSchema,
        prefetch: config.INFERENCE_PAIR_CONCURRENCY,
        deliveryLimit: PAIR_DELIVERY_LIMIT,
      }),
      await broker.serveRpc<DetectRequest, DetectReply>(INFERENCE_QUEUES.detect, (d) => this.handleDetect(d), {
        payloadSchema: detectRequestSchema,
        prefetch: config.INFERENCE_RPC_CONCURRENCY,
      }),
    );
    this.stops.push(this.watchBroker());
    this.stops.push(metrics.watchQueues(broker, [INFERENCE_QUEUES.pairs, INFERENCE_QUEUES.detect, JOBS_PAIR_RESULTS_QUEUE, `${INFERENCE_QUEUES.pairs}.dlq`], 15));
    await this.warmDefaultModel();
    const providers = this.cache.loadedVersions().map((v) => v.provider);
    if (providers.includes('cuda')) this.stops.push(metrics.watchGpu(config.INFERENCE_CUDA_DEVICE_ID, config.INFERENCE_GPU_SAMPLE_SECONDS));
  }

  async stop(): Promise<void> {
    this.closed = true;
    if (this.warmTimer) clearTimeout(this.warmTimer);
    for (const stop of this.stops) stop();
    // Consumers stop taking messages and wait for running handlers; unfinished ones are redelivered elsewhere.
    await Promise.allSettled(this.subscriptions.map((s) => s.close()));
    await this.cache.close();
  }

  /** Loads the platform's default model; until it is there, tries again every 15 s (the worker is not ready meanwhile). */
  private async warmDefaultModel(): Promise<void> {
    if (this.closed) return;
    try {
      const lease = await this.cache.acquireProduction(PLATFORM_TENANT, this.deps.config.DEFAULT_MODEL_NAME);
      this.defaultVersion = lease.versionId;
      lease.release();
      this.cache.refreshInfo();
    } catch (error) {
      this.deps.log.warn({ err: error, model: this.deps.config.DEFAULT_MODEL_NAME }, 'default model not loaded yet: the worker is not ready; retrying in 15 s');
      this.warmTimer = setTimeout(() => void this.warmDefaultModel(), 15_000);
      this.warmTimer.unref();
    }
  }

  private async onStageChange(change: StageChange): Promise<void> {
    this.cache.invalidate(change.tenant, change.modelName);
    this.deps.log.info({ ...change }, 'model stage changed: the next requests resolve the model again');
    if (change.modelName === this.deps.config.DEFAULT_MODEL_NAME && change.tenant === PLATFORM_TENANT) {
      // Load the new Production version now, so that the switch costs requests nothing; work in progress keeps the
      // version it leased.
      await this.rewarmDefaultModel();
    }
  }

  private async rewarmDefaultModel(): Promise<void> {
    if (this.warmTimer) clearTimeout(this.warmTimer);
    this.warmTimer = null;
    await this.warmDefaultModel();
  }

  /** Stage events published while the broker was away are lost to a private queue: after a reconnect, resolve anew. */
  private watchBroker(): () => void {
    let healthy = this.deps.broker.isHealthy();
    const timer = setInterval(() => {
      const now = this.deps.broker.isHealthy();
      if (now && !healthy) {
        this.deps.log.info('broker back: model resolutions are asked again');
        this.cache.invalidateAll();
        void this.rewarmDefaultModel();
      }
      healthy = now;
    }, 1000);
    timer.unref();
    return () => clearInterval(timer);
  }

  private async onJobCancelled(event: JobCancelledEvent): Promise<void> {
    this.cancelled.add(event.jobId);
    if (this.cancelled.size > CANCELLED_REMEMBERED) this.cancelled.delete(this.cancelled.values().next().value!);
    for (const controller of this.running.get(event.jobId) ?? []) controller.abort(new JobCancelledError(event.jobId));
  }

  private limits(syncMaxPixels?: number): RasterLimits {
    const c = this.deps.config;
    const maxPixels = Math.min(c.INFERENCE_MAX_PIXELS, syncMaxPixels ?? Number.POSITIVE_INFINITY);
    return {
      maxPixels,
      maxSide: c.INFERENCE_MAX_SIDE,
      maxFullDecodePixels: Math.min(c.INFERENCE_MAX_FULL_DECODE_PIXELS, maxPixels),
      maxBlockBytes: c.INFERENCE_MAX_TIFF_BLOCK_BYTES,
    };
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Batch pairs
  // -------------------------------------------------------------------------------------------------------------------
  private async handlePair(delivery: Delivery<PairRequest>): Promise<void> {
    const { payload, tenant } = delivery.envelope;
    const { metrics } = this.deps;
    if (this.cancelled.has(payload.jobId)) {
      metrics.pairs.inc({ kind: 'batch', outcome: 'skipped' });
      return;
    }
    await this.reporter.started(tenant, payload.jobId, payload.pairIndex, delivery.deliveryCount);
    const controller = new AbortController();
    let set = this.running.get(payload.jobId);
    if (!set) this.running.set(payload.jobId, (set = new Set()));
    set.add(controller);
    let lease: ModelLease | null = null;
    try {
      lease = await this.cache.acquireVersion(tenant, payload.modelVersionId);
      const result = await this.runPair({
        tenant,
        jobId: payload.jobId,
        pairIndex: payload.pairIndex,
        beforeKey: payload.beforeKey,
        afterKey: payload.afterKey,
        threshold: payload.threshold,
        kind: 'batch',
        lease,
        limits: this.limits(),
        signal: controller.signal,
      });
      // Acknowledged only after this confirm: the outputs are stored and the jobs subgraph will learn of them.
      await this.reporter.succeeded(tenant, payload.jobId, payload.pairIndex, result);
      metrics.pairs.inc({ kind: 'batch', outcome: 'succeeded' });
    } catch (error) {
      if (error instanceof JobCancelledError) {
        metrics.pairs.inc({ kind: 'batch', outcome: 'skipped' });
        return;
      }
      const { error: failure, transient } = classifyFailure(error);
      const final = !transient || delivery.deliveryCount >= PAIR_DELIVERY_LIMIT;
      this.deps.log.warn({ jobId: payload.jobId, pairIndex: payload.pairIndex, code: failure.code, final, err: error }, 'pair failed');
      await this.reporter.failed(tenant, payload.jobId, payload.pairIndex, failure, final);
      metrics.pairs.inc({ kind: 'batch', outcome: final ? 'failed' : 'retried' });
      // Bad input goes to the dead-letter queue at once; anything else is retried until the delivery limit.
      if (!transient) throw new PermanentMessageError(`${failure.code}: ${failure.message}`, { cause: error });
      throw error;
    } finally {
      lease?.release();
      set.delete(controller);
      if (set.size === 0) this.running.delete(payload.jobId);
    }
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Synchronous requests
  // -------------------------------------------------------------------------------------------------------------------
  private async handleDetect(delivery: Delivery<DetectRequest>): Promise<Envelope<DetectReply>> {
    const { payload, tenant } = delivery.envelope;
    const reply = (body: DetectReply) => createEnvelope(MESSAGE_TYPES.detectReply, body, { tenant });
    let lease: ModelLease | null = null;
    try {
      lease = await this.cache.acquireProduction(tenant, payload.modelName);
      const result = await this.runPair({
        tenant,
        jobId: payload.jobId,
        pairIndex: 0,
        beforeKey: payload.beforeKey,
        afterKey: payload.afterKey,
        threshold: payload.threshold,
        kind: 'sync',
        lease,
        limits: this.limits(payload.maxPixels),
        deadline: payload.deadline,
        bytes: { before: payload.beforeBytes, after: payload.afterBytes },
      });
      this.deps.metrics.pairs.inc({ kind: 'sync', outcome: 'succeeded' });
      return reply({ ok: true, result });
    } catch (error) {
      const { error: failure } = classifyFailure(error);
      this.deps.metrics.pairs.inc({ kind: 'sync', outcome: 'failed' });
      this.deps.log.info({ jobId: payload.jobId, code: failure.code }, 'synchronous pair failed');
      // Answered, not retried: the caller waits, and a clear error now beats a timeout later.
      return reply({ ok: false, error: failure });
    } finally {
      lease?.release();
    }
  }

  // -------------------------------------------------------------------------------------------------------------------
  // One pair, either way
  // -------------------------------------------------------------------------------------------------------------------
  private async fetchInput(key: string, side: Side, scratch: { dir: string; used: boolean }, knownBytes?: number): Promise<RasterInput> {
    // A size checked just now (the upload's) that fits in memory: read at once, without asking the store for it.
    if (knownBytes !== undefined && knownBytes > 0 && knownBytes <= this.deps.config.INFERENCE_IN_MEMORY_BYTES) {
      try {
        const bytes = await this.deps.store.get(key);
        if (bytes.length > 0) return { kind: 'bytes', bytes };
      } catch (error) {
        if (!(error instanceof ObjectNotFoundError)) throw error;
      }
      // Gone or emptied since: the checks below say which.
    }
    const head = await this.deps.store.head(key);
    if (!head) throw new PairInputError(side === 'before' ? 'BEFORE_NOT_FOUND' : 'AFTER_NOT_FOUND', `${side} image: no object at ${key}`);
    if (head.size === 0) throw new PairInputError(side === 'before' ? 'BEFORE_EMPTY_FILE' : 'AFTER_EMPTY_FILE', `${side} image: the file is empty (0 bytes)`);
    try {
      if (head.size <= this.deps.config.INFERENCE_IN_MEMORY_BYTES) return { kind: 'bytes', bytes: await this.deps.store.get(key) };
      scratch.used = true;
      await mkdir(scratch.dir, { recursive: true });
      const path = join(scratch.dir, side);
      await pipeline(await this.deps.store.getStream(key), createWriteStream(path));
      return { kind: 'file', path };
    } catch (error) {
      if (error instanceof ObjectNotFoundError) throw new PairInputError(side === 'before' ? 'BEFORE_NOT_FOUND' : 'AFTER_NOT_FOUND', `${side} image: no object at ${key}`);
      throw error;
    }
  }

  private async open(input: RasterInput, side: Side, limits: RasterLimits, sync: boolean): Promise<RasterSource> {
    try {
      return await openRaster(input, limits);
    } catch (error) {
      if (!(error instanceof ImageDecodeError)) throw error;
      if (sync && error.problem === 'TOO_LARGE') {
        throw new PairInputError('TOO_LARGE_FOR_SYNC', `${side} image: ${error.message}. detectChanges takes images up to ${limits.maxPixels} pixels; submit larger ones with submitChangeDetectionJob`);
      }
      throw pairErrorFromDecode(side, error);
    }
  }

  private async runPair(work: PairWork): Promise<ChangeResultPayload> {
    const { metrics, config, store } = this.deps;
    const started = performance.now();
    metrics.inFlight.inc({ kind: work.kind });
    // Created only when an input is too large to hold in memory.
    const scratch = { dir: join(config.INFERENCE_TMP_DIR, `in-${randomUUID()}`), used: false };
    const sources: RasterSource[] = [];
    let outputs: PairOutputs | null = null;
    let outcomeLabel = 'failed';
    try {
      const t0 = performance.now();
      const sync = work.kind === 'sync';
      let fetchSeconds = 0;
      let openSeconds = 0;
      // Each image is opened as soon as it is fetched, both at once: small images decode in parallel
      // (lib/imaging/decode-pool.ts). Whatever opened is closed below; a problem with the before image is reported
      // first.
      const fetchAndOpen = async (key: string, side: Side) => {
        const input = await this.fetchInput(key, side, scratch, work.bytes?.[side]);
        const fetched = performance.now();
        fetchSeconds = Math.max(fetchSeconds, (fetched - t0) / 1000);
        const source = await this.open(input, side, work.limits, sync);
        openSeconds = Math.max(openSeconds, (performance.now() - fetched) / 1000);
        return source;
      };
      const opened = await Promise.allSettled([fetchAndOpen(work.beforeKey, 'before'), fetchAndOpen(work.afterKey, 'after')]);
      for (const o of opened) if (o.status === 'fulfilled') sources.push(o.value);
      for (const o of opened) if (o.status === 'rejected') throw o.reason;
      const [before, after] = sources as [RasterSource, RasterSource];
      const contract = work.lease.runner.contract;
      const threshold = work.threshold ?? contract.threshold;
      const prefix = resultPrefix(work.tenant, work.jobId, work.pairIndex);
      // Checked before any output file is opened.
      planPair(before.info, after.info, contract);
      outputs = await PairOutputs.open(store, config.INFERENCE_TMP_DIR, prefix, { width: before.info.width, height: before.info.height, georef: before.info.georef });
      const outcome = await processPair(before, after, work.lease.runner, outputs, {
        threshold,
        overlap: config.INFERENCE_TILE_OVERLAP,
        batchSize: config.INFERENCE_BATCH_SIZE,
        minRegionPixels: config.INFERENCE_MIN_REGION_PIXELS,
        simplifyTolerance: config.INFERENCE_SIMPLIFY_TOLERANCE,
        maxPolygonVertices: config.INFERENCE_MAX_POLYGON_VERTICES,
        deadline: work.deadline,
        signal: work.signal,
      });
      const result = await outputs.finish(
        outcome,
        {
          jobId: work.jobId,
          pairIndex: work.pairIndex,
          modelName: work.lease.modelName,
          modelVersionId: work.lease.versionId,
          threshold,
          minRegionPixels: config.INFERENCE_MIN_REGION_PIXELS,
          simplifyTolerance: config.INFERENCE_SIMPLIFY_TOLERANCE,
          model: { datasetVersion: contract.datasetVersion, configHash: contract.configHash, embeddingDim: contract.embeddingDim },
          startedAt: started,
        },
        {
          fetch: fetchSeconds,
          // Opening decodes a PNG held in memory whole; the rest is read and normalised as the tiles need it.
          decode: openSeconds + outcome.timings.decode,
          inference: outcome.timings.inference,
          modelCall: outcome.timings.modelCall,
          stitch: outcome.timings.stitch,
          polygons: outcome.timings.polygons,
        },
      );
      const seconds = (performance.now() - started) / 1000;
      result.timings.total = seconds;
      metrics.tiles.inc({ kind: work.kind }, outcome.tiles);
      metrics.tilesPerSecond.set({ kind: work.kind }, outcome.tiles / Math.max(outcome.timings.inference, 1e-6));
      outcomeLabel = 'succeeded';
      // Drift monitoring learns what this pair looked like; the send never fails the pair, and a synchronous caller
      // does not wait for it.
      const sampling = this.driftSamples.send({
        tenant: work.tenant,
        modelName: work.lease.modelName,
        modelVersionId: work.lease.versionId,
        referenceStatsKey: work.lease.referenceStatsKey,
        jobId: work.jobId,
        pairIndex: work.pairIndex,
        at: new Date().toISOString(),
        summary: outcome.drift,
      });
      if (work.kind === 'batch') await sampling;
      return result;
    } finally {
      metrics.inFlight.dec({ kind: work.kind });
      metrics.pairDuration.observe({ kind: work.kind, outcome: outcomeLabel }, (performance.now() - started) / 1000);
      await Promise.allSettled(sources.map((s) => s.close()));
      await outputs?.dispose().catch(() => undefined);
      if (scratch.used) await rm(scratch.dir, { recursive: true, force: true });
    }
  }
}
