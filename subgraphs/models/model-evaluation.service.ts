// Owns the evaluation of model versions on a frozen dataset version: which dataset version a registered model is
// evaluated on, asking an inference worker to evaluate a version (`inference.evaluate`), and applying what the worker
// found: the evaluation record on the version and, for uploaded versions, their metrics, the same evaluation gate
// trained versions pass, and the move to STAGING when it passes. Every outcome is written whole, in one transaction.
import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { BrokerTimeoutError, createEnvelope, type Broker } from '../../lib/broker/broker.js';
import type { Identity } from '../../lib/auth.js';
import { badInput, notFound, unavailable } from '../../lib/errors.js';
import { isSha256, isUuid } from '../../lib/ids.js';
import { requestVersionResolution, type VersionResolutionReply } from '../datasets/version-resolution.rpc.js';
import { evaluateGate, type GateConfig, type ProductionBaseline } from './evaluation-gate.js';
import type { EventPublisher } from './model-events.js';
import { ModelEvaluationRepository } from './model-evaluation.repository.js';
import {
  EVALUATION_DELIVERY_LIMIT,
  EVALUATION_MESSAGE_TYPES,
  EvaluationStatus,
  evaluationIdempotencyKey,
  type EvaluationErrorCode,
  type EvaluationRecord,
  type EvaluationRequest,
  type EvaluationResult,
} from './model-evaluation.contracts.js';
import { checkModelName } from './model-registry.inputs.js';
import type { ModelRegistryRepository } from './model-registry.repository.js';
import type { ModelRegistryService } from './model-registry.service.js';
import type { ModelVersionEntity } from './model-version.entity.js';
import { ModelStage, ModelVersionSource, type GateDecision } from './models.contracts.js';
import type { RegisteredModelEntity } from './registered-model.entity.js';

export interface ModelEvaluationOptions {
  broker: Broker;
  /** Where evaluation requests go (the inference workers consume it). */
  requestsQueue: string;
  /** Where the workers report (told to them in every request). */
  resultsQueue: string;
  datasetVersionQueue: string;
  rpcTimeoutMs: number;
  gate: GateConfig;
  /** When a PENDING evaluation counts as lost and how often it is sent in all (resendLost); defaults: 30 minutes, 3. */
  lost?: Partial<LostEvaluationOptions>;
  events?: EventPublisher;
  log?: Logger;
}

export interface LostEvaluationOptions {
  /** Minutes without a result after an attempt was sent. */
  timeoutMinutes: number;
  /** Attempts in all, the first included. */
  maxAttempts: number;
}

export const DEFAULT_LOST_EVALUATIONS: LostEvaluationOptions = { timeoutMinutes: 30, maxAttempts: 3 };
/** Versions looked at per sweep; PENDING evaluations are few, and the rest wait for the next pass. */
const LOST_EVALUATIONS_PER_PASS = 100;

type Caller = Pick<Identity, 'tenant' | 'subject'>;

/** Where a model's evaluation dataset version comes from. */
export const EvaluationDatasetOrigin = {
  /** Chosen with setEvaluationDataset. */
  SET: 'SET',
  /** The dataset version the Production version was trained on. */
  PRODUCTION_TRAINING_RUN: 'PRODUCTION_TRAINING_RUN',
  /** The dataset version the newest trained version was trained on. */
  LATEST_TRAINING_RUN: 'LATEST_TRAINING_RUN',
} as const;
export type EvaluationDatasetOrigin = (typeof EvaluationDatasetOrigin)[keyof typeof EvaluationDatasetOrigin];

export interface EvaluationDatasetChoice {
  datasetVersionId: string;
  origin: EvaluationDatasetOrigin;
}

/** The component named in the stage history when a passing evaluation moves a version to STAGING. */
export const EVALUATION_GATE_ACTOR = 'evaluation-gate';

const NO_DATASET_MESSAGE =
  'no evaluation dataset: set one with setEvaluationDataset(modelName, datasetVersionId), or train a version of this model (its dataset version is the default)';

export class ModelEvaluationService {
  private readonly queries = new ModelEvaluationRepository();

  constructor(
    private readonly repository: ModelRegistryRepository,
    private readonly registry: ModelRegistryService,
    private readonly options: ModelEvaluationOptions,
  ) {}

