// Retraining policies on a real database (PostgreSQL with TEST_DATABASE_URL, else PGlite) and a real broker (RabbitMQ
// with TEST_AMQP_URL, else the in-process one). The models subgraph's side of `models.retrain` / `models.lineage` is a
// small responder here that records what it was asked; test/e2e/retraining.test.ts runs the real one end to end.
import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { pino } from 'pino';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker, type Subscription } from '../../lib/broker/broker.js';
import { LOGGED_EVENT_TYPE } from '../../lib/events/event-log.js';
import { repoRoot } from '../../test/support/platform.js';
import { RETRAINING_COMMAND_TYPES } from './retraining.contracts.js';
import { consumeRetrainingTriggers } from './retraining-triggers.consumer.js';
import type { Database } from '../../lib/db.js';
import { RETRAINING_MESSAGE_TYPES, type LineageRequest, type LineageReply, type RetrainReply, type RetrainRequest } from '../models/retraining.consumer.js';
import { RetrainingDecisionEntity } from './retraining-decision.entity.js';
import { RetrainingPolicyEntity } from './retraining-policy.entity.js';
import { RetrainingOutcome, RetrainingTrigger } from './retraining.contracts.js';
import { RetrainingService, type SetRetrainingPolicyInput } from './retraining.service.js';
import { codeOf, openMonitoringDatabase } from './testing.js';

const suffix = randomBytes(4).toString('hex');
const queues = { retrain: `models.retrain.test-${suffix}`, lineage: `models.lineage.test-${suffix}`, triggers: `monitoring.retraining-triggers.test-${suffix}` };
const TENANT = 'acme';
const engineer = { tenant: TENANT, subject: 'engineer-1' };
const V1 = 'a'.repeat(64);
const V2 = 'b'.repeat(64);
const OTHER = 'c'.repeat(64);

let db: Database;
let closeDb: () => Promise<void>;
let broker: Broker;
let now = new Date('2026-03-02T10:30:00Z');
const clock = () => new Date(now);
const at = (iso: string) => (now = new Date(iso));

/** What the models subgraph knows: acme's model `snunet`, trained on V1. */
const retrainRequests: RetrainRequest[] = [];
let retrainAnswer: (r: RetrainRequest) => RetrainReply = (r) => ({ outcome: 'STARTED', trainingRunId: `run-${r.decisionId}`, datasetVersionId: r.datasetVersionId ?? V1 });

let service: RetrainingService;

beforeAll(async () => {
  ({ db, close: closeDb } = await openMonitoringDatabase());
  broker = process.env.TEST_AMQP_URL ? await createBroker({ url: process.env.TEST_AMQP_URL, service: 'retraining-test' }) : await createBroker({ memoryServer: new MemoryBrokerServer() });
  await broker.serveRpc<RetrainRequest, RetrainReply>(queues.retrain, async ({ envelope }) => {
    retrainRequests.push(envelope.payload);
    return createEnvelope(RETRAINING_MESSAGE_TYPES.retrained, retrainAnswer(envelope.payload), { tenant: envelope.tenant });
  });
  await broker.serveRpc<LineageRequest, LineageReply>(queues.lineage, async ({ envelope }) => {
    const r = envelope.payload;
    const known = r.tenant === TENANT ? ['snunet'] : [];
    const trainedOn = r.trainedOnDatasetVersionIds;
    const names = known.filter((n) => (!r.modelNames || r.modelNames.includes(n)) && (!trainedOn || trainedOn.includes(V1)));
    return createEnvelope(RETRAINING_MESSAGE_TYPES.lineageReply, { modelNames: names }, { tenant: envelope.tenant });
  });
  service = new RetrainingService({ broker, rpcTimeoutMs: 10_000, queues, now: clock });
});

afterAll(async () => {
  if (process.env.TEST_AMQP_URL) for (const q of Object.values(queues)) await broker.deleteQueue(q).catch(() => undefined);
  await broker?.close();
  await closeDb?.();
});

