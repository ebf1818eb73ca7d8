// The models subgraph's side of evaluations, run as background work: applies what the inference workers report
// (`models.evaluation-results`). Applying is idempotent, so a redelivered result changes nothing.
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
