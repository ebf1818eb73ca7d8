// The registry lifecycle on a real database (PGlite, or PostgreSQL with TEST_DATABASE_URL) and a real broker (the
// in-process one, or RabbitMQ with TEST_AMQP_URL): promotion by request with its evidence, four-eyes approval and
// rejection, cancellation by the requester, two approvals racing, promotion across tenants, aliases, rollback, the
// append-only history and the point-in-time question. After every refusal the registry is checked to be as it was.
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphQLError } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, MemoryBrokerServer, type Broker } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { EventLogEntity } from '../../lib/events/event-log.entity.js';
import { createObjectStore, type ObjectStore } from '../../lib/storage/index.js';
import { serveDriftSummary, type DriftReportLike } from '../monitoring/drift-summary.rpc.js';
import { ModelHistoryKind, PromotionStatus } from './lifecycle.contracts.js';
import { ModelAliasEntity } from './model-alias.entity.js';
import { EvaluationStatus, type EvaluationRecord } from './model-evaluation.contracts.js';
import { ModelLifecycleService } from './model-lifecycle.service.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import { ModelStageChangeEntity } from './model-stage-change.entity.js';
import { ModelVersionEntity } from './model-version.entity.js';
import { ModelStage, ModelVersionSource, PLATFORM_TENANT, type GateDecision } from './models.contracts.js';
import { PromotionRequestEntity } from './promotion-request.entity.js';
import { anUploadedVersion, aRun, openModelsDatabase, sha256Of } from './testing.js';

let db: Database;
let closeDb: () => Promise<void>;
let broker: Broker;
let dir: string;
let store: ObjectStore;
const suffix = randomBytes(4).toString('hex');
const driftQueue = `monitoring.drift-summary.test-${suffix}`;
const silentQueue = `monitoring.drift-summary.nobody-${suffix}`;
const repository = new ModelRegistryRepository();
const registry = new ModelRegistryService(repository);
let lifecycle: ModelLifecycleService;
/** The latest drift report per `tenant/model`, as the monitoring subgraph would answer. */
const driftReports = new Map<string, DriftReportLike>();

const engineer = { tenant: 'acme', subject: 'engineer-1', roles: ['ml-engineer' as const] };
const approverA = { tenant: 'acme', subject: 'approver-a', roles: ['approver' as const] };
const approverB = { tenant: 'acme', subject: 'approver-b', roles: ['approver' as const] };
/** Someone who holds both roles: may request, but never decide their own request. */
const both = { tenant: 'acme', subject: 'both-1', roles: ['ml-engineer' as const, 'approver' as const] };
const globexApprover = { tenant: 'globex', subject: 'approver-g', roles: ['approver' as const, 'ml-engineer' as const] };

beforeAll(async () => {
  ({ db, close: closeDb } = await openModelsDatabase());
  broker = process.env.TEST_AMQP_URL
    ? await createBroker({ url: process.env.TEST_AMQP_URL, service: 'lifecycle-test' })
    : await createBroker({ memoryServer: new MemoryBrokerServer() });
  await serveDriftSummary(broker, async (tenant, modelName) => driftReports.get(`${tenant}/${modelName}`) ?? null, { queue: driftQueue });
  dir = await mkdtemp(join(tmpdir(), 'lcd-lifecycle-'));
  store = createObjectStore({ url: undefined, localDir: dir, publicBaseUrl: 'http://127.0.0.1:1', signingSecret: randomBytes(32) });
  lifecycle = new ModelLifecycleService(repository, registry, { broker, store, rpcTimeoutMs: 5000, maxUploadBytes: 1 << 20, driftSummaryQueue: driftQueue });
});
afterAll(async () => {
  if (process.env.TEST_AMQP_URL) for (const q of [driftQueue, silentQueue]) await broker.deleteQueue(q).catch(() => undefined);
  await broker?.close();
  await closeDb?.();
  await rm(dir, { recursive: true, force: true });
});

async function errorOf(promise: Promise<unknown>): Promise<GraphQLError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  if (!(error instanceof GraphQLError)) throw new Error(`expected an API error, got ${String(error)}`);
  return error;
}
const codeOf = async (promise: Promise<unknown>) => (await errorOf(promise)).extensions.code;

const passed = (passed = true): GateDecision => ({
  passed,
  reasons: [passed ? 'f1 0.8300 ≥ minimum 0.7000' : 'f1 0.4000 < minimum 0.7000'],
  thresholds: { f1: 0.7 },
  maxRegression: 0.05,
  comparedWith: null,
  evaluatedAt: new Date().toISOString(),
});

