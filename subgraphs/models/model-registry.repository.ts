import { randomUUID } from 'node:crypto';
import { LockMode, type EntityManager } from '@mikro-orm/core';
import type { SqlEntityManager } from '@mikro-orm/postgresql';
import { badInput } from '../../lib/errors.js';
import { decodeCursor, paginate } from '../../lib/graphql/connection.js';
import { isUuid } from '../../lib/ids.js';
import { ModelStage, PLATFORM_TENANT, TrainingRunStatus } from './models.contracts.js';
import { ModelHistoryKind, type PromotionStatus } from './lifecycle.contracts.js';
import { ModelAliasEntity } from './model-alias.entity.js';
import { ModelStageChangeEntity } from './model-stage-change.entity.js';
import { PromotionRequestEntity } from './promotion-request.entity.js';
import type { MetricInput } from './model-registry.inputs.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { RegisteredModelEntity } from './registered-model.entity.js';
import { TrainingMetricEntity } from './training-metric.entity.js';
import { TrainingRunEntity } from './training-run.entity.js';

type PageArgs = { first?: number | null; after?: string | null };

/** Tenants whose registry records a tenant reads: its own and the platform's. */
export const visibleTenants = (tenant: string): string[] => (tenant === PLATFORM_TENANT ? [PLATFORM_TENANT] : [tenant, PLATFORM_TENANT]);

/**
 * Every query of the models subgraph. Training runs belong to one tenant; registered models and their versions are
 * read across the tenant and the platform (`*`), but only ever written, locked or staged by their own tenant.
 */
export class ModelRegistryRepository {
  findRun(em: EntityManager, tenant: string, id: string) {
    return em.findOne(TrainingRunEntity, { id, tenant });
  }

  findRunByIdempotencyKey(em: EntityManager, tenant: string, idempotencyKey: string) {
    return em.findOne(TrainingRunEntity, { tenant, idempotencyKey });
  }

  pageRuns<N>(em: EntityManager, tenant: string, args: PageArgs & { modelName?: string | null }, map: (e: TrainingRunEntity) => N) {
    checkUuidCursor(args.after);
    return paginate(em, TrainingRunEntity, args.modelName ? { tenant, modelName: args.modelName } : { tenant }, args, map);
  }

