// Data drift of the inputs: stores the workers' samples (checked against the version's reference first), and turns
// each window of a model version's samples — by count, or by age with a minimum count — into a DriftReport, raising a
// DATA_DRIFT alert per metric past its alert threshold. Scores are exported as Prometheus gauges.
import type { EntityManager } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import { qualifiedTable } from '../../lib/db.js';
import { raiseAlert, type AlertDeps } from './alerts.js';
import { layoutMismatch, ReferenceStatsError, type ReferenceStatsCache } from './drift-reference.js';
import { DriftReportEntity } from './drift-report.entity.js';
import { DriftSampleEntity } from './drift-sample.entity.js';
import type { DriftSamplePayload } from './drift-samples.contract.js';
import { evaluateWindow, type DriftThresholds, type WindowScores } from './drift-window.js';
import { DriftAlertKind, type DriftMetrics } from './monitoring.contracts.js';

export type SampleOutcome = 'stored' | 'duplicate' | 'rejected' | 'no_reference';

/** A sample that can never be compared with its reference: dead-lettered with this reason. */
export class DriftSampleRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DriftSampleRejectedError';
  }
}

export class DriftPromMetrics {
  readonly score: Gauge<'model' | 'metric'>;
  readonly samples: Counter<'outcome'>;
  readonly reports: Counter<'model' | 'drifted'>;

  constructor(registry: Registry) {
    this.score = new Gauge({
      name: 'lcd_drift_score',
      help: 'Drift score of the latest window per model and metric (psi.bandN, wasserstein.bandN, psi.changeFraction, ks.changeFraction, ks.changeFraction.pValue, mmd, mmd.pValue)',
      labelNames: ['model', 'metric'] as const,
      registers: [registry],
    });
    this.samples = new Counter({
      name: 'lcd_drift_samples_total',
      help: 'Drift samples received, by outcome (stored, duplicate, rejected, no_reference)',
      labelNames: ['outcome'] as const,
      registers: [registry],
    });
    this.reports = new Counter({
      name: 'lcd_drift_reports_total',
      help: 'Drift reports written, by model and whether any metric was past its alert threshold',
      labelNames: ['model', 'drifted'] as const,
      registers: [registry],
    });
  }
}

export interface DriftWindowSettings {
  /** A window is evaluated as soon as a version has this many pending samples… */
  samples: number;
  /** …or when its oldest pending sample is this old and it has at least `minSamples`. */
  minutes: number;
  minSamples: number;
  thresholds: DriftThresholds;
}

export class DriftMonitor {
  constructor(
    private readonly settings: DriftWindowSettings,
    private readonly references: ReferenceStatsCache,
    private readonly alerts: AlertDeps,
    private readonly metrics: DriftPromMetrics | null,
    private readonly log: Logger,
  ) {}

  /**
   * Stores one sample (once per pair however often it arrives) and evaluates the version's window when it is full.
   * Throws DriftSampleRejectedError for a sample that can never be compared with its reference.
   */
  async ingest(em: EntityManager, sample: DriftSamplePayload): Promise<SampleOutcome> {
    const [outcome] = await this.ingestMany(em, [sample]);
    if (outcome instanceof Error) throw outcome;
    return outcome!;
  }

