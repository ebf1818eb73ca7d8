import type { EntityManager } from '@mikro-orm/core';
import { ModelStage, ModelVersionSource } from './models.contracts.js';
import { ModelVersionEntity } from './model-version.entity.js';

/** The queries of evaluations: the versions whose training runs give a model's default evaluation dataset. */
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

  productionVersion(em: EntityManager, tenant: string, registeredModelId: string) {
    return em.findOne(ModelVersionEntity, { registeredModel: registeredModelId, tenant, stage: ModelStage.PRODUCTION }, { refresh: true });
  }
}
