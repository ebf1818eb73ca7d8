// Owns what people do with versions after training: bringing their own ONNX file (checked against the model-file
// contract by onnxruntime-node before anything is stored), moving versions between stages, named aliases, promotion
// to Production by request and four-eyes approval (with the evaluation and drift evidence it was requested on),
// rolling a model back to the version that served before, and reading the history of all of it.
import { createHash } from 'node:crypto';
import { UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/core';
import { BrokerError, BrokerTimeoutError, type Broker } from '../../lib/broker/broker.js';
import type { Identity } from '../../lib/auth.js';
import { badInput, conflict, forbidden, notFound, unavailable } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { registryContract } from '../../lib/model/contract.js';
import { hasCapability } from '../../lib/rbac.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { requestUploadResolution } from '../datasets/upload-resolution.rpc.js';
import { requestLatestDriftReport } from '../monitoring/drift-summary.rpc.js';
import {
  ALIAS_PATTERN,
  EvaluationSource,
  ModelHistoryKind,
  PROMOTION_STATUSES,
  PromotionStatus,
  RESERVED_ALIASES,
  type DriftEvidence,
  type EvaluationEvidence,
  type PromotionEvidence,
} from './lifecycle.contracts.js';
import { EvaluationStatus } from './model-evaluation.contracts.js';
import { checkModelFile, ModelContractError } from './model-file.check.js';
import { checkModelName } from './model-registry.inputs.js';
import type { ModelRegistryRepository } from './model-registry.repository.js';
import type { ModelRegistryService } from './model-registry.service.js';
import { ModelStageChangeEntity } from './model-stage-change.entity.js';
import type { ModelVersionEntity } from './model-version.entity.js';
import { PromotionRequestEntity } from './promotion-request.entity.js';
import { MODEL_STAGES, ModelStage, ModelVersionSource } from './models.contracts.js';
import { modelArtifactKey } from './training.contracts.js';

export interface ModelLifecycleOptions {
  broker: Broker;
  store: ObjectStore;
  rpcTimeoutMs: number;
  maxUploadBytes: number;
  /** The monitoring subgraph's drift summary queue (monitoring/drift-summary.rpc.ts); its default unless a test isolates it. */
  driftSummaryQueue?: string;
}

export const MAX_REASON_LENGTH = 2000;
export const MAX_PROMOTION_REQUESTS_LISTED = 200;

type Caller = Pick<Identity, 'tenant' | 'subject' | 'roles'>;

export class ModelLifecycleService {
  constructor(
    private readonly repository: ModelRegistryRepository,
    private readonly registry: ModelRegistryService,
    private readonly options: ModelLifecycleOptions,
  ) {}

  /**
   * Registers an uploaded ONNX file as a new version (stage NONE). The file is checked first: a file that breaks the
   * contract is refused with every problem named, and nothing is stored or registered. The same bytes registered again
   * return the version they already are.
   */
  async registerUploaded(em: EntityManager, caller: Caller, input: { modelName: string; uploadId: string }): Promise<ModelVersionEntity> {
    const modelName = checkModelName(input.modelName);
    if (!isUuid(input.uploadId)) throw notFound('Upload', input.uploadId);
    let reply;
    try {
      reply = await requestUploadResolution(this.options.broker, { tenant: caller.tenant, uploadIds: [input.uploadId] }, this.options.rpcTimeoutMs);
    } catch (error) {
      if (error instanceof BrokerTimeoutError) throw unavailable('The datasets service');
      throw error;
    }
    const upload = reply.uploads[0];
    if (!upload || !upload.ok) {
      if (!upload || upload.problem === 'NOT_FOUND') throw notFound('Upload', input.uploadId);
      throw badInput(upload.message, 'uploadId', { problem: upload.problem });
    }
    if (upload.byteSize > this.options.maxUploadBytes) throw badInput(`A model file may be at most ${this.options.maxUploadBytes} bytes`, 'uploadId');
    const bytes = await this.options.store.get(upload.objectKey);
    let checked;
    try {
      checked = await checkModelFile(bytes);
    } catch (error) {
      if (error instanceof ModelContractError) {
        throw badInput(`The file is not a usable change-detection model: ${error.problems.join('; ')}`, 'uploadId', { problem: error.problem, problems: error.problems });
      }
      throw error;
    }
    const contract = registryContract(checked);
    const sha256 = createHash('sha256').update(bytes).digest('hex');

    const existing = await this.repository.findRegisteredModelByName(em, caller.tenant, modelName);
    if (existing && existing.tenant === caller.tenant) {
      const same = await this.repository.findVersionsBySha256(em, caller.tenant, existing.id, sha256);
      if (same[0]) return same[0];
    }
    const artifactKey = modelArtifactKey(caller.tenant, modelName, sha256);
    const head = await this.options.store.head(artifactKey);
    if (!head || head.size !== bytes.length) await this.options.store.put(artifactKey, bytes, { contentType: 'application/octet-stream' });
    return this.registry.registerVersion(em, {
      tenant: caller.tenant,
      modelName,
      artifactKey,
      sha256,
      byteSize: bytes.length,
      metrics: {},
      contract,
      source: ModelVersionSource.UPLOADED,
      createdBy: caller.subject,
    });
  }

  /**
   * Moves a version to NONE, STAGING or ARCHIVED. PRODUCTION is reached only through an approved promotion request
   * (requestPromotion, approvePromotion). Taking the Production version out of Production needs the approver role,
   * which only the current stage tells, so it is checked here.
   */
  async transition(em: EntityManager, caller: Caller, versionId: string, stage: ModelStage, reason?: string | null): Promise<ModelVersionEntity> {
    if (!(MODEL_STAGES as string[]).includes(stage)) throw badInput(`stage must be one of ${MODEL_STAGES.join(', ')}`, 'stage');
    if (stage === ModelStage.PRODUCTION) {
      throw badInput(
        'A version reaches PRODUCTION only by an approved promotion request: call requestPromotion(input: {modelVersionId, reason}) and have another approver call approvePromotion(requestId)',
        'stage',
        { problem: 'PROMOTION_NEEDS_APPROVAL' },
      );
    }
    const why = checkReason(reason, 'reason', false);
    return this.registry.setStage(em, caller.tenant, versionId, stage, {
      changedBy: caller.subject,
      reason: why,
      check: (version) => {
        if (version.stage === ModelStage.PRODUCTION && !hasCapability(caller.roles, 'approver')) {
          throw forbidden('Taking a version out of Production needs the approver role');
        }
      },
    });
  }

  /**
   * Restores the version that was in Production before the current one (the most recent earlier Production version
   * in the stage history); the current one is archived, in one transaction. Returns the version now in Production.
   */
  async rollback(em: EntityManager, caller: Caller, modelName: string, reason?: string | null): Promise<ModelVersionEntity> {
    const why = checkReason(reason, 'reason', false);
    const result = await em.transactional(async (tx) => {
      const model = await this.repository.lockRegisteredModel(tx, caller.tenant, { name: modelName });
      if (!model) throw notFound('RegisteredModel', modelName);
      const current = await this.repository.productionVersion(tx, caller.tenant, model.id, { refresh: true });
      const history = await this.repository.history(tx, caller.tenant, model.id, { stagesOnly: true });
      const previous = [...history].reverse().find((change) => change.toStage === ModelStage.PRODUCTION && change.modelVersion.id !== current?.id);
      if (!previous) {
        throw conflict(`Model ${modelName} has no earlier Production version to roll back to`, { field: 'modelName', modelName, problem: 'NO_PREVIOUS_PRODUCTION_VERSION' });
      }
      const target = await this.repository.findOwnVersion(tx, caller.tenant, previous.modelVersion.id, { refresh: true });
      if (!target) throw notFound('ModelVersion', previous.modelVersion.id);
      const base = current ? `rollback from version ${current.version} to version ${target.version}` : `rollback to version ${target.version}`;
      await this.registry.applyStage(tx, model, target, ModelStage.PRODUCTION, { changedBy: caller.subject, reason: why ? `${base}: ${why}` : base });
      return target;
    });
    this.registry.notify();
    return result;
  }

  /**
   * Asks for a STAGING version whose evaluation gate passed to be promoted to PRODUCTION. The evidence is collected
   * now and kept with the request: the evaluation report on a frozen dataset version, and the model's latest drift
   * report from the monitoring subgraph (none yet is noted; monitoring not answering refuses the request).
   */
  async requestPromotion(em: EntityManager, caller: Caller, input: { modelVersionId: string; reason: string }): Promise<PromotionRequestEntity> {
    const reason = checkReason(input.reason, 'reason', true);
    const version = isUuid(input.modelVersionId) ? await this.repository.findOwnVersion(em, caller.tenant, input.modelVersionId) : null;
    if (!version) throw notFound('ModelVersion', input.modelVersionId);
    const model = await this.registry.getRegisteredModelById(em, caller.tenant, version.registeredModel.id);
    checkPromotable(version, model.name, 'modelVersionId', badInput);
    const pending = await this.repository.pendingPromotionRequest(em, caller.tenant, version.id);
    if (pending) throw conflict(`Version ${version.version} of ${model.name} already has a pending promotion request`, { requestId: pending.id });
    const evaluation = await this.evaluationEvidence(em, caller.tenant, version, model.name);
    const drift = await this.driftEvidence(caller.tenant, model.name);
    const evidence: PromotionEvidence = { evaluation, drift, collectedAt: new Date().toISOString() };
    try {
      return await em.transactional(async (tx) => {
        const locked = await this.registry.lockOwnVersion(tx, caller.tenant, version.id);
        // The version may have moved while the evidence was collected.
        checkPromotable(locked.version, model.name, 'modelVersionId', badInput);
        const request = tx.create(PromotionRequestEntity, {
          tenant: caller.tenant,
          registeredModel: locked.model,
          modelVersion: locked.version,
          requestedBy: caller.subject,
          reason,
          evidence,
        });
        await tx.flush();
        return request;
      });
    } catch (error) {
      // Two requests for one version at once: the partial unique index lets one in.
      if (!(error instanceof UniqueConstraintViolationException)) throw error;
      const winner = await this.repository.pendingPromotionRequest(em.fork(), caller.tenant, version.id);
      throw conflict(`Version ${version.version} of ${model.name} already has a pending promotion request`, { requestId: winner?.id ?? null });
    }
  }

  /**
   * Approves a pending request: the version becomes PRODUCTION and the previous Production version ARCHIVED, in the
   * transaction that marks the request approved. Only an approver other than the requester may; the version must
   * still be in STAGING with its gate passed. Of two decisions at once one wins; the other gets CONFLICT.
   */
  async approvePromotion(em: EntityManager, caller: Caller, requestId: string, comment?: string | null): Promise<PromotionRequestEntity> {
    const note = checkReason(comment, 'reason', false);
    const result = await em.transactional(async (tx) => {
      const request = await this.lockPendingRequest(tx, caller, requestId, 'approve');
      const { model, version } = await this.registry.lockOwnVersion(tx, caller.tenant, request.modelVersion.id);
      checkPromotable(version, model.name, 'requestId', (message, field, details) => conflict(message, { field, ...details }));
      const reason = `promotion request ${request.id} by ${request.requestedBy}: ${request.reason}${note ? ` (approved: ${note})` : ''}`;
      await this.registry.applyStage(tx, model, version, ModelStage.PRODUCTION, { changedBy: caller.subject, reason });
      decide(request, PromotionStatus.APPROVED, caller.subject, note || null);
      await tx.flush();
      return request;
    });
    this.registry.notify();
    return this.getPromotionRequest(em.fork(), caller, result.id);
  }

  /**
   * Rejects a pending request, with the reason; the same four-eyes rule as approval. The version's stage does not
   * change; the rejection is appended to the model's history (kind PROMOTION_REJECTED) in the same transaction.
   */
  async rejectPromotion(em: EntityManager, caller: Caller, requestId: string, reason: string): Promise<PromotionRequestEntity> {
    const why = checkReason(reason, 'reason', true);
    const result = await em.transactional(async (tx) => {
      const request = await this.lockPendingRequest(tx, caller, requestId, 'reject');
      await this.closeRequest(tx, caller, request, PromotionStatus.REJECTED, why);
      return request;
    });
    return this.getPromotionRequest(em.fork(), caller, result.id);
  }

  /**
   * Withdraws a pending request: only its requester may, or an admin of the tenant (four eyes does not apply: nothing
   * is promoted). The request becomes CANCELLED with the reason, and the withdrawal is appended to the model's history
   * (kind PROMOTION_CANCELLED, the version's stage unchanged) in the same transaction. A request already closed, or
   * closed meanwhile by an approver, gets CONFLICT naming how and by whom.
   */
  async cancelPromotionRequest(em: EntityManager, caller: Caller, requestId: string, reason: string): Promise<PromotionRequestEntity> {
    const why = checkReason(reason, 'reason', true);
    const result = await em.transactional(async (tx) => {
      const request = isUuid(requestId) ? await this.repository.lockPromotionRequest(tx, caller.tenant, requestId) : null;
      if (!request) throw notFound('PromotionRequest', requestId);
      if (request.requestedBy !== caller.subject && !hasCapability(caller.roles, 'admin')) {
        throw forbidden(`Promotion request ${request.id} was made by ${request.requestedBy}: only they, or an admin of the tenant, may cancel it`);
      }
      if (request.status !== PromotionStatus.PENDING) {
        throw conflict(`Promotion request ${request.id} is no longer pending: it was already ${request.status.toLowerCase()} by ${request.decidedBy ?? 'someone else'}`, {
          requestId: request.id,
          status: request.status,
          problem: 'NOT_PENDING',
        });
      }
      await this.closeRequest(tx, caller, request, PromotionStatus.CANCELLED, why);
      return request;
    });
    return this.getPromotionRequest(em.fork(), caller, result.id);
  }

  /** Closes a locked pending request without promoting, and appends that to the model's history. */
  private async closeRequest(
    tx: EntityManager,
    caller: Caller,
    request: PromotionRequestEntity,
    status: typeof PromotionStatus.CANCELLED | typeof PromotionStatus.REJECTED,
    why: string,
  ): Promise<void> {
    // The same lock order as approval (request, then model), so that a rejection or cancel and an approval cannot
    // deadlock.
    const { model, version } = await this.registry.lockOwnVersion(tx, caller.tenant, request.modelVersion.id);
    decide(request, status, caller.subject, why);
    await tx.flush();
    const last = await this.repository.lastChange(tx, model.id);
    const cancelled = status === PromotionStatus.CANCELLED;
    tx.create(ModelStageChangeEntity, {
      tenant: model.tenant,
      registeredModel: model,
      modelVersion: version,
      kind: cancelled ? ModelHistoryKind.PROMOTION_CANCELLED : ModelHistoryKind.PROMOTION_REJECTED,
      fromStage: version.stage,
      toStage: version.stage,
      changedBy: caller.subject,
      reason: `promotion request ${request.id} by ${request.requestedBy} ${cancelled ? 'cancelled' : 'rejected'}: ${why}`,
      // Instants of one model only increase (read under the model's lock), as for every other history record.
      changedAt: new Date(Math.max(Date.now(), last ? last.changedAt.getTime() + 1 : 0)),
    });
    await tx.flush();
  }

  async getPromotionRequest(em: EntityManager, caller: Caller, id: string): Promise<PromotionRequestEntity> {
    const request = isUuid(id) ? await this.repository.findPromotionRequest(em, caller.tenant, id) : null;
    if (!request) throw notFound('PromotionRequest', id);
    return request;
  }

  /** A model's promotion requests, newest first, optionally of one status. */
  async listPromotionRequests(em: EntityManager, caller: Caller, modelName: string, status?: string | null): Promise<PromotionRequestEntity[]> {
    if (status != null && !(PROMOTION_STATUSES as string[]).includes(status)) throw badInput(`status must be one of ${PROMOTION_STATUSES.join(', ')}`, 'status');
    const model = await this.repository.findRegisteredModelByName(em, caller.tenant, modelName);
    if (!model || model.tenant !== caller.tenant) throw notFound('RegisteredModel', modelName);
    return this.repository.promotionRequests(em, caller.tenant, model.id, (status as PromotionStatus | null) ?? null, MAX_PROMOTION_REQUESTS_LISTED);
  }

  /** Points an alias (`champion`, `challenger`) at a version, moving it from another version of the model. */
  async setAlias(em: EntityManager, caller: Caller, input: { modelVersionId: string; alias: string; reason?: string | null }): Promise<ModelVersionEntity> {
    const alias = checkAlias(input.alias);
    const reason = checkReason(input.reason, 'reason', false);
    let changed = false;
    const version = await em.transactional(async (tx) => {
      const locked = await this.registry.lockOwnVersion(tx, caller.tenant, input.modelVersionId);
      changed = await this.registry.applyAlias(tx, locked.model, locked.version, alias, { changedBy: caller.subject, reason });
      return locked.version;
    });
    if (changed) this.registry.notify();
    return version;
  }

  /** Removes an alias from a model; returns the version it named. */
  async removeAlias(em: EntityManager, caller: Caller, input: { modelName: string; alias: string; reason?: string | null }): Promise<ModelVersionEntity> {
    const alias = checkAlias(input.alias);
    const reason = checkReason(input.reason, 'reason', false);
    const version = await em.transactional(async (tx) => {
      const model = await this.repository.lockRegisteredModel(tx, caller.tenant, { name: input.modelName });
      if (!model) throw notFound('RegisteredModel', input.modelName);
      return this.registry.applyAliasRemoval(tx, model, alias, { changedBy: caller.subject, reason });
    });
    this.registry.notify();
    return version;
  }

  /** Every stage and alias change of a model (the tenant's, else the platform's), oldest first. */
  async history(em: EntityManager, caller: Caller, modelName: string): Promise<ModelStageChangeEntity[]> {
    const model = await this.registry.getRegisteredModel(em, caller.tenant, modelName);
    return this.repository.history(em, caller.tenant, model.id);
  }

  /**
   * Which version held `stage` at the moment `at`, from the history: each version is in the stage its last change up
   * to `at` moved it to (NONE from its registration until then). Of several (STAGING may hold many), the one that
   * entered the stage last. Null when none did.
   */
  async versionAt(em: EntityManager, caller: Caller, modelName: string, stage: ModelStage, at: Date): Promise<ModelVersionEntity | null> {
    if (!(MODEL_STAGES as string[]).includes(stage)) throw badInput(`stage must be one of ${MODEL_STAGES.join(', ')}`, 'stage');
    if (!(at instanceof Date) || Number.isNaN(at.getTime())) throw badInput('at must be a date-time', 'at');
    const model = await this.registry.getRegisteredModel(em, caller.tenant, modelName);
    const versions = await this.repository.versionsCreatedBy(em, caller.tenant, model.id, at);
    const changes = await this.repository.history(em, caller.tenant, model.id, { upTo: at, stagesOnly: true });
    const state = new Map<string, { version: ModelVersionEntity; stage: ModelStage; since: number; position: number }>();
    for (const version of versions) state.set(version.id, { version, stage: ModelStage.NONE, since: version.createdAt.getTime(), position: -1 });
    for (const change of changes) {
      state.set(change.modelVersion.id, { version: change.modelVersion, stage: change.toStage, since: change.changedAt.getTime(), position: change.position });
    }
    let best: { version: ModelVersionEntity; since: number; position: number } | null = null;
    for (const entry of state.values()) {
      if (entry.stage !== stage) continue;
      if (!best || entry.since > best.since || (entry.since === best.since && entry.position > best.position)) best = entry;
    }
    return best?.version ?? null;
  }

  private async lockPendingRequest(tx: EntityManager, caller: Caller, requestId: string, action: 'approve' | 'reject'): Promise<PromotionRequestEntity> {
    const request = isUuid(requestId) ? await this.repository.lockPromotionRequest(tx, caller.tenant, requestId) : null;
    if (!request) throw notFound('PromotionRequest', requestId);
    if (request.requestedBy === caller.subject) {
      throw forbidden(`Four eyes: you requested this promotion, so another approver must ${action} it`);
    }
    if (request.status !== PromotionStatus.PENDING) {
      throw conflict(`Promotion request ${request.id} was already ${request.status.toLowerCase()} by ${request.decidedBy ?? 'someone else'}`, {
        requestId: request.id,
        status: request.status,
      });
    }
    return request;
  }

  private async evaluationEvidence(em: EntityManager, tenant: string, version: ModelVersionEntity, modelName: string): Promise<EvaluationEvidence> {
    const label = `Version ${version.version} of ${modelName}`;
    if (version.source === ModelVersionSource.TRAINED) {
      const run = version.trainingRun ? await this.repository.findRun(em, tenant, version.trainingRun.id) : null;
      if (!version.gate || !run) {
        throw badInput(`${label} has no evaluation report: its training run or the gate's decision is missing`, 'modelVersionId', { problem: 'NO_EVALUATION' });
      }
      return {
        source: EvaluationSource.TRAINING_GATE,
        passed: version.gate.passed,
        metrics: { ...version.metrics },
        datasetVersionId: run.datasetVersionId,
        gate: version.gate,
        // A trained version may also have been evaluated on the model's evaluation dataset: shown beside the gate's.
        report: (version.evaluation as unknown as Record<string, unknown> | null) ?? null,
        evaluatedAt: version.gate.evaluatedAt,
      };
    }
    const evaluation = version.evaluation;
    if (!evaluation || evaluation.status !== EvaluationStatus.SUCCEEDED || !evaluation.metrics) {
      const state = !evaluation ? 'has no evaluation report yet' : evaluation.status === EvaluationStatus.PENDING ? 'is still being evaluated' : `could not be evaluated (${evaluation.error?.message ?? 'the evaluation failed'})`;
      throw badInput(
        `${label} ${state}: an uploaded version is promoted on its automatic evaluation on a frozen test dataset version (evaluateModelVersion)`,
        'modelVersionId',
        { problem: 'NO_EVALUATION' },
      );
    }
    return {
      source: EvaluationSource.AUTOMATIC_EVALUATION,
      passed: gatePassed(version),
      metrics: numericRecord(evaluation.metrics),
      datasetVersionId: evaluation.datasetVersionId,
      gate: version.gate,
      report: evaluation as unknown as Record<string, unknown>,
      evaluatedAt: evaluation.evaluatedAt,
    };
  }

  private async driftEvidence(tenant: string, modelName: string): Promise<DriftEvidence> {
    let reply;
    try {
      reply = await requestLatestDriftReport(this.options.broker, { tenant, modelName }, this.options.rpcTimeoutMs, { queue: this.options.driftSummaryQueue });
    } catch (error) {
      // Without the drift evidence there is no request: the approver must see what the model is facing.
      if (error instanceof BrokerError) throw unavailable('The monitoring service (drift reports)');
      throw error;
    }
    if (!reply.found) return { report: null, note: `No drift report exists yet for model ${modelName}` };
    return { report: reply.report, note: null };
  }
}

type ErrorFactory = (message: string, field: string, details: Record<string, unknown>) => Error;

/** Only a STAGING version whose evaluation gate passed may be requested or approved. */
function checkPromotable(version: ModelVersionEntity, modelName: string, field: string, fail: ErrorFactory): void {
  const label = `Version ${version.version} of ${modelName}`;
  if (version.stage !== ModelStage.STAGING) {
    throw fail(`${label} is ${version.stage}: only a STAGING version can be promoted to PRODUCTION`, field, { problem: 'NOT_STAGING', stage: version.stage });
  }
  if (!gatePassed(version)) {
    const reasons = version.gate?.reasons.join('; ');
    throw fail(`${label} did not pass its evaluation gate${reasons ? `: ${reasons}` : ''}`, field, { problem: 'GATE_FAILED' });
  }
}

/** The evaluation gate's decision (trained versions: on the trainer's held-out metrics; uploaded: on the automatic evaluation). */
function gatePassed(version: ModelVersionEntity): boolean {
  return version.gate?.passed === true;
}

function numericRecord(value: unknown): Record<string, number> {
  if (!value || typeof value !== 'object' || Array.isArray(value)) return {};
  return Object.fromEntries(Object.entries(value).filter((entry): entry is [string, number] => typeof entry[1] === 'number' && Number.isFinite(entry[1])));
}

function decide(request: PromotionRequestEntity, status: PromotionStatus, by: string, reason: string | null): void {
  request.status = status;
  request.decidedBy = by;
  request.decidedAt = new Date();
  request.decisionReason = reason;
}

function checkReason(value: string | null | undefined, field: string, required: boolean): string {
  const text = (value ?? '').trim();
  if (required && text === '') throw badInput(`${field} is required: say why`, field);
  if (text.length > MAX_REASON_LENGTH) throw badInput(`${field} must be at most ${MAX_REASON_LENGTH} characters`, field);
  return text;
}

export function checkAlias(alias: string): string {
  if (typeof alias !== 'string' || !ALIAS_PATTERN.test(alias)) {
    throw badInput('alias must be 1–40 characters: a lowercase letter, then lowercase letters, digits, "-" or "_" (e.g. champion)', 'alias');
  }
  if (RESERVED_ALIASES.includes(alias)) throw badInput(`alias ${JSON.stringify(alias)} is reserved (stage names and "latest")`, 'alias');
  return alias;
}
