// Retention of the monitoring subgraph's stored data: drift samples once they are old (reported or not), drift reports
// and acknowledged alerts, and audit events, only when an operator asks for it (kept forever by default). A pass runs at
// start-up and then every interval; each table is emptied in bounded batches, one statement (and so one short
// transaction) per batch, so a large backlog never holds locks or a transaction for long.
import type { EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { qualifiedTable } from '../../lib/db.js';

/** What a pass deletes; the `kind` label of `lcd_retention_deleted_total`. */
export type RetentionKind = 'drift_sample_reported' | 'drift_sample_pending' | 'drift_report' | 'drift_alert' | 'audit_event';

export const RETENTION_KINDS: readonly RetentionKind[] = ['drift_sample_reported', 'drift_sample_pending', 'drift_report', 'drift_alert', 'audit_event'];

/** Rows deleted by one statement: small enough that a backlog of millions never makes one long transaction. */
export const DEFAULT_RETENTION_BATCH_SIZE = 5000;

export interface RetentionSettings {
  /** Drift samples whose `at` is older than this many days go, reported or pending. At least 1. */
  driftSampleDays: number;
  /** Drift reports and acknowledged alerts older than this go; 0 keeps them forever. */
  driftReportDays: number;
  /** Audit events older than this go; 0 keeps them forever. */
  auditDays: number;
  /** Rows per delete statement. */
  batchSize?: number;
}

export type RetentionResult = Record<RetentionKind, number>;

export class RetentionMetrics {
  readonly deleted: Counter<'kind'>;

  constructor(registry: Registry) {
    this.deleted = new Counter({
      name: 'lcd_retention_deleted_total',
      help: 'Rows deleted by the monitoring retention pass, by kind (drift_sample_reported, drift_sample_pending, drift_report, drift_alert, audit_event)',
      labelNames: ['kind'] as const,
      registers: [registry],
    });
  }
}

const DAY_MS = 86_400_000;

interface Rule {
  kind: RetentionKind;
  table: string;
  /** SQL condition on the table aliased `t`; its one placeholder is the cutoff. */
  where: string;
  days: number;
}

function rulesOf(settings: RetentionSettings): Rule[] {
  return [
    { kind: 'drift_sample_reported', table: 'drift_sample', where: `t."report_id" is not null and t."at" < ?`, days: settings.driftSampleDays },
    // A pending sample this old is one whose version never gathered enough samples for a window (or whose reference
    // cannot be read): it would only make a window of stale inputs now. Deleting one while an evaluation reads it is
    // harmless: had the evaluation taken it first, it would be a reported sample as old, deleted all the same.
    { kind: 'drift_sample_pending', table: 'drift_sample', where: `t."report_id" is null and t."at" < ?`, days: settings.driftSampleDays },
    // The latest report of each model stays whatever its age: the models subgraph attaches it to promotion requests
    // (drift-summary.rpc.ts), and "no drift report" would read as a model never monitored.
    {
      kind: 'drift_report',
      table: 'drift_report',
      where: `t."created_at" < ? and exists (select 1 from {table} n where n."tenant" = t."tenant" and n."model_name" = t."model_name" and (n."created_at", n."id") > (t."created_at", t."id"))`,
      days: settings.driftReportDays,
    },
    // OPEN alerts are live state (someone still has to look at them, and raiseAlert relies on the open one): only
    // acknowledged alerts age out.
    { kind: 'drift_alert', table: 'drift_alert', where: `t."status" <> 'OPEN' and t."created_at" < ?`, days: settings.driftReportDays },
    // The audit table has no trigger that forbids deletes (unlike models.model_stage_change); "at" is the column of
    // AuditEventEntity.createdAt.
    { kind: 'audit_event', table: 'audit_event', where: `t."at" < ?`, days: settings.auditDays },
  ];
}

/**
 * Deletes up to `limit` rows matching `where`. Rows another transaction holds (an evaluation marking samples reported,
 * another replica's pass) are skipped rather than waited for: the next batch or pass takes them.
 */
async function deleteBatch(em: EntityManager, table: string, where: string, cutoff: Date, limit: number): Promise<number> {
  const sql =
    `with doomed as (select t."id" from ${table} t where ${where} limit ? for update of t skip locked), ` +
    `gone as (delete from ${table} d using doomed where d."id" = doomed."id" returning 1) ` +
    `select count(*)::int as "deleted" from gone`;
  const rows = await em.getConnection().execute<{ deleted: number | string }[]>(sql, [cutoff, limit]);
  return Number(rows[0]?.deleted ?? 0);
}

/**
 * One retention pass. Each kind is deleted batch after batch until a batch comes back short; `shouldStop` is asked
 * between batches so that shutdown does not wait for a whole backlog. Counts are added to the metric batch by batch,
 * so a pass that fails half-way still counts what it deleted.
 */
export async function runRetentionPass(
  em: EntityManager,
  settings: RetentionSettings,
  options: { now?: Date; metrics?: RetentionMetrics | null; shouldStop?: () => boolean } = {},
): Promise<RetentionResult> {
  const batchSize = settings.batchSize ?? DEFAULT_RETENTION_BATCH_SIZE;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`retention batchSize must be a positive integer, got ${batchSize}`);
  const now = options.now ?? new Date();
  const result = Object.fromEntries(RETENTION_KINDS.map((k) => [k, 0])) as RetentionResult;
  for (const rule of rulesOf(settings)) {
    if (rule.days <= 0) continue;
    const table = qualifiedTable(em, rule.table);
    const where = rule.where.replaceAll('{table}', table);
    const cutoff = new Date(now.getTime() - rule.days * DAY_MS);
    for (;;) {
      if (options.shouldStop?.()) return result;
      const deleted = await deleteBatch(em, table, where, cutoff, batchSize);
      result[rule.kind] += deleted;
      if (deleted > 0) options.metrics?.deleted.inc({ kind: rule.kind }, deleted);
      if (deleted < batchSize) break;
    }
  }
  return result;
}

/** Runs the retention pass at start and every interval; a failed pass is logged and the next one tries again. */
export class RetentionScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private stopping = false;

  constructor(
    private readonly fork: () => EntityManager,
    private readonly settings: RetentionSettings,
    private readonly options: { intervalMs: number; log: Logger; metrics?: RetentionMetrics | null },
  ) {}

  start(): void {
    this.timer = setInterval(() => this.tick(), this.options.intervalMs);
    this.timer.unref();
    this.tick();
  }

  /** Runs a pass unless one is running already (a slow pass is never doubled up). */
  tick(): void {
    if (this.running || this.stopping) return;
    const started = Date.now();
    this.running = runRetentionPass(this.fork(), this.settings, { metrics: this.options.metrics, shouldStop: () => this.stopping })
      .then((deleted) => {
        const total = RETENTION_KINDS.reduce((n, k) => n + deleted[k], 0);
        const fields = {
          reportedSamples: deleted.drift_sample_reported,
          pendingSamples: deleted.drift_sample_pending,
          reports: deleted.drift_report,
          alerts: deleted.drift_alert,
          auditEvents: deleted.audit_event,
          ms: Date.now() - started,
        };
        if (total > 0) this.options.log.info(fields, 'retention pass deleted old rows');
        else this.options.log.debug(fields, 'retention pass found nothing to delete');
      })
      .catch((error: unknown) => this.options.log.warn({ err: error }, 'retention pass failed; the next one tries again'))
      .finally(() => {
        this.running = null;
      });
  }

  /** Stops the timer and waits for a running pass, which gives up at its next batch. */
  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }
}
