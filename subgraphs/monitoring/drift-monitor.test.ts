// Data drift through the monitoring subgraph's own parts: worker samples arrive on the queue, are checked against
// the version's reference_stats.json (the committed demo model's), stored once, and each window becomes a report;
// metrics past their threshold raise one DATA_DRIFT alert each, logged on the tenant's drift stream. Runs on PGlite,
// or on PostgreSQL with TEST_DATABASE_URL.
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { EventLogEntity } from '../../lib/events/event-log.entity.js';
import { LocalObjectStore } from '../../lib/storage/index.js';
import { AlertMetrics, raiseAlert, type AlertDeps } from './alerts.js';
import { DriftAlertEntity } from './drift-alert.entity.js';
import { DriftMonitor, DriftPromMetrics, DriftSampleRejectedError } from './drift-monitor.js';
import { ReferenceStatsCache, type ReferenceStats } from './drift-reference.js';
import { DriftReportEntity } from './drift-report.entity.js';
import { DriftSampleEntity } from './drift-sample.entity.js';
import { consumeDriftSamples } from './drift-samples.consumer.js';
import { DRIFT_SAMPLE_TYPE, DRIFT_SAMPLES_QUEUE, driftSamplePayloadSchema, type DriftSamplePayloadInput } from './drift-samples.contract.js';
import { DriftService } from './drift.service.js';
import { DriftAlertKind, DriftAlertStatus } from './monitoring.contracts.js';
import { MonitoringRepository } from './monitoring.repository.js';
import { openMonitoringDatabase } from './testing.js';

const REFERENCE_KEY = 'models/platform/lcd-demo/test.reference_stats.json';
const WINDOW = 4;
let db: Database;
let close: () => Promise<void>;
let broker: Broker;
let subscription: Subscription;
let storeDir: string;
let reference: ReferenceStats;
let metrics: DriftPromMetrics;
let monitor: DriftMonitor;
let alerts: AlertDeps;
let kicks = 0;

beforeAll(async () => {
  ({ db, close } = await openMonitoringDatabase());
  storeDir = await mkdtemp(join(tmpdir(), 'drift-store-'));
  const store = new LocalObjectStore({ root: storeDir, publicBaseUrl: 'http://localhost', signingSecret: Buffer.alloc(32, 1) });
  const bytes = await readFile(join(process.cwd(), 'training', 'demo-model', 'reference_stats.json'));
  await store.put(REFERENCE_KEY, bytes, { contentType: 'application/json' });
  reference = JSON.parse(bytes.toString('utf8')) as ReferenceStats;
  const registry = new Registry();
  metrics = new DriftPromMetrics(registry);
  alerts = { relay: { kick: () => void kicks++ }, metrics: new AlertMetrics(registry) };
  monitor = new DriftMonitor(
    {
      samples: WINDOW,
      minutes: 60,
      minSamples: 2,
      thresholds: { psiBins: 16, psiWarn: 0.1, psiAlert: 0.25, wassersteinAlert: 0.1, ksPValue: 0.01, mmdPValue: 0.01, mmdPermutations: 199 },
    },
    new ReferenceStatsCache(store),
    alerts,
    metrics,
    pino({ level: 'silent' }),
  );
  broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
  subscription = await consumeDriftSamples({ broker, db, monitor, metrics, log: pino({ level: 'silent' }) });
});
afterAll(async () => {
  await subscription?.close();
  await broker?.close();
  await close();
  await rm(storeDir, { recursive: true, force: true });
});

