// Data drift of the inputs: stores the workers' samples (checked against the version's reference first), and turns
// each window of a model version's samples — by count, or by age with a minimum count — into a DriftReport, raising a
// DATA_DRIFT alert per metric past its alert threshold. Scores are exported as Prometheus gauges.
import { LockMode, UniqueConstraintViolationException, type EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
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
    if (sample.referenceStatsKey === null) {
      this.metrics?.samples.inc({ outcome: 'no_reference' });
      return 'no_reference';
    }
    try {
      const reference = await this.references.get(sample.referenceStatsKey);
      const mismatch = layoutMismatch(sample.summary, reference);
      if (mismatch) throw new DriftSampleRejectedError(`drift sample of ${sample.modelName} version ${sample.modelVersionId} does not match its reference: ${mismatch}`);
    } catch (error) {
      if (error instanceof ReferenceStatsError) {
        this.metrics?.samples.inc({ outcome: 'rejected' });
        throw new DriftSampleRejectedError(`drift sample of ${sample.modelName} version ${sample.modelVersionId}: ${error.message}`);
      }
      if (error instanceof DriftSampleRejectedError) this.metrics?.samples.inc({ outcome: 'rejected' });
      throw error;
    }
    const sampleKey = `${sample.jobId}#${sample.pairIndex}`;
    let outcome: SampleOutcome = 'stored';
    if (await em.findOne(DriftSampleEntity, { sampleKey }, { fields: ['id'] })) outcome = 'duplicate';
    else {
      try {
        em.create(DriftSampleEntity, {
          sampleKey,
          tenant: sample.tenant,
          modelName: sample.modelName,
          modelVersionId: sample.modelVersionId,
          referenceStatsKey: sample.referenceStatsKey,
          jobId: sample.jobId,
          pairIndex: sample.pairIndex,
          at: new Date(sample.at),
          summary: sample.summary,
        });
        await em.flush();
      } catch (error) {
        if (!(error instanceof UniqueConstraintViolationException)) throw error;
        em.clear();
        outcome = 'duplicate';
      }
    }
    this.metrics?.samples.inc({ outcome });
    // Also after a duplicate: the delivery that stored it may have failed before evaluating.
    await this.evaluate(em.fork(), sample.tenant, sample.modelVersionId, 'count');
    return outcome;
  }

  /** Evaluates every version whose oldest pending sample is older than the window and that has enough samples. */
  async evaluateDue(em: EntityManager, now = new Date()): Promise<DriftReportEntity[]> {
    const cutoff = new Date(now.getTime() - this.settings.minutes * 60_000);
    const schema = em.config.get('schema');
    const table = schema ? `"${schema}"."drift_sample"` : '"drift_sample"';
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
   * the oldest is older than the window and there are at least minSamples). Concurrent evaluations skip each other's
   * locked samples, so a sample is in one report only.
   */
  async evaluate(em: EntityManager, tenant: string, modelVersionId: string, mode: 'count' | 'time', now = new Date()): Promise<DriftReportEntity | null> {
    const { samples: size, minSamples, minutes } = this.settings;
    let scores: WindowScores | null = null;
    const report = await em.transactional(async (tx) => {
      const pending = await tx.find(
        DriftSampleEntity,
        { tenant, modelVersionId, reportId: null },
        { orderBy: { at: 'asc', id: 'asc' }, limit: size, lockMode: LockMode.PESSIMISTIC_PARTIAL_WRITE },
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