  /**
   * Freezes the dataset version the model's versions are evaluated on (null: back to the default). The version must
   * exist for the caller's tenant and hold labelled items. Choosing one creates the model when the tenant has none of
   * that name, so that its first version is evaluated on it. Versions already evaluated keep their evaluation.
   */
  async setEvaluationDataset(em: EntityManager, caller: Caller, modelName: string, datasetVersionId: string | null): Promise<RegisteredModelEntity> {
    const name = checkModelName(modelName);
    if (datasetVersionId !== null) {
      if (!isSha256(datasetVersionId)) throw badInput('datasetVersionId must be the id of a dataset version (64 hex digits)', 'datasetVersionId');
      const dataset = await this.resolveDataset(caller.tenant, datasetVersionId);
      if (!dataset.found) throw notFound('DatasetVersion', datasetVersionId);
      if (dataset.labelledCount === 0) throw badInput(`Dataset version ${datasetVersionId} has no labelled items to evaluate on`, 'datasetVersionId');
    }
    return em.transactional(async (tx) => {
      // Going back to the default concerns a model that exists; choosing a dataset may come before its first version.
      if (datasetVersionId !== null) await this.repository.ensureRegisteredModel(tx, caller.tenant, name);
      const locked = await this.repository.lockRegisteredModel(tx, caller.tenant, { name });
      if (!locked) throw notFound('RegisteredModel', name);
      locked.evaluationDatasetVersionId = datasetVersionId;
      return locked;
    });
  }

  /**
   * The dataset version a model's versions are evaluated on: the one set, else the dataset version of the training
   * run of the Production version, else of the newest trained version; null when there is none.
   */
  async evaluationDatasetOf(em: EntityManager, model: RegisteredModelEntity): Promise<EvaluationDatasetChoice | null> {
    if (model.evaluationDatasetVersionId) return { datasetVersionId: model.evaluationDatasetVersionId, origin: EvaluationDatasetOrigin.SET };
    const production = await this.queries.trainedProductionVersion(em, model.tenant, model.id);
    if (production?.trainingRun) return { datasetVersionId: production.trainingRun.datasetVersionId, origin: EvaluationDatasetOrigin.PRODUCTION_TRAINING_RUN };
    const latest = await this.queries.latestTrainedVersion(em, model.tenant, model.id);
    if (latest?.trainingRun) return { datasetVersionId: latest.trainingRun.datasetVersionId, origin: EvaluationDatasetOrigin.LATEST_TRAINING_RUN };
    return null;
  }

  /** Evaluates a version just registered, unless it has been evaluated (or is being) already. */
  async evaluateRegistered(em: EntityManager, caller: Caller, version: ModelVersionEntity): Promise<ModelVersionEntity> {
    if (version.evaluation) return version;
    return this.request(em, caller, version.id, { onlyIfNew: true });
  }

  /** Evaluates a version of the caller's tenant again (evaluateModelVersion); a result of an earlier attempt is then ignored. */
  async evaluateVersion(em: EntityManager, caller: Caller, versionId: string): Promise<ModelVersionEntity> {
    const version = isUuid(versionId) ? await this.queries.findOwnVersion(em, caller.tenant, versionId) : null;
    if (!version) throw notFound('ModelVersion', versionId);
    return this.request(em, caller, version.id, { onlyIfNew: false });
  }

