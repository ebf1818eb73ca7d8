// Owns the change-detection flows of the jobs subgraph: detectChanges (one pair, answered by an inference worker over
// RPC within a size cap and a timeout, recorded as a SYNC job), batch submission (uploads resolved through the
// datasets subgraph, the model version pinned through the models subgraph, one message per pair), the reports
// workers send back (applied idempotently, each change published as a progress event), cancellation, and the signed
// download URLs of results.
import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/core';
import { appendEvents, type EventRelay } from '../../lib/events/event-log.js';
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { BrokerError, BrokerTimeoutError, createEnvelope, type Broker } from '../../lib/broker/broker.js';
import { badInput, unavailable } from '../../lib/errors.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { requestUploadResolution, type ResolvedUpload } from '../datasets/upload-resolution.rpc.js';
import { requestModelResolution } from '../models/model-resolution.rpc.js';
import {
  detectReplySchema,
  EVENT_KEYS,
  INFERENCE_QUEUES,
  MESSAGE_TYPES,
  pairIdempotencyKey,
  type ChangeResultPayload,
  type DetectReply,
  type DetectRequest,
  type JobCancelledEvent,
  type JobProgressEvent,
  type PairError,
  type PairReport,
  type PairRequest,
} from '../../workers/inference/contracts.js';
import type { JobsConfig } from './config.js';
import { JobKind, JobPairStatus, type PairResultDetails } from './job.contracts.js';
import type { JobEntity } from './job.entity.js';
import type { JobPairEntity } from './job-pair.entity.js';
import type { JobRepository } from './job.repository.js';
import type { Actor, CancellingActor, JobService, PairResult, PairUpdate, SyncOutcome } from './job.service.js';
import { ChangeResult, ChangeStats, ModelVersionRef } from './job.type.js';

export interface DetectChangesRequest {
  beforeUploadId: string;
  afterUploadId: string;
  modelName?: string | null;
  threshold?: number | null;
}

export interface SubmitJobRequest {
  pairs: { beforeUploadId: string; afterUploadId: string }[];
  datasetVersionId?: string | null;
  modelName?: string | null;
  threshold?: number | null;
  idempotencyKey?: string | null;
}

/** What a ChangeResult is made from: a stored pair, or a worker's fresh result. */
export interface StoredResult {
  jobId: string;
  index: number;
  width: number | null;
  height: number | null;
  resultKeys: JobPairEntity['resultKeys'];
  stats: JobPairEntity['stats'];
  details: PairResultDetails | null;
  modelVersionId: string | null;
}

const DISPATCH_PARALLELISM = 16;
/** How long the progress events of a finished detectChanges wait before they are relayed (see detectChanges). */
const SYNC_EVENTS_RELAY_DELAY_MS = 50;

/** What a progress event says about the pair it concerns. */
type ProgressPair = Pick<JobPairEntity, 'index' | 'status' | 'error' | 'errorCode'>;
const UPLOADS_PER_RPC = 1000;

/** The GraphQL error a failed pair of detectChanges becomes: input problems are the caller's, the rest is ours. */
export function syncPairError(error: PairError): GraphQLError {
  const extensions = { problem: error.code };
  switch (error.code) {
    case 'BEFORE_EMPTY_FILE':
    case 'BEFORE_NOT_AN_IMAGE':
    case 'BEFORE_TRUNCATED':
    case 'BEFORE_CORRUPT':
    case 'BEFORE_TOO_LARGE':
    case 'BEFORE_UNSUPPORTED':
    case 'BEFORE_NOT_FOUND':
      return badInput(error.message, 'beforeUploadId', extensions);
    case 'AFTER_EMPTY_FILE':
    case 'AFTER_NOT_AN_IMAGE':
    case 'AFTER_TRUNCATED':
    case 'AFTER_CORRUPT':
    case 'AFTER_TOO_LARGE':
    case 'AFTER_UNSUPPORTED':
    case 'AFTER_NOT_FOUND':
      return badInput(error.message, 'afterUploadId', extensions);
    case 'MODEL_NOT_FOUND':
      return badInput(error.message, 'modelName', extensions);
    case 'TOO_LARGE_FOR_SYNC':
      return badInput(error.message, undefined, { ...extensions, batchMutation: 'submitChangeDetectionJob' });
    case 'DEADLINE_EXCEEDED':
      return new GraphQLError(error.message, { extensions: { code: 'UNAVAILABLE', ...extensions, batchMutation: 'submitChangeDetectionJob' } });
    case 'MODEL_UNAVAILABLE':
    case 'MODEL_INVALID':
    case 'INTERNAL':
      return new GraphQLError(`Change detection failed: ${error.message}`, { extensions: { code: 'UNAVAILABLE', ...extensions, retryable: true } });
    case 'SIZE_MISMATCH':
    case 'BAND_COUNT':
    case 'NAN_IN_INPUT':
    case 'CRS_MISMATCH':
    case 'TRANSFORM_MISMATCH':
    case 'GEOREFERENCE_MISMATCH':
      return badInput(error.message, undefined, extensions);
  }
}

