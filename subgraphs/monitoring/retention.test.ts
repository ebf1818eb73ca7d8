// Retention of the monitoring data on a real database (PGlite, or PostgreSQL with TEST_DATABASE_URL): what goes, what
// stays, batching, the metric, the scheduler's start / failure / stop, and the configuration's checks.
import { randomUUID } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/core';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../lib/config.js';
import type { Database } from '../../lib/db.js';
import { AuditEventEntity } from './audit-event.entity.js';
import { loadMonitoringConfig } from './config.js';
import { DriftAlertEntity } from './drift-alert.entity.js';
import { DriftReportEntity } from './drift-report.entity.js';
import { DriftSampleEntity } from './drift-sample.entity.js';
import type { DriftSampleSummary } from './drift-samples.contract.js';
import { AuditOutcome, DriftAlertStatus } from './monitoring.contracts.js';
import { RetentionMetrics, RetentionScheduler, runRetentionPass, type RetentionSettings } from './retention.js';
import { aDriftAlert, aDriftReport, MODEL_VERSION_ID, openMonitoringDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ db, close } = await openMonitoringDatabase());
});

afterAll(async () => {
  await close();
});

beforeEach(async () => {
  // A pass deletes across tenants: every test starts from empty tables.
  const em = db.fork();
  for (const entity of [DriftSampleEntity, DriftReportEntity, DriftAlertEntity, AuditEventEntity]) await em.nativeDelete(entity, {});
});

const NOW = new Date('2026-06-01T12:00:00Z');
const daysAgo = (days: number) => new Date(NOW.getTime() - days * 86_400_000);
const defaults: RetentionSettings = { driftSampleDays: 30, driftReportDays: 0, auditDays: 365 };

async function samples(count: number, at: Date, reportId: string | null, tenant = 'acme'): Promise<string[]> {
  const em = db.fork();
  const rows = Array.from({ length: count }, (_, i) =>
    em.create(DriftSampleEntity, {
      sampleKey: `${randomUUID()}#${i}`,
      tenant,
      modelName: 'snunet',
      modelVersionId: MODEL_VERSION_ID,
      referenceStatsKey: 'models/snunet/reference_stats.json',
      jobId: randomUUID(),
      pairIndex: i,
      at,
      summary: {} as DriftSampleSummary,
      reportId,
    }),
  );
  await em.flush();
  return rows.map((r) => r.id);
}

async function auditEvent(at: Date): Promise<string> {
  const em = db.fork();
  const event = em.create(AuditEventEntity, {
    tenant: 'acme',
    actor: 'analyst@acme',
    roles: ['analyst'],
    fieldName: 'submitChangeDetectionJob',
    variables: {},
    outcome: AuditOutcome.SUCCESS,
    createdAt: at,
  });
  await em.flush();
  return event.id;
}

const idsOf = async (entity: typeof DriftSampleEntity | typeof DriftReportEntity | typeof DriftAlertEntity | typeof AuditEventEntity) =>
  new Set((await db.fork().find(entity, {}, { fields: ['id'] })).map((row) => row.id));

