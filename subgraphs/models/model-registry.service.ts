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
import { ModelAliasEntity } from './model-alias.entity.js';
import { ModelHistoryKind } from './lifecycle.contracts.js';
import type { RegisteredModelEntity } from './registered-model.entity.js';
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
      const { model, version } = await this.lockOwnVersion(tx, tenant, versionId);
      changed = await this.applyStage(tx, model, version, stage, options);
      return version;
    });
    if (changed) this.notify();
    return result;
  }

  /**
   * Locks the model of a version the tenant owns (stage and alias changes of one model go one at a time: two
   * promotions at once would each miss the other's version) and reads the version again under that lock.
   */
  async lockOwnVersion(tx: EntityManager, tenant: string, versionId: string): Promise<{ model: RegisteredModelEntity; version: ModelVersionEntity }> {
    const found = isUuid(versionId) ? await this.repository.findOwnVersion(tx, tenant, versionId) : null;
    if (!found) throw notFound('ModelVersion', versionId);
    const model = await this.repository.lockRegisteredModel(tx, tenant, { id: found.registeredModel.id });
    const version = await this.repository.findOwnVersion(tx, tenant, versionId, { refresh: true });
    if (!version || !model) throw notFound('ModelVersion', versionId);
    return { model, version };
  }

  /**
   * The stage change itself, inside the caller's transaction with the model locked (see lockOwnVersion). Returns
   * false when the version is in that stage already (nothing recorded). Call `notify()` after the commit.
   */
  async applyStage(tx: EntityManager, model: RegisteredModelEntity, version: ModelVersionEntity, stage: ModelStage, options: StageChangeOptions = {}): Promise<boolean> {
    if (version.stage === stage) return false;
    options.check?.(version);
    const changes: HistoryEntry[] = [];
    if (stage === ModelStage.PRODUCTION) {
      const current = await this.repository.productionVersion(tx, model.tenant, model.id, { refresh: true });
      if (current && current.tenant === model.tenant && current.id !== version.id) {
        current.stage = ModelStage.ARCHIVED;
        changes.push({ kind: ModelHistoryKind.STAGE, version: current, from: ModelStage.PRODUCTION, to: ModelStage.ARCHIVED });
        // Flushed on its own: the partial unique index is checked per statement, so the old row must leave first.
        await tx.flush();
      }
    }
    changes.push({ kind: ModelHistoryKind.STAGE, version, from: version.stage, to: stage });
    version.stage = stage;
    await tx.flush();
    await this.recordHistory(tx, model, changes, { changedBy: options.changedBy ?? 'system', reason: options.reason ?? '' });
    return true;
  }

  /**
   * Points `alias` of the version's model at the version (moving it from another version of the model if it pointed
   * there), inside the caller's transaction with the model locked. Returns false when it points there already.
   */
  async applyAlias(tx: EntityManager, model: RegisteredModelEntity, version: ModelVersionEntity, alias: string, who: { changedBy: string; reason: string }): Promise<boolean> {
    const existing = await this.repository.findAlias(tx, model.tenant, model.id, alias);
    if (existing && existing.modelVersion.id === version.id) return false;
    let previous: ModelVersionEntity | null = null;
    if (existing) {
      previous = await tx.findOneOrFail(ModelVersionEntity, { id: existing.modelVersion.id }, { refresh: true });
      previous.aliases = previous.aliases.filter((a) => a !== alias);
      existing.modelVersion = version;
      existing.updatedBy = who.changedBy;
      existing.updatedAt = new Date();
    } else {
      tx.create(ModelAliasEntity, { tenant: model.tenant, registeredModel: model, alias, modelVersion: version, updatedBy: who.changedBy });
    }
    version.aliases = [...version.aliases.filter((a) => a !== alias), alias].sort();
    await tx.flush();
    await this.recordHistory(tx, model, [{ kind: ModelHistoryKind.ALIAS_SET, version, from: version.stage, to: version.stage, alias, previousVersion: previous }], who);
    return true;
  }

  /** Removes `alias` from the model, inside the caller's transaction with the model locked; returns the version it named. */
  async applyAliasRemoval(tx: EntityManager, model: RegisteredModelEntity, alias: string, who: { changedBy: string; reason: string }): Promise<ModelVersionEntity> {
    const existing = await this.repository.findAlias(tx, model.tenant, model.id, alias);
    if (!existing) throw notFound('ModelAlias', alias);
    const version = await tx.findOneOrFail(ModelVersionEntity, { id: existing.modelVersion.id }, { refresh: true });
    version.aliases = version.aliases.filter((a) => a !== alias);
    tx.remove(existing);
    await tx.flush();
    await this.recordHistory(tx, model, [{ kind: ModelHistoryKind.ALIAS_REMOVED, version, from: version.stage, to: version.stage, alias }], who);
    return version;
  }

  /**
   * Appends history records and their `model.<name>.stage` events in the caller's transaction. The records of one
   * call share one instant (a promotion and the archiving it causes happen together: no moment with none or two
   * Production versions) and are ordered by position; instants of one model only increase, under the model's lock.
   */
  private async recordHistory(tx: EntityManager, model: RegisteredModelEntity, entries: HistoryEntry[], who: { changedBy: string; reason: string }): Promise<void> {
    const last = await this.repository.lastChange(tx, model.id);
    const at = new Date(Math.max(Date.now(), last ? last.changedAt.getTime() + 1 : 0));
    entries.forEach((entry, position) => {
      tx.create(ModelStageChangeEntity, {
        tenant: model.tenant,
        registeredModel: model,
        modelVersion: entry.version,
        kind: entry.kind,
        fromStage: entry.from,
        toStage: entry.to,
        alias: entry.alias ?? null,
        previousModelVersion: entry.previousVersion ?? null,
        changedBy: who.changedBy,
        reason: who.reason,
        changedAt: at,
        position,
      });
    });
    const tenant = model.tenant;
    await appendEvents(
      tx,
      entries.flatMap((entry) => {
        const event = stageEvent({
          modelName: model.name,
          versionId: entry.version.id,
          stage: entry.to,
          tenant,
          previousStage: entry.from,
          version: entry.version.version,
          changedBy: who.changedBy,
          reason: who.reason,
          // Alias changes travel as stage events too (the stage unchanged), so that whoever serves by alias reloads.
          ...(entry.kind === ModelHistoryKind.STAGE ? {} : { change: entry.kind, alias: entry.alias, previousVersionId: entry.previousVersion?.id ?? null }),
        });
        // Also on the tenant's stream (its own routing key, so workers following `model.*.stage` see each change once),
        // for subscribers of every model's stage changes (modelVersionStageChanged).
        return [event, { ...event, stream: `models:${tenant}`, routingKey: `models.${tenant}.stage` }];
      }),
    );
  }

  /** Publishes what the last transactions appended (call after they commit). */
  notify(): void {
    this.events?.kick();
  }
}

interface HistoryEntry {
  kind: ModelHistoryKind;
  version: ModelVersionEntity;
  from: ModelStage;
  to: ModelStage;
  alias?: string;
  previousVersion?: ModelVersionEntity | null;
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