  private async request(em: EntityManager, caller: Caller, versionId: string, options: { onlyIfNew: boolean }): Promise<ModelVersionEntity> {
    const version = await this.queries.findOwnVersion(em, caller.tenant, versionId);
    if (!version) throw notFound('ModelVersion', versionId);
    const requestId = randomUUID();
    const base = { requestId, requestedBy: caller.subject, requestedAt: new Date().toISOString() };
    const choice = await this.evaluationDatasetOf(em, version.registeredModel);
    const fail = (datasetVersionId: string | null, code: EvaluationErrorCode, message: string) =>
      this.write(em, caller.tenant, versionId, { ...emptyRecord(base, datasetVersionId), status: EvaluationStatus.FAILED, evaluatedAt: new Date().toISOString(), error: { code, message } }, options);
    if (!choice) return fail(null, 'NO_EVALUATION_DATASET', NO_DATASET_MESSAGE);

    let dataset: VersionResolutionReply;
    try {
      dataset = await this.resolveDataset(caller.tenant, choice.datasetVersionId);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      return fail(choice.datasetVersionId, 'DATASET_UNAVAILABLE', `the datasets service did not answer: ${message}; ask again with evaluateModelVersion`);
    }
    if (!dataset.found) return fail(choice.datasetVersionId, 'DATASET_NOT_FOUND', `evaluation dataset version ${choice.datasetVersionId} was not found`);
    if (dataset.labelledCount === 0) return fail(choice.datasetVersionId, 'NO_LABELLED_ITEMS', `evaluation dataset version ${choice.datasetVersionId} has no labelled items`);

    const sentAt = new Date().toISOString();
    const pending = await this.write(em, caller.tenant, versionId, { ...emptyRecord(base, choice.datasetVersionId), status: EvaluationStatus.PENDING, attempts: 1, lastSentAt: sentAt }, options);
    if (pending.evaluation?.requestId !== requestId) return pending;
    try {
      await this.send(version, requestId, choice.datasetVersionId, dataset.manifestKey);
    } catch (error) {
      this.options.log?.warn({ err: error, versionId }, 'evaluation request not sent');
      const message = error instanceof Error ? error.message : String(error);
      await this.applyResult(em, version.tenant, {
        ok: false,
        requestId,
        modelVersionId: version.id,
        datasetVersionId: choice.datasetVersionId,
        code: 'BROKER_UNAVAILABLE',
        message: `the evaluation request could not be sent: ${message}; ask again with evaluateModelVersion`.slice(0, 2000),
      });
    }
    return this.reload(em, caller.tenant, versionId);
  }

  /** Sends one attempt of an evaluation to the inference workers. */
  private async send(version: ModelVersionEntity, requestId: string, datasetVersionId: string, manifestKey: string): Promise<void> {
    const payload: EvaluationRequest = {
      requestId,
      modelVersionId: version.id,
      modelName: version.registeredModel.name,
      artifactKey: version.artifactKey,
      sha256: version.sha256,
      datasetVersionId,
      manifestKey,
      resultsQueue: this.options.resultsQueue,
    };
    const envelope = createEnvelope(EVALUATION_MESSAGE_TYPES.request, payload, {
      tenant: version.tenant,
      idempotencyKey: evaluationIdempotencyKey(version.id, datasetVersionId),
    });
    // Declared by the sender too (with the consumers' delivery limit), so that a request waits for a worker to start.
    await this.options.broker.assertQueue(this.options.requestsQueue, { deliveryLimit: EVALUATION_DELIVERY_LIMIT });
    await this.options.broker.send(this.options.requestsQueue, envelope);
  }

