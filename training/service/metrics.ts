// Prometheus metrics of the training service (prom-client); labels are bounded (outcomes, cache results).
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export type RunOutcome = 'succeeded' | 'failed' | 'cancelled';

export class TrainingMetrics {
  readonly runs: Counter<'outcome'>;
  readonly runSeconds: Histogram<'outcome'>;
  readonly active: Gauge;
  readonly pairsPerSecond: Gauge;
  readonly datasetCache: Counter<'result'>;

  constructor(registry: Registry) {
    this.runs = new Counter({ name: 'lcd_training_runs_total', help: 'Training runs finished, by outcome', labelNames: ['outcome'] as const, registers: [registry] });
    this.runSeconds = new Histogram({
      name: 'lcd_training_run_duration_seconds',
      help: 'Wall time of a training run in the service (dataset, trainer, checks, upload), by outcome',
      labelNames: ['outcome'] as const,
      buckets: [5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400],
      registers: [registry],
    });
    this.active = new Gauge({ name: 'lcd_training_active_runs', help: 'Training runs in progress in this service', registers: [registry] });
    this.pairsPerSecond = new Gauge({ name: 'lcd_training_pairs_per_second', help: 'Training throughput last reported by the trainer', registers: [registry] });
    this.datasetCache = new Counter({
      name: 'lcd_training_dataset_cache_total',
      help: 'Dataset versions materialised: hit (already cached) or miss (downloaded)',
      labelNames: ['result'] as const,
      registers: [registry],
    });
  }
}
