// Owns change-detection jobs: their creation (once per idempotency key), the state of each pair as workers report
// it, and the job status derived from its pairs.
import { createHash } from 'node:crypto';
import { UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/core';
import { badInput, conflict, forbidden, notFound } from '../../lib/errors.js';
import { isSha256, isUuid } from '../../lib/ids.js';
import { InvalidObjectKeyError } from '../../lib/storage/errors.js';
import { assertValidObjectKey } from '../../lib/storage/object-key.js';
import {
  JobKind,
  JobPairStatus,
  JobStatus,
  type ChangeStatistics,
  type PairResultDetails,
  type PairResultKeys,
} from './job.contracts.js';
import { JobEntity } from './job.entity.js';
import { JobPairEntity } from './job-pair.entity.js';
import type { JobRepository } from './job.repository.js';
import type { AppendEvent } from '../../lib/events/event-log.js';

export interface JobServiceOptions {
  maxPairsPerJob: number;
}

export interface Actor {
  tenant: string;
  subject: string;
}

/** Who cancels: an analyst may cancel their own jobs, an admin any job of the tenant. */
export interface CancellingActor extends Actor {
  /** Admins: any job of the tenant. Otherwise only jobs the actor requested. */
  mayCancelOthers?: boolean;
}

export interface JobPairInput {
  /** Object keys of the co-registered images, under the tenant's own prefix (`<area>/<tenant>/…`). */
  beforeKey: string;
  afterKey: string;
  beforeUploadId?: string | null;
  afterUploadId?: string | null;
}

export interface CreateJobInput {
  tenant: string;
  requestedBy: string;
  kind: JobKind;
  modelName: string;
  /** Overrides the model's threshold, 0–1; null uses the model's own. */
  threshold?: number | null;
  pairs: JobPairInput[];
  datasetVersionId?: string | null;
  /** Scoped to the tenant: the same key with the same input returns the job made first. */
  idempotencyKey?: string | null;
  /** The model version pinned when the job was submitted (every pair runs on it); not part of the input's identity. */
  modelVersionId?: string | null;
  /** A chosen id (a SYNC job's outputs are keyed by it before the record is written). */
  id?: string;
}

/** How a SYNC job's one pair ended. */
export type SyncOutcome = { result: PairResult } | { error: string; code: string };

/** Which pair a worker reports on. */
export interface PairRef {
  tenant: string;
  jobId: string;
  index: number;
}

export interface PairResult {
  resultKeys: PairResultKeys;
  stats?: ChangeStatistics | null;
  width?: number | null;
  height?: number | null;
  modelVersionId?: string | null;
  details?: PairResultDetails | null;
}

export interface PairUpdate {
  job: JobEntity;
  pair: JobPairEntity;
  /** false when the report changed nothing: a redelivery, a late report, or a report on a cancelled job. */
  changed: boolean;
}

/**
 * A model name, or `name@alias` for the version an alias points to (the models subgraph resolves it, `models.resolve`);
 * 100 characters in all, the most the inference workers' requests carry.
 */
const MODEL_NAME = /^(?=.{1,100}$)[\p{L}\p{N}][\p{L}\p{N}._-]*(?:@[a-z][a-z0-9_-]{0,39})?$/u;
const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,200}$/;
const UPLOAD_ID_MAX = 200;
const ERROR_MAX = 2000;

export class JobService {
  constructor(
    private readonly repository: JobRepository,
    private readonly options: JobServiceOptions,
  ) {}

  async getJob(em: EntityManager, actor: Actor, id: string) {
    const job = isUuid(id) ? await this.repository.findJob(em, actor.tenant, id) : null;
    if (!job) throw notFound('Job', id);
    return job;
  }

  /**
   * Stores a job and its pairs, QUEUED. With an idempotency key, a retry with the same input returns the job made
   * first (even when both requests race), and the key reused for other input is a CONFLICT.
   */
  async createJob(em: EntityManager, input: CreateJobInput): Promise<JobEntity> {
    this.checkInput(input);
    const inputHash = hashInput(input);
    const key = input.idempotencyKey ?? null;
    if (key) {
      const existing = await this.repository.findByIdempotencyKey(em, input.tenant, key);
      if (existing) return sameInputOrConflict(existing, inputHash);
    }
    try {
      return await em.transactional(async (tx) => {
        const job = tx.create(JobEntity, {
          ...(input.id !== undefined && { id: input.id }),
          tenant: input.tenant,
          kind: input.kind,
          pairCount: input.pairs.length,
          modelName: input.modelName,
          threshold: input.threshold ?? null,
          datasetVersionId: input.datasetVersionId ?? null,
          idempotencyKey: key,
          inputHash,
          requestedBy: input.requestedBy,
          modelVersionId: input.modelVersionId ?? null,
        });
        input.pairs.forEach((pair, index) =>
          tx.create(JobPairEntity, {
            job,
            index,
            beforeKey: pair.beforeKey,
            afterKey: pair.afterKey,
            beforeUploadId: pair.beforeUploadId ?? null,
            afterUploadId: pair.afterUploadId ?? null,
          }),
        );
        return job;
      });
    } catch (error) {
      // Another request with the same key committed first: answer as if this one had come second.
      if (!key || !(error instanceof UniqueConstraintViolationException)) throw error;
      const winner = await this.repository.findByIdempotencyKey(em.fork(), input.tenant, key);
      if (!winner) throw error;
      return sameInputOrConflict(winner, inputHash);
    }
  }