/** A trained version of `modelName` in STAGING with its gate decision, as the training service leaves it. */
async function stagedTrained(tenant: string, modelName: string, options: { gatePassed?: boolean } = {}) {
  const run = await registry.createTrainingRun(db.fork(), aRun(tenant, { modelName, datasetVersionId: sha256Of(`data-${modelName}`) }));
  const version = await registry.registerVersion(db.fork(), anUploadedVersion(tenant, { modelName, source: ModelVersionSource.TRAINED, trainingRunId: run.id }));
  await db.fork().nativeUpdate(ModelVersionEntity, { id: version.id }, { gate: passed(options.gatePassed ?? true) });
  await registry.setStage(db.fork(), tenant, version.id, ModelStage.STAGING, { changedBy: 'evaluation-gate' });
  return version;
}

const stageOf = async (id: string) => (await db.fork().findOneOrFail(ModelVersionEntity, id)).stage;
const stagesOf = async (tenant: string, modelName: string) =>
  (await db.fork().find(ModelVersionEntity, { tenant, registeredModel: { name: modelName, tenant } }, { orderBy: { version: 'asc' } })).map((v) => `${v.version}:${v.stage}`);
const requestOf = (id: string) => db.fork().findOneOrFail(PromotionRequestEntity, id);
const requestCount = (modelVersionId: string) => db.fork().count(PromotionRequestEntity, { modelVersion: modelVersionId });

describe('requestPromotion', () => {
  it('attaches the evaluation on the frozen dataset version and the latest drift report', async () => {
    const version = await stagedTrained('acme', 'evidence');
    driftReports.set('acme/evidence', {
      id: '8d5f0b3e-1c2a-4b5c-9d8e-7f6a5b4c3d2e',
      modelVersionId: null,
      windowStart: new Date('2026-01-01T00:00:00Z'),
      windowEnd: new Date('2026-01-01T01:00:00Z'),
      sampleCount: 120,
      drifted: false,
      metrics: { bands: [{ band: 0, psi: 0.03 }] },
      createdAt: new Date('2026-01-01T01:00:05Z'),
    });
    const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: '  better F1 on the spring tiles ' });
    expect(request).toMatchObject({ status: PromotionStatus.PENDING, requestedBy: 'engineer-1', reason: 'better F1 on the spring tiles', decidedBy: null });
    const stored = await requestOf(request.id);
    expect(stored.evidence.evaluation).toMatchObject({
      source: 'TRAINING_GATE',
      passed: true,
      metrics: { iou: 0.71, f1: 0.83 },
      datasetVersionId: sha256Of('data-evidence'),
      gate: { passed: true },
    });
    expect(stored.evidence.drift).toEqual({
      report: {
        id: '8d5f0b3e-1c2a-4b5c-9d8e-7f6a5b4c3d2e',
        modelVersionId: null,
        windowStart: '2026-01-01T00:00:00.000Z',
        windowEnd: '2026-01-01T01:00:00.000Z',
        sampleCount: 120,
        drifted: false,
        metrics: { bands: [{ band: 0, psi: 0.03 }] },
        createdAt: '2026-01-01T01:00:05.000Z',
      },
      note: null,
    });
    // Requesting does not promote anything, and one version has one pending request at a time.
    expect(await stageOf(version.id)).toBe(ModelStage.STAGING);
    const again = await errorOf(lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'again' }));
    expect(again.extensions).toMatchObject({ code: 'CONFLICT', requestId: request.id });
    expect(await requestCount(version.id)).toBe(1);
  });

  it('notes that no drift report exists yet, and refuses when monitoring does not answer', async () => {
    const version = await stagedTrained('acme', 'no-drift-yet');
    const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'first release' });
    expect((await requestOf(request.id)).evidence.drift).toEqual({ report: null, note: 'No drift report exists yet for model no-drift-yet' });

    const other = await stagedTrained('acme', 'monitoring-down');
    const unreachable = new ModelLifecycleService(repository, registry, { broker, store, rpcTimeoutMs: 300, maxUploadBytes: 1, driftSummaryQueue: silentQueue });
    if (process.env.TEST_AMQP_URL) await broker.assertQueue(silentQueue);
    const error = await errorOf(unreachable.requestPromotion(db.fork(), engineer, { modelVersionId: other.id, reason: 'ship it' }));
    expect(error.extensions.code).toBe('UNAVAILABLE');
    expect(error.message).toMatch(/monitoring/);
    expect(await requestCount(other.id)).toBe(0);
  });

  it('reads the automatic evaluation of an uploaded version, and refuses one that has none', async () => {
    const version = await registry.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'byo' }));
    await db.fork().nativeUpdate(ModelVersionEntity, { id: version.id }, { gate: passed(), stage: ModelStage.STAGING });
    const missing = await errorOf(lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'mine' }));
    expect(missing.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'modelVersionId', problem: 'NO_EVALUATION' });
    expect(missing.message).toMatch(/no evaluation report/);

    const evaluation: EvaluationRecord = {
      status: EvaluationStatus.SUCCEEDED,
      requestId: '0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a',
      datasetVersionId: sha256Of('frozen-test-set'),
      split: 'test',
      items: 12,
      threshold: 0.5,
      metrics: { precision: 0.8, recall: 0.9, f1: 0.85, iou: 0.74, overallAccuracy: 0.97, kappa: 0.8 },
      confusion: { tp: 90, fp: 22, fn: 10, tn: 900 },
      requestedBy: 'engineer-1',
      requestedAt: new Date().toISOString(),
      evaluatedAt: new Date().toISOString(),
      error: null,
    };
    await db.fork().nativeUpdate(ModelVersionEntity, { id: version.id }, { evaluation: { ...evaluation, status: EvaluationStatus.PENDING, metrics: null } });
    expect((await errorOf(lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'mine' }))).message).toMatch(/still being evaluated/);
    await db.fork().nativeUpdate(ModelVersionEntity, { id: version.id }, { evaluation });
    const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'mine' });
    expect((await requestOf(request.id)).evidence.evaluation).toMatchObject({
      source: 'AUTOMATIC_EVALUATION',
      passed: true,
      datasetVersionId: sha256Of('frozen-test-set'),
      metrics: { f1: 0.85, iou: 0.74 },
      report: { split: 'test', items: 12 },
    });
  });

  it('refuses a version that is not in STAGING or failed its gate, and bad input, writing nothing', async () => {
    const failed = await stagedTrained('acme', 'gate-failed', { gatePassed: false });
    const gate = await errorOf(lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: failed.id, reason: 'please' }));
    expect(gate.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'modelVersionId', problem: 'GATE_FAILED' });
    expect(gate.message).toMatch(/did not pass its evaluation gate: f1 0.4000 < minimum/);
    const fresh = await registry.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'gate-failed' }));
    expect((await errorOf(lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: fresh.id, reason: 'please' }))).extensions).toMatchObject({
      problem: 'NOT_STAGING',
    });
    const ok = await stagedTrained('acme', 'gate-failed');
    expect((await errorOf(lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: ok.id, reason: '   ' }))).extensions).toMatchObject({
      code: 'BAD_USER_INPUT',
      field: 'reason',
    });
    expect(await codeOf(lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: 'not-a-uuid', reason: 'x' }))).toBe('NOT_FOUND');
    expect(await db.fork().count(PromotionRequestEntity, { registeredModel: { name: 'gate-failed' } })).toBe(0);
  });
});

