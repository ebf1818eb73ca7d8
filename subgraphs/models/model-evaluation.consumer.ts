// The models subgraph's side of evaluations, run as background work: applies what the inference workers report
// (`models.evaluation-results`), and periodically sends again the evaluations whose request or result was lost.
// Applying is idempotent (only the pending attempt's result applies, once), so a redelivered result, or the second
// result of a request sent twice, changes nothing.
import type { Logger } from 'pino';
import type { Broker, Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { evaluationResultSchema, type EvaluationResult } from './model-evaluation.contracts.js';
import type { ModelEvaluationService } from './model-evaluation.service.js';

export async function consumeEvaluationResults(
  deps: { evaluations: ModelEvaluationService; db: Database; broker: Broker; log: Logger },
  options: { queue: string },
): Promise<() => Promise<void>> {
  const subscription: Subscription = await deps.broker.consume<EvaluationResult>(
    options.queue,
    async (delivery) => {
      const result = delivery.envelope.payload;
      const applied = await deps.evaluations.applyResult(deps.db.fork(), delivery.envelope.tenant, result);
      if (applied) deps.log.info({ versionId: result.modelVersionId, ok: result.ok, ...(result.ok ? { metrics: result.metrics } : { code: result.code }) }, 'model evaluation applied');
      else deps.log.debug({ versionId: result.modelVersionId, requestId: result.requestId }, 'evaluation result ignored (not the pending attempt)');
    },
    { prefetch: 4, payloadSchema: evaluationResultSchema as never },
  );
  return () => subscription.close();
}

/**
 * Looks for lost evaluations (ModelEvaluationService.resendLost) a few times per timeout, at least every second and at
 * most every minute, one pass at a time. Returns the function that stops it (waiting for a pass under way).
 */
export function sweepLostEvaluations(
  deps: { evaluations: ModelEvaluationService; db: Database; log: Logger },
  options: { timeoutMinutes: number },
): () => Promise<void> {
  const intervalMs = Math.min(60_000, Math.max(1000, (options.timeoutMinutes * 60_000) / 4));
  let running: Promise<void> | null = null;
  const timer = setInterval(() => {
    if (running) return;
    running = deps.evaluations
      .resendLost(deps.db.fork())
      .then(({ resent, failed }) => {
        if (resent + failed > 0) deps.log.info({ resent, failed }, 'lost model evaluations swept');
      })
      .catch((error: unknown) => deps.log.warn({ err: error }, 'lost model evaluations not swept; the next pass retries'))
      .finally(() => {
        running = null;
      });
  }, intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}