/** Intensity histograms like the reference's (optionally moved `shift` bins up), tiles drawn from its embedding sample. */
function aSample(versionId: string, index: number, options: { shift?: number; embeddingOffset?: number; changedFraction?: number; tenant?: string; bands?: string[] } = {}): DriftSamplePayloadInput {
  const shift = options.shift ?? 0;
  const names = options.bands ?? reference.bands.names;
  const bandStats = names.map((name, b) => {
    const ref = reference.bands.perBand[b % reference.bands.perBand.length]!.histogram;
    const histogram = ref.map((_, i) => Math.round((ref[i - shift] ?? 0) / 1000));
    return { name, mean: 100, std: 50, min: 0, max: 255, histogram };
  });
  const tiles = Array.from({ length: 4 }, (_, k) => {
    const row = reference.embedding.sample[(index * 37 + k * 61) % reference.embedding.sample.length]!;
    return { embedding: row.map((v) => v + (options.embeddingOffset ?? 0)), changedFraction: options.changedFraction ?? [0, 0.02, 0.07, 0.12][(index + k) % 4]!, meanProbability: 0.05 };
  });
  return {
    tenant: options.tenant ?? 'acme',
    modelName: 'lcd-demo',
    modelVersionId: versionId,
    referenceStatsKey: REFERENCE_KEY,
    jobId: randomUUID(),
    pairIndex: index,
    at: new Date(Date.UTC(2026, 4, 1, 10, index)).toISOString(),
    summary: {
      input: { scale: 255, bins: 64, before: bandStats, after: bandStats },
      prediction: { changedFraction: 0.05, meanProbability: 0.05 },
      embedding: { dim: reference.embedding.dim, tiles: 4, mean: [], variance: [] },
      tiles,
    },
  };
}

const send = (payload: DriftSamplePayloadInput) => broker.send(DRIFT_SAMPLES_QUEUE, createEnvelope(DRIFT_SAMPLE_TYPE, payload, { tenant: payload.tenant }));
const reportsOf = (versionId: string) => db.fork().find(DriftReportEntity, { modelVersionId: versionId }, { orderBy: { createdAt: 'asc' } });
const alertsOf = (versionId: string) => db.fork().find(DriftAlertEntity, { modelVersionId: versionId }, { orderBy: { metric: 'asc' } });
const counter = async (outcome: string) => (await metrics.samples.get()).values.find((v) => v.labels.outcome === outcome)?.value ?? 0;

