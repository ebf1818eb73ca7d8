import type { EntityManager } from '@mikro-orm/core';
import { EvaluationStatus } from './model-evaluation.contracts.js';
import { ModelStage, ModelVersionSource } from './models.contracts.js';
import { ModelVersionEntity } from './model-version.entity.js';

/**
 * The queries of evaluations: the versions whose training runs give a model's default evaluation dataset, and the
 * evaluations still waiting for a result.
 */
export class ModelEvaluationRepository {
  /** The tenant's own version, its model and training run loaded. */
  findOwnVersion(em: EntityManager, tenant: string, id: string) {
    return em.findOne(ModelVersionEntity, { id, tenant }, { populate: ['registeredModel'], refresh: true });
  }

  /** The model's Production version when a training run made it (its run loaded). */
  trainedProductionVersion(em: EntityManager, tenant: string, registeredModelId: string) {
    return em.findOne(
      ModelVersionEntity,
      { registeredModel: registeredModelId, tenant, stage: ModelStage.PRODUCTION, trainingRun: { $ne: null } },
      { populate: ['trainingRun'] },
    );
  }

  /** The newest version a training run made (its run loaded). */
  latestTrainedVersion(em: EntityManager, tenant: string, registeredModelId: string) {
    return em.findOne(
      ModelVersionEntity,
      { registeredModel: registeredModelId, tenant, source: ModelVersionSource.TRAINED, trainingRun: { $ne: null } },
      { populate: ['trainingRun'], orderBy: { version: 'desc' } },
    );
  }

  /** Versions of every tenant whose evaluation is PENDING, least recently changed first, their model loaded. */
  pendingEvaluations(em: EntityManager, limit: number) {
    return em.find(
      ModelVersionEntity,
      { evaluation: { status: EvaluationStatus.PENDING } },
      { populate: ['registeredModel'], orderBy: { updatedAt: 'asc', id: 'asc' }, limit, refresh: true },
    );
  }

  productionVersion(em: EntityManager, tenant: string, registeredModelId: string) {
    return em.findOne(ModelVersionEntity, { registeredModel: registeredModelId, tenant, stage: ModelStage.PRODUCTION }, { refresh: true });
  }
}
