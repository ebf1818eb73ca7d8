// Consumes the workers' drift samples (`monitoring.drift-samples`): each is validated, checked against its
// reference and stored once, a batch at a time (lib/broker/batcher.ts); one that can never be used (invalid, or a band
// layout other than the reference's) goes to the dead-letter queue with the reason and is counted; anything else that
// fails (database down) is retried. Each message is acknowledged once its batch is stored.
import type { Logger } from 'pino';
import { Batcher, type BatcherOptions } from '../../lib/broker/batcher.js';
import { PermanentMessageError, type Broker, type Delivery, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { DriftSampleRejectedError, type DriftMonitor, type DriftPromMetrics } from './drift-monitor.js';
import { DRIFT_SAMPLE_TYPE, DRIFT_SAMPLES_QUEUE, DRIFT_SAMPLES_QUEUE_OPTIONS, driftSamplePayloadSchema, type DriftSamplePayload } from './drift-samples.contract.js';

export async function consumeDriftSamples(options: {
  broker: Broker;
  db: Database;
  monitor: DriftMonitor;
  metrics: DriftPromMetrics | null;
  log: Logger;
  queue?: string;
  batch?: BatcherOptions;
}): Promise<Subscription> {
  const { db, monitor, metrics, log } = options;
  // Samples are not urgent and come one per pair: stored a batch at a time, one statement and one window check each.
  const batch = options.batch ?? { maxItems: 32, maxWaitMs: 200 };
  const batcher = new Batcher<DriftSamplePayload, unknown>((samples) => monitor.ingestMany(db.fork(), samples), batch);
  const reject = (reason: string): never => {
    metrics?.samples.inc({ outcome: 'rejected' });
    throw new PermanentMessageError(reason);
  };
  return options.broker.consume<unknown>(
    options.queue ?? DRIFT_SAMPLES_QUEUE,
    async ({ envelope }: Delivery<unknown>) => {
      if (envelope.type !== DRIFT_SAMPLE_TYPE) reject(`unexpected message type ${envelope.type}`);
      const parsed = driftSamplePayloadSchema.safeParse(envelope.payload);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        return reject(`invalid drift sample: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
      }
      const sample = parsed.data;
      if (sample.tenant !== envelope.tenant) reject('the drift sample names another tenant than its envelope');
      try {
        await batcher.add(sample);
      } catch (error) {
        if (error instanceof DriftSampleRejectedError) {
          log.warn({ jobId: sample.jobId, pairIndex: sample.pairIndex, reason: error.message }, 'drift sample rejected');
          throw new PermanentMessageError(error.message, { cause: error });
        }
        log.warn({ err: error, jobId: sample.jobId, pairIndex: sample.pairIndex }, 'drift sample not handled yet; it will be retried');
        throw error;
      }
    },
    { ...DRIFT_SAMPLES_QUEUE_OPTIONS, prefetch: batch.maxItems },
  );
}
