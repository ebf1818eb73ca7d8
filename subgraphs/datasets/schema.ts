import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { EVENT_LOG_ENTITIES, EventRelay } from '../../lib/events/event-log.js';
import { eventLogMigration } from '../../lib/events/event-log.migration.js';
import { containerOf, buildFederatedSchema, type RequestContext } from '../../lib/graphql/subgraph.js';
import type { SubgraphDefinition } from '../../lib/graphql/run-subgraph.js';
import { isSha256, isUuid } from '../../lib/ids.js';
import { DatasetEntity } from './dataset.entity.js';
import { DatasetItemEntity } from './dataset-item.entity.js';
import { DatasetVersionEntity } from './dataset-version.entity.js';
import { DatasetRepository } from './dataset.repository.js';
import { DatasetResolver, DatasetVersionResolver, UploadResolver } from './dataset.resolver.js';
import { DatasetService } from './dataset.service.js';
import { toDataset, toDatasetVersion } from './dataset.type.js';
import { Migration0001Initial } from './migrations/0001-initial.js';
import { UploadEntity } from './upload.entity.js';
import type { DatasetsConfig } from './config.js';
import { datasetsPermissions } from './permissions.js';
import { serveUploadResolution } from './upload-resolution.rpc.js';
import { SyntheticDatasetResolver } from './synthetic-dataset.resolver.js';
import { SyntheticDatasetService } from './synthetic-dataset.service.js';
import { serveVersionResolution } from './version-resolution.rpc.js';

export interface DatasetsDeps {
  service: DatasetService;
  repository: DatasetRepository;
  synthetic: SyntheticDatasetService;
  /** Publishes the `dataset.version.created` events logged with each new version. */
  relay: EventRelay;
}

/** Entities reached from another subgraph: a record of another tenant resolves to null (reads as not found). */
const referenceResolvers: GraphQLResolverMap<RequestContext> = {
  Dataset: {
    async __resolveReference(ref: { id: string }, ctx: RequestContext) {
      const found = isUuid(ref.id) ? await ctx.em.findOne(DatasetEntity, { id: ref.id, tenant: ctx.identity.tenant }) : null;
      return found ? toDataset(found) : null;
    },
  },
  DatasetVersion: {
    async __resolveReference(ref: { id: string }, ctx: RequestContext) {
      const found = isSha256(ref.id)
        ? await ctx.em.findOne(DatasetVersionEntity, { id: ref.id, tenant: ctx.identity.tenant }, { populate: ['dataset'] })
        : null;
      return found ? toDatasetVersion(found) : null;
    },
  },
};

export function datasetsSubgraph(config: DatasetsConfig): SubgraphDefinition<DatasetsDeps> {
  return {
    name: 'datasets',
    dbSchema: 'datasets',
    permissions: datasetsPermissions,
    entities: [DatasetEntity, DatasetVersionEntity, DatasetItemEntity, UploadEntity, ...EVENT_LOG_ENTITIES],
    migrations: [
      { name: '0001-initial', class: Migration0001Initial },
      // The outbox of `dataset.version.created` events (lib/events/event-log.ts).
      { name: '0002-event-log', class: eventLogMigration('datasets') },
    ],
    async setup({ db, runtime }) {
      const repository = new DatasetRepository();
      const relay = new EventRelay({ fork: db.fork, broker: runtime.broker });
      const service = new DatasetService(repository, runtime.store, {
        maxUploadBytes: config.MAX_UPLOAD_BYTES,
        uploadUrlTtlSeconds: config.UPLOAD_URL_TTL_SECONDS,
        maxItemsPerVersion: config.MAX_ITEMS_PER_VERSION,
        imageLimits: { maxPixels: config.MAX_IMAGE_PIXELS, maxSide: 65_536 },
        events: relay,
      });
      const synthetic = new SyntheticDatasetService(repository, service, {
        python: config.LCD_PYTHON,
        maxPairs: config.SYNTHETIC_MAX_PAIRS,
        maxPixels: config.SYNTHETIC_MAX_PIXELS,
        timeoutMs: config.SYNTHETIC_TIMEOUT_SECONDS * 1000,
      });
      return { service, repository, synthetic, relay };
    },
    // The jobs and models subgraphs resolve upload ids to object keys over RabbitMQ (`datasets.resolve-uploads`); the
    // models subgraph resolves dataset versions to their manifests (`datasets.resolve-version`).
    async background(deps, ctx) {
      deps.relay.start();
      const stopUploads = await serveUploadResolution(deps, ctx).catch(async (error: unknown) => {
        await deps.relay.stop();
        throw error;
      });
      const stopVersions = await serveVersionResolution(deps, ctx, config.DATASET_VERSION_RESOLUTION_QUEUE).catch(async (error: unknown) => {
        await stopUploads();
        await deps.relay.stop();
        throw error;
      });
      return async () => {
        await stopVersions();
        await stopUploads();
        await deps.relay.stop();
      };
    },
    schema: (deps) =>
      buildFederatedSchema({
        resolvers: [DatasetResolver, DatasetVersionResolver, UploadResolver, SyntheticDatasetResolver],
        referenceResolvers,
        container: containerOf([deps.service, deps.repository, deps.synthetic]),
      }),
  };
}