beforeEach(async () => {
  await db.fork().nativeDelete(RetrainingDecisionEntity, {});
  await db.fork().nativeDelete(RetrainingPolicyEntity, {});
  retrainRequests.length = 0;
  retrainAnswer = (r) => ({ outcome: 'STARTED', trainingRunId: `run-${r.decisionId}`, datasetVersionId: r.datasetVersionId ?? V1 });
  at('2026-03-02T10:30:00Z');
});

const policy = (overrides: Partial<SetRetrainingPolicyInput> = {}): SetRetrainingPolicyInput => ({
  modelName: 'snunet',
  schedule: null,
  onDrift: true,
  onNewDatasetVersion: true,
  cooldownMinutes: 60,
  ...overrides,
});

const manual = (reason = 'new labels arrived') => service.triggerManually(db.fork(), engineer, 'snunet', reason);
const outcomes = async () => (await service.decisions(db.fork(), TENANT, 'snunet')).map((d) => [d.trigger, d.outcome]);

async function apiError(promise: Promise<unknown>): Promise<{ code: unknown; extensions: Record<string, unknown>; message: string }> {
  try {
    await promise;
  } catch (error) {
    const e = error as { extensions?: Record<string, unknown>; message: string };
    return { code: e.extensions?.code, extensions: e.extensions ?? {}, message: e.message };
  }
  throw new Error('expected an API error');
}

describe('setRetrainingPolicy', () => {
  it('upserts one policy per tenant and model', async () => {
    const first = await service.setPolicy(db.fork(), engineer, policy({ schedule: '0 3 * * mon' }));
    const second = await service.setPolicy(db.fork(), { ...engineer, subject: 'engineer-2' }, policy({ cooldownMinutes: 5, maxRunsPerDay: 3, enabled: false }));
    expect(second.id).toBe(first.id);
    const stored = await service.findPolicy(db.fork(), TENANT, 'snunet');
    expect(stored).toMatchObject({ schedule: null, cooldownMinutes: 5, maxRunsPerDay: 3, enabled: false, createdBy: 'engineer-1', updatedBy: 'engineer-2' });
  });

  it('refuses a cron expression that does not parse, naming it and the field', async () => {
    const error = await apiError(service.setPolicy(db.fork(), engineer, policy({ schedule: '0 25 * * *' })));
    expect(error.code).toBe('BAD_USER_INPUT');
    expect(error.extensions).toMatchObject({ field: 'schedule', cronField: 'hour' });
    expect(error.message).toContain('"0 25 * * *"');
    expect(error.message).toContain('hour field');
  });

  it('refuses a negative cooldown and a zero daily maximum, and writes nothing', async () => {
    expect(await apiError(service.setPolicy(db.fork(), engineer, policy({ cooldownMinutes: -1 })))).toMatchObject({ code: 'BAD_USER_INPUT', extensions: { field: 'cooldownMinutes' } });
    expect(await apiError(service.setPolicy(db.fork(), engineer, policy({ maxRunsPerDay: 0 })))).toMatchObject({ code: 'BAD_USER_INPUT', extensions: { field: 'maxRunsPerDay' } });
    expect(await db.fork().count(RetrainingPolicyEntity, {})).toBe(0);
  });

  it("answers NOT_FOUND for an unknown model and for another tenant's model", async () => {
    expect(await codeOf(service.setPolicy(db.fork(), engineer, policy({ modelName: 'nope' })))).toBe('NOT_FOUND');
    expect(await codeOf(service.setPolicy(db.fork(), { tenant: 'globex', subject: 'mallory' }, policy()))).toBe('NOT_FOUND');
    expect(await codeOf(service.triggerManually(db.fork(), { tenant: 'globex', subject: 'mallory' }, 'snunet', 'please'))).toBe('NOT_FOUND');
    expect(await db.fork().count(RetrainingPolicyEntity, {})).toBe(0);
  });
});

