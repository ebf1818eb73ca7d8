// Mirrors training runs and model versions to an MLflow tracking server (MLFLOW_TRACKING_URI), from the models
// subgraph's own event log: it consumes the logged `training.<id>.progress` and `model.<name>.stage` events from a
// durable queue, so a mirror that is down catches up later. Runs go to the experiment `<prefix>/<tenant>/<model>`,
// with params, metrics, tags, artifacts and status; versions to the registered model `<prefix>.<tenant>.<model>` with
// the aliases `staging` and `production`. A failure is retried (in the client, then by redelivery) and logged; it never
// touches the run it mirrors.
import { LockMode, type EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import type { Broker, Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import type { LoggedEvent } from '../../lib/events/event-log.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { MlflowClient, type MlflowKeyValue, type MlflowRunStatus } from './mlflow-client.js';
import type { TrainingProgressPayload } from './model-events.js';
import type { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { ModelStage, PLATFORM_TENANT } from './models.contracts.js';
import { TRAINING_LOGGED_EVENT_TYPES, tenantSegment, type ModelStageEventPayload } from './training.contracts.js';

export interface MlflowMirrorOptions {
  client: MlflowClient;
  experimentPrefix: string;
  /** Artifacts larger than this are recorded as a tag with their object key instead of uploaded. */
  artifactMaxBytes: number;
}

const STATUS: Record<string, MlflowRunStatus> = { succeeded: 'FINISHED', failed: 'FAILED', cancelled: 'KILLED' };
const ALIASED: readonly string[] = [ModelStage.STAGING, ModelStage.PRODUCTION];

/** `params` of a run flattened to MLflow params: `config.<key>` = JSON of the value. */
export function flattenParams(prefix: string, value: Record<string, unknown>): MlflowKeyValue[] {
  return Object.entries(value).map(([k, v]) => ({ key: `${prefix}.${k}`, value: typeof v === 'string' ? v : JSON.stringify(v) ?? 'null' }));
}

export class MlflowMirror {
  private readonly experiments = new Map<string, string>();

  constructor(
    private readonly deps: { db: Database; store: ObjectStore; repository: ModelRegistryRepository; log: Logger },
    private readonly options: MlflowMirrorOptions,
  ) {}

  experimentName(tenant: string, modelName: string): string {
    return `${this.options.experimentPrefix}/${tenantSegment(tenant)}/${modelName}`;
  }

  registeredModelName(tenant: string, modelName: string): string {
    return `${this.options.experimentPrefix}.${tenant === PLATFORM_TENANT ? 'platform' : tenant}.${modelName}`;
  }

  /** Applies one logged event; events of runs or versions this database does not hold are skipped. */
  async apply(event: LoggedEvent): Promise<void> {
    if (event.type === TRAINING_LOGGED_EVENT_TYPES.progress) await this.onProgress(event.payload as unknown as TrainingProgressPayload);
    // A stage change is logged on its model's stream and again on the tenant's (`models:<tenant>`, for subscribers of
    // every model): the mirror follows the model's stream only, so that it sees each change once and in order.
    else if (event.type === TRAINING_LOGGED_EVENT_TYPES.modelStage && event.stream.startsWith('model:')) {
      await this.onStage(event.payload as unknown as ModelStageEventPayload & { previousStage?: string });
    }
  }

  private async experimentId(tenant: string, modelName: string): Promise<string> {
    const name = this.experimentName(tenant, modelName);
    let id = this.experiments.get(name);
    if (!id) {
      id = await this.options.client.ensureExperiment(name);
      this.experiments.set(name, id);
    }
    return id;
  }

  /** The MLflow run of a training run, created (once, under the run's row lock) on its first event. */
  private async mlflowRun(em: EntityManager, p: TrainingProgressPayload): Promise<{ runId: string; artifactUri: string } | null> {
    return em.transactional(async (tx) => {
      const run = await this.deps.repository.lockRun(tx, p.tenant, p.runId);
      if (!run) return null;
      if (run.mlflowRunId) return this.options.client.getRun(run.mlflowRunId);
      const experimentId = await this.experimentId(run.tenant, run.modelName);
      const created = await this.options.client.createRun({
        experimentId,
        runName: `${run.modelName}-${run.id.slice(0, 8)}`,
        startTime: run.createdAt.getTime(),
        tags: [
          { key: 'lcd.run_id', value: run.id },
          { key: 'lcd.tenant', value: run.tenant },
          { key: 'lcd.model_name', value: run.modelName },
          { key: 'lcd.dataset_version', value: run.datasetVersionId },
          { key: 'lcd.requested_by', value: run.requestedBy },
          { key: 'mlflow.source.name', value: 'lcd-platform training service' },
          { key: 'mlflow.source.type', value: 'JOB' },
        ],
      });
      run.mlflowRunId = created.runId;
      await this.options.client.logBatch(created.runId, { params: [{ key: 'dataset_version_id', value: run.datasetVersionId }, ...flattenParams('config', run.params)] });
      return created;
    });
  }

  private async onProgress(p: TrainingProgressPayload): Promise<void> {
    const em = this.deps.db.fork();
    const run = await this.mlflowRun(em, p);
    if (!run) return;
    const client = this.options.client;
    switch (p.kind) {
      case 'queued':
      case 'cancel-requested':
        break;
      case 'started':
        await client.updateRun(run.runId, 'RUNNING');
        break;
      case 'environment': {
        const env = p.environment ?? {};
        const pick = ['codeVersion', 'configHash', 'torch', 'device', 'threads', 'python', 'parameters', 'datasetVersion'];
        const params = pick.filter((k) => env[k] !== undefined).map((k) => ({ key: `environment.${k}`, value: typeof env[k] === 'string' ? (env[k] as string) : JSON.stringify(env[k]) }));
        const resolved = env.resolvedConfig && typeof env.resolvedConfig === 'object' ? flattenParams('resolved', env.resolvedConfig as Record<string, unknown>) : [];
        const commit = typeof env.codeVersion === 'string' && /^[0-9a-f]{40}$/.test(env.codeVersion) ? [{ key: 'mlflow.source.git.commit', value: env.codeVersion }] : [];
        await client.logBatch(run.runId, { params: [...params, ...resolved], tags: commit });
        break;
      }
      case 'metrics': {
        const fallback = Date.parse(p.at);
        await client.logBatch(run.runId, { metrics: (p.metrics ?? []).map((m) => ({ key: m.name, value: m.value, step: m.step, timestamp: m.at ?? fallback })) });
        break;
      }
      case 'artifacts':
        await this.mirrorArtifacts(run, p);
        break;
      case 'succeeded':
      case 'failed':
      case 'cancelled': {
        const tags: MlflowKeyValue[] = [];
        if (p.error) tags.push({ key: 'lcd.error', value: p.error });
        if (p.errorCode) tags.push({ key: 'lcd.error_code', value: p.errorCode });
        if (tags.length > 0) await client.logBatch(run.runId, { tags });
        await client.updateRun(run.runId, STATUS[p.kind]!, Date.parse(p.at));
        if (p.kind === 'succeeded' && p.modelVersion) await this.mirrorVersion(p.tenant, p.modelName, p.modelVersion.id, run);
        break;
      }
    }
  }

  private async mirrorArtifacts(run: { runId: string; artifactUri: string }, p: TrainingProgressPayload): Promise<void> {
    const tags: MlflowKeyValue[] = [];
    for (const artifact of p.artifacts ?? []) {
      tags.push({ key: `lcd.artifact.${artifact.name}`, value: artifact.key });
      if (artifact.byteSize > this.options.artifactMaxBytes) continue;
      const bytes = await this.deps.store.get(artifact.key).catch(() => null);
      if (bytes) await this.options.client.uploadArtifact(run.artifactUri, artifact.name, bytes);
    }
    if (p.logKey) {
      tags.push({ key: 'lcd.artifact.trainer.log', value: p.logKey });
      const log = await this.deps.store.get(p.logKey).catch(() => null);
      if (log && log.length <= this.options.artifactMaxBytes) await this.options.client.uploadArtifact(run.artifactUri, 'trainer.log', log);
    }
    if (tags.length > 0) await this.options.client.logBatch(run.runId, { tags });
  }

  /** Creates the MLflow model version of a registry version (once), then its alias for the current stage. */
  private async mirrorVersion(tenant: string, modelName: string, versionId: string, run: { runId: string; artifactUri: string } | null): Promise<void> {
    const em = this.deps.db.fork();
    await em.transactional(async (tx) => {
      // Locked: a stage event and a success event of one version may be mirrored at once by two replicas.
      const version = await tx.findOne(ModelVersionEntity, { id: versionId, tenant }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
      if (!version || version.mlflowVersion) return;
      const name = this.registeredModelName(tenant, modelName);
      await this.options.client.ensureRegisteredModel(name, [{ key: 'lcd.tenant', value: tenant }, { key: 'lcd.model_name', value: modelName }]);
      const source = run && run.artifactUri.startsWith('mlflow-artifacts:') ? `${run.artifactUri.replace(/\/+$/, '')}/model.onnx` : `lcd://objects/${version.artifactKey}`;
      version.mlflowVersion = await this.options.client.createModelVersion({
        name,
        source,
        runId: run?.runId,
        tags: [
          { key: 'lcd.version_id', value: version.id },
          { key: 'lcd.version', value: String(version.version) },
          { key: 'lcd.sha256', value: version.sha256 },
          { key: 'lcd.source', value: version.source },
        ],
        description: `${modelName} version ${version.version} (${version.source.toLowerCase()})`,
      });
      if (ALIASED.includes(version.stage)) await this.options.client.setAlias(name, version.stage.toLowerCase(), version.mlflowVersion);
    });
  }

  private async onStage(event: ModelStageEventPayload & { previousStage?: string }): Promise<void> {
    const em = this.deps.db.fork();
    const version = await em.findOne(ModelVersionEntity, { id: event.versionId, tenant: event.tenant }, { populate: ['trainingRun'] });
    if (!version) return;
    const name = this.registeredModelName(event.tenant, event.modelName);
    if (!version.mlflowVersion) {
      // A trained version is created in MLflow by its run's success event (with the stage it has then); an uploaded
      // one has no run, so its first stage change creates it.
      if (version.trainingRun) return;
      await this.mirrorVersion(event.tenant, event.modelName, version.id, null);
      return;
    }
    if (event.previousStage && ALIASED.includes(event.previousStage) && event.previousStage !== event.stage) {
      await this.options.client.deleteAlias(name, event.previousStage.toLowerCase());
    }
    if (ALIASED.includes(event.stage)) await this.options.client.setAlias(name, event.stage.toLowerCase(), version.mlflowVersion);
  }
}

/** Runs the mirror as a durable subscriber to the models subgraph's logged events (background work). */
export async function startMlflowMirror(
  mirror: MlflowMirror,
  ctx: { broker: Broker; log: Logger; queue: string },
): Promise<() => Promise<void>> {
  const subscription: Subscription = await ctx.broker.subscribe<LoggedEvent>(
    ['training.*.progress', 'model.*.stage'],
    async (delivery) => {
      try {
        await mirror.apply(delivery.envelope.payload);
      } catch (error) {
        ctx.log.warn({ err: error, stream: delivery.envelope.payload?.stream, sequence: delivery.envelope.payload?.sequence, delivery: delivery.deliveryCount }, 'MLflow mirror failed; will retry');
        throw error;
      }
    },
    { queue: ctx.queue, prefetch: 1, deliveryLimit: 5 },
  );
  return () => subscription.close();
}