describe('approvePromotion and rejectPromotion', () => {
  it('needs an approver other than the requester; approval promotes and archives the previous version at one instant', async () => {
    const v1 = await stagedTrained('acme', 'four-eyes');
    const r1 = await lifecycle.requestPromotion(db.fork(), both, { modelVersionId: v1.id, reason: 'first' });
    const own = await errorOf(lifecycle.approvePromotion(db.fork(), both, r1.id));
    expect(own.extensions.code).toBe('FORBIDDEN');
    expect(own.message).toMatch(/Four eyes/);
    expect(await codeOf(lifecycle.rejectPromotion(db.fork(), both, r1.id, 'changed my mind'))).toBe('FORBIDDEN');
    expect((await requestOf(r1.id)).status).toBe(PromotionStatus.PENDING);
    expect(await stageOf(v1.id)).toBe(ModelStage.STAGING);

    const approved = await lifecycle.approvePromotion(db.fork(), approverA, r1.id, 'looks good');
    expect(approved).toMatchObject({ status: PromotionStatus.APPROVED, decidedBy: 'approver-a', decisionReason: 'looks good' });
    expect(approved.decidedAt).toBeInstanceOf(Date);
    expect(await stagesOf('acme', 'four-eyes')).toEqual(['1:PRODUCTION']);

    const v2 = await stagedTrained('acme', 'four-eyes');
    const r2 = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: v2.id, reason: 'second' });
    await lifecycle.approvePromotion(db.fork(), approverB, r2.id);
    expect(await stagesOf('acme', 'four-eyes')).toEqual(['1:ARCHIVED', '2:PRODUCTION']);

    const history = await lifecycle.history(db.fork(), engineer, 'four-eyes');
    const last = history.slice(-2);
    expect(last.map((c) => [c.modelVersion.version, c.fromStage, c.toStage, c.changedBy])).toEqual([
      [1, 'PRODUCTION', 'ARCHIVED', 'approver-b'],
      [2, 'STAGING', 'PRODUCTION', 'approver-b'],
    ]);
    expect(last[0]!.changedAt.getTime()).toBe(last[1]!.changedAt.getTime());
    expect(last[1]!.reason).toMatch(/promotion request .* by engineer-1: second/);
    // At the instant of the switch the new version serves; a millisecond before, the old one: never none, never two.
    const at = last[1]!.changedAt;
    expect((await lifecycle.versionAt(db.fork(), engineer, 'four-eyes', ModelStage.PRODUCTION, at))?.id).toBe(v2.id);
    expect((await lifecycle.versionAt(db.fork(), engineer, 'four-eyes', ModelStage.PRODUCTION, new Date(at.getTime() - 1)))?.id).toBe(v1.id);
  });

  it('rejects with a reason, in the history; a decided request cannot be decided again', async () => {
    const version = await stagedTrained('acme', 'rejected');
    const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'try' });
    expect((await errorOf(lifecycle.rejectPromotion(db.fork(), approverA, request.id, ''))).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'reason' });
    const rejected = await lifecycle.rejectPromotion(db.fork(), approverA, request.id, 'drift report is a week old');
    expect(rejected).toMatchObject({ status: PromotionStatus.REJECTED, decidedBy: 'approver-a', decisionReason: 'drift report is a week old' });
    const late = await errorOf(lifecycle.approvePromotion(db.fork(), approverB, request.id));
    expect(late.extensions).toMatchObject({ code: 'CONFLICT', status: 'REJECTED' });
    expect(late.message).toMatch(/already rejected by approver-a/);
    expect(await stageOf(version.id)).toBe(ModelStage.STAGING);
    const history = await lifecycle.history(db.fork(), engineer, 'rejected');
    expect(history.map((c) => [c.kind, c.modelVersion.id, c.fromStage, c.toStage, c.changedBy, c.reason])).toEqual([
      [ModelHistoryKind.STAGE, version.id, 'NONE', 'STAGING', 'evaluation-gate', ''],
      [ModelHistoryKind.PROMOTION_REJECTED, version.id, 'STAGING', 'STAGING', 'approver-a', `promotion request ${request.id} by engineer-1 rejected: drift report is a week old`],
    ]);
    // A refused rejection (empty reason above, or not four eyes) left no record.
    // A new request may follow a decided one.
    await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'try again' });
    expect(
      (await lifecycle.listPromotionRequests(db.fork(), approverA, 'rejected')).map((r) => r.status),
    ).toEqual([PromotionStatus.PENDING, PromotionStatus.REJECTED]);
    expect((await lifecycle.listPromotionRequests(db.fork(), approverA, 'rejected', 'REJECTED')).map((r) => r.id)).toEqual([request.id]);
    expect(await codeOf(lifecycle.listPromotionRequests(db.fork(), approverA, 'rejected', 'MAYBE'))).toBe('BAD_USER_INPUT');
  });

  it('re-checks the version at approval: a version archived or whose gate failed meanwhile is not promoted', async () => {
    const archived = await stagedTrained('acme', 'recheck');
    const r1 = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: archived.id, reason: 'a' });
    await lifecycle.transition(db.fork(), engineer, archived.id, ModelStage.ARCHIVED, 'superseded');
    const e1 = await errorOf(lifecycle.approvePromotion(db.fork(), approverA, r1.id));
    expect(e1.extensions).toMatchObject({ code: 'CONFLICT', problem: 'NOT_STAGING' });

    const regated = await stagedTrained('acme', 'recheck');
    const r2 = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: regated.id, reason: 'b' });
    await db.fork().nativeUpdate(ModelVersionEntity, { id: regated.id }, { gate: passed(false) });
    const e2 = await errorOf(lifecycle.approvePromotion(db.fork(), approverA, r2.id));
    expect(e2.extensions).toMatchObject({ code: 'CONFLICT', problem: 'GATE_FAILED' });
    expect(e2.message).toMatch(/did not pass its evaluation gate/);

    expect(await stagesOf('acme', 'recheck')).toEqual(['1:ARCHIVED', '2:STAGING']);
    expect([(await requestOf(r1.id)).status, (await requestOf(r2.id)).status]).toEqual([PromotionStatus.PENDING, PromotionStatus.PENDING]);
  });

  it('does not let another tenant request, approve or reject, and never touches the platform model', async () => {
    const version = await stagedTrained('acme', 'tenanted');
    expect(await codeOf(lifecycle.requestPromotion(db.fork(), globexApprover, { modelVersionId: version.id, reason: 'mine now' }))).toBe('NOT_FOUND');
    const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'ours' });
    expect(await codeOf(lifecycle.approvePromotion(db.fork(), globexApprover, request.id))).toBe('NOT_FOUND');
    expect(await codeOf(lifecycle.rejectPromotion(db.fork(), globexApprover, request.id, 'no'))).toBe('NOT_FOUND');
    expect(await codeOf(lifecycle.getPromotionRequest(db.fork(), globexApprover, request.id))).toBe('NOT_FOUND');
    expect(await codeOf(lifecycle.listPromotionRequests(db.fork(), globexApprover, 'tenanted'))).toBe('NOT_FOUND');
    expect((await requestOf(request.id)).status).toBe(PromotionStatus.PENDING);
    expect(await stageOf(version.id)).toBe(ModelStage.STAGING);

    const platform = await registry.registerVersion(db.fork(), anUploadedVersion(PLATFORM_TENANT, { modelName: 'tenanted' }));
    await db.fork().nativeUpdate(ModelVersionEntity, { id: platform.id }, { gate: passed(), stage: ModelStage.STAGING });
    expect(await codeOf(lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: platform.id, reason: 'borrow' }))).toBe('NOT_FOUND');
    expect(await stageOf(platform.id)).toBe(ModelStage.STAGING);
  });

  it('lets exactly one of two approvals racing win; the other gets CONFLICT and the registry stays consistent', async () => {
    for (let round = 0; round < 3; round++) {
      const model = `race-${round}`;
      const current = await stagedTrained('acme', model);
      await lifecycle.approvePromotion(db.fork(), approverA, (await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: current.id, reason: 'base' })).id);
      const next = await stagedTrained('acme', model);
      const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: next.id, reason: 'race' });
      const outcomes = await Promise.allSettled([
        lifecycle.approvePromotion(db.fork(), approverA, request.id),
        lifecycle.approvePromotion(db.fork(), approverB, request.id),
      ]);
      const won = outcomes.filter((o): o is PromiseFulfilledResult<PromotionRequestEntity> => o.status === 'fulfilled');
      const lost = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost).toHaveLength(1);
      expect(lost[0]!.reason).toBeInstanceOf(GraphQLError);
      expect((lost[0]!.reason as GraphQLError).extensions.code).toBe('CONFLICT');
      const stored = await requestOf(request.id);
      expect(stored.status).toBe(PromotionStatus.APPROVED);
      expect(stored.decidedBy).toBe(won[0]!.value.decidedBy);
      expect(await stagesOf('acme', model)).toEqual(['1:ARCHIVED', '2:PRODUCTION']);
      // One promotion happened: one pair of history records for it, not two.
      const history = await lifecycle.history(db.fork(), engineer, model);
      expect(history.filter((c) => c.toStage === ModelStage.PRODUCTION).map((c) => c.modelVersion.version)).toEqual([1, 2]);
    }
  });

  it('keeps one Production version when requests for two versions of a model are approved at once', async () => {
    const a = await stagedTrained('acme', 'two-requests');
    const b = await stagedTrained('acme', 'two-requests');
    const ra = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: a.id, reason: 'a' });
    const rb = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: b.id, reason: 'b' });
    await Promise.all([lifecycle.approvePromotion(db.fork(), approverA, ra.id), lifecycle.approvePromotion(db.fork(), approverB, rb.id)]);
    const stages = await stagesOf('acme', 'two-requests');
    expect(stages.filter((s) => s.endsWith(':PRODUCTION'))).toHaveLength(1);
    expect(stages.filter((s) => s.endsWith(':ARCHIVED'))).toHaveLength(1);
  });
});