  /**
   * Stores a batch of samples with one statement (each once per pair however often it arrives), then evaluates the
   * window of every model version they touched. One outcome per sample, in order: a DriftSampleRejectedError for a
   * sample that can never be compared with its reference. Throws when the batch could not be stored (retry it).
   */
  async ingestMany(em: EntityManager, samples: DriftSamplePayload[]): Promise<(SampleOutcome | DriftSampleRejectedError)[]> {
    const outcomes: (SampleOutcome | DriftSampleRejectedError)[] = [];
    const rows: { index: number; sample: DriftSamplePayload & { referenceStatsKey: string }; key: string }[] = [];
    for (const [index, sample] of samples.entries()) {
      const rejected = await this.check(sample);
      outcomes.push(rejected ?? 'stored');
      if (rejected || sample.referenceStatsKey === null) continue;
      const key = `${sample.jobId}#${sample.pairIndex}`;
      // The same pair twice in one batch (a redelivery) is stored once.
      if (rows.some((r) => r.key === key)) outcomes[index] = 'duplicate';
      else rows.push({ index, sample: sample as DriftSamplePayload & { referenceStatsKey: string }, key });
    }
    if (rows.length > 0) {
      const table = qualifiedTable(em, 'drift_sample');
      const now = new Date();
      const inserted = await em.getConnection().execute<{ sample_key: string }[]>(
        `insert into ${table} ("id", "sample_key", "tenant", "model_name", "model_version_id", "reference_stats_key", "job_id", "pair_index", "at", "summary", "report_id", "created_at")
         values ${rows.map(() => '(?, ?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, null, ?)').join(', ')}
         on conflict ("sample_key") do nothing returning "sample_key"`,
        rows.flatMap(({ sample: s, key }) => [randomUUID(), key, s.tenant, s.modelName, s.modelVersionId, s.referenceStatsKey, s.jobId, s.pairIndex, new Date(s.at), JSON.stringify(s.summary), now]),
        'all',
      );
      const stored = new Set(inserted.map((r: { sample_key: string }) => r.sample_key));
      for (const { index, key } of rows) if (!stored.has(key)) outcomes[index] = 'duplicate';
    }
    for (const outcome of outcomes) if (!(outcome instanceof Error)) this.metrics?.samples.inc({ outcome });
    // Also after a duplicate: the delivery that stored it may have failed before evaluating. Samples that arrived
    // together may fill more than one window.
    const versions = new Map(rows.map(({ sample: s }) => [`${s.tenant}\0${s.modelVersionId}`, s]));
    for (const s of versions.values()) {
      while (await this.evaluate(em.fork(), s.tenant, s.modelVersionId, 'count'));
    }
    return outcomes;
  }

  /** Null when the sample can be compared with its reference (or has none to compare with), else why not. */
  private async check(sample: DriftSamplePayload): Promise<DriftSampleRejectedError | 'no_reference' | null> {
    if (sample.referenceStatsKey === null) return 'no_reference';
    try {
      const reference = await this.references.get(sample.referenceStatsKey);
      const mismatch = layoutMismatch(sample.summary, reference);
      if (!mismatch) return null;
      this.metrics?.samples.inc({ outcome: 'rejected' });
      return new DriftSampleRejectedError(`drift sample of ${sample.modelName} version ${sample.modelVersionId} does not match its reference: ${mismatch}`);
    } catch (error) {
      if (!(error instanceof ReferenceStatsError)) throw error;
      this.metrics?.samples.inc({ outcome: 'rejected' });
      return new DriftSampleRejectedError(`drift sample of ${sample.modelName} version ${sample.modelVersionId}: ${error.message}`);
    }
  }

  /** Evaluates every version whose oldest pending sample is older than the window and that has enough samples. */
  async evaluateDue(em: EntityManager, now = new Date()): Promise<DriftReportEntity[]> {
    const cutoff = new Date(now.getTime() - this.settings.minutes * 60_000);
    const table = qualifiedTable(em, 'drift_sample');
    const rows = await em
      .getConnection()
      .execute<{ tenant: string; model_version_id: string }[]>(
        `select "tenant", "model_version_id" from ${table} where "report_id" is null group by "tenant", "model_version_id" having count(*) >= ? and min("at") <= ?`,
        [this.settings.minSamples, cutoff],
      );
    const reports: DriftReportEntity[] = [];
    for (const row of rows) {
      const report = await this.evaluate(em.fork(), row.tenant, row.model_version_id, 'time', now);
      if (report) reports.push(report);
    }
    return reports;
  }