  /**
   * Re-sends the evaluations left PENDING longer than the timeout since their last attempt (the request or its result
   * was lost: a worker's queue purged, a result dropped), with the same requestId, so that whichever attempt's result
   * arrives first applies once and the later ones are ignored (applyResult). One that has had every attempt fails
   * with TIMED_OUT, which (for an uploaded version still in NONE) is its gate decision. Each version is re-checked
   * under its model's lock, so that replicas sweeping at once, or a result arriving meanwhile, send nothing twice.
   * `now` is the sweep's clock.
   */
  async resendLost(em: EntityManager, now: Date = new Date()): Promise<{ resent: number; failed: number }> {
    const { timeoutMinutes, maxAttempts } = { ...DEFAULT_LOST_EVALUATIONS, ...this.options.lost };
    const cutoff = now.getTime() - timeoutMinutes * 60_000;
    const overdue = (record: EvaluationRecord) => Date.parse(record.lastSentAt ?? record.requestedAt) <= cutoff;
    const candidates = (await this.queries.pendingEvaluations(em, LOST_EVALUATIONS_PER_PASS)).filter((v) => v.evaluation && overdue(v.evaluation));
    let resent = 0;
    let failed = 0;
    for (const candidate of candidates) {
      const requestId = candidate.evaluation!.requestId;
      const next = await em.fork().transactional(async (tx) => {
        const version = await this.lockVersion(tx, candidate.tenant, candidate.id);
        const record = version?.evaluation;
        if (!version || !record || record.status !== EvaluationStatus.PENDING || record.requestId !== requestId || !overdue(record)) return null;
        const attempts = record.attempts ?? 1;
        if (attempts >= maxAttempts || !record.datasetVersionId) {
          const message = `the evaluation timed out after ${attempts} attempt${attempts === 1 ? '' : 's'}: no result came within ${timeoutMinutes} minutes of any of them; ask again with evaluateModelVersion`;
          await this.finish(tx, version, { ...record, status: EvaluationStatus.FAILED, evaluatedAt: now.toISOString(), error: { code: 'TIMED_OUT', message } });
          return { version, datasetVersionId: null };
        }
        // Counted before it is sent: an attempt that cannot be sent (datasets or broker away) is an attempt too, so
        // that an evaluation ends after maxAttempts timeouts whatever fails.
        version.evaluation = { ...record, attempts: attempts + 1, lastSentAt: now.toISOString() };
        await tx.flush();
        return { version, datasetVersionId: record.datasetVersionId };
      });
      if (!next) continue;
      if (next.datasetVersionId === null) {
        failed += 1;
        this.options.log?.warn({ versionId: candidate.id, requestId }, 'model evaluation timed out');
        continue;
      }
      try {
        const dataset = await this.resolveDataset(candidate.tenant, next.datasetVersionId);
        if (!dataset.found) {
          await this.applyResult(em.fork(), candidate.tenant, {
            ok: false,
            requestId,
            modelVersionId: candidate.id,
            datasetVersionId: next.datasetVersionId,
            code: 'DATASET_NOT_FOUND',
            message: `evaluation dataset version ${next.datasetVersionId} was not found`,
          });
          failed += 1;
          continue;
        }
        await this.send(next.version, requestId, next.datasetVersionId, dataset.manifestKey);
        resent += 1;
        this.options.log?.info({ versionId: candidate.id, requestId, attempt: next.version.evaluation?.attempts }, 'lost model evaluation sent again');
      } catch (error) {
        this.options.log?.warn({ err: error, versionId: candidate.id, requestId }, 'lost model evaluation not sent again; the next pass retries');
      }
    }
    if (failed > 0) this.options.events?.kick();
    return { resent, failed };
  }

  /**
   * Applies a worker's result: the evaluation record, and for an uploaded version its metrics, the gate decision
   * (against the Production version) and the move from NONE to STAGING when the gate passes. Idempotent: a result for
   * an attempt that is not the pending one (a redelivery, or an attempt superseded by evaluateModelVersion) changes
   * nothing. Returns whether it applied.
   */
  async applyResult(em: EntityManager, tenant: string, result: EvaluationResult): Promise<boolean> {
    const applied = await em.transactional(async (tx) => {
      const version = await this.lockVersion(tx, tenant, result.modelVersionId);
      const pending = version?.evaluation;
      if (!version || !pending || pending.status !== EvaluationStatus.PENDING || pending.requestId !== result.requestId) return false;
      const evaluatedAt = new Date().toISOString();
      if (!result.ok) {
        await this.finish(tx, version, { ...pending, status: EvaluationStatus.FAILED, evaluatedAt, error: { code: result.code, message: result.message } });
        return true;
      }
      await this.finish(tx, version, {
        ...pending,
        status: EvaluationStatus.SUCCEEDED,
        split: result.split,
        items: result.items,
        threshold: result.threshold,
        metrics: result.metrics,
        confusion: result.confusion,
        evaluatedAt,
        error: null,
      });
      return true;
    });
    if (applied) this.options.events?.kick();
    return applied;
  }

  /**
   * Writes a record on the version under the model's lock. With `onlyIfNew`, a version that already has one keeps it
   * (two registrations of the same file at once evaluate it once).
   */
  private async write(em: EntityManager, tenant: string, versionId: string, record: EvaluationRecord, options: { onlyIfNew: boolean }): Promise<ModelVersionEntity> {
    await em.transactional(async (tx) => {
      const version = await this.lockVersion(tx, tenant, versionId);
      if (!version) throw notFound('ModelVersion', versionId);
      if (options.onlyIfNew && version.evaluation) return;
      await this.finish(tx, version, record);
    });
    this.options.events?.kick();
    return this.reload(em, tenant, versionId);
  }