describe('cancelPromotionRequest', () => {
  const admin = { tenant: 'acme', subject: 'admin-1', roles: ['admin' as const] };
  const otherEngineer = { tenant: 'acme', subject: 'engineer-2', roles: ['ml-engineer' as const] };

  it('lets the requester withdraw a pending request: CANCELLED with the reason, in the history, the version untouched', async () => {
    const version = await stagedTrained('acme', 'cancelled');
    const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'ship' });
    expect((await errorOf(lifecycle.cancelPromotionRequest(db.fork(), engineer, request.id, '  '))).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'reason' });
    expect((await requestOf(request.id)).status).toBe(PromotionStatus.PENDING);

    const cancelled = await lifecycle.cancelPromotionRequest(db.fork(), engineer, request.id, 'found a labelling bug');
    expect(cancelled).toMatchObject({ status: PromotionStatus.CANCELLED, decidedBy: 'engineer-1', decisionReason: 'found a labelling bug', modelVersion: { id: version.id } });
    expect(cancelled.decidedAt).toBeInstanceOf(Date);
    expect(await stageOf(version.id)).toBe(ModelStage.STAGING);
    const history = await lifecycle.history(db.fork(), engineer, 'cancelled');
    expect(history.map((c) => [c.kind, c.modelVersion.id, c.fromStage, c.toStage, c.changedBy, c.reason])).toEqual([
      [ModelHistoryKind.STAGE, version.id, 'NONE', 'STAGING', 'evaluation-gate', ''],
      [ModelHistoryKind.PROMOTION_CANCELLED, version.id, 'STAGING', 'STAGING', 'engineer-1', `promotion request ${request.id} by engineer-1 cancelled: found a labelling bug`],
    ]);
    expect(history[1]!.changedAt.getTime()).toBeGreaterThan(history[0]!.changedAt.getTime());
    // The withdrawal is history like every other record: it cannot be rewritten.
    await expect(db.fork().nativeUpdate(ModelStageChangeEntity, { id: history[1]!.id }, { reason: 'rewritten' })).rejects.toThrow(/append-only/);
    // A withdrawn request is closed: no approval, no second cancel; the version may be requested again.
    const approved = await errorOf(lifecycle.approvePromotion(db.fork(), approverA, request.id));
    expect(approved.extensions).toMatchObject({ code: 'CONFLICT', status: 'CANCELLED' });
    const again = await errorOf(lifecycle.cancelPromotionRequest(db.fork(), engineer, request.id, 'twice'));
    expect(again.extensions).toMatchObject({ code: 'CONFLICT', status: 'CANCELLED', problem: 'NOT_PENDING' });
    expect(again.message).toMatch(/no longer pending: it was already cancelled by engineer-1/);
    const next = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'fixed' });
    expect((await lifecycle.listPromotionRequests(db.fork(), engineer, 'cancelled', 'CANCELLED')).map((r) => r.id)).toEqual([request.id]);
    expect(next.status).toBe(PromotionStatus.PENDING);
    // Rollback and the point-in-time question read stage changes only.
    expect((await lifecycle.versionAt(db.fork(), engineer, 'cancelled', ModelStage.STAGING, new Date()))?.id).toBe(version.id);
  });

  it("refuses anyone but the requester or the tenant's admin, a decided request, and other tenants, changing nothing", async () => {
    const version = await stagedTrained('acme', 'cancel-rules');
    const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'ship' });
    const notYours = await errorOf(lifecycle.cancelPromotionRequest(db.fork(), otherEngineer, request.id, 'mine now'));
    expect(notYours.extensions.code).toBe('FORBIDDEN');
    expect(notYours.message).toMatch(/was made by engineer-1: only they, or an admin of the tenant, may cancel it/);
    expect(await codeOf(lifecycle.cancelPromotionRequest(db.fork(), approverA, request.id, 'no'))).toBe('FORBIDDEN');
    expect(await codeOf(lifecycle.cancelPromotionRequest(db.fork(), globexApprover, request.id, 'no'))).toBe('NOT_FOUND');
    expect(await codeOf(lifecycle.cancelPromotionRequest(db.fork(), engineer, '0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a', 'no'))).toBe('NOT_FOUND');
    expect(await codeOf(lifecycle.cancelPromotionRequest(db.fork(), engineer, 'not-a-uuid', 'no'))).toBe('NOT_FOUND');
    expect((await requestOf(request.id)).status).toBe(PromotionStatus.PENDING);
    expect((await lifecycle.history(db.fork(), engineer, 'cancel-rules')).map((c) => c.kind)).toEqual([ModelHistoryKind.STAGE]);

    // An admin of the tenant may withdraw anyone's request.
    expect(await lifecycle.cancelPromotionRequest(db.fork(), admin, request.id, 'freeze before the audit')).toMatchObject({
      status: PromotionStatus.CANCELLED,
      decidedBy: 'admin-1',
    });

    // A decided request cannot be cancelled: the decision stands.
    const decided = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'again' });
    await lifecycle.rejectPromotion(db.fork(), approverA, decided.id, 'not yet');
    const late = await errorOf(lifecycle.cancelPromotionRequest(db.fork(), engineer, decided.id, 'too late'));
    expect(late.extensions).toMatchObject({ code: 'CONFLICT', status: 'REJECTED', problem: 'NOT_PENDING' });
    expect(await requestOf(decided.id)).toMatchObject({ status: PromotionStatus.REJECTED, decidedBy: 'approver-a', decisionReason: 'not yet' });
  });

  it('of a cancel and an approval racing, exactly one wins', async () => {
    for (let round = 0; round < 3; round++) {
      const version = await stagedTrained('acme', `cancel-race-${round}`);
      const request = await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: 'race' });
      const [cancel, approve] = await Promise.allSettled([
        lifecycle.cancelPromotionRequest(db.fork(), engineer, request.id, 'withdrawn'),
        lifecycle.approvePromotion(db.fork(), approverA, request.id),
      ]);
      expect([cancel.status, approve.status].filter((s) => s === 'fulfilled')).toHaveLength(1);
      const loser = (cancel.status === 'rejected' ? cancel : approve) as PromiseRejectedResult;
      expect((loser.reason as GraphQLError).extensions.code).toBe('CONFLICT');
      const stored = await requestOf(request.id);
      expect(stored.status).toBe(cancel.status === 'fulfilled' ? PromotionStatus.CANCELLED : PromotionStatus.APPROVED);
      expect(await stageOf(version.id)).toBe(cancel.status === 'fulfilled' ? ModelStage.STAGING : ModelStage.PRODUCTION);
    }
  });
});