  /** A worker started on the pair. A pair already finished (or cancelled) stays as it is. */
  markPairRunning(em: EntityManager, ref: PairRef): Promise<PairUpdate> {
    return this.updatePair(em, ref, (job, pair, now) => {
      if (pair.status !== JobPairStatus.QUEUED && pair.status !== JobPairStatus.RUNNING) return false;
      // A second start of a running pair is a redelivery after a lost worker: a new attempt.
      pair.status = JobPairStatus.RUNNING;
      pair.attempts += 1;
      pair.startedAt ??= now;
      if (job.status === JobStatus.QUEUED) job.status = JobStatus.RUNNING;
      job.startedAt ??= now;
      return true;
    });
  }

  /**
   * Records a pair's result. A redelivered success changes nothing; a success after a final failure (a dead-lettered
   * message replayed) replaces the failure, moving the pair from one count to the other.
   */
  markPairSucceeded(em: EntityManager, ref: PairRef, result: PairResult): Promise<PairUpdate> {
    return this.updatePair(em, ref, (job, pair, now) => {
      switch (pair.status) {
        case JobPairStatus.SUCCEEDED:
        case JobPairStatus.CANCELLED:
          return false;
        case JobPairStatus.FAILED:
          job.failedCount -= 1;
          break;
        case JobPairStatus.QUEUED:
        case JobPairStatus.RUNNING:
          break;
        default:
          return assertNever(pair.status);
      }
      pair.status = JobPairStatus.SUCCEEDED;
      pair.error = null;
      pair.errorCode = null;
      pair.details = result.details ?? null;
      pair.resultKeys = result.resultKeys;
      pair.stats = result.stats ?? null;
      pair.width = result.width ?? null;
      pair.height = result.height ?? null;
      pair.modelVersionId = result.modelVersionId ?? null;
      pair.startedAt ??= now;
      pair.finishedAt = now;
      job.succeededCount += 1;
      // The version that served the job's first result; a promotion during a long job shows on later pairs.
      job.modelVersionId ??= result.modelVersionId ?? null;
      return true;
    });
  }

  /**
   * Records a failed attempt. Not final: the pair waits for the broker's retry (QUEUED, error kept). Final: the pair
   * is FAILED and counted. A pair already finished stays as it is.
   */
  markPairFailed(em: EntityManager, ref: PairRef, error: string, options: { final: boolean; code?: string | null }): Promise<PairUpdate> {
    const message = error.slice(0, ERROR_MAX);
    return this.updatePair(em, ref, (job, pair, now) => {
      if (pair.status !== JobPairStatus.QUEUED && pair.status !== JobPairStatus.RUNNING) return false;
      pair.error = message;
      pair.errorCode = options.code ?? null;
      pair.startedAt ??= now;
      if (options.final) {
        pair.status = JobPairStatus.FAILED;
        pair.finishedAt = now;
        job.failedCount += 1;
      } else {
        pair.status = JobPairStatus.QUEUED;
      }
      return true;
    });
  }

  /** Stops a queued or running job: its unfinished pairs are cancelled; results reported later are ignored. */
  async cancelJob(em: EntityManager, actor: CancellingActor, id: string): Promise<JobEntity> {
    if (!isUuid(id)) throw notFound('Job', id);
    return em.transactional(async (tx) => {
      const job = await this.repository.lockJob(tx, actor.tenant, id);
      if (!job) throw notFound('Job', id);
      if (!actor.mayCancelOthers && job.requestedBy !== actor.subject) throw forbidden('Only an admin may cancel a job someone else started');
      switch (job.status) {
        case JobStatus.CANCELLED:
          return job;
        case JobStatus.SUCCEEDED:
        case JobStatus.PARTIAL:
        case JobStatus.FAILED:
          throw conflict(`Job ${JSON.stringify(id)} has already finished (${job.status}); only a queued or running job can be cancelled`, {
            status: job.status,
          });
        case JobStatus.QUEUED:
        case JobStatus.RUNNING:
          break;
        default:
          return assertNever(job.status);
      }
      const now = new Date();
      job.status = JobStatus.CANCELLED;
      job.finishedAt = now;
      job.eventSequence += 1;
      await this.repository.cancelOpenPairs(tx, job.id, now);
      return job;
    });
  }