describe('drift samples and windows', () => {
  it('turns a full window of in-distribution samples into a report without drift, and stores a redelivered sample once', async () => {
    const version = randomUUID();
    const samples = Array.from({ length: WINDOW }, (_, i) => aSample(version, i));
    for (const s of samples) await send(s);
    await send(samples[0]!);
    await expect.poll(() => reportsOf(version), { timeout: 10_000 }).toHaveLength(1);
    const [report] = await reportsOf(version);
    expect(report).toMatchObject({ tenant: 'acme', modelName: 'lcd-demo', sampleCount: WINDOW, drifted: false });
    expect(report!.windowStart.toISOString()).toBe(samples[0]!.at);
    expect(report!.windowEnd.toISOString()).toBe(samples.at(-1)!.at);
    const m = report!.metrics as unknown as { bands: { psi: number; wasserstein: number; level: string }[]; mmdPValue: number; alerts: string[] };
    expect(m.bands).toHaveLength(3);
    for (const b of m.bands) {
      expect(b.psi).toBeLessThan(0.01);
      expect(b.wasserstein).toBeLessThan(0.01);
      expect(b.level).toBe('ok');
    }
    expect(m.mmdPValue).toBeGreaterThan(0.05);
    expect(m.alerts).toEqual([]);
    expect(await alertsOf(version)).toEqual([]);
    expect(await db.fork().count(DriftSampleEntity, { modelVersionId: version })).toBe(WINDOW);
    expect(await db.fork().count(DriftSampleEntity, { modelVersionId: version, reportId: report!.id })).toBe(WINDOW);
  });

  it('raises one DATA_DRIFT alert per metric past its threshold for shifted inputs, logged on the tenant stream, and no duplicate while it is open', async () => {
    const version = randomUUID();
    const kicksBefore = kicks;
    for (let i = 0; i < WINDOW; i++) await send(aSample(version, i, { shift: 16, embeddingOffset: 1, changedFraction: 0.9 }));
    await expect.poll(() => reportsOf(version), { timeout: 10_000 }).toHaveLength(1);
    const [report] = await reportsOf(version);
    expect(report!.drifted).toBe(true);
    const raised = await alertsOf(version);
    const names = raised.map((a) => a.metric);
    expect(names).toEqual(expect.arrayContaining(['psi.band0', 'psi.band1', 'psi.band2', 'wasserstein.band0', 'mmd.pValue', 'ks.changeFraction.pValue']));
    for (const alert of raised) {
      expect(alert).toMatchObject({ tenant: 'acme', kind: DriftAlertKind.DATA_DRIFT, status: DriftAlertStatus.OPEN, modelName: 'lcd-demo' });
      if (alert.metric.endsWith('pValue')) expect(alert.value).toBeLessThan(alert.threshold);
      else expect(alert.value).toBeGreaterThanOrEqual(alert.threshold);
    }
    const psi0 = raised.find((a) => a.metric === 'psi.band0')!;
    // Wasserstein: the mass moved 16 of 64 bins, a quarter of the range (a little less: the top 16 bins fell off).
    const moved = raised.find((a) => a.metric === 'wasserstein.band0')!.value;
    expect(moved).toBeGreaterThan(0.2);
    expect(moved).toBeLessThanOrEqual(0.25);
    const events = await db.fork().find(EventLogEntity, { stream: 'drift:acme' }, { orderBy: { sequence: 'asc' } });
    const event = events.find((e) => e.payload.alertId === psi0.id)!;
    expect(event).toMatchObject({ routingKey: 'drift.alert', tenant: 'acme' });
    expect(event.payload).toMatchObject({ modelName: 'lcd-demo', modelVersionId: version, kind: 'DATA_DRIFT', metric: 'psi.band0', threshold: 0.25 });
    expect(kicks).toBeGreaterThan(kicksBefore);

    // The next drifted window reports again but raises nothing new while the alerts are open.
    for (let i = WINDOW; i < 2 * WINDOW; i++) await send(aSample(version, i, { shift: 16, embeddingOffset: 1, changedFraction: 0.9 }));
    await expect.poll(() => reportsOf(version), { timeout: 10_000 }).toHaveLength(2);
    expect((await alertsOf(version)).length).toBe(raised.length);
  });

  it('dead-letters a sample whose band layout differs from the reference, with the reason, and counts it', async () => {
    const version = randomUUID();
    const before = await counter('rejected');
    await send(aSample(version, 0, { bands: ['red', 'green', 'blue', 'nir'] }));
    await expect.poll(async () => (await broker.deadLetters(DRIFT_SAMPLES_QUEUE)).length, { timeout: 10_000 }).toBeGreaterThan(0);
    const letters = await broker.deadLetters(DRIFT_SAMPLES_QUEUE);
    expect(letters.at(-1)!.reason).toMatch(/4 before bands, the reference 3/);
    expect(await counter('rejected')).toBe(before + 1);
    expect(await db.fork().count(DriftSampleEntity, { modelVersionId: version })).toBe(0);

    await send({ ...aSample(version, 1), summary: { nonsense: true } } as unknown as DriftSamplePayloadInput);
    await expect.poll(async () => (await broker.deadLetters(DRIFT_SAMPLES_QUEUE)).length, { timeout: 10_000 }).toBe(letters.length + 1);
    expect((await broker.deadLetters(DRIFT_SAMPLES_QUEUE)).at(-1)!.reason).toMatch(/invalid drift sample: summary/);
  });

  it('stores a batch with one outcome per sample: a pair seen twice once, a sample of another layout rejected alone', async () => {
    const version = randomUUID();
    const parse = (s: DriftSamplePayloadInput) => driftSamplePayloadSchema.parse(s);
    const first = parse(aSample(version, 0));
    const second = parse(aSample(version, 1));
    const outcomes = await monitor.ingestMany(db.fork(), [first, second, first, parse(aSample(version, 2, { bands: ['red', 'green', 'blue', 'nir'] }))]);
    expect(outcomes.slice(0, 3)).toEqual(['stored', 'stored', 'duplicate']);
    expect(outcomes[3]).toBeInstanceOf(DriftSampleRejectedError);
    expect((outcomes[3] as Error).message).toMatch(/4 before bands, the reference 3/);
    expect(await db.fork().count(DriftSampleEntity, { modelVersionId: version })).toBe(2);
    // A later batch that repeats a stored pair stores nothing new, and a full window still becomes one report.
    expect(await monitor.ingestMany(db.fork(), [second, parse(aSample(version, 2)), parse(aSample(version, 3))])).toEqual(['duplicate', 'stored', 'stored']);
    expect(await reportsOf(version)).toHaveLength(1);
    expect(await db.fork().count(DriftSampleEntity, { modelVersionId: version, reportId: null })).toBe(0);
  });

  it('evaluates a time window once its oldest sample is older than the window and it has the minimum count', async () => {
    const version = randomUUID();
    expect(await monitor.ingest(db.fork(), driftSamplePayloadSchema.parse(aSample(version, 0)))).toBe('stored');
    expect(await monitor.ingest(db.fork(), driftSamplePayloadSchema.parse(aSample(version, 1)))).toBe('stored');
    const oldest = new Date(Date.UTC(2026, 4, 1, 10, 0));
    expect(await monitor.evaluateDue(db.fork(), new Date(oldest.getTime() + 30 * 60_000))).toEqual([]);
    const reports = await monitor.evaluateDue(db.fork(), new Date(oldest.getTime() + 61 * 60_000));
    expect(reports.filter((r) => r.modelVersionId === version)).toHaveLength(1);
    expect((await reportsOf(version))[0]).toMatchObject({ sampleCount: 2, drifted: false });
  });
});

