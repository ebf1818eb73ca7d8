// The training service's consumer: takes training requests one at a time (prefetch 1: a run uses the whole machine),
// listens for cancellations of any run, and stops running trainers on shutdown so that their requests are delivered
// again (to this or another replica) instead of being reported as cancelled.
import type { Logger } from 'pino';
import { PermanentMessageError, type Broker, type Delivery, type Subscription } from '../../lib/broker/broker.js';
import type { LoggedEvent } from '../../lib/events/event-log.js';
import {
  cancelRequestSchema,
  TRAINING_EVENT_KEYS,
  TRAINING_REQUEST_DELIVERY_LIMIT,
  trainingRequestSchema,
  type TrainingRequest,
} from '../../subgraphs/models/training.contracts.js';
import type { TrainingMetrics } from './metrics.js';
import { processTrainingRun, ServiceStoppingError, type RunProcessorDeps } from './run-processor.js';

export { ServiceStoppingError };

/** Cancellations remembered for runs that have not reached this replica yet. */
const CANCELLED_REMEMBERED = 10_000;

export class TrainingConsumer {
  private readonly running = new Map<string, AbortController>();
  /** The handler of each running run, so that a redelivery of its request waits for it instead of training twice. */
  private readonly inProgress = new Map<string, Promise<void>>();
  private readonly cancelled = new Set<string>();
  private subscriptions: Subscription[] = [];
  private stopping = false;

  constructor(
    private readonly deps: RunProcessorDeps & { broker: Broker; log: Logger; metrics?: TrainingMetrics },
  ) {}

  /** Runs in progress (their ids). */
  get activeRuns(): string[] {
    return [...this.running.keys()];
  }

  async start(): Promise<void> {
    const { broker, config } = this.deps;
    // Every replica hears every cancellation (a private queue each): only the one running the run acts on it.
    this.subscriptions.push(
      await broker.subscribe<LoggedEvent>([TRAINING_EVENT_KEYS.allCancels], async (delivery) => this.onCancel(delivery), {}),
    );
    this.subscriptions.push(
      await broker.consume<TrainingRequest>(config.TRAINING_REQUESTS_QUEUE, (delivery) => this.onRequest(delivery), {
        prefetch: 1,
        deliveryLimit: TRAINING_REQUEST_DELIVERY_LIMIT,
        payloadSchema: trainingRequestSchema,
      }),
    );
  }

  /** Stops the running trainers (their requests are redelivered), then the consumers. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (const controller of this.running.values()) controller.abort(new ServiceStoppingError());
    await Promise.allSettled(this.subscriptions.map((s) => s.close()));
    this.subscriptions = [];
  }

  private async onCancel(delivery: Delivery<LoggedEvent>): Promise<void> {
    const parsed = cancelRequestSchema.safeParse(delivery.envelope.payload?.payload);
    if (!parsed.success) return;
    const { runId } = parsed.data;
    this.cancelled.add(runId);
    if (this.cancelled.size > CANCELLED_REMEMBERED) this.cancelled.delete(this.cancelled.values().next().value!);
    const controller = this.running.get(runId);
    if (controller) {
      this.deps.log.info({ runId }, 'cancelling a running training');
      controller.abort(new Error('cancelled'));
    }
  }

  private async onRequest(delivery: Delivery<TrainingRequest>): Promise<void> {
    const request = delivery.envelope.payload;
    if (request.tenant !== delivery.envelope.tenant) throw new PermanentMessageError('the request names another tenant than its envelope');
    if (this.stopping) throw new ServiceStoppingError();
    // RabbitMQ redelivers a message whose channel closed (e.g. after its consumer_timeout) while the run is still
    // going here: the redelivery waits for that run rather than starting a second trainer.
    const current = this.inProgress.get(request.runId);
    if (current) {
      this.deps.log.warn({ runId: request.runId, delivery: delivery.deliveryCount }, 'request delivered again while its run is in progress here: waiting for it');
      await current.catch(() => undefined);
      return;
    }
    const handling = this.run(request, delivery.deliveryCount);
    this.inProgress.set(request.runId, handling);
    try {
      await handling;
    } finally {
      this.inProgress.delete(request.runId);
    }
  }

  private async run(request: TrainingRequest, attempt: number): Promise<void> {
    const controller = new AbortController();
    if (this.cancelled.has(request.runId)) controller.abort(new Error('cancelled'));
    this.running.set(request.runId, controller);
    this.deps.metrics?.active.inc();
    const stopTimer = this.deps.metrics?.runSeconds.startTimer();
    try {
      this.deps.log.info({ runId: request.runId, tenant: request.tenant, attempt }, 'training run starting');
      const result = await processTrainingRun(this.deps, request, { attempt, signal: controller.signal });
      if (controller.signal.reason instanceof ServiceStoppingError) throw controller.signal.reason;
      this.deps.metrics?.runs.inc({ outcome: result.outcome });
      stopTimer?.({ outcome: result.outcome });
      this.deps.log.info({ runId: request.runId, outcome: result.outcome, code: result.code, message: result.message }, 'training run finished');
    } finally {
      this.running.delete(request.runId);
      this.deps.metrics?.active.dec();
    }
  }
}