  /**
   * Records a SYNC job once, when its one pair has ended: the job and the pair in their final state, and the events
   * `events` makes of it (its progress events), in one statement. A request that never ends (the process stopped
   * mid-way) leaves no half-written record, and the answer's jobId is readable the moment the caller has it.
   */
  async recordSyncJob(
    em: EntityManager,
    input: CreateJobInput & { id: string; startedAt: Date },
    outcome: SyncOutcome,
    events?: (job: JobEntity) => AppendEvent[],
  ): Promise<JobEntity> {
    if (input.kind !== JobKind.SYNC || input.pairs.length !== 1) throw badInput('A synchronous job has exactly one pair', 'pairs');
    this.checkInput(input);
    const now = new Date();
    const succeeded = 'result' in outcome;
    const pair = input.pairs[0]!;
    const job = Object.assign(new JobEntity(), {
      id: input.id,
      tenant: input.tenant,
      kind: JobKind.SYNC,
      status: succeeded ? JobStatus.SUCCEEDED : JobStatus.FAILED,
      pairCount: 1,
      succeededCount: succeeded ? 1 : 0,
      failedCount: succeeded ? 0 : 1,
      modelName: input.modelName,
      modelVersionId: succeeded ? (outcome.result.modelVersionId ?? null) : null,
      threshold: input.threshold ?? null,
      inputHash: hashInput(input),
      requestedBy: input.requestedBy,
      error: succeeded ? null : outcome.error.slice(0, ERROR_MAX),
      createdAt: input.startedAt,
      updatedAt: now,
      startedAt: input.startedAt,
      finishedAt: now,
      eventSequence: 1,
    });
    const pairRow = Object.assign(new JobPairEntity(), {
      job,
      index: 0,
      beforeKey: pair.beforeKey,
      afterKey: pair.afterKey,
      beforeUploadId: pair.beforeUploadId ?? null,
      afterUploadId: pair.afterUploadId ?? null,
      attempts: 1,
      startedAt: input.startedAt,
      finishedAt: now,
      ...(succeeded
        ? {
            status: JobPairStatus.SUCCEEDED,
            resultKeys: outcome.result.resultKeys,
            stats: outcome.result.stats ?? null,
            width: outcome.result.width ?? null,
            height: outcome.result.height ?? null,
            modelVersionId: outcome.result.modelVersionId ?? null,
            details: outcome.result.details ?? null,
          }
        : { status: JobPairStatus.FAILED, error: outcome.error.slice(0, ERROR_MAX), errorCode: outcome.code }),
    });
    await this.repository.insertFinishedJob(em, job, [pairRow], events?.(job) ?? []);
    return job;
  }

  /** Records that every pair message of the job was sent. */
  async markDispatched(em: EntityManager, tenant: string, jobId: string): Promise<void> {
    await this.repository.markDispatched(em, tenant, jobId, new Date());
  }

  /** Applies one report to one pair under the job's row lock, then derives the job's status from its counts. */
  private async updatePair(
    em: EntityManager,
    ref: PairRef,
    apply: (job: JobEntity, pair: JobPairEntity, now: Date) => boolean,
  ): Promise<PairUpdate> {
    if (!isUuid(ref.jobId)) throw notFound('Job', ref.jobId);
    return em.transactional(async (tx) => {
      const job = await this.repository.lockJob(tx, ref.tenant, ref.jobId);
      if (!job) throw notFound('Job', ref.jobId);
      const pair = Number.isInteger(ref.index) ? await this.repository.findPair(tx, ref.tenant, job.id, ref.index) : null;
      if (!pair) throw notFound('JobPair', `${ref.jobId}#${ref.index}`);
      // A cancelled job takes no more reports: its pairs and counts stay as they were at cancellation.
      if (job.status === JobStatus.CANCELLED) return { job, pair, changed: false };
      const now = new Date();
      const changed = apply(job, pair, now);
      if (changed) {
        deriveJobStatus(job, pair, now);
        job.eventSequence += 1;
      }
      return { job, pair, changed };
    });
  }

