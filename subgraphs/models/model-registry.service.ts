// Owns training runs (configuration, metrics, artifacts) and the model registry: registered models, their numbered
// versions and the stage of each, with at most one Production version per model at any moment.
import { UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/core';
import { badInput, conflict, notFound } from '../../lib/errors.js';
import { isSha256, isUuid } from '../../lib/ids.js';
import { MODEL_STAGES, MODEL_VERSION_SOURCES, ModelStage, ModelVersionSource } from './models.contracts.js';
import {
  checkEvaluationMetrics,
  checkMetric,
  checkModelContract,
  checkModelName,
  checkObjectKey,
  checkParams,
  checkText,
  type CreateTrainingRunInput,
  type MetricInput,
  type RegisterVersionInput,
} from './model-registry.inputs.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { ModelStageChangeEntity } from './model-stage-change.entity.js';
import { stageEvent, type EventPublisher } from './model-events.js';
import { appendEvents } from '../../lib/events/event-log.js';
import { TrainingRunEntity } from './training-run.entity.js';

export const MAX_METRICS_PER_CALL = 1000;

export class ModelRegistryService {
  constructor(
    private readonly repository: ModelRegistryRepository,
    /** Publishes appended events right after their transaction commits (they are published within a second anyway). */
    private readonly events?: EventPublisher,
  ) {}

  async getTrainingRun(em: EntityManager, tenant: string, id: string): Promise<TrainingRunEntity> {
    const run = isUuid(id) ? await this.repository.findRun(em, tenant, id) : null;
    if (!run) throw notFound('TrainingRun', id);
    return run;
  }

  async getRegisteredModel(em: EntityManager, tenant: string, name: string) {
    const model = await this.repository.findRegisteredModelByName(em, tenant, name);
    if (!model) throw notFound('RegisteredModel', name);
    return model;
  }

  async getRegisteredModelById(em: EntityManager, tenant: string, id: string) {
    const model = isUuid(id) ? await this.repository.findRegisteredModel(em, tenant, id) : null;
    if (!model) throw notFound('RegisteredModel', id);
    return model;
  }

  async getModelVersion(em: EntityManager, tenant: string, id: string): Promise<ModelVersionEntity> {
    const version = isUuid(id) ? await this.repository.findVersion(em, tenant, id) : null;
    if (!version) throw notFound('ModelVersion', id);
    return version;
  }

  /** Queues a run. With an idempotency key, repeating the same request returns the run the first one made. */
  async createTrainingRun(em: EntityManager, input: CreateTrainingRunInput): Promise<TrainingRunEntity> {
    const modelName = checkModelName(input.modelName);
    if (!isSha256(input.datasetVersionId)) throw badInput('datasetVersionId must be the id of a dataset version (64 hex digits)', 'datasetVersionId');
    const params = checkParams(input.params);
    const codeVersion = checkText(input.codeVersion, 'codeVersion');
    const requestedBy = checkText(input.requestedBy, 'requestedBy');
    const idempotencyKey = input.idempotencyKey == null ? null : checkText(input.idempotencyKey, 'idempotencyKey');
    if (idempotencyKey) {
      const existing = await this.repository.findRunByIdempotencyKey(em, input.tenant, idempotencyKey);
      if (existing) return sameRun(existing, modelName, input.datasetVersionId);
    }
    try {
      return await em.transactional(async (tx) => {
        const run = tx.create(TrainingRunEntity, {
          tenant: input.tenant,
          modelName,
          params,
          datasetVersionId: input.datasetVersionId,
          codeVersion,
          requestedBy,
          idempotencyKey,
        });
        await tx.flush();
        return run;
      });
    } catch (error) {
      // Two requests with one key at once: the loser's insert hits the unique index; it returns the winner's run.
      if (!(error instanceof UniqueConstraintViolationException) || !idempotencyKey) throw error;
      const winner = await this.repository.findRunByIdempotencyKey(em, input.tenant, idempotencyKey);
      if (!winner) throw error;
      return sameRun(winner, modelName, input.datasetVersionId);
    }
  }

  /**
   * Records metric values of a run. Idempotent: a value whose (name, step) the run already has is skipped, so a
   * redelivered report changes nothing. Returns how many values were new.
   */
  async recordMetrics(em: EntityManager, tenant: string, runId: string, metrics: MetricInput[]): Promise<number> {
    const run = await this.getTrainingRun(em, tenant, runId);
    if (metrics.length > MAX_METRICS_PER_CALL) throw badInput(`At most ${MAX_METRICS_PER_CALL} metric values per call`, 'metrics');
    metrics.forEach((metric, index) => checkMetric(metric, `metrics[${index}]`));
    if (metrics.length === 0) return 0;
    return this.repository.insertMetrics(em, run.id, metrics);
  }

  /**
   * Registers a new version of `modelName`, creating the registered model on its first version. Numbers are handed
   * out under a lock on the model row, so concurrent registrations get 1, 2, 3… without gaps or duplicates.
   */
  async registerVersion(em: EntityManager, input: RegisterVersionInput): Promise<ModelVersionEntity> {
    const modelName = checkModelName(input.modelName);
    const artifactKey = checkObjectKey(input.artifactKey, 'artifactKey');
    if (!isSha256(input.sha256)) throw badInput('sha256 must be 64 lowercase hex digits', 'sha256');
    if (!Number.isSafeInteger(input.byteSize) || input.byteSize < 1) throw badInput('byteSize must be a positive integer', 'byteSize');
    const metrics = checkEvaluationMetrics(input.metrics);
    const contract = checkModelContract(input.contract);
    const createdBy = checkText(input.createdBy, 'createdBy');
    if (!(MODEL_VERSION_SOURCES as string[]).includes(input.source)) throw badInput(`source must be one of ${MODEL_VERSION_SOURCES.join(', ')}`, 'source');
    const runId = input.trainingRunId ?? null;
    if (input.source === ModelVersionSource.TRAINED && !runId) throw badInput('A TRAINED version needs the training run that made it', 'trainingRunId');
    if (input.source === ModelVersionSource.UPLOADED && runId) throw badInput('An UPLOADED version has no training run', 'trainingRunId');
    if (runId && !isUuid(runId)) throw notFound('TrainingRun', runId);

    return em.transactional(async (tx) => {
      let run: TrainingRunEntity | null = null;
      if (runId) {
        run = await this.repository.lockRun(tx, input.tenant, runId);
        if (!run) throw notFound('TrainingRun', runId);
        if (run.modelName !== modelName) {
          throw badInput(`Training run ${runId} trained ${JSON.stringify(run.modelName)}, not ${JSON.stringify(modelName)}`, 'modelName');
        }
        if (run.modelVersion) throw conflict(`Training run ${runId} already registered a version`, { modelVersionId: run.modelVersion.id });
      }
      await this.repository.ensureRegisteredModel(tx, input.tenant, modelName);
      const model = await this.repository.lockRegisteredModel(tx, input.tenant, { name: modelName });
      if (!model) throw notFound('RegisteredModel', modelName);
      model.latestVersionNumber += 1;
      const version = tx.create(ModelVersionEntity, {
        registeredModel: model,
        tenant: input.tenant,
        version: model.latestVersionNumber,
        artifactKey,
        sha256: input.sha256,
        byteSize: input.byteSize,
        metrics,
        contract,
        trainingRun: run,
        source: input.source,
        createdBy,
      });
      // The version row first: the run points at it, and it points back at the run.
      await tx.flush();
      if (run) {
        run.modelVersion = version;
        await tx.flush();
      }
      return version;
    });
  }

  /**
   * Moves a version of the tenant's own to `stage`. Promoting to PRODUCTION archives the version that held it in the
   * same transaction, so readers see either the old Production version or the new one, never none or two. Every
   * change is recorded in the stage history and appended as a `model.<name>.stage` event in that transaction.
   */
  async setStage(em: EntityManager, tenant: string, versionId: string, stage: ModelStage, options: StageChangeOptions = {}): Promise<ModelVersionEntity> {
    if (!(MODEL_STAGES as string[]).includes(stage)) throw badInput(`stage must be one of ${MODEL_STAGES.join(', ')}`, 'stage');
    if (!isUuid(versionId)) throw notFound('ModelVersion', versionId);
    let changed = false;
    const result = await em.transactional(async (tx) => {
      const found = await this.repository.findOwnVersion(tx, tenant, versionId);
      if (!found) throw notFound('ModelVersion', versionId);
      // Stage changes of one model go one at a time: two promotions at once would each miss the other's version.
      const model = await this.repository.lockRegisteredModel(tx, tenant, { id: found.registeredModel.id });
      const version = await this.repository.findOwnVersion(tx, tenant, versionId, { refresh: true });
      if (!version || !model) throw notFound('ModelVersion', versionId);
      if (version.stage === stage) return version;
      options.check?.(version);
      const changes: { version: ModelVersionEntity; from: ModelStage; to: ModelStage }[] = [];
      if (stage === ModelStage.PRODUCTION) {
        const current = await this.repository.productionVersion(tx, tenant, version.registeredModel.id, { refresh: true });
        if (current && current.tenant === tenant) {
          current.stage = ModelStage.ARCHIVED;
          changes.push({ version: current, from: ModelStage.PRODUCTION, to: ModelStage.ARCHIVED });
          // Flushed on its own: the partial unique index is checked per statement, so the old row must leave first.
          await tx.flush();
        }
      }
      changes.push({ version, from: version.stage, to: stage });
      version.stage = stage;
      await tx.flush();
      const changedBy = options.changedBy ?? 'system';
      const reason = options.reason ?? '';
      // One millisecond apart, so that the history (newest first) lists the archived version after the promoted one.
      const at = Date.now();
      changes.forEach((change, i) => {
        tx.create(ModelStageChangeEntity, {
          tenant,
          registeredModel: model,
          modelVersion: change.version,
          fromStage: change.from,
          toStage: change.to,
          changedBy,
          reason,
          changedAt: new Date(at + i),
        });
      });
      await appendEvents(
        tx,
        changes.flatMap((c) => {
          const event = stageEvent({ modelName: model.name, versionId: c.version.id, stage: c.to, tenant, previousStage: c.from, version: c.version.version, changedBy, reason });
          // Also on the tenant's stream (its own routing key, so workers following `model.*.stage` see each change once),
          // for subscribers of every model's stage changes (modelVersionStageChanged).
          return [event, { ...event, stream: `models:${tenant}`, routingKey: `models.${tenant}.stage` }];
        }),
      );
      changed = true;
      return version;
    });
    if (changed) this.events?.kick();
    return result;
  }
}

export interface StageChangeOptions {
  /** Subject or component making the change; kept in the stage history. */
  changedBy?: string;
  reason?: string;
  /** Runs under the model's lock before anything changes (e.g. a role check that depends on the current stage). */
  check?: (version: ModelVersionEntity) => void;
}

function sameRun(run: TrainingRunEntity, modelName: string, datasetVersionId: string): TrainingRunEntity {
  if (run.modelName !== modelName || run.datasetVersionId !== datasetVersionId) {
    throw conflict('This idempotency key was already used for a different training run', { field: 'idempotencyKey', trainingRunId: run.id });
  }
  return run;
}