describe('transitionModelVersion', () => {
  it('refuses PRODUCTION and points to requestPromotion; other stages still move', async () => {
    const version = await stagedTrained('acme', 'no-shortcut');
    const error = await errorOf(lifecycle.transition(db.fork(), approverA, version.id, ModelStage.PRODUCTION, 'now'));
    expect(error.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'stage', problem: 'PROMOTION_NEEDS_APPROVAL' });
    expect(error.message).toMatch(/requestPromotion/);
    expect(await stageOf(version.id)).toBe(ModelStage.STAGING);
    expect((await lifecycle.transition(db.fork(), engineer, version.id, ModelStage.ARCHIVED, 'old')).stage).toBe(ModelStage.ARCHIVED);
    expect((await lifecycle.transition(db.fork(), engineer, version.id, ModelStage.NONE, null)).stage).toBe(ModelStage.NONE);
  });
});

describe('rollbackModel', () => {
  it('restores the previous Production version, and says so clearly when there is none', async () => {
    const promote = async (version: ModelVersionEntity) =>
      lifecycle.approvePromotion(db.fork(), approverA, (await lifecycle.requestPromotion(db.fork(), engineer, { modelVersionId: version.id, reason: `v${version.version}` })).id);
    const v1 = await stagedTrained('acme', 'rollback');
    const none = await errorOf(lifecycle.rollback(db.fork(), approverA, 'rollback'));
    expect(none.extensions).toMatchObject({ code: 'CONFLICT', problem: 'NO_PREVIOUS_PRODUCTION_VERSION', field: 'modelName' });
    await promote(v1);
    expect(await codeOf(lifecycle.rollback(db.fork(), approverA, 'rollback'))).toBe('CONFLICT');
    expect(await stagesOf('acme', 'rollback')).toEqual(['1:PRODUCTION']);

    const v2 = await stagedTrained('acme', 'rollback');
    await promote(v2);
    const beforeRollback = new Date();
    const restored = await lifecycle.rollback(db.fork(), approverB, 'rollback', 'v2 misses new roofs');
    expect(restored.id).toBe(v1.id);
    expect(await stagesOf('acme', 'rollback')).toEqual(['1:PRODUCTION', '2:ARCHIVED']);
    const history = await lifecycle.history(db.fork(), engineer, 'rollback');
    expect(history.slice(-2).map((c) => [c.modelVersion.version, c.toStage, c.changedBy, c.reason])).toEqual([
      [2, 'ARCHIVED', 'approver-b', 'rollback from version 2 to version 1: v2 misses new roofs'],
      [1, 'PRODUCTION', 'approver-b', 'rollback from version 2 to version 1: v2 misses new roofs'],
    ]);
    expect((await lifecycle.versionAt(db.fork(), engineer, 'rollback', ModelStage.PRODUCTION, beforeRollback))?.id).toBe(v2.id);
    expect((await lifecycle.versionAt(db.fork(), engineer, 'rollback', ModelStage.PRODUCTION, new Date()))?.id).toBe(v1.id);
    expect(await lifecycle.versionAt(db.fork(), engineer, 'rollback', ModelStage.PRODUCTION, new Date('2000-01-01T00:00:00Z'))).toBeNull();
    // Another tenant's model, or a name that does not exist: not found.
    expect(await codeOf(lifecycle.rollback(db.fork(), globexApprover, 'rollback'))).toBe('NOT_FOUND');
    expect(await codeOf(lifecycle.versionAt(db.fork(), globexApprover, 'rollback', ModelStage.PRODUCTION, new Date()))).toBe('NOT_FOUND');
  });
});