describe('retraining decisions', () => {
  it('start a run, then skip within the cooldown, then start again after it', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ cooldownMinutes: 60 }));
    const first = await manual();
    expect(first).toMatchObject({ trigger: RetrainingTrigger.MANUAL, outcome: RetrainingOutcome.STARTED, trainingRunId: `run-${first.id}`, requestedBy: 'engineer-1' });
    expect(retrainRequests).toEqual([expect.objectContaining({ tenant: TENANT, modelName: 'snunet', trigger: 'MANUAL', decisionId: first.id, reason: 'new labels arrived' })]);

    at('2026-03-02T11:00:00Z');
    const second = await manual();
    expect(second.outcome).toBe(RetrainingOutcome.SKIPPED);
    expect(second.skipReason).toContain('cooldown until 2026-03-02T11:30:00.000Z');
    expect(retrainRequests).toHaveLength(1);

    at('2026-03-02T11:31:00Z');
    expect((await manual()).outcome).toBe(RetrainingOutcome.STARTED);
    expect(await outcomes()).toEqual([
      ['MANUAL', 'STARTED'],
      ['MANUAL', 'SKIPPED'],
      ['MANUAL', 'STARTED'],
    ]);
  });

  it('stop at the maximum runs per day and allow the next one 24 hours after the first', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ cooldownMinutes: 0, maxRunsPerDay: 2 }));
    expect((await manual()).outcome).toBe('STARTED');
    at('2026-03-02T12:00:00Z');
    expect((await manual()).outcome).toBe('STARTED');
    at('2026-03-02T13:00:00Z');
    const third = await manual();
    expect(third.outcome).toBe('SKIPPED');
    expect(third.skipReason).toMatch(/^max runs per day reached \(2 of 2 in the last 24 hours; the next may start after 2026-03-03T10:30:00.000Z\)/);
    at('2026-03-03T10:31:00Z');
    expect((await manual()).outcome).toBe('STARTED');
    expect(retrainRequests).toHaveLength(3);
  });

  it('skip everything while the policy is disabled, asking the models service nothing', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ enabled: false }));
    expect(await manual()).toMatchObject({ outcome: 'SKIPPED', skipReason: 'policy disabled' });
    expect(retrainRequests).toHaveLength(0);
  });

  it("record the models service's reason when there is nothing to train on; that does not hold the cooldown", async () => {
    await service.setPolicy(db.fork(), engineer, policy({ cooldownMinutes: 60 }));
    retrainAnswer = () => ({ outcome: 'SKIPPED', reason: 'no dataset version: model snunet has no succeeded training run and the policy names no dataset version' });
    expect(await manual()).toMatchObject({ outcome: 'SKIPPED', skipReason: expect.stringContaining('no dataset version') });
    retrainAnswer = () => ({ outcome: 'FAILED', error: 'DatasetVersion "aaa" was not found' });
    expect(await manual()).toMatchObject({ outcome: 'FAILED', error: 'DatasetVersion "aaa" was not found' });
    retrainAnswer = (r) => ({ outcome: 'STARTED', trainingRunId: 'run-x', datasetVersionId: r.datasetVersionId ?? V1 });
    expect((await manual()).outcome).toBe('STARTED');
  });

  it('pass the policy’s dataset version and config to the models service', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ datasetVersionId: V2, config: { epochs: 1 } }));
    const decision = await manual();
    expect(decision.datasetVersionId).toBe(V2);
    expect(retrainRequests[0]).toMatchObject({ datasetVersionId: V2, config: { epochs: 1 } });
  });

  it('make one decision per trigger occurrence, also when it is handled twice at once', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ cooldownMinutes: 0 }));
    const input = { tenant: TENANT, modelName: 'snunet', trigger: RetrainingTrigger.DRIFT_ALERT, triggerKey: 'drift:alert-1', reason: 'psi', requestedBy: 'drift-alert' };
    const [a, b] = await Promise.all([service.trigger(db.fork(), input), service.trigger(db.fork(), input)]);
    expect(a.id).toBe(b.id);
    expect(await db.fork().count(RetrainingDecisionEntity, {})).toBe(1);
    expect(retrainRequests).toHaveLength(1);
  });
});