  /**
   * Evaluates the oldest pending samples of one version when they make a window (`count`: a full window; `time`:
   * the oldest is older than the window and there are at least minSamples). Evaluations of one version take turns
   * (a transaction-scoped advisory lock), so a sample is in one report only, and the evaluation that runs after a
   * sample's commit sees it: skipping locked rows instead would let two evaluations each see part of a full window
   * and both decline it.
   */
  async evaluate(em: EntityManager, tenant: string, modelVersionId: string, mode: 'count' | 'time', now = new Date()): Promise<DriftReportEntity | null> {
    const { samples: size, minSamples, minutes } = this.settings;
    let scores: WindowScores | null = null;
    // Most samples do not fill a window: a count answers that without loading (and locking) the pending summaries.
    if (mode === 'count' && (await em.count(DriftSampleEntity, { tenant, modelVersionId, reportId: null })) < size) return null;
    const report = await em.transactional(async (tx) => {
      await tx.getConnection().execute('select pg_advisory_xact_lock(hashtextextended(?, 0))', [`drift-window:${tenant}:${modelVersionId}`], 'all', tx.getTransactionContext());
      const pending = await tx.find(
        DriftSampleEntity,
        { tenant, modelVersionId, reportId: null },
        { orderBy: { at: 'asc', id: 'asc' }, limit: size },
      );
      if (mode === 'count' && pending.length < size) return null;
      if (mode === 'time' && (pending.length < minSamples || pending[0]!.at.getTime() > now.getTime() - minutes * 60_000)) return null;
      const first = pending[0]!;
      const reference = await this.references.get(first.referenceStatsKey!);
      scores = evaluateWindow(
        pending.map((s) => s.summary),
        reference,
        this.settings.thresholds,
      );
      const windowStart = pending[0]!.at;
      const windowEnd = pending.at(-1)!.at;
      const created = tx.create(DriftReportEntity, {
        tenant,
        modelName: first.modelName,
        modelVersionId,
        windowStart,
        windowEnd,
        sampleCount: pending.length,
        metrics: { ...scores.metrics, window: mode } as DriftMetrics,
        drifted: scores.breaches.length > 0,
      });
      for (const s of pending) s.reportId = created.id;
      await tx.flush();
      for (const breach of scores.breaches) {
        await raiseAlert(tx, { relay: null, metrics: this.alerts.metrics }, {
          tenant,
          modelName: first.modelName,
          modelVersionId,
          kind: DriftAlertKind.DATA_DRIFT,
          metric: breach.metric,
          value: breach.value,
          threshold: breach.threshold,
          windowStart,
          windowEnd,
          details: { reportId: created.id },
        });
      }
      return created;
    });
    if (!report || !scores) return null;
    // After commit: subscribers hear of the alerts now rather than at the relay's next pass.
    if ((scores as WindowScores).breaches.length > 0) this.alerts.relay?.kick();
    this.export(report, scores);
    this.log.info(
      { tenant, modelName: report.modelName, modelVersionId, reportId: report.id, samples: report.sampleCount, drifted: report.drifted, alerts: (scores as WindowScores).breaches.map((b) => b.metric) },
      'drift window evaluated',
    );
    return report;
  }

  private export(report: DriftReportEntity, scores: WindowScores): void {
    const m = this.metrics;
    if (!m) return;
    const model = report.modelName;
    for (const b of scores.bands) {
      m.score.set({ model, metric: `psi.band${b.band}` }, b.psi);
      m.score.set({ model, metric: `wasserstein.band${b.band}` }, b.wasserstein);
    }
    if (scores.changeFraction) {
      m.score.set({ model, metric: 'psi.changeFraction' }, scores.changeFraction.psi);
      m.score.set({ model, metric: 'ks.changeFraction' }, scores.changeFraction.ks.statistic);
      m.score.set({ model, metric: 'ks.changeFraction.pValue' }, scores.changeFraction.ks.pValue);
    }
    if (scores.mmd) {
      m.score.set({ model, metric: 'mmd' }, scores.mmd.mmd2);
      m.score.set({ model, metric: 'mmd.pValue' }, scores.mmd.pValue);
    }
    m.reports.inc({ model, drifted: String(report.drifted) });
  }
}
