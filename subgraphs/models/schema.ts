import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { containerOf, buildFederatedSchema, type RequestContext } from '../../lib/graphql/subgraph.js';
import type { SubgraphDefinition } from '../../lib/graphql/run-subgraph.js';
import { isUuid } from '../../lib/ids.js';
import type { ModelsConfig } from './config.js';
import { Migration0001Initial } from './migrations/0001-initial.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { ModelVersionResolver, RegisteredModelResolver } from './model-version.resolver.js';
import { toModelVersion, toRegisteredModel } from './model-version.type.js';
import { modelsPermissions } from './permissions.js';
import { RegisteredModelEntity } from './registered-model.entity.js';
import { TrainingMetricEntity } from './training-metric.entity.js';
import { TrainingRunEntity } from './training-run.entity.js';
import { TrainingRunResolver } from './training-run.resolver.js';
import { toTrainingRun } from './training-run.type.js';

export interface ModelsDeps {
  service: ModelRegistryService;
  repository: ModelRegistryRepository;
}

/**
 * Entities reached from another subgraph: a record of another tenant resolves to null (reads as not found); platform
 * models and their versions resolve for every tenant.
 */
function referenceResolvers(repository: ModelRegistryRepository): GraphQLResolverMap<RequestContext> {
  return {
    TrainingRun: {
      async __resolveReference(ref: { id: string }, ctx: RequestContext) {
        const found = isUuid(ref.id) ? await repository.findRun(ctx.em, ctx.identity.tenant, ref.id) : null;
        return found ? toTrainingRun(found) : null;
      },
    },
    RegisteredModel: {
      async __resolveReference(ref: { id: string }, ctx: RequestContext) {
        const found = isUuid(ref.id) ? await repository.findRegisteredModel(ctx.em, ctx.identity.tenant, ref.id) : null;
        return found ? toRegisteredModel(found) : null;
      },
    },
    ModelVersion: {
      async __resolveReference(ref: { id: string }, ctx: RequestContext) {
        const found = isUuid(ref.id) ? await repository.findVersion(ctx.em, ctx.identity.tenant, ref.id) : null;
        return found ? toModelVersion(found) : null;
      },
    },
  };
}

export function modelsSubgraph(_config: ModelsConfig): SubgraphDefinition<ModelsDeps> {
  return {
    name: 'models',
    dbSchema: 'models',
    permissions: modelsPermissions,
    entities: [TrainingRunEntity, TrainingMetricEntity, RegisteredModelEntity, ModelVersionEntity],
    migrations: [{ name: '0001-initial', class: Migration0001Initial }],
    async setup() {
      const repository = new ModelRegistryRepository();
      return { service: new ModelRegistryService(repository), repository };
    },
    schema: (deps) =>
      buildFederatedSchema({
        resolvers: [TrainingRunResolver, RegisteredModelResolver, ModelVersionResolver],
        referenceResolvers: referenceResolvers(deps.repository),
        container: containerOf([deps.service, deps.repository]),
      }),
  };
}
