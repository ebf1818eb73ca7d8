// What the training service tells the models subgraph about a run, as messages on the durable events queue: sent one
// after another in the order they happened, metric values buffered and sent in batches. The service never writes the
// models tables; the subgraph applies these messages.
import { createEnvelope, type Broker } from '../../lib/broker/broker.js';
import {
  TRAINING_MESSAGE_TYPES,
  type RegistrationReport,
  type TrainerEnvironment,
  type TrainingEvent,
  type TrainingMetricReport,
} from '../../subgraphs/models/training.contracts.js';

type Artifact = Extract<TrainingEvent, { kind: 'artifacts' }>['artifacts'][number];
export type RunTimings = NonNullable<Extract<TrainingEvent, { kind: 'succeeded' }>['timings']>;

/** Most metric values per message (the registry's limit per call). */
const MAX_METRICS_PER_MESSAGE = 1000;

export class RunReporter {
  private chain: Promise<void> = Promise.resolve();
  private failure: unknown = null;
  private buffer: TrainingMetricReport[] = [];
  private timer: NodeJS.Timeout | undefined;
  private sent = 0;

  constructor(
    private readonly broker: Broker,
    private readonly queue: string,
    private readonly tenant: string,
    private readonly runId: string,
    private readonly flushMs: number,
  ) {}

  /** Messages sent so far (tests and logs). */
  get messagesSent(): number {
    return this.sent;
  }

  private send(event: TrainingEvent): Promise<void> {
    const envelope = createEnvelope(TRAINING_MESSAGE_TYPES.event, event, { tenant: this.tenant });
    this.chain = this.chain.then(async () => {
      if (this.failure) return;
      try {
        await this.broker.send(this.queue, envelope);
        this.sent += 1;
      } catch (error) {
        this.failure = error;
      }
    });
    return this.chain;
  }

  started(attempt: number): Promise<void> {
    return this.send({ kind: 'started', runId: this.runId, attempt });
  }

  environment(environment: TrainerEnvironment): Promise<void> {
    return this.send({ kind: 'environment', runId: this.runId, environment });
  }

  /** Buffers values; they go out every flush interval, or at once when the buffer is full. */
  metrics(values: TrainingMetricReport[]): void {
    if (values.length === 0) return;
    this.buffer.push(...values);
    if (this.buffer.length >= MAX_METRICS_PER_MESSAGE) void this.flush();
    else if (!this.timer) {
      this.timer = setTimeout(() => void this.flush(), this.flushMs);
      this.timer.unref();
    }
  }

  flush(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    while (this.buffer.length > 0) {
      const batch = this.buffer.splice(0, MAX_METRICS_PER_MESSAGE);
      void this.send({ kind: 'metrics', runId: this.runId, metrics: batch });
    }
    return this.chain;
  }

  artifacts(artifacts: Artifact[], logKey: string | null): Promise<void> {
    void this.flush();
    return this.send({ kind: 'artifacts', runId: this.runId, artifacts, logKey });
  }

  succeeded(registration: RegistrationReport, timings?: RunTimings): Promise<void> {
    void this.flush();
    return this.send({ kind: 'succeeded', runId: this.runId, registration, timings });
  }

  failed(code: string, message: string): Promise<void> {
    void this.flush();
    return this.send({ kind: 'failed', runId: this.runId, code, message: message.slice(0, 4000) });
  }

  cancelled(message: string): Promise<void> {
    void this.flush();
    return this.send({ kind: 'cancelled', runId: this.runId, message: message.slice(0, 1000) });
  }

  /** Waits for everything queued; rejects with the first send failure (the run's request is then redelivered). */
  async settle(): Promise<void> {
    await this.flush();
    if (this.failure) throw this.failure;
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
