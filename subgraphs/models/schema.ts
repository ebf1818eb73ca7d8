import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { ModelEventsResolver } from './model-events.subscription.js';
import { EVENT_LOG_ENTITIES, EventRelay } from '../../lib/events/event-log.js';
import { eventLogMigration } from '../../lib/events/event-log.migration.js';
import { containerOf, buildFederatedSchema, type RequestContext } from '../../lib/graphql/subgraph.js';
import type { SubgraphDefinition } from '../../lib/graphql/run-subgraph.js';
import { isUuid } from '../../lib/ids.js';
import { serviceLogger } from '../../lib/telemetry.js';
import type { ModelsConfig } from './config.js';
import { defaultDemoModelDir, ensureDemoModel } from './demo-model.js';
import { Migration0001Initial } from './migrations/0001-initial.js';
import { Migration0002TrainingPipeline } from './migrations/0002-training-pipeline.js';
import { MlflowClient } from './mlflow-client.js';
import { MlflowMirror, startMlflowMirror } from './mlflow-mirror.js';
import { Migration0005Evaluation } from './migrations/0005-evaluation.js';
import { Migration0006PromotionCancel } from './migrations/0006-promotion-cancel.js';
import { Migration0007PromotionRejectedHistory } from './migrations/0007-promotion-rejected-history.js';
import { consumeEvaluationResults, sweepLostEvaluations } from './model-evaluation.consumer.js';
import { ModelEvaluationResolver } from './model-evaluation.resolver.js';
import { ModelEvaluationService } from './model-evaluation.service.js';
import { ModelLifecycleService } from './model-lifecycle.service.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { serveModelResolution } from './model-resolution.rpc.js';
import { serveRetraining } from './retraining.consumer.js';
import { ModelStageChangeEntity } from './model-stage-change.entity.js';
import { ModelAliasEntity } from './model-alias.entity.js';
import { PromotionRequestEntity } from './promotion-request.entity.js';
import { ModelLifecycleResolver } from './model-lifecycle.resolver.js';
import { Migration0004Lifecycle } from './migrations/0004-lifecycle.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { ModelVersionResolver, RegisteredModelResolver } from './model-version.resolver.js';
import { toModelVersion, toRegisteredModel } from './model-version.type.js';
import { modelsPermissions } from './permissions.js';
import { RegisteredModelEntity } from './registered-model.entity.js';
import { TrainingMetricEntity } from './training-metric.entity.js';
import { consumeTrainingEvents } from './training-events.consumer.js';
import { TrainingRunEntity } from './training-run.entity.js';
import { TrainingRunResolver } from './training-run.resolver.js';
import { TrainingRunService } from './training-run.service.js';
import { toTrainingRun } from './training-run.type.js';

