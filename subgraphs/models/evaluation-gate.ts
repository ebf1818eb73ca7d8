// The evaluation gate: a trained version may go to STAGING when its held-out metrics reach the configured minimums
// and are not worse than the current Production version's by more than the allowed regression. Pure: the caller
// supplies the metrics and the Production version; the decision says which checks passed and why.
import type { EvaluationMetrics, GateDecision } from './models.contracts.js';

export interface GateConfig {
  /** Minimum value per metric name (e.g. f1 0.7, iou 0.5); a metric that is missing fails its check. */
  minimums: Record<string, number>;
  /** Largest allowed drop below the Production version, for each gated metric both versions have. */
  maxRegression: number;
}

export interface ProductionBaseline {
  versionId: string;
  version: number;
  metrics: EvaluationMetrics;
}

const fmt = (v: number) => v.toFixed(4);

/**
 * `evaluationSplit`: where the metrics were measured; metrics of the training split (a dataset with nothing held out)
 * say nothing about generalisation and never pass.
 */
export function evaluateGate(
  metrics: EvaluationMetrics,
  production: ProductionBaseline | null,
  config: GateConfig,
  now: Date = new Date(),
  evaluationSplit: string = 'val',
): GateDecision {
  const reasons: string[] = [];
  let passed = true;
  if (evaluationSplit === 'train') {
    passed = false;
    reasons.push('evaluated on the training split: the dataset has no held-out items (set valFraction > 0 or give test items)');
  }
  for (const [name, minimum] of Object.entries(config.minimums)) {
    const value = metrics[name];
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      passed = false;
      reasons.push(`${name} missing (needs ≥ ${fmt(minimum)})`);
    } else if (value < minimum) {
      passed = false;
      reasons.push(`${name} ${fmt(value)} < minimum ${fmt(minimum)}`);
    } else reasons.push(`${name} ${fmt(value)} ≥ minimum ${fmt(minimum)}`);
  }
  if (production) {
    for (const name of Object.keys(config.minimums)) {
      const value = metrics[name];
      const current = production.metrics[name];
      if (typeof value !== 'number' || typeof current !== 'number' || !Number.isFinite(current)) continue;
      const floor = current - config.maxRegression;
      if (value < floor) {
        passed = false;
        reasons.push(`${name} ${fmt(value)} is worse than Production v${production.version} (${fmt(current)}) by more than ${fmt(config.maxRegression)}`);
      } else reasons.push(`${name} ${fmt(value)} within ${fmt(config.maxRegression)} of Production v${production.version} (${fmt(current)}) or better`);
    }
  } else reasons.push('no Production version to compare with');
  return {
    passed,
    reasons,
    thresholds: { ...config.minimums },
    maxRegression: config.maxRegression,
    comparedWith: production ? { versionId: production.versionId, version: production.version, metrics: { ...production.metrics } } : null,
    evaluatedAt: now.toISOString(),
  };
}
