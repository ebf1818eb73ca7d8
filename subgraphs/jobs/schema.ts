import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { EVENT_LOG_ENTITIES, EventRelay } from '../../lib/events/event-log.js';
import { eventLogMigration } from '../../lib/events/event-log.migration.js';
import { serveReplay } from '../../lib/events/replay-rpc.js';
import { JobEventsResolver } from './job-events.subscription.js';
import { jobsPermissions } from './permissions.js';
import { containerOf, buildFederatedSchema, type RequestContext } from '../../lib/graphql/subgraph.js';
import type { SubgraphDefinition } from '../../lib/graphql/run-subgraph.js';
import { isUuid } from '../../lib/ids.js';
import { serviceLogger } from '../../lib/telemetry.js';
import { ChangeDetectionResolver, JobPairResolver } from './change-detection.resolver.js';
import { ChangeDetectionService } from './change-detection.service.js';
import type { JobsConfig } from './config.js';
import { JobEntity } from './job.entity.js';
import { JobPairEntity } from './job-pair.entity.js';
import { JobRepository } from './job.repository.js';
import { JobResolver } from './job.resolver.js';
import { JobService } from './job.service.js';
import { toJob } from './job.type.js';
import { Migration0001Initial } from './migrations/0001-initial.js';
import { Migration0002ChangeDetection } from './migrations/0002-change-detection.js';
import { registerJobStateMetric, startPairResultsConsumer } from './pair-results.consumer.js';
import { servePairResolution } from './pair-resolution.rpc.js';

export interface JobsDeps {
  service: JobService;
  repository: JobRepository;
  changes: ChangeDetectionService;
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
    entities: [JobEntity, JobPairEntity, ...EVENT_LOG_ENTITIES],
    migrations: [
      { name: '0001-initial', class: Migration0001Initial },
      { name: '0002-change-detection', class: Migration0002ChangeDetection },
      { name: '0003-event-log', class: eventLogMigration('jobs') },
    ],
    async setup({ db, runtime, registry }) {
      const repository = new JobRepository();
      const service = new JobService(repository, { maxPairsPerJob: config.MAX_PAIRS_PER_JOB });
      // Without a runtime (schema printing, resolver tests) the change-detection flows answer UNAVAILABLE.
      const changes = new ChangeDetectionService(service, repository, config, serviceLogger('jobs-subgraph'), runtime?.broker, runtime?.store);
      if (registry) registerJobStateMetric(registry, repository, db);
      return { service, repository, changes };
    },
    schema: (deps) =>
      buildFederatedSchema({
        resolvers: [JobResolver, ChangeDetectionResolver, JobPairResolver, JobEventsResolver],
        referenceResolvers: referenceResolvers(deps),
        // Resolvers are made here with their services; the container hands type-graphql these instances.
        container: containerOf([
          new JobResolver(deps.service, deps.repository),
          new ChangeDetectionResolver(deps.changes),
          new JobPairResolver(deps.changes),
        ]),
      }),
    // Worker reports arrive on the durable `jobs.pair-results` queue; half-dispatched jobs are sent again.
    // Progress events are logged with the job, relayed to the topic exchange, and replayed to resuming subscribers.
    async background(deps, { db, runtime }) {
      const relay = new EventRelay({ fork: db.fork, broker: runtime.broker });
      deps.changes.useEventLog(db.fork, relay);
      relay.start();
      const replay = await serveReplay(runtime.broker, 'jobs', db.fork);
      const stopConsumer = await startPairResultsConsumer({ changes: deps.changes, repository: deps.repository, db, broker: runtime.broker });
      // The monitoring subgraph scores labelled feedback against a pair's result (`jobs.resolve-pair`).
      const stopPairResolution = await servePairResolution({ repository: deps.repository }, { db, runtime });
      return async () => {
        await stopPairResolution();
        await stopConsumer();
        await replay.close();
        await relay.stop();
      };
    },
  };
}