describe('aliases', () => {
  it('sets, moves and removes aliases unique within a model, each change in the history', async () => {
    const v1 = await registry.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'aliased' }));
    const v2 = await registry.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'aliased' }));
    expect((await lifecycle.setAlias(db.fork(), engineer, { modelVersionId: v1.id, alias: 'champion', reason: 'serving' })).aliases).toEqual(['champion']);
    await lifecycle.setAlias(db.fork(), engineer, { modelVersionId: v2.id, alias: 'challenger' });
    // Moving `champion` to v2 takes it from v1 in the same transaction.
    expect((await lifecycle.setAlias(db.fork(), engineer, { modelVersionId: v2.id, alias: 'champion', reason: 'won the A/B' })).aliases).toEqual(['challenger', 'champion']);
    expect((await db.fork().findOneOrFail(ModelVersionEntity, v1.id)).aliases).toEqual([]);
    expect((await repository.aliases(db.fork(), 'acme', v1.registeredModel.id)).map((a) => [a.alias, a.modelVersion.version])).toEqual([
      ['challenger', 2],
      ['champion', 2],
    ]);
    const removed = await lifecycle.removeAlias(db.fork(), engineer, { modelName: 'aliased', alias: 'challenger', reason: 'done' });
    expect(removed.id).toBe(v2.id);
    expect((await db.fork().findOneOrFail(ModelVersionEntity, v2.id)).aliases).toEqual(['champion']);

    const history = await lifecycle.history(db.fork(), engineer, 'aliased');
    expect(history.map((c) => [c.kind, c.alias, c.modelVersion.version, c.previousModelVersion?.version ?? null, c.reason])).toEqual([
      [ModelHistoryKind.ALIAS_SET, 'champion', 1, null, 'serving'],
      [ModelHistoryKind.ALIAS_SET, 'challenger', 2, null, ''],
      [ModelHistoryKind.ALIAS_SET, 'champion', 2, 1, 'won the A/B'],
      [ModelHistoryKind.ALIAS_REMOVED, 'challenger', 2, null, 'done'],
    ]);
    // Each change was appended as a stage event of the model, so that workers reload.
    const events = await db.fork().find(EventLogEntity, { stream: 'model:acme:aliased' }, { orderBy: { sequence: 'asc' } });
    expect(events.map((e) => [e.payload.change, e.payload.alias])).toEqual([
      ['ALIAS_SET', 'champion'],
      ['ALIAS_SET', 'challenger'],
      ['ALIAS_SET', 'champion'],
      ['ALIAS_REMOVED', 'challenger'],
    ]);
  });

  it('refuses bad alias names, unknown aliases and other tenants, changing nothing', async () => {
    const version = await registry.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'alias-input' }));
    for (const alias of ['', 'Champion', '1st', 'a b', 'x'.repeat(41), 'production', 'latest']) {
      const error = await errorOf(lifecycle.setAlias(db.fork(), engineer, { modelVersionId: version.id, alias }));
      expect(error.extensions, alias).toMatchObject({ code: 'BAD_USER_INPUT', field: 'alias' });
    }
    expect(await codeOf(lifecycle.removeAlias(db.fork(), engineer, { modelName: 'alias-input', alias: 'champion' }))).toBe('NOT_FOUND');
    expect(await codeOf(lifecycle.setAlias(db.fork(), globexApprover, { modelVersionId: version.id, alias: 'champion' }))).toBe('NOT_FOUND');
    expect(await db.fork().count(ModelAliasEntity, { registeredModel: version.registeredModel.id })).toBe(0);
    expect(await db.fork().count(ModelStageChangeEntity, { registeredModel: version.registeredModel.id })).toBe(0);
  });
});

describe('the history', () => {
  it('is append-only in the database', async () => {
    const version = await stagedTrained('acme', 'append-only');
    const em = db.fork();
    await expect(em.nativeUpdate(ModelStageChangeEntity, { modelVersion: version.id }, { reason: 'rewritten' })).rejects.toThrow(/append-only/);
    await expect(db.fork().nativeDelete(ModelStageChangeEntity, { modelVersion: version.id })).rejects.toThrow(/append-only/);
    expect((await lifecycle.history(db.fork(), engineer, 'append-only')).map((c) => c.reason)).toEqual(['']);
  });
});
