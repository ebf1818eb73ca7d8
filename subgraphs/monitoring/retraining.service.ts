// Owns retraining policies and their decisions: validating and upserting a policy, deciding on each trigger (schedule
// fire time, drift alert, new dataset version, manual) under the policy's row lock (disabled, cooldown, maximum per
// day), recording the decision once per trigger occurrence, and asking the models subgraph to start the run.
import { randomUUID } from 'node:crypto';
import { LockMode, UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { BrokerTimeoutError, type Broker } from '../../lib/broker/broker.js';
import { CronParseError, latestFireTime, nextFireTime, parseCron } from '../../lib/cron.js';
import { badInput, notFound, unavailable } from '../../lib/errors.js';
import { requestLineage, requestRetraining, type RetrainReply } from '../models/retraining.consumer.js';
import { RetrainingDecisionEntity } from './retraining-decision.entity.js';
import { RetrainingPolicyEntity } from './retraining-policy.entity.js';
import { RetrainingOutcome, RetrainingTrigger } from './retraining.contracts.js';

export interface RetrainingServiceOptions {
  /** Reaches the models subgraph (`models.retrain`, `models.lineage`); null (schema printing): UNAVAILABLE. */
  broker: Broker | null;
  rpcTimeoutMs: number;
  queues?: { retrain?: string; lineage?: string };
  log?: Logger;
  /** The clock decisions are taken by (tests move it). */
  now?: () => Date;
}

export interface Actor {
  tenant: string;
  subject: string;
}

export interface SetRetrainingPolicyInput {
  modelName: string;
  schedule?: string | null;
  onDrift: boolean;
  onNewDatasetVersion: boolean;
  cooldownMinutes: number;
  maxRunsPerDay?: number | null;
  datasetVersionId?: string | null;
  config?: Record<string, unknown> | null;
  enabled?: boolean | null;
}

export interface TriggerInput {
  tenant: string;
  modelName: string;
  trigger: RetrainingTrigger;
  /** Identifies the occurrence: the same key never makes a second decision for the policy. */
  triggerKey: string;
  reason: string;
  requestedBy: string;
  /** The dataset version to train on (a new version's trigger); else the policy's, else the model's latest. */
  datasetVersionId?: string | null;
}

export interface DriftAlertTrigger {
  alertId: string;
  tenant: string;
  modelName: string;
  modelVersionId?: string | null;
  kind: string;
  metric: string;
  value: number;
  threshold: number;
}

export interface DatasetVersionTrigger {
  tenant: string;
  datasetId: string;
  datasetName: string;
  versionId: string;
  number: number;
  previousVersionIds: string[];
}

const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;
const SHA256 = /^[0-9a-f]{64}$/;
const MAX_COOLDOWN_MINUTES = 366 * 24 * 60;
const MAX_REASON = 2000;
const DAY_MS = 24 * 3600_000;
/** A decision still PENDING after this long (the models service never answered) is settled as FAILED. */
const PENDING_GIVE_UP_MS = 3600_000;
/** Outcomes that hold the cooldown and count towards the daily maximum. */
const COUNTED = [RetrainingOutcome.STARTED, RetrainingOutcome.PENDING];

export function checkModelName(name: string): string {
  if (typeof name !== 'string' || !MODEL_NAME.test(name)) {
    throw badInput('modelName must be 1–100 letters, digits, dashes or underscores, starting with a letter or digit', 'modelName');
  }
  return name;
}

export function checkSchedule(schedule: string | null | undefined): string | null {
  if (schedule === null || schedule === undefined || schedule.trim() === '') return null;
  try {
    return parseCron(schedule).expression;
  } catch (error) {
    if (error instanceof CronParseError) throw badInput(`schedule: ${error.message}`, 'schedule', { cronField: error.field, expression: error.expression });
    throw error;
  }
}

export class RetrainingService {
  private readonly now: () => Date;

  constructor(private readonly options: RetrainingServiceOptions) {
    this.now = options.now ?? (() => new Date());
  }

  private get broker(): Broker {
    if (!this.options.broker) throw unavailable('The models service');
    return this.options.broker;
  }

  /** Creates or replaces the tenant's policy of a model; the model must be the tenant's own. */
  async setPolicy(em: EntityManager, actor: Actor, input: SetRetrainingPolicyInput): Promise<RetrainingPolicyEntity> {
    const modelName = checkModelName(input.modelName);
    const schedule = checkSchedule(input.schedule);
    if (!Number.isInteger(input.cooldownMinutes) || input.cooldownMinutes < 0 || input.cooldownMinutes > MAX_COOLDOWN_MINUTES) {
      throw badInput(`cooldownMinutes must be a whole number of minutes from 0 to ${MAX_COOLDOWN_MINUTES}`, 'cooldownMinutes');
    }
    const maxRunsPerDay = input.maxRunsPerDay ?? null;
    if (maxRunsPerDay !== null && (!Number.isInteger(maxRunsPerDay) || maxRunsPerDay < 1 || maxRunsPerDay > 1440)) {
      throw badInput('maxRunsPerDay must be a whole number from 1 to 1440, or null for no limit', 'maxRunsPerDay');
    }
    const datasetVersionId = input.datasetVersionId ?? null;
    if (datasetVersionId !== null && !SHA256.test(datasetVersionId)) {
      throw badInput('datasetVersionId must be the id of a dataset version (64 hex digits)', 'datasetVersionId');
    }
    const config = input.config ?? null;
    if (config !== null && (typeof config !== 'object' || Array.isArray(config))) throw badInput('config must be a JSON object', 'config');
    if (config !== null && JSON.stringify(config).length > 64 * 1024) throw badInput('config may be at most 64 KiB of JSON', 'config');
    await this.checkModelExists(actor.tenant, modelName);

    const write = () =>
      em.transactional(async (tx) => {
        const now = this.now();
        const existing = await tx.findOne(RetrainingPolicyEntity, { tenant: actor.tenant, modelName }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
        const policy =
          existing ??
          tx.create(RetrainingPolicyEntity, {
            tenant: actor.tenant,
            modelName,
            schedule,
            onDrift: input.onDrift,
            onNewDatasetVersion: input.onNewDatasetVersion,
            cooldownMinutes: input.cooldownMinutes,
            createdBy: actor.subject,
            updatedBy: actor.subject,
            scheduleSince: now,
            createdAt: now,
            updatedAt: now,
          });
        // A changed schedule counts its fire times from now: no burst of "missed" runs from the old one.
        if (existing && existing.schedule !== schedule) {
          policy.scheduleSince = now;
          policy.lastScheduledAt = null;
        }
        policy.schedule = schedule;
        policy.onDrift = input.onDrift;
        policy.onNewDatasetVersion = input.onNewDatasetVersion;
        policy.cooldownMinutes = input.cooldownMinutes;
        policy.maxRunsPerDay = maxRunsPerDay;
        policy.datasetVersionId = datasetVersionId;
        policy.config = config;
        policy.enabled = input.enabled ?? true;
        policy.updatedBy = actor.subject;
        await tx.flush();
        return policy;
      });
    try {
      return await write();
    } catch (error) {
      // Two first writes at once: the loser's insert hits the unique index; the second try updates the winner's row.
      if (error instanceof UniqueConstraintViolationException) return write();
      throw error;
    }
  }

  findPolicy(em: EntityManager, tenant: string, modelName: string): Promise<RetrainingPolicyEntity | null> {
    return em.findOne(RetrainingPolicyEntity, { tenant, modelName });
  }

  /** The next fire time of the policy's schedule after now, when it has an enabled schedule. */
  nextScheduledAt(policy: RetrainingPolicyEntity): Date | null {
    if (!policy.schedule || !policy.enabled) return null;
    try {
      const from = [policy.lastScheduledAt, policy.scheduleSince, this.now()].filter((d): d is Date => d !== null).reduce((a, b) => (a > b ? a : b));
      return nextFireTime(parseCron(policy.schedule), new Date(from.getTime() - 1));
    } catch {
      return null;
    }
  }

  /** A model's decisions, newest first. */
  decisions(em: EntityManager, tenant: string, modelName: string, limit = 50): Promise<RetrainingDecisionEntity[]> {
    checkModelName(modelName);
    return em.find(RetrainingDecisionEntity, { tenant, modelName }, { orderBy: { at: 'desc', id: 'desc' }, limit });
  }

  /** triggerRetraining: a MANUAL decision under the same rules as every other trigger. */
  async triggerManually(em: EntityManager, actor: Actor, modelName: string, reason: string): Promise<RetrainingDecisionEntity> {
    checkModelName(modelName);
    const text = typeof reason === 'string' ? reason.trim() : '';
    if (text.length === 0 || text.length > MAX_REASON) throw badInput(`reason must be 1–${MAX_REASON} characters`, 'reason');
    return this.trigger(em, {
      tenant: actor.tenant,
      modelName,
      trigger: RetrainingTrigger.MANUAL,
      triggerKey: `manual:${randomUUID()}`,
      reason: text,
      requestedBy: actor.subject,
    });
  }

  /**
   * Decides on one trigger occurrence and records the decision; when the rules allow a run, asks the models subgraph
   * to start it and records what it answered. The same (policy, trigger key) returns the decision already made.
   */
  async trigger(em: EntityManager, input: TriggerInput): Promise<RetrainingDecisionEntity> {
    const decide = () =>
      em.transactional(async (tx) => {
        const policy = await tx.findOne(RetrainingPolicyEntity, { tenant: input.tenant, modelName: input.modelName }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
        if (!policy) throw notFound('RetrainingPolicy', input.modelName);
        const existing = await tx.findOne(RetrainingDecisionEntity, { policy: policy.id, triggerKey: input.triggerKey });
        if (existing) return { decision: existing, policy, ask: false };
        const now = this.now();
        const skipReason = await this.skipReason(tx, policy, now);
        const decision = tx.create(RetrainingDecisionEntity, {
          tenant: input.tenant,
          policy,
          modelName: input.modelName,
          trigger: input.trigger,
          triggerKey: input.triggerKey,
          reason: input.reason.slice(0, MAX_REASON),
          outcome: skipReason ? RetrainingOutcome.SKIPPED : RetrainingOutcome.PENDING,
          skipReason,
          datasetVersionId: input.datasetVersionId ?? policy.datasetVersionId,
          requestedBy: input.requestedBy,
          at: now,
          decidedAt: skipReason ? now : null,
        });
        await tx.flush();
        return { decision, policy, ask: skipReason === null };
      });
    let decided;
    try {
      decided = await decide();
    } catch (error) {
      // Another replica recorded the same occurrence between our look and our insert: its decision stands.
      if (!(error instanceof UniqueConstraintViolationException)) throw error;
      decided = await decide();
    }
    if (!decided.ask) return decided.decision;
    return this.ask(em, decided.decision, decided.policy.config);
  }

  /** Why the policy starts nothing now, or null when it may. Runs under the policy's row lock. */
  private async skipReason(tx: EntityManager, policy: RetrainingPolicyEntity, now: Date): Promise<string | null> {
    if (!policy.enabled) return 'policy disabled';
    const last = await tx.findOne(RetrainingDecisionEntity, { policy: policy.id, outcome: { $in: COUNTED } }, { orderBy: { at: 'desc', id: 'desc' } });
    if (last && policy.cooldownMinutes > 0) {
      const until = new Date(last.at.getTime() + policy.cooldownMinutes * 60_000);
      if (until > now) return `cooldown until ${until.toISOString()} (a run was started at ${last.at.toISOString()}; cooldown ${policy.cooldownMinutes} min)`;
    }
    if (policy.maxRunsPerDay !== null) {
      const window = await tx.find(
        RetrainingDecisionEntity,
        { policy: policy.id, outcome: { $in: COUNTED }, at: { $gt: new Date(now.getTime() - DAY_MS) } },
        { orderBy: { at: 'asc' }, fields: ['at'] },
      );
      if (window.length >= policy.maxRunsPerDay) {
        const next = new Date(window[0]!.at.getTime() + DAY_MS);
        return `max runs per day reached (${window.length} of ${policy.maxRunsPerDay} in the last 24 hours; the next may start after ${next.toISOString()})`;
      }
    }
    return null;
  }

  /** Asks the models subgraph to start the decision's run and records its answer. */
  private async ask(em: EntityManager, decision: RetrainingDecisionEntity, config: Record<string, unknown> | null): Promise<RetrainingDecisionEntity> {
    let reply: RetrainReply;
    try {
      reply = await requestRetraining(
        this.broker,
        {
          tenant: decision.tenant,
          modelName: decision.modelName,
          datasetVersionId: decision.datasetVersionId ?? undefined,
          config: config ?? undefined,
          trigger: decision.trigger,
          decisionId: decision.id,
          reason: decision.reason,
        },
        { timeoutMs: this.options.rpcTimeoutMs, queue: this.options.queues?.retrain },
      );
    } catch (error) {
      if (error instanceof BrokerTimeoutError) {
        // The run may still start (its idempotency key is this decision): stays PENDING; the scheduler's pass asks again.
        this.options.log?.warn({ decisionId: decision.id }, 'the models service did not answer a retraining request in time; it will be asked again');
        return decision;
      }
      reply = { outcome: 'FAILED', error: `could not ask the models service: ${(error as Error).message}` };
    }
    return this.settle(em, decision.id, reply);
  }

  private async settle(em: EntityManager, decisionId: string, reply: RetrainReply): Promise<RetrainingDecisionEntity> {
    const fields =
      reply.outcome === 'STARTED'
        ? { outcome: RetrainingOutcome.STARTED, trainingRunId: reply.trainingRunId, datasetVersionId: reply.datasetVersionId }
        : reply.outcome === 'SKIPPED'
          ? { outcome: RetrainingOutcome.SKIPPED, skipReason: reply.reason }
          : { outcome: RetrainingOutcome.FAILED, error: reply.error };
    await em.nativeUpdate(RetrainingDecisionEntity, { id: decisionId, outcome: RetrainingOutcome.PENDING }, { ...fields, decidedAt: this.now() });
    return em.findOneOrFail(RetrainingDecisionEntity, { id: decisionId }, { refresh: true });
  }

  /** A drift alert of a model whose policy retrains on drift. */
  async onDriftAlert(em: EntityManager, alert: DriftAlertTrigger): Promise<RetrainingDecisionEntity | null> {
    const policy = await em.findOne(RetrainingPolicyEntity, { tenant: alert.tenant, modelName: alert.modelName });
    if (!policy?.onDrift) return null;
    const version = alert.modelVersionId ? ` of model version ${alert.modelVersionId}` : '';
    return this.trigger(em, {
      tenant: alert.tenant,
      modelName: alert.modelName,
      trigger: RetrainingTrigger.DRIFT_ALERT,
      triggerKey: `drift:${alert.alertId}`,
      reason: `${alert.kind} alert ${alert.alertId}: ${alert.metric} = ${alert.value} over the threshold ${alert.threshold}${version}`,
      requestedBy: 'drift-alert',
    });
  }

  /** A new version of a dataset: the policies of models trained on an earlier version of it train on the new one. */
  async onNewDatasetVersion(em: EntityManager, event: DatasetVersionTrigger): Promise<RetrainingDecisionEntity[]> {
    const policies = await em.find(RetrainingPolicyEntity, { tenant: event.tenant, onNewDatasetVersion: true });
    if (policies.length === 0 || event.previousVersionIds.length === 0) return [];
    const trained = new Set(
      await requestLineage(
        this.broker,
        { tenant: event.tenant, modelNames: policies.map((p) => p.modelName), trainedOnDatasetVersionIds: event.previousVersionIds },
        { timeoutMs: this.options.rpcTimeoutMs, queue: this.options.queues?.lineage },
      ),
    );
    const decisions: RetrainingDecisionEntity[] = [];
    for (const policy of policies.filter((p) => trained.has(p.modelName))) {
      decisions.push(
        await this.trigger(em.fork(), {
          tenant: event.tenant,
          modelName: policy.modelName,
          trigger: RetrainingTrigger.NEW_DATASET_VERSION,
          triggerKey: `dataset-version:${event.versionId}`,
          reason: `dataset ${event.datasetName} has a new version ${event.number} (${event.versionId}); the model was trained on an earlier one`,
          requestedBy: 'dataset-version',
          datasetVersionId: event.versionId,
        }),
      );
    }
    return decisions;
  }

  /**
   * One pass of the scheduler: every enabled policy with a schedule whose fire time has come gets one SCHEDULE
   * decision for its latest due fire time (fire times missed while nothing ran are not made up). Decisions still
   * PENDING because the models service did not answer are asked again. Safe to run on several replicas at once.
   */
  async schedulePass(fork: () => EntityManager): Promise<RetrainingDecisionEntity[]> {
    const now = this.now();
    const em = fork();
    const policies = await em.find(RetrainingPolicyEntity, { enabled: true, schedule: { $ne: null } }, { orderBy: { id: 'asc' } });
    const decisions: RetrainingDecisionEntity[] = [];
    for (const policy of policies) {
      try {
        const from = policy.lastScheduledAt && policy.lastScheduledAt > policy.scheduleSince ? policy.lastScheduledAt : policy.scheduleSince;
        const fire = latestFireTime(parseCron(policy.schedule!), from, now);
        if (!fire) continue;
        decisions.push(
          await this.trigger(fork(), {
            tenant: policy.tenant,
            modelName: policy.modelName,
            trigger: RetrainingTrigger.SCHEDULE,
            triggerKey: `schedule:${fire.toISOString()}`,
            reason: `schedule "${policy.schedule}" fired at ${fire.toISOString()}`,
            requestedBy: 'retraining-scheduler',
          }),
        );
        await fork().nativeUpdate(RetrainingPolicyEntity, { id: policy.id, $or: [{ lastScheduledAt: null }, { lastScheduledAt: { $lt: fire } }] }, { lastScheduledAt: fire });
      } catch (error) {
        this.options.log?.error({ err: error, tenant: policy.tenant, modelName: policy.modelName }, 'scheduled retraining failed; the next pass tries again');
      }
    }
    await this.retryPending(fork, now);
    return decisions;
  }

  private async retryPending(fork: () => EntityManager, now: Date): Promise<void> {
    const em = fork();
    const stale = await em.find(
      RetrainingDecisionEntity,
      { outcome: RetrainingOutcome.PENDING, at: { $lt: new Date(now.getTime() - 2 * this.options.rpcTimeoutMs) } },
      { populate: ['policy'], limit: 50 },
    );
    for (const decision of stale) {
      if (now.getTime() - decision.at.getTime() > PENDING_GIVE_UP_MS) {
        await this.settle(em, decision.id, { outcome: 'FAILED', error: 'the models service did not answer the retraining request' });
      } else {
        await this.ask(em, decision, decision.policy.config).catch((error: unknown) => this.options.log?.warn({ err: error, decisionId: decision.id }, 'asking again failed'));
      }
    }
  }

  private async checkModelExists(tenant: string, modelName: string): Promise<void> {
    let names: string[];
    try {
      names = await requestLineage(this.broker, { tenant, modelNames: [modelName] }, { timeoutMs: this.options.rpcTimeoutMs, queue: this.options.queues?.lineage });
    } catch (error) {
      if (error instanceof BrokerTimeoutError) throw unavailable('The models service');
      throw error;
    }
    // Another tenant's model reads exactly like one that does not exist.
    if (!names.includes(modelName)) throw notFound('Model', modelName);
  }
}
