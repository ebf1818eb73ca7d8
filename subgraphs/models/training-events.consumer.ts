// The models subgraph's side of the training pipeline, run as background work: applies the training service's
// reports (`models.training-events`, one at a time so that a run's reports apply in the order they were sent), sends
// the requests of runs whose first sending failed, and relays the event log to the topic exchange.
import type { Logger } from 'pino';
import type { Broker, Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { trainingEventSchema, type TrainingEvent } from './training.contracts.js';
import type { TrainingRunService } from './training-run.service.js';

export interface TrainingEventsConsumerOptions {
  queue: string;
  /** How often undispatched runs are looked for. */
  dispatchIntervalMs?: number;
}

export async function consumeTrainingEvents(
  deps: { trainingRuns: TrainingRunService; db: Database; broker: Broker; log: Logger },
  options: TrainingEventsConsumerOptions,
): Promise<() => Promise<void>> {
  const subscription: Subscription = await deps.broker.consume<TrainingEvent>(
    options.queue,
    async (delivery) => {
      const event = delivery.envelope.payload;
      const applied = await deps.trainingRuns.applyEvent(deps.db.fork(), delivery.envelope.tenant, event);
      if (!applied) deps.log.debug({ runId: event.runId, kind: event.kind }, 'training report ignored (unknown or finished run)');
    },
    { prefetch: 1, payloadSchema: trainingEventSchema as never },
  );
  const interval = setInterval(() => {
    deps.trainingRuns.dispatchPending(deps.db.fork()).catch((error: unknown) => deps.log.warn({ err: error }, 'dispatching queued training runs failed'));
  }, options.dispatchIntervalMs ?? 15_000);
  interval.unref();
  return async () => {
    clearInterval(interval);
    await subscription.close();
  };
}