  /** Locks the run for the rest of the transaction (linking it to the version it produced). */
  lockRun(em: EntityManager, tenant: string, id: string) {
    return em.findOne(TrainingRunEntity, { id, tenant }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
  }

  metrics(em: EntityManager, runId: string, name?: string | null) {
    return em.find(TrainingMetricEntity, name ? { run: runId, name } : { run: runId }, { orderBy: { name: 'asc', step: 'asc' } });
  }

  /** Inserts the metrics not recorded yet; a (run, name, step) already there keeps its first value. Returns how many were new. */
  async insertMetrics(em: EntityManager, runId: string, metrics: MetricInput[]): Promise<number> {
    const now = new Date();
    const rows = metrics.map((m) => ({
      id: randomUUID(),
      run: runId,
      name: m.name,
      step: m.step,
      epoch: m.epoch ?? null,
      value: m.value,
      recordedAt: m.recordedAt ?? now,
    }));
    const result = await (em as SqlEntityManager)
      .createQueryBuilder(TrainingMetricEntity)
      .insert(rows)
      .onConflict(['run', 'name', 'step'])
      .ignore()
      .execute('run');
    return result.affectedRows;
  }

  findRegisteredModel(em: EntityManager, tenant: string, id: string) {
    return em.findOne(RegisteredModelEntity, { id, tenant: { $in: visibleTenants(tenant) } });
  }

  /** The tenant's own model of that name, else the platform's. */
  async findRegisteredModelByName(em: EntityManager, tenant: string, name: string) {
    const found = await em.find(RegisteredModelEntity, { name, tenant: { $in: visibleTenants(tenant) } });
    return found.find((m) => m.tenant === tenant) ?? found[0] ?? null;
  }

  pageRegisteredModels<N>(em: EntityManager, tenant: string, args: PageArgs, map: (e: RegisteredModelEntity) => N) {
    checkUuidCursor(args.after);
    return paginate(em, RegisteredModelEntity, { tenant: { $in: visibleTenants(tenant) } }, args, map);
  }

  /** Creates the model row unless it exists; a concurrent creator makes this wait, then do nothing. */
  async ensureRegisteredModel(em: EntityManager, tenant: string, name: string): Promise<void> {
    const now = new Date();
    await (em as SqlEntityManager)
      .createQueryBuilder(RegisteredModelEntity)
      .insert({ id: randomUUID(), tenant, name, createdAt: now, updatedAt: now })
      .onConflict(['tenant', 'name'])
      .ignore()
      .execute('run');
  }

  /** Locks the model row for the rest of the transaction: version numbers and stage changes go one at a time. */
  lockRegisteredModel(em: EntityManager, tenant: string, where: { name: string } | { id: string }) {
    return em.findOne(RegisteredModelEntity, { ...where, tenant }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
  }

  findVersion(em: EntityManager, tenant: string, id: string) {
    return em.findOne(ModelVersionEntity, { id, tenant: { $in: visibleTenants(tenant) } });
  }

  /** A version the tenant owns (may change), as opposed to one it can only read. */
  findOwnVersion(em: EntityManager, tenant: string, id: string, options: { refresh?: boolean } = {}) {
    return em.findOne(ModelVersionEntity, { id, tenant }, { refresh: options.refresh ?? false });
  }

  pageVersions<N>(em: EntityManager, tenant: string, registeredModelId: string, args: PageArgs, map: (e: ModelVersionEntity) => N) {
    checkUuidCursor(args.after);
    return paginate(em, ModelVersionEntity, { registeredModel: registeredModelId, tenant: { $in: visibleTenants(tenant) } }, args, map);
  }

  latestVersion(em: EntityManager, tenant: string, registeredModelId: string) {
    return em.findOne(
      ModelVersionEntity,
      { registeredModel: registeredModelId, tenant: { $in: visibleTenants(tenant) } },
      { orderBy: { version: 'desc' } },
    );
  }

  productionVersion(em: EntityManager, tenant: string, registeredModelId: string, options: { refresh?: boolean } = {}) {
    return em.findOne(
      ModelVersionEntity,
      { registeredModel: registeredModelId, tenant: { $in: visibleTenants(tenant) }, stage: ModelStage.PRODUCTION },
      { refresh: options.refresh ?? false },
    );
  }

  /** Versions of the model holding these exact bytes, oldest first. */
  findVersionsBySha256(em: EntityManager, tenant: string, registeredModelId: string, sha256: string) {
    return em.find(ModelVersionEntity, { registeredModel: registeredModelId, tenant, sha256 }, { orderBy: { version: 'asc' } });
  }

  /** The model's stage history, newest first. */
  stageHistory(em: EntityManager, tenant: string, registeredModelId: string, limit = 100) {
    return em.find(
      ModelStageChangeEntity,
      { registeredModel: registeredModelId, tenant: { $in: visibleTenants(tenant) } },
      { orderBy: { changedAt: 'desc', position: 'desc', id: 'desc' }, limit, populate: ['modelVersion', 'previousModelVersion'] },
    );
  }

  /** The model's whole history (stage and alias changes), oldest first; `upTo` (inclusive) cuts it at a moment. */
  history(em: EntityManager, tenant: string, registeredModelId: string, options: { upTo?: Date; stagesOnly?: boolean; limit?: number } = {}) {
    return em.find(
      ModelStageChangeEntity,
      {
        registeredModel: registeredModelId,
        tenant: { $in: visibleTenants(tenant) },
        ...(options.upTo ? { changedAt: { $lte: options.upTo } } : {}),
        ...(options.stagesOnly ? { kind: ModelHistoryKind.STAGE } : {}),
      },
      { orderBy: { changedAt: 'asc', position: 'asc', id: 'asc' }, limit: options.limit, populate: ['modelVersion', 'previousModelVersion'] },
    );
  }

  /** The newest history record of a model (read under the model's lock, to keep each model's times increasing). */
  lastChange(em: EntityManager, registeredModelId: string) {
    return em.findOne(ModelStageChangeEntity, { registeredModel: registeredModelId }, { orderBy: { changedAt: 'desc', position: 'desc' } });
  }

  /** Versions of a model created up to `upTo`, oldest first. */
  versionsCreatedBy(em: EntityManager, tenant: string, registeredModelId: string, upTo: Date) {
    return em.find(
      ModelVersionEntity,
      { registeredModel: registeredModelId, tenant: { $in: visibleTenants(tenant) }, createdAt: { $lte: upTo } },
      { orderBy: { createdAt: 'asc', version: 'asc' } },
    );
  }

  aliases(em: EntityManager, tenant: string, registeredModelId: string) {
    return em.find(
      ModelAliasEntity,
      { registeredModel: registeredModelId, tenant: { $in: visibleTenants(tenant) } },
      { orderBy: { alias: 'asc' }, populate: ['modelVersion'] },
    );
  }

  findAlias(em: EntityManager, tenant: string, registeredModelId: string, alias: string) {
    return em.findOne(ModelAliasEntity, { registeredModel: registeredModelId, tenant, alias }, { populate: ['modelVersion'], refresh: true });
  }

  findPromotionRequest(em: EntityManager, tenant: string, id: string) {
    return em.findOne(PromotionRequestEntity, { id, tenant }, { populate: ['modelVersion', 'registeredModel'] });
  }

  /** Locks the request for the rest of the transaction: of two decisions at once, the second sees the first's. */
  lockPromotionRequest(em: EntityManager, tenant: string, id: string) {
    return em.findOne(PromotionRequestEntity, { id, tenant }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
  }

  pendingPromotionRequest(em: EntityManager, tenant: string, modelVersionId: string) {
    return em.findOne(PromotionRequestEntity, { tenant, modelVersion: modelVersionId, status: 'PENDING' });
  }

  /** The model's requests, newest first. */
  promotionRequests(em: EntityManager, tenant: string, registeredModelId: string, status: PromotionStatus | null, limit: number) {
    return em.find(
      PromotionRequestEntity,
      { tenant, registeredModel: registeredModelId, ...(status ? { status } : {}) },
      { orderBy: { createdAt: 'desc', id: 'desc' }, limit, populate: ['modelVersion', 'registeredModel'] },
    );
  }

  /** Runs queued whose request never reached the training queue (the broker was down when they were started). */
  findUndispatchedRuns(em: EntityManager, createdBefore: Date, limit = 50) {
    return em.find(
      TrainingRunEntity,
      { status: TrainingRunStatus.QUEUED, dispatchedAt: null, request: { $ne: null }, createdAt: { $lt: createdBefore } },
      { orderBy: { createdAt: 'asc' }, limit },
    );
  }

  /** Marks the run's request as being sent; false when another replica did first. */
  async claimDispatch(em: EntityManager, runId: string, at: Date): Promise<boolean> {
    const updated = await em.nativeUpdate(TrainingRunEntity, { id: runId, dispatchedAt: null }, { dispatchedAt: at });
    return updated > 0;
  }

  async releaseDispatch(em: EntityManager, runId: string): Promise<void> {
    await em.nativeUpdate(TrainingRunEntity, { id: runId }, { dispatchedAt: null });
  }
}

// Keyset pagination compares the cursor's id with uuid columns: a cursor carrying anything else would reach
// Postgres as a failed cast (an internal error) rather than the client's mistake it is.
function checkUuidCursor(after: string | null | undefined): void {
  if (after && !isUuid(decodeCursor(after).id)) throw badInput('"after" is not a cursor this API issued', 'after');
}