describe('runRetentionPass', () => {
  it('deletes reported and pending samples older than the retention, and counts them apart', async () => {
    const report = randomUUID();
    const oldReported = await samples(3, daysAgo(31), report);
    const oldPending = await samples(2, daysAgo(45), null);
    const recentReported = await samples(2, daysAgo(29), report);
    const recentPending = await samples(4, daysAgo(1), null);

    const deleted = await runRetentionPass(db.fork(), defaults, { now: NOW });

    expect(deleted).toMatchObject({ drift_sample_reported: 3, drift_sample_pending: 2 });
    const left = await idsOf(DriftSampleEntity);
    expect([...left].sort()).toEqual([...recentReported, ...recentPending].sort());
    for (const id of [...oldReported, ...oldPending]) expect(left.has(id)).toBe(false);
    // A recent pending sample is still what a window will take in.
    expect(await db.fork().count(DriftSampleEntity, { reportId: null })).toBe(4);
  });

  it('keeps drift reports and alerts by default, however old', async () => {
    const old = daysAgo(3 * 365);
    const reports = [await aDriftReport(db, 'acme', { createdAt: old }), await aDriftReport(db, 'acme', { createdAt: daysAgo(2 * 365) })];
    const alert = await aDriftAlert(db, 'acme', { createdAt: old, status: DriftAlertStatus.ACKNOWLEDGED, acknowledgedBy: 'a', acknowledgedAt: old });

    const deleted = await runRetentionPass(db.fork(), defaults, { now: NOW });

    expect(deleted).toMatchObject({ drift_report: 0, drift_alert: 0 });
    expect(await idsOf(DriftReportEntity)).toEqual(new Set(reports.map((r) => r.id)));
    expect(await idsOf(DriftAlertEntity)).toEqual(new Set([alert.id]));
  });

  it('with a report retention, deletes old reports but the latest of each model, and old acknowledged alerts only', async () => {
    const stale = await aDriftReport(db, 'acme', { createdAt: daysAgo(100) });
    const latestOfSnunet = await aDriftReport(db, 'acme', { createdAt: daysAgo(95) });
    const onlyOfUnet = await aDriftReport(db, 'acme', { modelName: 'unet', createdAt: daysAgo(200) });
    const otherTenant = await aDriftReport(db, 'globex', { createdAt: daysAgo(300) });
    const recent = await aDriftReport(db, 'globex', { modelName: 'unet', createdAt: daysAgo(10) });
    const acknowledged = await aDriftAlert(db, 'acme', { createdAt: daysAgo(100), status: DriftAlertStatus.ACKNOWLEDGED, acknowledgedBy: 'a', acknowledgedAt: daysAgo(99) });
    const open = await aDriftAlert(db, 'acme', { metric: 'psi.band1', createdAt: daysAgo(100) });
    const recentAcknowledged = await aDriftAlert(db, 'acme', { metric: 'psi.band2', createdAt: daysAgo(5), status: DriftAlertStatus.ACKNOWLEDGED });

    const deleted = await runRetentionPass(db.fork(), { ...defaults, driftReportDays: 90 }, { now: NOW });

    expect(deleted).toMatchObject({ drift_report: 1, drift_alert: 1 });
    expect(await idsOf(DriftReportEntity)).toEqual(new Set([latestOfSnunet.id, onlyOfUnet.id, otherTenant.id, recent.id]));
    expect((await idsOf(DriftReportEntity)).has(stale.id)).toBe(false);
    expect(await idsOf(DriftAlertEntity)).toEqual(new Set([open.id, recentAcknowledged.id]));
    expect((await idsOf(DriftAlertEntity)).has(acknowledged.id)).toBe(false);
  });

  it('deletes audit events older than the audit retention, and none with 0', async () => {
    const old = await auditEvent(daysAgo(366));
    const recent = await auditEvent(daysAgo(364));

    expect(await runRetentionPass(db.fork(), { ...defaults, auditDays: 0 }, { now: NOW })).toMatchObject({ audit_event: 0 });
    expect(await idsOf(AuditEventEntity)).toEqual(new Set([old, recent]));

    expect(await runRetentionPass(db.fork(), defaults, { now: NOW })).toMatchObject({ audit_event: 1 });
    expect(await idsOf(AuditEventEntity)).toEqual(new Set([recent]));
  });

  it('deletes a backlog larger than one batch, batch after batch', async () => {
    await samples(23, daysAgo(40), randomUUID());
    await samples(10, daysAgo(40), null);
    const keep = await samples(3, daysAgo(2), randomUUID());

    const deleted = await runRetentionPass(db.fork(), { ...defaults, batchSize: 5 }, { now: NOW });

    expect(deleted).toMatchObject({ drift_sample_reported: 23, drift_sample_pending: 10 });
    expect(await idsOf(DriftSampleEntity)).toEqual(new Set(keep));
  });

  it('deletes at most one batch per statement: stopped after the first, the rest waits for the next pass', async () => {
    await samples(12, daysAgo(40), randomUUID());
    let batches = 0;

    const first = await runRetentionPass(db.fork(), { ...defaults, batchSize: 5 }, { now: NOW, shouldStop: () => batches++ >= 1 });

    expect(first.drift_sample_reported).toBe(5);
    expect(await db.fork().count(DriftSampleEntity, {})).toBe(7);
    expect((await runRetentionPass(db.fork(), { ...defaults, batchSize: 5 }, { now: NOW })).drift_sample_reported).toBe(7);
    expect(await db.fork().count(DriftSampleEntity, {})).toBe(0);
  });

  it('counts what it deleted in lcd_retention_deleted_total{kind}', async () => {
    const registry = new Registry();
    const metrics = new RetentionMetrics(registry);
    await samples(3, daysAgo(40), randomUUID());
    await samples(2, daysAgo(40), null);
    await auditEvent(daysAgo(400));

    await runRetentionPass(db.fork(), defaults, { now: NOW, metrics });

    const text = await registry.metrics();
    expect(text).toMatch(/^lcd_retention_deleted_total\{kind="drift_sample_reported"\} 3$/m);
    expect(text).toMatch(/^lcd_retention_deleted_total\{kind="drift_sample_pending"\} 2$/m);
    expect(text).toMatch(/^lcd_retention_deleted_total\{kind="audit_event"\} 1$/m);
  });
});