export class ChangeDetectionService {
  constructor(
    private readonly jobs: JobService,
    private readonly repository: JobRepository,
    private readonly config: JobsConfig,
    private readonly log: Logger,
    private readonly broker?: Broker,
    private readonly store?: ObjectStore,
  ) {}

  private get io(): { broker: Broker; store: ObjectStore } {
    if (!this.broker || !this.store) throw unavailable('Change detection');
    return { broker: this.broker, store: this.store };
  }

  // -------------------------------------------------------------------------------------------------------------------
  // detectChanges
  // -------------------------------------------------------------------------------------------------------------------
  async detectChanges(em: EntityManager, actor: Actor, input: DetectChangesRequest): Promise<ChangeResult> {
    const { broker } = this.io;
    const uploads = await this.resolveUploads(actor.tenant, [
      { id: input.beforeUploadId, field: 'beforeUploadId' },
      { id: input.afterUploadId, field: 'afterUploadId' },
    ]);
    const before = uploads.get(input.beforeUploadId)!;
    const after = uploads.get(input.afterUploadId)!;
    const modelName = input.modelName ?? this.config.DEFAULT_MODEL_NAME;
    const jobInput = {
      id: randomUUID(),
      tenant: actor.tenant,
      requestedBy: actor.subject,
      kind: JobKind.SYNC,
      modelName,
      threshold: input.threshold ?? null,
      pairs: [{ beforeKey: before.objectKey, afterKey: after.objectKey, beforeUploadId: before.id, afterUploadId: after.id }],
    };
    this.jobs.checkInput(jobInput);
    // The size cap is checked by the worker from the image headers, before anything is decoded.
    const request: DetectRequest = {
      jobId: jobInput.id,
      beforeKey: before.objectKey,
      afterKey: after.objectKey,
      modelName,
      threshold: input.threshold ?? null,
      maxPixels: this.config.SYNC_MAX_PIXELS,
      deadline: Date.now() + this.config.SYNC_TIMEOUT_MS,
      beforeBytes: before.byteSize,
      afterBytes: after.byteSize,
    };
    const ask = async (): Promise<DetectReply> => {
      try {
        const envelope = await broker.rpc(INFERENCE_QUEUES.detect, createEnvelope(MESSAGE_TYPES.detectRequest, request, { tenant: actor.tenant }), {
          timeoutMs: this.config.SYNC_TIMEOUT_MS,
          replySchema: detectReplySchema,
        });
        return envelope.payload;
      } catch (error) {
        if (!(error instanceof BrokerError)) throw error;
        const timedOut = error instanceof BrokerTimeoutError;
        const message = timedOut
          ? `detectChanges did not finish within ${this.config.SYNC_TIMEOUT_MS / 1000} s; submit the pair with submitChangeDetectionJob, which has no time limit`
          : `no inference worker answered: ${error.message}`;
        return { ok: false, error: { code: timedOut ? 'DEADLINE_EXCEEDED' : 'MODEL_UNAVAILABLE', message } };
      }
    };
    const startedAt = new Date();
    const reply = await ask();
    // The job is recorded once it has ended, with its progress events (subscribers hear of SYNC jobs too), in one
    // statement: nothing half-written if this process stops mid-way, and the answer's jobId can be read at once. The
    // events are relayed once the caller has had time to get the answer: no one can be waiting on this job's stream
    // yet, and the tenant's job feed can wait that long.
    const complete = async (outcome: SyncOutcome, pair: ProgressPair) => {
      const eventLog = this.eventLog;
      await this.jobs.recordSyncJob(em, { ...jobInput, startedAt }, outcome, eventLog ? (job) => progressEvents(job, pair) : undefined);
      eventLog?.relay.kick(SYNC_EVENTS_RELAY_DELAY_MS);
    };
    if (!reply.ok) {
      await complete({ error: reply.error.message, code: reply.error.code }, { index: 0, status: JobPairStatus.FAILED, error: reply.error.message, errorCode: reply.error.code });
      throw syncPairError(reply.error);
    }
    await complete({ result: toPairResult(reply.result) }, { index: 0, status: JobPairStatus.SUCCEEDED, error: null, errorCode: null });
    const result = await this.changeResult(fromPayload(jobInput.id, 0, reply.result));
    if (!result) throw new Error('the inference worker returned a result without its outputs');
    return result;
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Batch jobs
  // -------------------------------------------------------------------------------------------------------------------
  async submit(em: EntityManager, actor: Actor, input: SubmitJobRequest): Promise<JobEntity> {
    if (input.pairs.length === 0) throw badInput('A job needs at least one pair', 'pairs');
    if (input.pairs.length > this.config.MAX_PAIRS_PER_JOB) {
      throw badInput(`A job holds at most ${this.config.MAX_PAIRS_PER_JOB} pairs`, 'pairs', { max: this.config.MAX_PAIRS_PER_JOB });
    }
    const wanted = input.pairs.flatMap((pair, i) => [
      { id: pair.beforeUploadId, field: `pairs[${i}].beforeUploadId` },
      { id: pair.afterUploadId, field: `pairs[${i}].afterUploadId` },
    ]);
    const uploads = await this.resolveUploads(actor.tenant, wanted);
    const modelName = input.modelName ?? this.config.DEFAULT_MODEL_NAME;
    const modelVersionId = await this.pinModel(actor.tenant, modelName);
    const job = await this.jobs.createJob(em, {
      tenant: actor.tenant,
      requestedBy: actor.subject,
      kind: JobKind.BATCH,
      modelName,
      threshold: input.threshold ?? null,
      datasetVersionId: input.datasetVersionId ?? null,
      idempotencyKey: input.idempotencyKey ?? null,
      modelVersionId,
      pairs: input.pairs.map((pair) => {
        const before = uploads.get(pair.beforeUploadId)!;
        const after = uploads.get(pair.afterUploadId)!;
        return { beforeKey: before.objectKey, afterKey: after.objectKey, beforeUploadId: before.id, afterUploadId: after.id };
      }),
    });
    // A retry of a submission whose messages were not all sent sends them (again): workers are idempotent.
    if (!job.dispatchedAt) {
      await this.dispatch(em.fork(), job);
      await this.publishProgress(job, null);
    }
    return job;
  }

  /** Sends one message per pair still waiting, then marks the job dispatched. */
  async dispatch(em: EntityManager, job: JobEntity): Promise<void> {
    const { broker } = this.io;
    const pairs = await this.repository.findOpenPairs(em, job.tenant, job.id);
    const send = async (pair: JobPairEntity) => {
      const payload: PairRequest = {
        jobId: job.id,
        pairIndex: pair.index,
        beforeKey: pair.beforeKey,
        afterKey: pair.afterKey,
        modelName: job.modelName,
        modelVersionId: job.modelVersionId!,
        threshold: job.threshold,
      };
      await broker.send(INFERENCE_QUEUES.pairs, createEnvelope(MESSAGE_TYPES.pairRequest, payload, { tenant: job.tenant, idempotencyKey: pairIdempotencyKey(job.id, pair.index) }));
    };
    try {
      for (let i = 0; i < pairs.length; i += DISPATCH_PARALLELISM) await Promise.all(pairs.slice(i, i + DISPATCH_PARALLELISM).map(send));
    } catch (error) {
      this.log.warn({ err: error, jobId: job.id }, 'pair messages not all sent; the job is sent again later');
      if (error instanceof BrokerError) throw unavailable('The work queue');
      throw error;
    }
    await this.jobs.markDispatched(em, job.tenant, job.id);
    job.dispatchedAt = new Date();
  }

  /** Sends again the batch jobs a stopped process left half-dispatched. */
  async redispatchStale(em: EntityManager): Promise<number> {
    const stale = await this.repository.findUndispatched(em, new Date(Date.now() - this.config.JOBS_REDISPATCH_AFTER_SECONDS * 1000), 20);
    for (const job of stale) {
      if (!job.modelVersionId) continue;
      await this.dispatch(em.fork(), job).catch((error: unknown) => this.log.warn({ err: error, jobId: job.id }, 'redispatch failed'));
    }
    return stale.length;
  }

  async cancel(em: EntityManager, actor: CancellingActor, id: string): Promise<JobEntity> {
    const before = await this.jobs.getJob(em, actor, id);
    const wasOpen = before.status === 'QUEUED' || before.status === 'RUNNING';
    const job = await this.jobs.cancelJob(em.fork(), actor, id);
    if (wasOpen && this.broker) {
      const event: JobCancelledEvent = { jobId: job.id, tenant: job.tenant };
      await this.broker
        .publish(EVENT_KEYS.jobCancelled(job.id), createEnvelope(MESSAGE_TYPES.jobCancelled, event, { tenant: job.tenant }))
        .catch((error: unknown) => this.log.warn({ err: error, jobId: job.id }, 'cancellation event not published'));
      await this.publishProgress(job, null);
    }
    return job;
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Worker reports
  // -------------------------------------------------------------------------------------------------------------------
  /** Applies a worker's report (idempotently) and publishes the job's progress when it changed something. */
  async applyReport(em: EntityManager, tenant: string, report: PairReport): Promise<PairUpdate> {
    const ref = { tenant, jobId: report.jobId, index: report.pairIndex };
    let update: PairUpdate;
    switch (report.kind) {
      case 'started':
        update = await this.jobs.markPairRunning(em, ref);
        break;
      case 'succeeded':
        update = await this.jobs.markPairSucceeded(em, ref, toPairResult(report.result));
        break;
      case 'failed':
        update = await this.jobs.markPairFailed(em, ref, report.error.message, { final: report.final, code: report.error.code });
        break;
    }
    if (update.changed) await this.publishProgress(update.job, update.pair);
    return update;
  }

  private eventLog: { fork: () => EntityManager; relay: EventRelay } | null = null;

  /** Progress events go to the jobs event log (replayable by resuming subscribers) and from there to the broker. */
  useEventLog(fork: () => EntityManager, relay: EventRelay): void {
    this.eventLog = { fork, relay };
  }

  private async publishProgress(job: JobEntity, pair: ProgressPair | null): Promise<void> {
    if (!this.eventLog) return;
    const { fork, relay } = this.eventLog;
    try {
      await fork().transactional(async (em) => {
        // Built from the job as it is now, under its lock: events of one job are logged in order, each with the
        // counts of its moment, so progress never goes backwards for a subscriber.
        const current = (await this.repository.lockJob(em, job.tenant, job.id)) ?? job;
        await appendEvents(em, progressEvents(current, pair));
      });
      relay.kick();
    } catch (error) {
      this.log.warn({ err: error, jobId: job.id }, 'progress event not logged');
    }
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Results
  // -------------------------------------------------------------------------------------------------------------------
  /** The ChangeResult of a finished pair, with fresh signed URLs; null while it has none. */
  async changeResult(stored: StoredResult): Promise<ChangeResult | null> {
    const keys = stored.resultKeys;
    if (!keys?.mask || !keys.probability || !keys.polygons || !keys.stats || !stored.width || !stored.height) return null;
    const { store } = this.io;
    const ttl = this.config.RESULT_URL_TTL_SECONDS;
    const name = (file: string) => `${stored.jobId}-${stored.index}-${file}`;
    const sign = async (key: string | undefined, file: string) => (key ? (await store.presignGet(key, { expiresInSeconds: ttl, filename: name(file) })).url : null);
    const [mask, probability, polygons, stats, drift, maskGeoTiff, probabilityGeoTiff] = await Promise.all([
      sign(keys.mask, 'mask.png'),
      sign(keys.probability, 'probability.png'),
      sign(keys.polygons, 'polygons.geojson'),
      sign(keys.stats, 'stats.json'),
      sign(keys.drift, 'drift.json'),
      sign(keys.maskGeoTiff, 'mask.tif'),
      sign(keys.probabilityGeoTiff, 'probability.tif'),
    ]);
    const s = stored.stats ?? {};
    return Object.assign(new ChangeResult(), {
      jobId: stored.jobId,
      pairIndex: stored.index,
      width: stored.width,
      height: stored.height,
      maskUrl: mask!,
      probabilityUrl: probability!,
      polygonsUrl: polygons!,
      statsUrl: stats!,
      driftUrl: drift,
      maskGeoTiffUrl: maskGeoTiff,
      probabilityGeoTiffUrl: probabilityGeoTiff,
      urlsExpireAt: new Date(Date.now() + ttl * 1000),
      georeferenced: stored.details?.georeferenced ?? false,
      crs: stored.details?.crs?.name ?? null,
      threshold: stored.details?.threshold ?? null,
      stats: Object.assign(new ChangeStats(), {
        changedPixels: s.changedPixels ?? null,
        changedFraction: s.changedFraction ?? null,
        regions: s.regions ?? null,
        areaSquareMeters: s.areaSquareMeters ?? null,
        areaHectares: s.areaHectares ?? null,
      }),
      modelVersion: stored.modelVersionId ? Object.assign(new ModelVersionRef(), { id: stored.modelVersionId }) : null,
    });
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Other subgraphs
  // -------------------------------------------------------------------------------------------------------------------
  private async resolveUploads(tenant: string, wanted: { id: string; field: string }[]): Promise<Map<string, Extract<ResolvedUpload, { ok: true }>>> {
    const { broker } = this.io;
    const ids = [...new Set(wanted.map((w) => w.id))];
    const resolved = new Map<string, ResolvedUpload>();
    try {
      for (let i = 0; i < ids.length; i += UPLOADS_PER_RPC) {
        const reply = await requestUploadResolution(broker, { tenant, uploadIds: ids.slice(i, i + UPLOADS_PER_RPC) }, this.config.JOBS_RPC_TIMEOUT_MS);
        for (const upload of reply.uploads) resolved.set(upload.id, upload);
      }
    } catch (error) {
      if (error instanceof BrokerError) throw unavailable('The datasets service');
      throw error;
    }
    const out = new Map<string, Extract<ResolvedUpload, { ok: true }>>();
    for (const { id, field } of wanted) {
      const upload = resolved.get(id);
      if (!upload || !upload.ok) {
        if (!upload || upload.problem === 'NOT_FOUND') {
          throw new GraphQLError(`${field}: upload ${JSON.stringify(id)} was not found`, { extensions: { code: 'NOT_FOUND', entity: 'Upload', id, field } });
        }
        throw badInput(`${field}: ${upload.message}`, field, { problem: upload.problem });
      }
      out.set(id, upload);
    }
    return out;
  }

  /** The Production version the job will run on, whatever is promoted while it runs. */
  private async pinModel(tenant: string, modelName: string): Promise<string> {
    const { broker } = this.io;
    let reply;
    try {
      reply = await requestModelResolution(broker, { tenant, modelName, stage: 'PRODUCTION' }, this.config.JOBS_RPC_TIMEOUT_MS);
    } catch (error) {
      if (error instanceof BrokerError) throw unavailable('The models service');
      throw error;
    }
    if (!reply.found) throw badInput(`modelName: ${reply.reason}`, 'modelName', { problem: 'MODEL_NOT_FOUND' });
    return reply.versionId;
  }
}

function toPairResult(result: ChangeResultPayload): PairResult {
  return {
    resultKeys: { ...result.keys },
    stats: result.stats,
    width: result.width,
    height: result.height,
    modelVersionId: result.modelVersionId,
    details: { georeferenced: result.georeferenced, crs: result.crs, threshold: result.threshold, tiles: result.tiles, timings: result.timings },
  };
}

function fromPayload(jobId: string, index: number, result: ChangeResultPayload): StoredResult {
  const pair = toPairResult(result);
  return {
    jobId,
    index,
    width: result.width,
    height: result.height,
    resultKeys: pair.resultKeys,
    stats: pair.stats ?? null,
    details: pair.details ?? null,
    modelVersionId: result.modelVersionId,
  };
}

/** A job's progress event as logged: on the job's own stream and on its tenant's, with the counts of its moment. */
function progressEvents(
  job: Pick<JobEntity, 'id' | 'tenant' | 'eventSequence' | 'status' | 'pairCount' | 'succeededCount' | 'failedCount'>,
  pair: ProgressPair | null,
) {
  const event: JobProgressEvent = {
    jobId: job.id,
    tenant: job.tenant,
    sequence: job.eventSequence,
    status: job.status,
    progress: job.pairCount > 0 ? (job.succeededCount + job.failedCount) / job.pairCount : 0,
    pairCount: job.pairCount,
    succeededCount: job.succeededCount,
    failedCount: job.failedCount,
    pair: pair ? { index: pair.index, status: pair.status, error: pair.error, errorCode: pair.errorCode } : null,
  };
  const payload = event as unknown as Record<string, unknown>;
  return [
    { stream: `job:${job.id}`, type: MESSAGE_TYPES.jobProgress, tenant: job.tenant, routingKey: EVENT_KEYS.jobProgress(job.id), payload },
    { stream: `jobs:${job.tenant}`, type: MESSAGE_TYPES.jobProgress, tenant: job.tenant, routingKey: `jobs.${job.tenant}.progress`, payload },
  ];
}