describe('acknowledging and re-raising alerts', () => {
  const service = new DriftService(new MonitoringRepository());
  const input = (versionId: string) => ({
    tenant: 'acme',
    modelName: 'lcd-demo',
    modelVersionId: versionId,
    kind: 'DATA_DRIFT' as const,
    metric: 'psi.band1',
    value: 0.4,
    threshold: 0.25,
    windowStart: new Date('2026-05-01T10:00:00Z'),
    windowEnd: new Date('2026-05-01T11:00:00Z'),
  });

  it('records who acknowledged and when, once; another tenant gets NOT_FOUND; a new alert may follow', async () => {
    const version = randomUUID();
    const first = await raiseAlert(db.fork(), alerts, input(version));
    expect(first.created).toBe(true);
    const again = await raiseAlert(db.fork(), alerts, { ...input(version), value: 0.5 });
    expect(again).toMatchObject({ created: false, alert: { id: first.alert.id } });

    const acked = await service.acknowledgeAlert(db.fork(), { tenant: 'acme', subject: 'alice' }, first.alert.id);
    expect(acked).toMatchObject({ status: DriftAlertStatus.ACKNOWLEDGED, acknowledgedBy: 'alice' });
    const twice = await service.acknowledgeAlert(db.fork(), { tenant: 'acme', subject: 'bob' }, first.alert.id);
    expect(twice.acknowledgedBy).toBe('alice');
    expect(twice.acknowledgedAt!.toISOString()).toBe(acked.acknowledgedAt!.toISOString());
    await expect(service.acknowledgeAlert(db.fork(), { tenant: 'other', subject: 'eve' }, first.alert.id)).rejects.toMatchObject({ extensions: { code: 'NOT_FOUND' } });
    await expect(service.acknowledgeAlert(db.fork(), { tenant: 'acme', subject: 'alice' }, 'nope')).rejects.toMatchObject({ extensions: { code: 'NOT_FOUND' } });

    const next = await raiseAlert(db.fork(), alerts, input(version));
    expect(next.created).toBe(true);
    expect(next.alert.id).not.toBe(first.alert.id);
  });

  it('raises alerts without a model version (a model as a whole), one open at a time', async () => {
    const a = await raiseAlert(db.fork(), alerts, { ...input('x'), modelVersionId: null, kind: 'MODEL_DRIFT', metric: 'iou', modelName: `m-${randomUUID()}` });
    const b = await raiseAlert(db.fork(), alerts, { ...input('x'), modelVersionId: null, kind: 'MODEL_DRIFT', metric: 'iou', modelName: a.alert.modelName });
    expect(a.created).toBe(true);
    expect(b).toMatchObject({ created: false, alert: { id: a.alert.id } });
  });
});
