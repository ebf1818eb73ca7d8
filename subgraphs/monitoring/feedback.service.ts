// Owns model drift from labelled feedback: a person's change label for one result of a job is scored against the
// result's mask (confusion counts, IoU, F1) and stored once per pair; a model version's feedback is cut into batches
// of FEEDBACK_BATCH_SIZE pairs, oldest first, and a completed batch whose IoU or F1 falls more than
// FEEDBACK_ALERT_MARGIN below the version's evaluation raises a MODEL_DRIFT alert. The result, the label and the
// evaluation are asked of the jobs, datasets and models subgraphs over RabbitMQ; this subgraph never reads their tables.
//
// Submitting feedback for a pair that already has some is idempotent: the same label upload returns the stored
// feedback; another label upload is refused with CONFLICT. Stored feedback is never replaced, because the batches (and
// the alerts they raised) are made of it; a wrong label is corrected by labelling another result.
import { UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/core';
import { GraphQLError } from 'graphql';
import type { Logger } from 'pino';
import { BrokerError, type Broker } from '../../lib/broker/broker.js';
import { badInput, conflict, notFound, unavailable } from '../../lib/errors.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { requestUploadResolution } from '../datasets/upload-resolution.rpc.js';
import { requestPairResolution } from '../jobs/pair-resolution.rpc.js';
import { requestModelResolution } from '../models/model-resolution.rpc.js';
import { raiseAlert, type AlertDeps } from './alerts.js';
import type { Actor } from './audit.service.js';
import type { DriftAlertEntity } from './drift-alert.entity.js';
import { FeedbackEntity } from './feedback.entity.js';
import type { FeedbackBatchRow, FeedbackRepository } from './feedback.repository.js';
import { f1Of, iouOf, scoreLabel, type ConfusionCounts } from './feedback-scoring.js';
import { DriftAlertKind } from './monitoring.contracts.js';

export interface SubmitFeedbackInput {
  jobId: string;
  pairIndex: number;
  labelUploadId: string;
}

export interface FeedbackSettings {
  batchSize: number;
  margin: number;
  rpcTimeoutMs: number;
}

/** The quality a model version was registered with (from the models subgraph); null metrics where it has none. */
export interface VersionEvaluation {
  version: number | null;
  iou: number | null;
  f1: number | null;
}

export interface SubmittedFeedback {
  feedback: FeedbackEntity;
  /** False when the pair already had this feedback (a retried submission). */
  created: boolean;
  /** MODEL_DRIFT alerts the batch this feedback completed raised (or found open). */
  alerts: DriftAlertEntity[];
}

/** One batch of a version's feedback with its micro-averaged scores. */
export interface FeedbackBatch extends FeedbackBatchRow {
  /** Fewer than batchSize pairs so far: shown, never alerted on. */
  partial: boolean;
  iou: number;
  f1: number;
  /** A complete batch more than the margin below the evaluation in IoU or F1 (what raises a MODEL_DRIFT alert). */
  belowEvaluation: boolean;
}

export interface VersionPerformance {
  modelName: string;
  modelVersionId: string;
  evaluation: VersionEvaluation;
  feedbackCount: number;
  batchSize: number;
  margin: number;
  batches: FeedbackBatch[];
}

const METRICS = ['f1', 'iou'] as const;
const NO_EVALUATION: VersionEvaluation = { version: null, iou: null, f1: null };

export class FeedbackService {
  constructor(
    private readonly repository: FeedbackRepository,
    private readonly settings: FeedbackSettings,
    /** Absent without a runtime (schema printing, resolver tests): submitFeedback answers UNAVAILABLE. */
    private readonly io: { broker: Broker; store: ObjectStore } | null,
    private readonly alertDeps: () => AlertDeps,
    private readonly log: Logger,
  ) {}

  async submit(em: EntityManager, actor: Actor, input: SubmitFeedbackInput): Promise<SubmittedFeedback> {
    if (!Number.isInteger(input.pairIndex) || input.pairIndex < 0) throw badInput('pairIndex must be a whole number ≥ 0', 'pairIndex');
    if (input.jobId.trim() === '') throw badInput('jobId is required', 'jobId');
    if (input.labelUploadId.trim() === '') throw badInput('labelUploadId is required', 'labelUploadId');

    const existing = await this.repository.findForPair(em, actor.tenant, input.jobId, input.pairIndex);
    if (existing) return { feedback: this.sameOrConflict(existing, input), created: false, alerts: [] };
    if (!this.io) throw unavailable('Feedback scoring');
    const { store } = this.io;

    const pair = await this.resolvePair(actor.tenant, input);
    const label = await this.resolveLabel(actor.tenant, input.labelUploadId);
    const evaluation = await this.evaluation(actor.tenant, pair.modelVersionId);
    const resultName = `pair ${input.pairIndex} of job ${input.jobId}`;
    const [maskBytes, labelBytes] = await Promise.all([store.get(pair.maskKey), store.get(label.objectKey)]);
    const counts = await scoreLabel(maskBytes, labelBytes, { resultName, width: pair.width, height: pair.height });

    const feedback = em.create(FeedbackEntity, {
      tenant: actor.tenant,
      jobId: pair.jobId,
      pairIndex: input.pairIndex,
      modelName: pair.modelName,
      modelVersionId: pair.modelVersionId,
      labelUploadId: input.labelUploadId,
      labelKey: label.objectKey,
      ...counts,
      iou: iouOf(counts),
      f1: f1Of(counts),
      createdBy: actor.subject,
    });
    try {
      await em.persistAndFlush(feedback);
    } catch (error) {
      // A concurrent submission for the same pair won: the same rule as for one that came before.
      if (!(error instanceof UniqueConstraintViolationException)) throw error;
      const winner = await this.repository.findForPair(em.fork(), actor.tenant, input.jobId, input.pairIndex);
      if (!winner) throw error;
      return { feedback: this.sameOrConflict(winner, input), created: false, alerts: [] };
    }
    const alerts = await this.checkCompletedBatch(em.fork(), feedback, evaluation);
    return { feedback, created: true, alerts };
  }

  /** Per model version (in the order of its first feedback), the feedback batches with IoU and F1 beside the evaluation. */
  async performance(em: EntityManager, actor: Actor, modelName: string): Promise<VersionPerformance[]> {
    if (modelName.trim() === '') throw badInput('modelName is required', 'modelName');
    const rows = await this.repository.batches(em, actor.tenant, modelName, this.settings.batchSize);
    const byVersion = new Map<string, FeedbackBatchRow[]>();
    for (const row of rows) byVersion.set(row.modelVersionId, [...(byVersion.get(row.modelVersionId) ?? []), row]);
    const out: VersionPerformance[] = [];
    for (const [modelVersionId, versionRows] of byVersion) {
      // The models subgraph being away must not hide the feedback: the comparison is left out instead.
      const evaluation = await this.evaluation(actor.tenant, modelVersionId).catch((error: unknown) => {
        this.log.warn({ err: error, modelVersionId }, 'evaluation of a model version unavailable');
        return NO_EVALUATION;
      });
      const batches = versionRows.sort((a, b) => a.index - b.index).map((row) => this.scoreBatch(row, evaluation));
      out.push({
        modelName,
        modelVersionId,
        evaluation,
        feedbackCount: batches.reduce((n, b) => n + b.pairCount, 0),
        batchSize: this.settings.batchSize,
        margin: this.settings.margin,
        batches,
      });
    }
    return out;
  }

  private scoreBatch(row: FeedbackBatchRow, evaluation: VersionEvaluation): FeedbackBatch {
    const counts: ConfusionCounts = { tp: row.tp, fp: row.fp, fn: row.fn, tn: row.tn };
    const scores = { iou: iouOf(counts), f1: f1Of(counts) };
    const partial = row.pairCount < this.settings.batchSize;
    const belowEvaluation = !partial && METRICS.some((m) => this.belowThreshold(scores[m], evaluation[m]));
    return { ...row, partial, ...scores, belowEvaluation };
  }

  private belowThreshold(value: number, evaluated: number | null): boolean {
    return evaluated !== null && value < evaluated - this.settings.margin;
  }

  private sameOrConflict(existing: FeedbackEntity, input: SubmitFeedbackInput): FeedbackEntity {
    if (existing.labelUploadId === input.labelUploadId) return existing;
    throw conflict(
      `pair ${input.pairIndex} of job ${input.jobId} already has feedback ${existing.id} (label upload ${existing.labelUploadId}); feedback is kept as given and never replaced`,
      { feedbackId: existing.id, field: 'labelUploadId' },
    );
  }

  /**
   * Raises the MODEL_DRIFT alerts of the batch `feedback` completed, if it completed one. Whoever commits a batch's
   * last pair sees the whole batch; a batch seen complete twice finds its alerts open (raiseAlert does not repeat).
   */
  private async checkCompletedBatch(em: EntityManager, feedback: FeedbackEntity, evaluation: VersionEvaluation): Promise<DriftAlertEntity[]> {
    const { batchSize, margin } = this.settings;
    const position = await this.repository.countBefore(em, feedback);
    const index = Math.floor(position / batchSize);
    const rows = await this.repository.batches(em, feedback.tenant, feedback.modelName, batchSize, feedback.modelVersionId);
    const row = rows.find((r) => r.index === index);
    if (!row || row.pairCount < batchSize) return [];
    const batch = this.scoreBatch(row, evaluation);
    const alerts: DriftAlertEntity[] = [];
    for (const metric of METRICS) {
      const evaluated = evaluation[metric];
      if (evaluated === null || !this.belowThreshold(batch[metric], evaluated)) continue;
      const { alert } = await raiseAlert(em, this.alertDeps(), {
        tenant: feedback.tenant,
        modelName: feedback.modelName,
        modelVersionId: feedback.modelVersionId,
        kind: DriftAlertKind.MODEL_DRIFT,
        metric,
        value: batch[metric],
        threshold: evaluated - margin,
        windowStart: batch.windowStart,
        windowEnd: batch.windowEnd,
        details: { batch: index, pairCount: batch.pairCount, evaluation: evaluated, margin, tp: batch.tp, fp: batch.fp, fn: batch.fn, tn: batch.tn },
      });
      this.log.info({ tenant: feedback.tenant, modelName: feedback.modelName, metric, value: batch[metric], evaluated, batch: index }, 'model drift on feedback');
      alerts.push(alert);
    }
    return alerts;
  }

  // -------------------------------------------------------------------------------------------------------------------
  // Other subgraphs
  // -------------------------------------------------------------------------------------------------------------------
  private async resolvePair(tenant: string, input: SubmitFeedbackInput) {
    let reply;
    try {
      reply = await requestPairResolution(this.io!.broker, { tenant, jobId: input.jobId, pairIndex: input.pairIndex }, this.settings.rpcTimeoutMs);
    } catch (error) {
      if (error instanceof BrokerError) throw unavailable('The jobs service');
      throw error;
    }
    if (!reply.found) {
      if (reply.problem === 'JOB_NOT_FOUND') throw withField(notFound('Job', input.jobId), 'jobId');
      throw new GraphQLError(`pairIndex: ${reply.message}`, {
        extensions: { code: 'NOT_FOUND', entity: 'JobPair', id: `${input.jobId}/${input.pairIndex}`, field: 'pairIndex' },
      });
    }
    const resultName = `pair ${input.pairIndex} of job ${input.jobId}`;
    if (reply.pairStatus !== 'SUCCEEDED') {
      throw badInput(`pairIndex: ${resultName} is ${reply.pairStatus}; feedback is given on a SUCCEEDED result`, 'pairIndex', {
        problem: 'PAIR_NOT_SUCCEEDED',
        pairStatus: reply.pairStatus,
        jobStatus: reply.jobStatus,
      });
    }
    if (!reply.maskKey || !reply.modelVersionId || reply.width === null || reply.height === null) {
      throw badInput(`pairIndex: ${resultName} has no change mask to compare with`, 'pairIndex', { problem: 'PAIR_WITHOUT_MASK' });
    }
    return { ...reply, maskKey: reply.maskKey, modelVersionId: reply.modelVersionId, width: reply.width, height: reply.height };
  }

  private async resolveLabel(tenant: string, uploadId: string) {
    let reply;
    try {
      reply = await requestUploadResolution(this.io!.broker, { tenant, uploadIds: [uploadId] }, this.settings.rpcTimeoutMs);
    } catch (error) {
      if (error instanceof BrokerError) throw unavailable('The datasets service');
      throw error;
    }
    const upload = reply.uploads[0];
    if (!upload || (!upload.ok && upload.problem === 'NOT_FOUND')) throw withField(notFound('Upload', uploadId), 'labelUploadId');
    if (!upload.ok) throw badInput(`labelUploadId: ${upload.message}`, 'labelUploadId', { problem: upload.problem });
    return upload;
  }

  /** The version's evaluation IoU and F1; every metric null when the models subgraph does not know the version. */
  private async evaluation(tenant: string, modelVersionId: string): Promise<VersionEvaluation> {
    if (!this.io) return NO_EVALUATION;
    let reply;
    try {
      reply = await requestModelResolution(this.io.broker, { tenant, versionId: modelVersionId }, this.settings.rpcTimeoutMs);
    } catch (error) {
      if (error instanceof BrokerError) throw unavailable('The models service');
      throw error;
    }
    if (!reply.found) return NO_EVALUATION;
    const metric = (name: string) => (typeof reply.metrics?.[name] === 'number' && Number.isFinite(reply.metrics[name]) ? reply.metrics[name] : null);
    return { version: reply.version, iou: metric('iou'), f1: metric('f1') };
  }
}

/** A NOT_FOUND error that also names the input field it came from. */
function withField(error: GraphQLError, field: string): GraphQLError {
  return new GraphQLError(`${field}: ${error.message}`, { extensions: { ...error.extensions, field } });
}
