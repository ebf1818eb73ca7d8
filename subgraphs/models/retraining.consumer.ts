// The models subgraph's side of retraining policies (the policies and their decisions live in the monitoring
// subgraph): `models.retrain` starts a training run for a policy's decision exactly as startTraining does (same
// dataset check, same queue, same evaluation gate afterwards, so a retrained version reaches STAGING at best and never
// PRODUCTION), and `models.lineage` answers which of a tenant's models exist and which were trained on given dataset
// versions. Both over RabbitMQ, so that monitoring never reads this subgraph's tables.
import type { EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { z } from 'zod';
import { createEnvelope, PermanentMessageError, type Broker, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { isApiError } from '../../lib/errors.js';
import { RegisteredModelEntity } from './registered-model.entity.js';
import { TrainingRunStatus } from './models.contracts.js';
import { TrainingRunEntity } from './training-run.entity.js';
import type { TrainingRunService } from './training-run.service.js';

export const RETRAINING_QUEUES = { retrain: 'models.retrain', lineage: 'models.lineage' } as const;
export const RETRAINING_MESSAGE_TYPES = {
  retrain: 'models.retrain.request',
  retrained: 'models.retrain.reply',
  lineage: 'models.lineage.request',
  lineageReply: 'models.lineage.reply',
} as const;
/** Who a retraining run is requested by (TrainingRun.requestedBy): never a person, so never an approver. */
export const RETRAINING_REQUESTER = 'retraining-policy';
export const RETRAINING_TRIGGERS = ['SCHEDULE', 'DRIFT_ALERT', 'NEW_DATASET_VERSION', 'MANUAL'] as const;

const tenant = z.string().min(1).max(200);
const modelName = z.string().min(1).max(100);
const datasetVersionId = z.string().regex(/^[0-9a-f]{64}$/);

export const retrainRequestSchema = z.object({
  tenant,
  modelName,
  /** Train on this version; default: the dataset version of the model's latest succeeded run. */
  datasetVersionId: datasetVersionId.optional(),
  /** Training config; default: the params of the model's latest succeeded run. */
  config: z.record(z.string(), z.unknown()).optional(),
  trigger: z.enum(RETRAINING_TRIGGERS),
  /** The monitoring decision: the run's idempotency key, so a repeated request starts nothing new. */
  decisionId: z.uuid(),
  reason: z.string().max(2000),
});
export type RetrainRequest = z.infer<typeof retrainRequestSchema>;

export const retrainReplySchema = z.discriminatedUnion('outcome', [
  z.object({ outcome: z.literal('STARTED'), trainingRunId: z.string(), datasetVersionId: z.string() }),
  /** Nothing to train: no such model, or no dataset version to train on. */
  z.object({ outcome: z.literal('SKIPPED'), reason: z.string() }),
  /** startTraining refused (dataset version gone, config no longer valid, …); the message says why. */
  z.object({ outcome: z.literal('FAILED'), error: z.string() }),
]);
export type RetrainReply = z.infer<typeof retrainReplySchema>;

export const lineageRequestSchema = z.object({
  tenant,
  /** Only these models (all of the tenant's when absent). */
  modelNames: z.array(modelName).max(1000).optional(),
  /** Only models with a training run on one of these dataset versions. */
  trainedOnDatasetVersionIds: z.array(datasetVersionId).max(1000).optional(),
});
export type LineageRequest = z.infer<typeof lineageRequestSchema>;
export const lineageReplySchema = z.object({ modelNames: z.array(z.string()) });
export type LineageReply = z.infer<typeof lineageReplySchema>;

export const retrainingIdempotencyKey = (decisionId: string): string => `retraining:${decisionId}`;

/** The tenant's own model of that name: a registered model, or at least a training run under that name. */
async function modelExists(em: EntityManager, tenantId: string, name: string): Promise<boolean> {
  if (await em.count(RegisteredModelEntity, { tenant: tenantId, name })) return true;
  return (await em.count(TrainingRunEntity, { tenant: tenantId, modelName: name })) > 0;
}

export async function retrain(trainingRuns: TrainingRunService, em: EntityManager, request: RetrainRequest): Promise<RetrainReply> {
  if (!(await modelExists(em, request.tenant, request.modelName))) {
    return { outcome: 'SKIPPED', reason: `no model named ${request.modelName} for tenant ${request.tenant}` };
  }
  const latest = await em.findOne(
    TrainingRunEntity,
    { tenant: request.tenant, modelName: request.modelName, status: TrainingRunStatus.SUCCEEDED },
    { orderBy: { finishedAt: 'desc', createdAt: 'desc' } },
  );
  const versionId = request.datasetVersionId ?? latest?.datasetVersionId;
  if (!versionId) {
    return { outcome: 'SKIPPED', reason: `no dataset version: model ${request.modelName} has no succeeded training run and the policy names no dataset version` };
  }
  const config = request.config ?? latest?.params ?? {};
  try {
    const run = await trainingRuns.startTraining(
      em,
      { tenant: request.tenant, subject: RETRAINING_REQUESTER },
      { modelName: request.modelName, datasetVersionId: versionId, config, idempotencyKey: retrainingIdempotencyKey(request.decisionId) },
    );
    return { outcome: 'STARTED', trainingRunId: run.id, datasetVersionId: versionId };
  } catch (error) {
    // UNAVAILABLE (the datasets service did not answer) is worth a redelivery; anything else is the answer.
    if (isApiError(error) && error.extensions.code !== 'UNAVAILABLE') return { outcome: 'FAILED', error: error.message };
    throw error;
  }
}

export async function lineage(em: EntityManager, request: LineageRequest): Promise<LineageReply> {
  const names = new Set<string>();
  const byName = request.modelNames ? { $in: request.modelNames } : undefined;
  if (request.trainedOnDatasetVersionIds) {
    if (request.trainedOnDatasetVersionIds.length === 0) return { modelNames: [] };
    const runs = await em.find(
      TrainingRunEntity,
      { tenant: request.tenant, datasetVersionId: { $in: request.trainedOnDatasetVersionIds }, ...(byName ? { modelName: byName } : {}) },
      { fields: ['modelName'] },
    );
    for (const run of runs) names.add(run.modelName);
  } else {
    const models = await em.find(RegisteredModelEntity, { tenant: request.tenant, ...(byName ? { name: byName } : {}) }, { fields: ['name'] });
    for (const model of models) names.add(model.name);
    const runs = await em.find(TrainingRunEntity, { tenant: request.tenant, ...(byName ? { modelName: byName } : {}) }, { fields: ['modelName'] });
    for (const run of runs) names.add(run.modelName);
  }
  return { modelNames: [...names].sort() };
}

export interface RetrainingRpcOptions {
  trainingRuns: TrainingRunService;
  db: Database;
  broker: Broker;
  log: Logger;
  queues?: { retrain?: string; lineage?: string };
}

/** Serves `models.retrain` and `models.lineage` until the returned function is called (a subgraph `background`). */
export async function serveRetraining(options: RetrainingRpcOptions): Promise<() => Promise<void>> {
  const { broker, db, log } = options;
  const subscriptions: Subscription[] = [];
  const checkTenant = (envelopeTenant: string, requestTenant: string) => {
    if (envelopeTenant !== requestTenant) throw new PermanentMessageError('the request names another tenant than its envelope');
  };
  try {
    subscriptions.push(
      await broker.serveRpc<RetrainRequest, RetrainReply>(
        options.queues?.retrain ?? RETRAINING_QUEUES.retrain,
        async ({ envelope }) => {
          const request = envelope.payload;
          checkTenant(envelope.tenant, request.tenant);
          const reply = await retrain(options.trainingRuns, db.fork(), request);
          log.info({ tenant: request.tenant, modelName: request.modelName, trigger: request.trigger, decisionId: request.decisionId, ...reply }, 'retraining requested');
          return createEnvelope(RETRAINING_MESSAGE_TYPES.retrained, reply, { tenant: request.tenant });
        },
        { payloadSchema: retrainRequestSchema as unknown as z.ZodType<RetrainRequest>, prefetch: 4 },
      ),
    );
    subscriptions.push(
      await broker.serveRpc<LineageRequest, LineageReply>(
        options.queues?.lineage ?? RETRAINING_QUEUES.lineage,
        async ({ envelope }) => {
          checkTenant(envelope.tenant, envelope.payload.tenant);
          return createEnvelope(RETRAINING_MESSAGE_TYPES.lineageReply, await lineage(db.fork(), envelope.payload), { tenant: envelope.tenant });
        },
        { payloadSchema: lineageRequestSchema as unknown as z.ZodType<LineageRequest>, prefetch: 8 },
      ),
    );
  } catch (error) {
    for (const s of subscriptions) await s.close();
    throw error;
  }
  return async () => {
    for (const s of subscriptions) await s.close();
  };
}

/** Asks the models subgraph to start a run for a decision; rejects on broker errors (timeout included). */
export async function requestRetraining(broker: Broker, request: RetrainRequest, options: { timeoutMs: number; queue?: string }): Promise<RetrainReply> {
  const envelope = createEnvelope(RETRAINING_MESSAGE_TYPES.retrain, request, { tenant: request.tenant, idempotencyKey: retrainingIdempotencyKey(request.decisionId) });
  const reply = await broker.rpc(options.queue ?? RETRAINING_QUEUES.retrain, envelope, { timeoutMs: options.timeoutMs, replySchema: retrainReplySchema });
  return reply.payload;
}

export async function requestLineage(broker: Broker, request: LineageRequest, options: { timeoutMs: number; queue?: string }): Promise<string[]> {
  const envelope = createEnvelope(RETRAINING_MESSAGE_TYPES.lineage, request, { tenant: request.tenant });
  const reply = await broker.rpc(options.queue ?? RETRAINING_QUEUES.lineage, envelope, { timeoutMs: options.timeoutMs, replySchema: lineageReplySchema });
  return reply.payload.modelNames;
}