describe('triggers', () => {
  it('a drift alert starts a run when the policy retrains on drift; the same alert again changes nothing', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ cooldownMinutes: 0 }));
    const alert = { alertId: randomUUID(), tenant: TENANT, modelName: 'snunet', modelVersionId: randomUUID(), kind: 'DATA_DRIFT', metric: 'psi.band0', value: 0.31, threshold: 0.25 };
    const decision = await service.onDriftAlert(db.fork(), alert);
    expect(decision).toMatchObject({ trigger: 'DRIFT_ALERT', outcome: 'STARTED', requestedBy: 'drift-alert' });
    expect(decision!.reason).toContain('psi.band0 = 0.31 over the threshold 0.25');
    expect((await service.onDriftAlert(db.fork(), alert))!.id).toBe(decision!.id);
    expect(retrainRequests).toHaveLength(1);

    await service.setPolicy(db.fork(), engineer, policy({ onDrift: false }));
    expect(await service.onDriftAlert(db.fork(), { ...alert, alertId: randomUUID() })).toBeNull();
  });

  it('a new version of the dataset the model was trained on starts a run on that version; another dataset does not', async () => {
    await service.setPolicy(db.fork(), engineer, policy());
    const event = { tenant: TENANT, datasetId: randomUUID(), datasetName: 'levir', versionId: V2, number: 2, previousVersionIds: [V1] };
    const [decision] = await service.onNewDatasetVersion(db.fork(), event);
    expect(decision).toMatchObject({ trigger: 'NEW_DATASET_VERSION', outcome: 'STARTED', datasetVersionId: V2 });
    expect(retrainRequests[0]).toMatchObject({ trigger: 'NEW_DATASET_VERSION', datasetVersionId: V2 });
    expect(await service.onNewDatasetVersion(db.fork(), { ...event, datasetName: 'other', versionId: 'd'.repeat(64), previousVersionIds: [OTHER] })).toEqual([]);
    expect(await service.onNewDatasetVersion(db.fork(), { ...event, versionId: 'e'.repeat(64), previousVersionIds: [] })).toEqual([]);
  });

  it('the scheduler makes one decision per fire time, whichever replica runs the pass', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ schedule: '0 * * * *', cooldownMinutes: 0 }));
    at('2026-03-02T10:59:00Z');
    expect(await service.schedulePass(db.fork)).toEqual([]);
    at('2026-03-02T11:05:00Z');
    const [decision] = await service.schedulePass(db.fork);
    expect(decision).toMatchObject({ trigger: 'SCHEDULE', outcome: 'STARTED', requestedBy: 'retraining-scheduler', reason: 'schedule "0 * * * *" fired at 2026-03-02T11:00:00.000Z' });
    at('2026-03-02T11:10:00Z');
    expect(await service.schedulePass(db.fork)).toEqual([]);
    // Two replicas (or a replica and the CronJob) at the next fire time: still one decision.
    at('2026-03-02T14:01:00Z');
    await Promise.all([service.schedulePass(db.fork), service.schedulePass(db.fork)]);
    expect(await outcomes()).toEqual([
      ['SCHEDULE', 'STARTED'],
      ['SCHEDULE', 'STARTED'],
    ]);
    expect((await service.decisions(db.fork(), TENANT, 'snunet'))[0]!.reason).toContain('2026-03-02T14:00:00.000Z');
    expect(retrainRequests).toHaveLength(2);
  });
});