  /** Stores the record; a finished one also decides the gate of an uploaded version (trained ones were gated on the trainer's metrics). */
  private async finish(tx: EntityManager, version: ModelVersionEntity, record: EvaluationRecord): Promise<void> {
    version.evaluation = record;
    const gated = version.source === ModelVersionSource.UPLOADED;
    if (!gated || record.status === EvaluationStatus.PENDING) {
      await tx.flush();
      return;
    }
    let decision: GateDecision;
    if (record.status === EvaluationStatus.FAILED) {
      // A version that already passed keeps its stage and decision; one still waiting says why it cannot pass.
      if (version.stage !== ModelStage.NONE) {
        await tx.flush();
        return;
      }
      decision = failedDecision(this.options.gate, `not evaluated: ${record.error?.message ?? 'the evaluation failed'}`);
    } else {
      const metrics = { ...record.metrics! };
      const baseline = await this.baseline(tx, version, record.datasetVersionId);
      decision = evaluateGate(metrics, baseline, this.options.gate, new Date(), record.split ?? 'test');
      decision.reasons.unshift(`evaluated on dataset version ${record.datasetVersionId} (${record.split === 'test' ? 'its test items' : 'all its labelled items: it has no test split'}, ${record.items} items)`);
      version.metrics = metrics;
    }
    version.gate = decision;
    await tx.flush();
    if (decision.passed && version.stage === ModelStage.NONE) {
      await this.registry.setStage(tx, version.tenant, version.id, ModelStage.STAGING, { changedBy: EVALUATION_GATE_ACTOR, reason: decision.reasons.join('; ') });
    }
  }

  /**
   * The Production version to compare with: its own evaluation on the same dataset version when it has one (the same
   * items, the same counting), else the metrics it was registered with.
   */
  private async baseline(tx: EntityManager, version: ModelVersionEntity, datasetVersionId: string | null): Promise<ProductionBaseline | null> {
    const production = await this.queries.productionVersion(tx, version.tenant, version.registeredModel.id);
    if (!production || production.id === version.id) return null;
    const evaluation = production.evaluation;
    const sameDataset = evaluation?.status === EvaluationStatus.SUCCEEDED && evaluation.datasetVersionId === datasetVersionId && evaluation.metrics;
    return { versionId: production.id, version: production.version, metrics: sameDataset ? { ...evaluation.metrics! } : { ...production.metrics } };
  }

  /** The version, after taking the lock on its model row (the order every stage change takes them in). */
  private async lockVersion(tx: EntityManager, tenant: string, versionId: string): Promise<ModelVersionEntity | null> {
    if (!isUuid(versionId)) return null;
    const found = await this.queries.findOwnVersion(tx, tenant, versionId);
    if (!found) return null;
    const model = await this.repository.lockRegisteredModel(tx, tenant, { id: found.registeredModel.id });
    if (!model) return null;
    return this.queries.findOwnVersion(tx, tenant, versionId);
  }

  private async reload(em: EntityManager, tenant: string, versionId: string): Promise<ModelVersionEntity> {
    const version = await this.queries.findOwnVersion(em, tenant, versionId);
    if (!version) throw notFound('ModelVersion', versionId);
    return version;
  }

  private async resolveDataset(tenant: string, datasetVersionId: string): Promise<VersionResolutionReply> {
    try {
      return await requestVersionResolution(this.options.broker, { tenant, versionId: datasetVersionId }, { timeoutMs: this.options.rpcTimeoutMs, queue: this.options.datasetVersionQueue });
    } catch (error) {
      if (error instanceof BrokerTimeoutError) throw unavailable('The datasets service');
      throw error;
    }
  }
}

function emptyRecord(base: { requestId: string; requestedBy: string; requestedAt: string }, datasetVersionId: string | null): EvaluationRecord {
  return {
    ...base,
    status: EvaluationStatus.PENDING,
    datasetVersionId,
    split: null,
    items: null,
    threshold: null,
    metrics: null,
    confusion: null,
    evaluatedAt: null,
    error: null,
  };
}

function failedDecision(gate: GateConfig, reason: string): GateDecision {
  return { passed: false, reasons: [reason], thresholds: { ...gate.minimums }, maxRegression: gate.maxRegression, comparedWith: null, evaluatedAt: new Date().toISOString() };
}
