// The jobs subgraph's background work: applies the inference workers' pair reports from its durable queue
// (`jobs.pair-results`), sends again the pair messages of batch jobs a stopped process left half-dispatched, and
// reports job states to Prometheus. Workers never write this subgraph's tables; these reports are how their work
// lands here.
import { GraphQLError } from 'graphql';
import { Gauge, type Registry } from 'prom-client';
import { PermanentMessageError, type Broker } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { serviceLogger } from '../../lib/telemetry.js';
import { INFERENCE_QUEUES, JOBS_PAIR_RESULTS_QUEUE, PAIR_DELIVERY_LIMIT, pairReportSchema, type PairReport } from '../../workers/inference/contracts.js';
import type { ChangeDetectionService } from './change-detection.service.js';
import type { JobRepository } from './job.repository.js';

const REDISPATCH_EVERY_MS = 30_000;

export async function startPairResultsConsumer(deps: {
  changes: ChangeDetectionService;
  repository: JobRepository;
  db: Database;
  broker: Broker;
}): Promise<() => Promise<void>> {
  const log = serviceLogger('jobs-subgraph').child({ component: 'pair-results' });
  // Pair messages are sent before any worker may have started: the queue must exist (as the workers declare it).
  await deps.broker.assertQueue(INFERENCE_QUEUES.pairs, { deliveryLimit: PAIR_DELIVERY_LIMIT });
  const subscription = await deps.broker.consume<PairReport>(
    JOBS_PAIR_RESULTS_QUEUE,
    async (delivery) => {
      try {
        await deps.changes.applyReport(deps.db.fork(), delivery.envelope.tenant, delivery.envelope.payload);
      } catch (error) {
        // A report on a job that does not exist (for that tenant) can never apply.
        if (error instanceof GraphQLError && error.extensions.code === 'NOT_FOUND') throw new PermanentMessageError(error.message);
        throw error;
      }
    },
    { payloadSchema: pairReportSchema, prefetch: 8 },
  );
  let sweeping = false;
  const timer = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    deps.changes
      .redispatchStale(deps.db.fork())
      .catch((error: unknown) => log.warn({ err: error }, 'redispatch sweep failed'))
      .finally(() => (sweeping = false));
  }, REDISPATCH_EVERY_MS);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await subscription.close();
  };
}

/** `lcd_jobs{kind, status}`: jobs by state, counted in the database at scrape time. */
export function registerJobStateMetric(registry: Registry, repository: JobRepository, db: Database): void {
  new Gauge({
    name: 'lcd_jobs',
    help: 'Change-detection jobs by kind and status',
    labelNames: ['kind', 'status'] as const,
    registers: [registry],
    async collect() {
      this.reset();
      try {
        for (const row of await repository.countByState(db.fork())) this.set({ kind: row.kind, status: row.status }, row.count);
      } catch {
        // The database is down: /readyz says so; the metric is simply absent this scrape.
      }
    },
  });
}