describe('the trigger queue', () => {
  let subscription: Subscription;
  beforeAll(async () => {
    subscription = await consumeRetrainingTriggers({ broker, queue: queues.triggers, db, retraining: service, log: pino({ level: 'silent' }) });
  });
  afterAll(async () => {
    await subscription?.close();
  });

  const decided = (count: number) =>
    expect.poll(async () => (await service.decisions(db.fork(), TENANT, 'snunet')).filter((d) => d.outcome !== 'PENDING').length, { timeout: 20_000 }).toBe(count);

  it('decides on relayed drift alerts and dataset versions, and on the CLI commands', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ cooldownMinutes: 0, schedule: '*/10 * * * *' }));
    // A drift alert as the monitoring event relay publishes it (lib/events/event-log.ts, subgraphs/monitoring/alerts.ts).
    const alertId = randomUUID();
    const payload = { alertId, tenant: TENANT, modelName: 'snunet', modelVersionId: randomUUID(), kind: 'DATA_DRIFT', metric: 'mmd', value: 0.2, threshold: 0.05 };
    const logged = { stream: `drift:${TENANT}`, sequence: 1, type: 'drift.alert', tenant: TENANT, routingKey: 'drift.alert', payload, occurredAt: new Date().toISOString() };
    await broker.publish('drift.alert', createEnvelope(LOGGED_EVENT_TYPE, logged, { tenant: TENANT, idempotencyKey: `drift:${TENANT}#1` }));
    // Delivered twice (at least once): still one decision.
    await broker.publish('drift.alert', createEnvelope(LOGGED_EVENT_TYPE, logged, { tenant: TENANT, idempotencyKey: `drift:${TENANT}#1` }));
    await decided(1);

    at('2026-03-02T10:31:00Z');
    const version = { tenant: TENANT, datasetId: randomUUID(), datasetName: 'levir', versionId: V2, number: 2, itemCount: 3, labelledCount: 3, synthetic: false, createdBy: 'x', previousVersionIds: [V1] };
    const datasetEvent = { stream: `dataset:${TENANT}:${version.datasetId}`, sequence: 2, type: 'dataset.version.created', tenant: TENANT, routingKey: 'dataset.version.created', payload: version, occurredAt: new Date().toISOString() };
    await broker.publish('dataset.version.created', createEnvelope(LOGGED_EVENT_TYPE, datasetEvent, { tenant: TENANT }));
    await decided(2);

    at('2026-03-02T10:32:00Z');
    await broker.send(queues.triggers, createEnvelope(RETRAINING_COMMAND_TYPES.trigger, { tenant: TENANT, modelName: 'snunet', reason: 'from the CLI', requestedBy: 'ops' }, { tenant: TENANT }));
    await decided(3);
    at('2026-03-02T10:41:00Z');
    await broker.send(queues.triggers, createEnvelope(RETRAINING_COMMAND_TYPES.schedulePass, {}, { tenant: '*' }));
    await decided(4);
    expect((await service.decisions(db.fork(), TENANT, 'snunet')).map((d) => [d.trigger, d.outcome, d.requestedBy])).toEqual([
      ['SCHEDULE', 'STARTED', 'retraining-scheduler'],
      ['MANUAL', 'STARTED', 'ops'],
      ['NEW_DATASET_VERSION', 'STARTED', 'dataset-version'],
      ['DRIFT_ALERT', 'STARTED', 'drift-alert'],
    ]);
  });

  // The CLI reaches the monitoring subgraph over RabbitMQ only (the in-process broker lives inside `npm start`).
  const withRabbit = process.env.TEST_AMQP_URL ? it : it.skip;
  withRabbit('the trigger CLI sends a manual trigger and a scheduler pass', async () => {
    await service.setPolicy(db.fork(), engineer, policy({ cooldownMinutes: 0, schedule: '0 12 * * *' }));
    const run = promisify(execFile);
    await run(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot, timeout: 300_000 });
    const cli = (args: string[]) =>
      run(process.execPath, ['dist/scripts/retraining-trigger.js', ...args], {
        cwd: repoRoot,
        timeout: 60_000,
        env: { ...process.env, AMQP_URL: process.env.TEST_AMQP_URL, RETRAINING_TRIGGERS_QUEUE: queues.triggers, LOG_LEVEL: 'silent' },
      });
    expect((await cli(['--tenant', TENANT, '--model', 'snunet', '--reason', 'labels fixed', '--requested-by', 'ops-1'])).stdout).toContain('requested');
    await decided(1);
    at('2026-03-02T12:00:30Z');
    expect((await cli(['--due'])).stdout).toContain('scheduler pass requested');
    await decided(2);
    expect((await service.decisions(db.fork(), TENANT, 'snunet')).map((d) => [d.trigger, d.requestedBy, d.reason])).toEqual([
      ['SCHEDULE', 'retraining-scheduler', 'schedule "0 12 * * *" fired at 2026-03-02T12:00:00.000Z'],
      ['MANUAL', 'ops-1', 'labels fixed'],
    ]);
    await expect(cli(['--model', 'snunet'])).rejects.toMatchObject({ code: 2, stderr: expect.stringContaining('--tenant') });
  }, 400_000);
});
