import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { jobsPermissions } from './permissions.js';
import { containerOf, buildFederatedSchema, type RequestContext } from '../../lib/graphql/subgraph.js';
import type { SubgraphDefinition } from '../../lib/graphql/run-subgraph.js';
import { isUuid } from '../../lib/ids.js';
import type { JobsConfig } from './config.js';
import { JobEntity } from './job.entity.js';
import { JobPairEntity } from './job-pair.entity.js';
import { JobRepository } from './job.repository.js';
import { JobResolver } from './job.resolver.js';
import { JobService } from './job.service.js';
import { toJob } from './job.type.js';
import { Migration0001Initial } from './migrations/0001-initial.js';

export interface JobsDeps {
  service: JobService;
  repository: JobRepository;
}

/** Entities reached from another subgraph: a record of another tenant resolves to null (reads as not found). */
const referenceResolvers = (deps: JobsDeps): GraphQLResolverMap<RequestContext> => ({
  Job: {
    async __resolveReference(ref: { id: string }, ctx: RequestContext) {
      const found = isUuid(ref.id) ? await deps.repository.findJob(ctx.em, ctx.identity.tenant, ref.id) : null;
      return found ? toJob(found) : null;
    },
  },
});

export function jobsSubgraph(config: JobsConfig): SubgraphDefinition<JobsDeps> {
  return {
    name: 'jobs',
    dbSchema: 'jobs',
    permissions: jobsPermissions,
    entities: [JobEntity, JobPairEntity],
    migrations: [{ name: '0001-initial', class: Migration0001Initial }],
    async setup() {
      const repository = new JobRepository();
      const service = new JobService(repository, { maxPairsPerJob: config.MAX_PAIRS_PER_JOB });
      return { service, repository };
    },
    schema: (deps) =>
      buildFederatedSchema({
        resolvers: [JobResolver],
        referenceResolvers: referenceResolvers(deps),
        // Resolvers are made here with their services; the container hands type-graphql these instances.
        container: containerOf([new JobResolver(deps.service, deps.repository)]),
      }),
  };
}