describe('RetentionScheduler', () => {
  const quietLog = () => {
    const log = pino({ level: 'silent' });
    return { log, info: vi.spyOn(log, 'info'), warn: vi.spyOn(log, 'warn') };
  };

  it('runs a pass as soon as it starts, and stops', async () => {
    const oldSamples = await samples(4, new Date(Date.now() - 40 * 86_400_000), randomUUID());
    const { log, info } = quietLog();
    const scheduler = new RetentionScheduler(db.fork, defaults, { intervalMs: 3_600_000, log });

    scheduler.start();
    await vi.waitFor(() => expect(info).toHaveBeenCalledWith(expect.objectContaining({ reportedSamples: 4, pendingSamples: 0 }), expect.any(String)), { timeout: 30_000 });
    await scheduler.stop();

    const left = await idsOf(DriftSampleEntity);
    for (const id of oldSamples) expect(left.has(id)).toBe(false);
  });

  it('logs a failed pass instead of throwing, and stops cleanly', async () => {
    const { log, warn } = quietLog();
    const broken = () => {
      const em = db.fork();
      vi.spyOn(em, 'getConnection').mockImplementation(() => {
        throw new Error('database unreachable');
      });
      return em as EntityManager;
    };
    const scheduler = new RetentionScheduler(broken, defaults, { intervalMs: 3_600_000, log });

    scheduler.start();
    await scheduler.stop();

    expect(warn).toHaveBeenCalledWith(expect.objectContaining({ err: expect.objectContaining({ message: 'database unreachable' }) }), expect.stringMatching(/retention pass failed/));
  });
});

describe('retention configuration', () => {
  const load = (env: Record<string, string>) => loadMonitoringConfig({ MONITORING_PORT: '0', ...env });

  it('defaults to 30 days of samples, reports kept, a year of audit, a pass every hour', () => {
    expect(load({})).toMatchObject({ DRIFT_SAMPLE_RETENTION_DAYS: 30, DRIFT_REPORT_RETENTION_DAYS: 0, AUDIT_RETENTION_DAYS: 0, RETENTION_INTERVAL_MINUTES: 60 });
  });

  it.each(['DRIFT_SAMPLE_RETENTION_DAYS', 'DRIFT_REPORT_RETENTION_DAYS', 'AUDIT_RETENTION_DAYS', 'RETENTION_INTERVAL_MINUTES'])('rejects a negative %s, naming it', (name) => {
    expect(() => load({ [name]: '-1' })).toThrow(ConfigError);
    expect(() => load({ [name]: '-1' })).toThrow(new RegExp(`${name}: `));
  });

  it('rejects a sample retention no longer than the drift time window', () => {
    expect(() => load({ DRIFT_SAMPLE_RETENTION_DAYS: '1', DRIFT_WINDOW_MINUTES: String(2 * 24 * 60) })).toThrow(/DRIFT_SAMPLE_RETENTION_DAYS: .*DRIFT_WINDOW_MINUTES/);
    expect(load({ DRIFT_SAMPLE_RETENTION_DAYS: '3', DRIFT_WINDOW_MINUTES: String(2 * 24 * 60) }).DRIFT_SAMPLE_RETENTION_DAYS).toBe(3);
  });
});
