// Owns the life of a training run on the platform's side: queueing it (the dataset version is resolved through the
// datasets subgraph, the request goes to the training queue), cancelling it, and applying what the training service
// reports (status, metrics, artifacts, the trained version, the evaluation gate). Every change appends its progress
// event in the same transaction.
import type { EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { BrokerTimeoutError, createEnvelope, type Broker } from '../../lib/broker/broker.js';
import { badInput, conflict, isApiError, notFound, unavailable } from '../../lib/errors.js';
import { appendEvents, type AppendEvent } from '../../lib/events/event-log.js';
import { isSha256 } from '../../lib/ids.js';
import { requestVersionResolution } from '../datasets/version-resolution.rpc.js';
import { evaluateGate, type GateConfig } from './evaluation-gate.js';
import { cancelEvent, progressEvent, type EventPublisher, type ProgressKind, type TrainingProgressPayload } from './model-events.js';
import { checkEvaluationMetrics, checkMetric, checkModelContract, checkModelName, checkParams, type MetricInput } from './model-registry.inputs.js';
import type { ModelRegistryRepository } from './model-registry.repository.js';
import type { ModelRegistryService } from './model-registry.service.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { ModelStage, ModelVersionSource, TrainingRunStatus } from './models.contracts.js';
import type { TrainingRunEntity } from './training-run.entity.js';
import {
  SERVICE_CONFIG_KEYS,
  TRAINING_MESSAGE_TYPES,
  type TrainingEvent,
  type TrainingRequest,
} from './training.contracts.js';

export interface TrainingRunServiceOptions {
  broker: Broker;
  requestsQueue: string;
  datasetVersionQueue: string;
  rpcTimeoutMs: number;
  defaultTimeLimitSeconds: number;
  maxTimeLimitSeconds: number;
  /** Shown as a queued run's code version until the trainer reports its own. */
  codeVersion?: string;
  gate: GateConfig;
  events?: EventPublisher;
  log?: Logger;
}

export interface Actor {
  tenant: string;
  subject: string;
}

export interface StartTrainingInput {
  datasetVersionId: string;
  modelName: string;
  config: unknown;
  idempotencyKey?: string | null;
}

const TERMINAL: readonly TrainingRunStatus[] = [TrainingRunStatus.SUCCEEDED, TrainingRunStatus.FAILED, TrainingRunStatus.CANCELLED];
export const isTerminal = (status: TrainingRunStatus): boolean => TERMINAL.includes(status);

export class TrainingRunService {
  constructor(
    private readonly repository: ModelRegistryRepository,
    private readonly registry: ModelRegistryService,
    private readonly options: TrainingRunServiceOptions,
  ) {}

  /** Queues a run. With an idempotency key, repeating the request returns the run the first one made. */
  async startTraining(em: EntityManager, actor: Actor, input: StartTrainingInput): Promise<TrainingRunEntity> {
    const modelName = checkModelName(input.modelName);
    if (typeof input.config !== 'object' || input.config === null || Array.isArray(input.config)) throw badInput('config must be a JSON object', 'config');
    const config = checkParams(input.config);
    const timeLimitSeconds = this.timeLimit(config.timeLimitSeconds);
    const trainerConfig = Object.fromEntries(Object.entries(config).filter(([k]) => !(SERVICE_CONFIG_KEYS as readonly string[]).includes(k)));
    if (!isSha256(input.datasetVersionId)) throw notFound('DatasetVersion', input.datasetVersionId);

    if (input.idempotencyKey) {
      const existing = await this.repository.findRunByIdempotencyKey(em, actor.tenant, input.idempotencyKey);
      if (existing) {
        // Validated by createTrainingRun below: the same key for another model or dataset is a conflict.
        const same = await this.registry.createTrainingRun(em, this.runInput(actor, modelName, config, input));
        await this.dispatchIfNeeded(em, same);
        return same;
      }
    }

    let version;
    try {
      version = await requestVersionResolution(this.options.broker, { tenant: actor.tenant, versionId: input.datasetVersionId }, { timeoutMs: this.options.rpcTimeoutMs, queue: this.options.datasetVersionQueue });
    } catch (error) {
      if (error instanceof BrokerTimeoutError) throw unavailable('The datasets service');
      throw error;
    }
    if (!version.found) throw notFound('DatasetVersion', input.datasetVersionId);
    if (version.itemCount === 0) throw badInput(`Dataset version ${input.datasetVersionId} has no items to train on`, 'datasetVersionId');

    const run = await this.registry.createTrainingRun(em, this.runInput(actor, modelName, config, input));
    if (run.request) {
      // A concurrent request with the same key made it first.
      await this.dispatchIfNeeded(em, run);
      return run;
    }
    const request: TrainingRequest = {
      runId: run.id,
      tenant: actor.tenant,
      modelName,
      datasetVersionId: input.datasetVersionId,
      manifestKey: version.manifestKey,
      config: trainerConfig,
      timeLimitSeconds,
      requestedBy: actor.subject,
    };
    await em.transactional(async (tx) => {
      const locked = await this.repository.lockRun(tx, actor.tenant, run.id);
      if (!locked) throw notFound('TrainingRun', run.id);
      locked.request = request as unknown as Record<string, unknown>;
      await appendEvents(tx, [this.progress(locked, 'queued', { params: config, datasetVersionId: input.datasetVersionId })]);
    });
    this.options.events?.kick();
    const queued = await this.repository.findRun(em, actor.tenant, run.id);
    if (!queued) throw notFound('TrainingRun', run.id);
    await this.dispatchIfNeeded(em, queued);
    return queued;
  }

  private runInput(actor: Actor, modelName: string, config: Record<string, unknown>, input: StartTrainingInput) {
    return {
      tenant: actor.tenant,
      modelName,
      params: config,
      datasetVersionId: input.datasetVersionId,
      codeVersion: this.options.codeVersion ?? 'pending (reported by the trainer when it starts)',
      requestedBy: actor.subject,
      idempotencyKey: input.idempotencyKey ?? null,
    };
  }

  private timeLimit(value: unknown): number {
    if (value === undefined || value === null) return Math.min(this.options.defaultTimeLimitSeconds, this.options.maxTimeLimitSeconds);
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > this.options.maxTimeLimitSeconds) {
      throw badInput(`config.timeLimitSeconds must be an integer from 1 to ${this.options.maxTimeLimitSeconds}`, 'config.timeLimitSeconds');
    }
    return value;
  }

  /** Sends the run's request unless it was sent already; a send that fails leaves it for the next sweep. */
  async dispatchIfNeeded(em: EntityManager, run: TrainingRunEntity): Promise<boolean> {
    if (run.dispatchedAt || !run.request || run.status !== TrainingRunStatus.QUEUED) return false;
    const now = new Date();
    if (!(await this.repository.claimDispatch(em, run.id, now))) return false;
    try {
      const envelope = createEnvelope(TRAINING_MESSAGE_TYPES.request, run.request as unknown as TrainingRequest, { tenant: run.tenant, idempotencyKey: `training-run:${run.id}` });
      await this.options.broker.send(this.options.requestsQueue, envelope);
      run.dispatchedAt = now;
      return true;
    } catch (error) {
      await this.repository.releaseDispatch(em, run.id);
      this.options.log?.warn({ err: error, runId: run.id }, 'training request not sent; the dispatcher will retry');
      return false;
    }
  }

  /** Sends the requests of queued runs that never reached the queue (background sweep). */
  async dispatchPending(em: EntityManager, olderThanMs = 5000): Promise<number> {
    const runs = await this.repository.findUndispatchedRuns(em, new Date(Date.now() - olderThanMs));
    let sent = 0;
    for (const run of runs) if (await this.dispatchIfNeeded(em, run)) sent += 1;
    return sent;
  }

  /**
   * Cancels a run: a queued run is CANCELLED at once; a running one stays RUNNING until the training service has
   * stopped the trainer and reports CANCELLED. Cancelling a cancelled run changes nothing.
   */
  async cancelTraining(em: EntityManager, actor: Actor, id: string): Promise<TrainingRunEntity> {
    await this.registry.getTrainingRun(em, actor.tenant, id);
    const run = await em.transactional(async (tx) => {
      const locked = await this.repository.lockRun(tx, actor.tenant, id);
      if (!locked) throw notFound('TrainingRun', id);
      switch (locked.status) {
        case TrainingRunStatus.CANCELLED:
          return locked;
        case TrainingRunStatus.SUCCEEDED:
        case TrainingRunStatus.FAILED:
          throw conflict(`Training run ${id} has already ${locked.status === TrainingRunStatus.SUCCEEDED ? 'succeeded' : 'failed'}`, { status: locked.status });
        case TrainingRunStatus.QUEUED:
          locked.status = TrainingRunStatus.CANCELLED;
          locked.cancelRequestedAt = new Date();
          locked.finishedAt = new Date();
          locked.error = `cancelled by ${actor.subject} before it started`;
          locked.errorCode = 'cancelled';
          await appendEvents(tx, [cancelEvent(actor.tenant, id), this.progress(locked, 'cancelled', { error: locked.error, errorCode: 'cancelled' })]);
          return locked;
        case TrainingRunStatus.RUNNING:
          if (!locked.cancelRequestedAt) {
            locked.cancelRequestedAt = new Date();
            await appendEvents(tx, [cancelEvent(actor.tenant, id), this.progress(locked, 'cancel-requested')]);
          }
          return locked;
      }
    });
    this.options.events?.kick();
    return run;
  }

  /**
   * Applies one report of the training service. Idempotent and order-tolerant: a run's status only moves forward
   * (QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED), metrics are keyed by (name, step), a run registers at most
   * one version. Returns false when the report was ignored (unknown run, or a run already finished).
   */
  async applyEvent(em: EntityManager, tenant: string, event: TrainingEvent): Promise<boolean> {
    const applied = await em.transactional(async (tx) => {
      const run = await this.repository.lockRun(tx, tenant, event.runId);
      if (!run) return false;
      const events: AppendEvent[] = [];
      const done = isTerminal(run.status);
      switch (event.kind) {
        case 'started':
          if (run.status === TrainingRunStatus.CANCELLED) {
            // The service picked up a run cancelled while queued (the cancellation did not reach it): say it again.
            events.push(cancelEvent(tenant, run.id));
            break;
          }
          if (done) return false;
          run.attempt = Math.max(run.attempt, event.attempt);
          if (run.status === TrainingRunStatus.QUEUED) {
            run.status = TrainingRunStatus.RUNNING;
            run.startedAt = new Date();
          }
          if (run.cancelRequestedAt) events.push(cancelEvent(tenant, run.id));
          events.push(this.progress(run, 'started'));
          break;
        case 'environment':
          run.environment = event.environment as unknown as Record<string, unknown>;
          run.codeVersion = event.environment.codeVersion;
          events.push(this.progress(run, 'environment', { environment: run.environment }));
          break;
        case 'metrics': {
          const metrics: MetricInput[] = [];
          for (const [i, m] of event.metrics.entries()) {
            const metric: MetricInput = { name: m.name, step: m.step, epoch: m.epoch ?? null, value: m.value, recordedAt: m.at ? new Date(m.at) : undefined };
            try {
              metrics.push(checkMetric(metric, `metrics[${i}]`));
            } catch {
              this.options.log?.warn({ runId: run.id, metric: m.name }, 'metric value refused: not recorded');
            }
          }
          if (metrics.length > 0) await this.registry.recordMetrics(tx, tenant, run.id, metrics);
          events.push(this.progress(run, 'metrics', { metrics: event.metrics }));
          break;
        }
        case 'artifacts': {
          const byName = new Map(run.artifacts.map((a) => [a.name, a]));
          for (const a of event.artifacts) byName.set(a.name, a);
          run.artifacts = [...byName.values()];
          if (event.logKey) run.logKey = event.logKey;
          events.push(this.progress(run, 'artifacts', { artifacts: event.artifacts, logKey: event.logKey }));
          break;
        }
        case 'failed':
        case 'cancelled':
          if (done) return false;
          run.status = event.kind === 'failed' ? TrainingRunStatus.FAILED : TrainingRunStatus.CANCELLED;
          run.error = event.message || (event.kind === 'cancelled' ? 'cancelled' : 'failed');
          run.errorCode = event.kind === 'failed' ? event.code : 'cancelled';
          run.finishedAt = new Date();
          events.push(this.progress(run, event.kind, { error: run.error, errorCode: run.errorCode }));
          break;
        case 'succeeded':
          if (done) return false;
          events.push(await this.succeed(tx, run, event));
          break;
      }
      await tx.flush();
      if (events.length > 0) await appendEvents(tx, events);
      return true;
    });
    this.options.events?.kick();
    return applied;
  }

  /** Registers the trained version, runs the gate, and marks the run SUCCEEDED (or FAILED if the registry refuses). */
  private async succeed(tx: EntityManager, run: TrainingRunEntity, event: Extract<TrainingEvent, { kind: 'succeeded' }>): Promise<AppendEvent> {
    const r = event.registration;
    const fail = (message: string) => {
      run.status = TrainingRunStatus.FAILED;
      run.error = message;
      run.errorCode = 'registration_refused';
      run.finishedAt = new Date();
      return this.progress(run, 'failed', { error: run.error, errorCode: run.errorCode });
    };
    let contract;
    let metrics;
    try {
      contract = checkModelContract(r.contract);
      metrics = checkEvaluationMetrics(r.metrics);
    } catch (error) {
      if (isApiError(error)) return fail(`the trained model was not registered: ${error.message}`);
      throw error;
    }
    const registered = await this.registry.registerVersion(tx, {
      tenant: run.tenant,
      modelName: run.modelName,
      artifactKey: r.artifactKey,
      sha256: r.sha256,
      byteSize: r.byteSize,
      metrics,
      contract,
      trainingRunId: run.id,
      source: ModelVersionSource.TRAINED,
      createdBy: run.requestedBy,
    });
    // registerVersion ran in a nested transaction with entities of its own: read both rows again here.
    const version = await tx.findOneOrFail(ModelVersionEntity, { id: registered.id }, { refresh: true });
    await this.repository.lockRun(tx, run.tenant, run.id);
    const production = await this.repository.productionVersion(tx, run.tenant, version.registeredModel.id);
    const decision = evaluateGate(
      metrics,
      production && production.id !== version.id ? { versionId: production.id, version: production.version, metrics: production.metrics } : null,
      this.options.gate,
      new Date(),
      r.evaluationSplit,
    );
    version.gate = decision;
    version.referenceStatsKey = r.referenceStatsKey;
    await tx.flush();
    if (decision.passed) {
      await this.registry.setStage(tx, run.tenant, version.id, ModelStage.STAGING, { changedBy: 'evaluation-gate', reason: decision.reasons.join('; ') });
      await tx.refresh(version);
    }
    if (event.timings) {
      const t = event.timings;
      await this.registry.recordMetrics(tx, run.tenant, run.id, [
        { name: 'service/dataset_seconds', step: 0, value: t.datasetSeconds },
        { name: 'service/trainer_seconds', step: 0, value: t.trainerSeconds },
        { name: 'service/check_seconds', step: 0, value: t.checkSeconds },
        { name: 'service/upload_seconds', step: 0, value: t.uploadSeconds },
      ]);
    }
    run.status = TrainingRunStatus.SUCCEEDED;
    run.weightsSha256 = r.weightsSha256;
    run.finishedAt = new Date();
    run.error = null;
    return this.progress(run, 'succeeded', {
      modelVersion: { id: version.id, version: version.version, stage: version.stage, sha256: version.sha256, artifactKey: version.artifactKey, metrics, gatePassed: decision.passed },
    });
  }

  private progress(run: TrainingRunEntity, kind: ProgressKind, extra: Partial<TrainingProgressPayload> = {}): AppendEvent {
    return progressEvent({ runId: run.id, tenant: run.tenant, modelName: run.modelName, kind, status: run.status, ...extra });
  }
}
