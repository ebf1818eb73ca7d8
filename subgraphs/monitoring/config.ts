import { parseConfig, portEnv, z, type Env } from '../../lib/config.js';
import { DEFAULT_AUDIT_QUEUE } from '../../lib/security/audit.js';

export const monitoringEnv = z.object({
  MONITORING_PORT: portEnv(4004),
  MONITORING_DATABASE_URL: z.string().optional(),
  /** Where the gateway sends audit records; the same value on both sides. */
  AUDIT_QUEUE: z.string().regex(/^[A-Za-z0-9_.:-]{1,200}$/).default(DEFAULT_AUDIT_QUEUE),
  /** Labelled feedback is scored per model version in batches of this many pairs (model drift). */
  FEEDBACK_BATCH_SIZE: z.coerce.number().int().min(1).max(10_000).default(10),
  /** A MODEL_DRIFT alert is raised when a batch's IoU or F1 falls more than this below the version's evaluation. */
  FEEDBACK_ALERT_MARGIN: z.coerce.number().min(0).max(1).default(0.1),
  /** Timeout of the calls to the jobs, datasets and models subgraphs made for feedback. */
  FEEDBACK_RPC_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  /** In-process scheduler of retraining policies' cron schedules; `false` where a Kubernetes CronJob runs the pass. */
  RETRAINING_SCHEDULER_ENABLED: z.enum(['true', 'false']).default('true'),
  /** How often the in-process scheduler looks for due schedules. */
  RETRAINING_SCHEDULER_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(3600).default(30),
  /** Durable queue bound to `drift.alert` and `dataset.version.created` (and fed by the trigger CLI). */
  RETRAINING_TRIGGERS_QUEUE: z.string().regex(/^[A-Za-z0-9_.:-]{1,200}$/).default('monitoring.retraining-triggers'),
  /** Timeout of `models.retrain` / `models.lineage`: starting a run resolves its dataset version too. */
  RETRAINING_RPC_TIMEOUT_MS: z.coerce.number().int().positive().default(30_000),
  /** A model version's window is evaluated as soon as it holds this many samples. */
  DRIFT_WINDOW_SAMPLES: z.coerce.number().int().min(2).max(1000).default(20),
  /** …or once its oldest sample is this old, if it holds at least DRIFT_WINDOW_MIN_SAMPLES. */
  DRIFT_WINDOW_MINUTES: z.coerce.number().min(1).max(7 * 24 * 60).default(60),
  DRIFT_WINDOW_MIN_SAMPLES: z.coerce.number().int().min(2).max(1000).default(5),
  /** How often time windows are looked for. */
  DRIFT_EVALUATION_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(3600).default(60),
  /** PSI of the intensity histograms is computed on this many merged bins (it must divide the 64 bins). */
  DRIFT_PSI_BINS: z.coerce.number().int().min(2).max(1024).default(16),
  DRIFT_PSI_WARN: z.coerce.number().positive().default(0.1),
  DRIFT_PSI_ALERT: z.coerce.number().positive().default(0.25),
  /** Wasserstein-1 of the intensity histograms, as a fraction of the value range. */
  DRIFT_WASSERSTEIN_ALERT: z.coerce.number().positive().max(1).default(0.1),
  /** KS test of the change fractions: alert below this p-value. */
  DRIFT_KS_P_VALUE: z.coerce.number().positive().max(1).default(0.01),
  /** Kernel two-sample (MMD²) test of the tile embeddings: alert below this p-value. */
  DRIFT_MMD_P_VALUE: z.coerce.number().positive().max(1).default(0.01),
  DRIFT_MMD_PERMUTATIONS: z.coerce.number().int().min(19).max(10_000).default(200),
  /** Drift samples older than this go, in a report or still pending (retention.ts). */
  DRIFT_SAMPLE_RETENTION_DAYS: z.coerce.number().int().min(1).max(36_500).default(30),
  /** Drift reports and acknowledged alerts older than this go (the latest report of a model stays); 0 keeps them. */
  DRIFT_REPORT_RETENTION_DAYS: z.coerce.number().int().min(0).max(36_500).default(0),
  /** Audit events older than this go; 0 keeps them. */
  AUDIT_RETENTION_DAYS: z.coerce.number().int().min(0).max(36_500).default(0),
  /** How often the retention pass runs (also once at start-up). */
  RETENTION_INTERVAL_MINUTES: z.coerce.number().int().min(1).max(7 * 24 * 60).default(60),
}).superRefine((config, ctx) => {
  // A pending sample must outlive the time window that would take it in, or time windows could never form.
  if (config.DRIFT_SAMPLE_RETENTION_DAYS * 24 * 60 <= config.DRIFT_WINDOW_MINUTES) {
    ctx.addIssue({
      code: 'custom',
      path: ['DRIFT_SAMPLE_RETENTION_DAYS'],
      message: `${config.DRIFT_SAMPLE_RETENTION_DAYS} days is not longer than DRIFT_WINDOW_MINUTES (${config.DRIFT_WINDOW_MINUTES}): pending samples would be deleted before their time window`,
    });
  }
});
export type MonitoringConfig = Readonly<z.infer<typeof monitoringEnv>>;

export const loadMonitoringConfig = (env: Env): MonitoringConfig => parseConfig(monitoringEnv, env);