export interface ModelsDeps {
  service: ModelRegistryService;
  repository: ModelRegistryRepository;
  trainingRuns: TrainingRunService;
  lifecycle: ModelLifecycleService;
  evaluations: ModelEvaluationService;
  relay: EventRelay;
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

export function modelsSubgraph(config: ModelsConfig): SubgraphDefinition<ModelsDeps> {
  const log = serviceLogger('models-subgraph');
  return {
    name: 'models',
    dbSchema: 'models',
    permissions: modelsPermissions,
    entities: [TrainingRunEntity, TrainingMetricEntity, RegisteredModelEntity, ModelVersionEntity, ModelStageChangeEntity, ModelAliasEntity, PromotionRequestEntity, ...EVENT_LOG_ENTITIES],
    migrations: [
      { name: '0001-initial', class: Migration0001Initial },
      { name: '0002-training-pipeline', class: Migration0002TrainingPipeline },
      // The outbox of training progress and model stage events (lib/events/event-log.ts).
      { name: '0003-event-log', class: eventLogMigration('models') },
      { name: '0004-lifecycle', class: Migration0004Lifecycle },
      { name: '0005-evaluation', class: Migration0005Evaluation },
      { name: '0006-promotion-cancel', class: Migration0006PromotionCancel },
      { name: '0007-promotion-rejected-history', class: Migration0007PromotionRejectedHistory },
    ],
    async setup({ db, runtime }) {
      const repository = new ModelRegistryRepository();
      const relay = new EventRelay({ fork: db.fork, broker: runtime.broker });
      const service = new ModelRegistryService(repository, relay);
      const trainingRuns = new TrainingRunService(repository, service, {
        broker: runtime.broker,
        requestsQueue: config.TRAINING_REQUESTS_QUEUE,
        datasetVersionQueue: config.DATASET_VERSION_RESOLUTION_QUEUE,
        rpcTimeoutMs: config.MODELS_RPC_TIMEOUT_MS,
        defaultTimeLimitSeconds: config.TRAINING_TIME_LIMIT_SECONDS,
        maxTimeLimitSeconds: config.TRAINING_MAX_TIME_LIMIT_SECONDS,
        codeVersion: config.LCD_CODE_VERSION,
        gate: { minimums: { f1: config.GATE_MIN_F1, iou: config.GATE_MIN_IOU }, maxRegression: config.GATE_MAX_REGRESSION },
        events: relay,
        log,
      });
      const lifecycle = new ModelLifecycleService(repository, service, {
        broker: runtime.broker,
        store: runtime.store,
        rpcTimeoutMs: config.MODELS_RPC_TIMEOUT_MS,
        maxUploadBytes: config.MODEL_MAX_UPLOAD_BYTES,
      });
      const evaluations = new ModelEvaluationService(repository, service, {
        broker: runtime.broker,
        requestsQueue: config.MODEL_EVALUATION_REQUESTS_QUEUE,
        resultsQueue: config.MODEL_EVALUATION_RESULTS_QUEUE,
        datasetVersionQueue: config.DATASET_VERSION_RESOLUTION_QUEUE,
        rpcTimeoutMs: config.MODELS_RPC_TIMEOUT_MS,
        gate: { minimums: { f1: config.GATE_MIN_F1, iou: config.GATE_MIN_IOU }, maxRegression: config.GATE_MAX_REGRESSION },
        lost: { timeoutMinutes: config.MODEL_EVALUATION_TIMEOUT_MINUTES, maxAttempts: config.MODEL_EVALUATION_MAX_ATTEMPTS },
        events: relay,
        log,
      });
      return { service, repository, trainingRuns, lifecycle, evaluations, relay };
    },
    async background(deps, ctx) {
      const stops: (() => Promise<void>)[] = [];
      const stopAll = async () => {
        for (const stop of stops.reverse()) await stop().catch((error: unknown) => log.warn({ err: error }, 'stopping background work failed'));
      };
      try {
        deps.relay.start();
        stops.push(() => deps.relay.stop());
        // Inference workers resolve model versions over RabbitMQ (`models.resolve`), never through this subgraph's tables.
        stops.push(await serveModelResolution(deps, ctx));
        stops.push(await consumeTrainingEvents({ trainingRuns: deps.trainingRuns, db: ctx.db, broker: ctx.runtime.broker, log }, { queue: config.TRAINING_EVENTS_QUEUE }));
        // What the inference workers found evaluating versions (`models.evaluation-results`).
        stops.push(await consumeEvaluationResults({ evaluations: deps.evaluations, db: ctx.db, broker: ctx.runtime.broker, log }, { queue: config.MODEL_EVALUATION_RESULTS_QUEUE }));
        // Evaluations whose request or result was lost are sent again, then fail as timed out (never PENDING for ever).
        stops.push(sweepLostEvaluations({ evaluations: deps.evaluations, db: ctx.db, log }, { timeoutMinutes: config.MODEL_EVALUATION_TIMEOUT_MINUTES }));
        // Retraining policies (monitoring subgraph) start runs and ask about lineage over `models.retrain` / `models.lineage`.
        stops.push(await serveRetraining({ trainingRuns: deps.trainingRuns, db: ctx.db, broker: ctx.runtime.broker, log }));
        if (config.MLFLOW_TRACKING_URI) {
          const client = new MlflowClient({
            trackingUri: config.MLFLOW_TRACKING_URI,
            token: config.MLFLOW_TRACKING_TOKEN,
            username: config.MLFLOW_TRACKING_USERNAME,
            password: config.MLFLOW_TRACKING_PASSWORD,
            timeoutMs: config.MLFLOW_TIMEOUT_MS,
          });
          const mirror = new MlflowMirror(
            { db: ctx.db, store: ctx.runtime.store, repository: deps.repository, log },
            { client, experimentPrefix: config.MLFLOW_EXPERIMENT_PREFIX, artifactMaxBytes: config.MLFLOW_ARTIFACT_MAX_BYTES },
          );
          stops.push(await startMlflowMirror(mirror, { broker: ctx.runtime.broker, log, queue: config.MLFLOW_MIRROR_QUEUE }));
        }
        if (config.DEMO_MODEL === 'true') {
          const dir = config.DEMO_MODEL_DIR ?? defaultDemoModelDir();
          if (!dir) log.warn('no demo model found (training/demo-model/model.onnx): none registered');
          else {
            // A broken demo model must not keep the registry from starting: it is logged and skipped.
            try {
              const demo = await ensureDemoModel(deps, ctx.db, ctx.runtime.store, { name: config.DEMO_MODEL_NAME, dir });
              log.info({ model: config.DEMO_MODEL_NAME, ...demo }, demo.registered ? 'demo model registered' : 'demo model already registered');
            } catch (error) {
              log.error({ err: error, dir }, 'the demo model could not be registered');
            }
          }
        }
      } catch (error) {
        await stopAll();
        throw error;
      }
      return stopAll;
    },
    schema: (deps) =>
      buildFederatedSchema({
        resolvers: [TrainingRunResolver, RegisteredModelResolver, ModelVersionResolver, ModelLifecycleResolver, ModelEventsResolver, ModelEvaluationResolver],
        referenceResolvers: referenceResolvers(deps.repository),
        container: containerOf([deps.service, deps.repository, deps.trainingRuns, deps.lifecycle, deps.evaluations]),
      }),
  };
}