  /** Checks a job's input without storing anything; createJob runs it too. Throws BAD_USER_INPUT naming the field. */
  checkInput(input: CreateJobInput): void {
    if (!Object.values(JobKind).includes(input.kind)) throw badInput(`kind must be one of ${Object.values(JobKind).join(', ')}`, 'kind');
    if (!MODEL_NAME.test(input.modelName)) {
      throw badInput('modelName must be 1–100 letters, digits, dots, dashes or underscores, optionally followed by @alias (e.g. lcd-demo@challenger)', 'modelName');
    }
    const threshold = input.threshold;
    if (threshold !== undefined && threshold !== null && !(Number.isFinite(threshold) && threshold >= 0 && threshold <= 1)) {
      throw badInput('threshold must be between 0 and 1', 'threshold');
    }
    if (input.datasetVersionId != null && !isSha256(input.datasetVersionId)) {
      throw badInput('datasetVersionId is not a dataset version id', 'datasetVersionId');
    }
    if (input.modelVersionId != null && !isUuid(input.modelVersionId)) throw badInput('modelVersionId is not a model version id', 'modelVersionId');
    if (input.id !== undefined && !isUuid(input.id)) throw badInput('id must be a UUID', 'id');
    if (input.idempotencyKey != null && !IDEMPOTENCY_KEY.test(input.idempotencyKey)) {
      throw badInput('idempotencyKey must be 1–200 printable ASCII characters without spaces', 'idempotencyKey');
    }
    if (input.pairs.length === 0) throw badInput('A job needs at least one pair', 'pairs');
    if (input.kind === JobKind.SYNC && input.pairs.length !== 1) throw badInput('A SYNC job has exactly one pair', 'pairs');
    if (input.pairs.length > this.options.maxPairsPerJob) {
      throw badInput(`A job holds at most ${this.options.maxPairsPerJob} pairs`, 'pairs', { max: this.options.maxPairsPerJob });
    }
    input.pairs.forEach((pair, index) => {
      for (const side of ['beforeKey', 'afterKey'] as const) {
        const field = `pairs[${index}].${side}`;
        try {
          assertValidObjectKey(pair[side]);
        } catch (error) {
          if (error instanceof InvalidObjectKeyError) throw badInput(`${field}: ${error.reason}`, field);
          throw error;
        }
        // A job reads only its own tenant's objects, whatever keys a caller manages to pass in.
        if (pair[side].split('/')[1] !== input.tenant) throw badInput(`${field} is not an object of your tenant`, field);
      }
      for (const side of ['beforeUploadId', 'afterUploadId'] as const) {
        const value = pair[side];
        if (value != null && (value.length === 0 || value.length > UPLOAD_ID_MAX)) {
          throw badInput(`pairs[${index}].${side} must be 1–${UPLOAD_ID_MAX} characters`, `pairs[${index}].${side}`);
        }
      }
    });
  }
}

/** Derives the job's status once a pair changed: finished when every pair is, and how it ended from the counts. */
function deriveJobStatus(job: JobEntity, pair: JobPairEntity, now: Date): void {
  if (job.status === JobStatus.CANCELLED) return;
  const finished = job.succeededCount + job.failedCount;
  if (finished < job.pairCount) {
    job.status = JobStatus.RUNNING;
    job.startedAt ??= now;
    return;
  }
  job.finishedAt = now;
  if (job.failedCount === 0) {
    job.status = JobStatus.SUCCEEDED;
    job.error = null;
  } else if (job.succeededCount === 0) {
    job.status = JobStatus.FAILED;
    job.error = job.pairCount === 1 ? pair.error : `All ${job.pairCount} pairs failed; the last error: ${pair.error ?? 'unknown'}`;
  } else {
    job.status = JobStatus.PARTIAL;
    job.error = `${job.failedCount} of ${job.pairCount} pairs failed`;
  }
}

function sameInputOrConflict(job: JobEntity, inputHash: string): JobEntity {
  if (job.inputHash === inputHash) return job;
  throw conflict('This idempotency key was already used for a job with other input; use a new key for a new job', {
    field: 'idempotencyKey',
    jobId: job.id,
  });
}

/** sha256 of the input a job is made from, in a fixed order; who asked is not part of it (the key is the tenant's). */
export function hashInput(input: CreateJobInput): string {
  const canonical = [
    input.kind,
    input.modelName,
    input.threshold ?? null,
    input.datasetVersionId ?? null,
    input.pairs.map((p) => [p.beforeKey, p.afterKey, p.beforeUploadId ?? null, p.afterUploadId ?? null]),
  ];
  return createHash('sha256').update(JSON.stringify(canonical)).digest('hex');
}

function assertNever(value: never): never {
  throw new Error(`Unexpected state ${String(value)}`);
}
