import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/index.js';
import { DriftEventsResolver } from './drift-events.subscription.js';
import { monitoringPermissions } from './permissions.js';
import { containerOf, buildFederatedSchema, type RequestContext } from '../../lib/graphql/subgraph.js';
import type { SubgraphDefinition } from '../../lib/graphql/run-subgraph.js';
import { isUuid } from '../../lib/ids.js';
import { serviceLogger } from '../../lib/telemetry.js';
import { AuditEventEntity } from './audit-event.entity.js';
import { consumeAuditRecords } from './audit.consumer.js';
import { AuditService } from './audit.service.js';
import type { MonitoringConfig } from './config.js';
import { DriftAlertEntity } from './drift-alert.entity.js';
import { DriftReportEntity } from './drift-report.entity.js';
import { serveDriftSummary } from './drift-summary.rpc.js';
import { DriftService } from './drift.service.js';
import { toDriftAlert, toDriftReport } from './drift.type.js';
import { Migration0001Initial } from './migrations/0001-initial.js';
import { Migration0002Drift } from './migrations/0002-drift.js';
import { DriftSampleEntity } from './drift-sample.entity.js';
import { EVENT_LOG_ENTITIES, EventRelay } from '../../lib/events/event-log.js';
import { serveReplay } from '../../lib/events/replay-rpc.js';
import { AlertMetrics, type AlertDeps } from './alerts.js';
import { DriftMonitor, DriftPromMetrics } from './drift-monitor.js';
import { ReferenceStatsCache } from './drift-reference.js';
import { consumeDriftSamples } from './drift-samples.consumer.js';
import { eventLogMigration } from '../../lib/events/event-log.migration.js';
import { AuditEventResolver, DriftAlertResolver, DriftReportResolver } from './monitoring.resolver.js';
import { MonitoringRepository } from './monitoring.repository.js';
import { FeedbackEntity } from './feedback.entity.js';
import { FeedbackRepository } from './feedback.repository.js';
import { FeedbackResolver } from './feedback.resolver.js';
import { FeedbackService } from './feedback.service.js';
import { Migration0003Feedback } from './migrations/0003-feedback.js';
import { Migration0004Retraining } from './migrations/0004-retraining.js';
import { Migration0005Retention } from './migrations/0005-retention.js';
import { RetrainingDecisionEntity } from './retraining-decision.entity.js';
import { RetrainingPolicyEntity } from './retraining-policy.entity.js';
import { RetrainingResolver } from './retraining.resolver.js';
import { RetrainingScheduler } from './retraining.scheduler.js';
import { RetrainingService } from './retraining.service.js';
import { consumeRetrainingTriggers } from './retraining-triggers.consumer.js';
import { RetentionMetrics, RetentionScheduler } from './retention.js';

export interface MonitoringDeps {
  audit: AuditService;
  drift: DriftService;
  repository: MonitoringRepository;
  feedback: FeedbackService;
  retraining: RetrainingService;
  /** What raiseAlert needs (alerts.ts); the relay is set once the background starts. */
  alerts: AlertDeps;
  /** Data drift windows; null without a runtime (schema printing, resolver tests). */
  driftMonitor: DriftMonitor | null;
  driftMetrics: DriftPromMetrics | null;
  retentionMetrics: RetentionMetrics | null;
}

/** Entities reached from another subgraph: a record of another tenant resolves to null (reads as not found). */
const referenceResolvers = (deps: MonitoringDeps): GraphQLResolverMap<RequestContext> => ({
  DriftReport: {
    async __resolveReference(ref: { id: string }, ctx: RequestContext) {
      const found = isUuid(ref.id) ? await deps.repository.findDriftReport(ctx.em, ctx.identity.tenant, ref.id) : null;
      return found ? toDriftReport(found) : null;
    },
  },
  DriftAlert: {
    async __resolveReference(ref: { id: string }, ctx: RequestContext) {
      const found = isUuid(ref.id) ? await deps.repository.findDriftAlert(ctx.em, ctx.identity.tenant, ref.id) : null;
      return found ? toDriftAlert(found) : null;
    },
  },
});

export function monitoringSubgraph(config: MonitoringConfig): SubgraphDefinition<MonitoringDeps> {
  return {
    name: 'monitoring',
    dbSchema: 'monitoring',
    permissions: monitoringPermissions,
    entities: [AuditEventEntity, DriftReportEntity, DriftAlertEntity, DriftSampleEntity, ...EVENT_LOG_ENTITIES, FeedbackEntity, RetrainingPolicyEntity, RetrainingDecisionEntity],
    migrations: [
      { name: '0001-initial', class: Migration0001Initial },
      { name: '0002-drift', class: Migration0002Drift },
      { name: '0002-event-log', class: eventLogMigration('monitoring') },
      { name: '0003-feedback', class: Migration0003Feedback },
      { name: '0004-retraining', class: Migration0004Retraining },
      { name: '0005-retention', class: Migration0005Retention },
    ],
    async setup({ runtime, registry }) {
      const repository = new MonitoringRepository();
      const alerts: AlertDeps = { relay: null, metrics: registry ? new AlertMetrics(registry) : null };
      const driftMetrics = registry ? new DriftPromMetrics(registry) : null;
      const retentionMetrics = registry ? new RetentionMetrics(registry) : null;
      const driftMonitor = runtime
        ? new DriftMonitor(
            {
              samples: config.DRIFT_WINDOW_SAMPLES,
              minutes: config.DRIFT_WINDOW_MINUTES,
              minSamples: config.DRIFT_WINDOW_MIN_SAMPLES,
              thresholds: {
                psiBins: config.DRIFT_PSI_BINS,
                psiWarn: config.DRIFT_PSI_WARN,
                psiAlert: config.DRIFT_PSI_ALERT,
                wassersteinAlert: config.DRIFT_WASSERSTEIN_ALERT,
                ksPValue: config.DRIFT_KS_P_VALUE,
                mmdPValue: config.DRIFT_MMD_P_VALUE,
                mmdPermutations: config.DRIFT_MMD_PERMUTATIONS,
              },
            },
            new ReferenceStatsCache(runtime.store),
            alerts,
            driftMetrics,
            serviceLogger('monitoring-drift'),
          )
        : null;
      // Without a runtime (schema printing, resolver tests) submitFeedback answers UNAVAILABLE.
      const feedback = new FeedbackService(
        new FeedbackRepository(),
        { batchSize: config.FEEDBACK_BATCH_SIZE, margin: config.FEEDBACK_ALERT_MARGIN, rpcTimeoutMs: config.FEEDBACK_RPC_TIMEOUT_MS },
        runtime ? { broker: runtime.broker, store: runtime.store } : null,
        // MODEL_DRIFT alerts share the data-drift alerts' relay (set once the background starts) and counters.
        () => alerts,
        serviceLogger('monitoring-feedback'),
      );
      // Without a runtime the retraining service answers UNAVAILABLE wherever it would ask the models subgraph.
      const retraining = new RetrainingService({
        broker: runtime?.broker ?? null,
        rpcTimeoutMs: config.RETRAINING_RPC_TIMEOUT_MS,
        log: serviceLogger('monitoring-retraining'),
      });
      return { audit: new AuditService(repository), drift: new DriftService(repository), repository, feedback, retraining, alerts, driftMonitor, driftMetrics, retentionMetrics };
    },
    schema: (deps) =>
      buildFederatedSchema({
        resolvers: [AuditEventResolver, DriftReportResolver, DriftAlertResolver, DriftEventsResolver, FeedbackResolver, RetrainingResolver],
        referenceResolvers: referenceResolvers(deps),
        // Resolvers are made here with their services; the container hands type-graphql these instances.
        container: containerOf([new AuditEventResolver(deps.audit), new DriftReportResolver(deps.drift), new DriftAlertResolver(deps.drift), new FeedbackResolver(deps.feedback), new RetrainingResolver(deps.retraining)]),
      }),
    async background(deps, { db, runtime }) {
      // Everything started is stopped in reverse order, on shutdown or when a later start fails.
      const started: { close(): Promise<void> }[] = [];
      const stop = async () => {
        for (const part of started.reverse()) await part.close().catch(() => undefined);
      };
      try {
        started.push(
          await consumeAuditRecords({ broker: runtime.broker, queue: config.AUDIT_QUEUE, db, audit: deps.audit, log: serviceLogger('monitoring-audit') }),
        );
        const retrainingLog = serviceLogger('monitoring-retraining');
        started.push(
          await consumeRetrainingTriggers({ broker: runtime.broker, queue: config.RETRAINING_TRIGGERS_QUEUE, db, retraining: deps.retraining, log: retrainingLog }),
        );
        if (config.RETRAINING_SCHEDULER_ENABLED === 'true') {
          const scheduler = new RetrainingScheduler(deps.retraining, db.fork, { intervalMs: config.RETRAINING_SCHEDULER_INTERVAL_SECONDS * 1000, log: retrainingLog });
          scheduler.start();
          started.push({ close: () => scheduler.stop() });
        }
        // Drift alerts are logged on `drift:<tenant>` streams, relayed to the topic exchange and replayed to resuming
        // subscribers; worker samples arrive on `monitoring.drift-samples`; time windows are looked for periodically.
        const relay = new EventRelay({ fork: db.fork, broker: runtime.broker });
        deps.alerts.relay = relay;
        relay.start();
        started.push({ close: () => relay.stop() });
        started.push(await serveReplay(runtime.broker, 'monitoring', db.fork));
        // The models subgraph attaches the latest drift report of a model to a promotion request (drift-summary.rpc.ts).
        started.push(
          await serveDriftSummary(runtime.broker, (tenant, modelName) =>
            db.fork().findOne(DriftReportEntity, { tenant, modelName }, { orderBy: { createdAt: 'desc', id: 'desc' } }),
          ),
        );
        if (deps.driftMonitor) {
          const monitor = deps.driftMonitor;
          const driftLog = serviceLogger('monitoring-drift');
          started.push(await consumeDriftSamples({ broker: runtime.broker, db, monitor, metrics: deps.driftMetrics, log: driftLog }));
          const sweep = setInterval(() => {
            monitor.evaluateDue(db.fork()).catch((error: unknown) => driftLog.warn({ err: error }, 'drift time windows not evaluated; next pass retries'));
          }, config.DRIFT_EVALUATION_INTERVAL_SECONDS * 1000);
          sweep.unref();
          started.push({ close: async () => clearInterval(sweep) });
        }
        // Old drift samples (and, when configured, reports, acknowledged alerts and audit events) are deleted at start
        // and every interval; stopped first, it gives up at its next batch.
        const retention = new RetentionScheduler(
          db.fork,
          { driftSampleDays: config.DRIFT_SAMPLE_RETENTION_DAYS, driftReportDays: config.DRIFT_REPORT_RETENTION_DAYS, auditDays: config.AUDIT_RETENTION_DAYS },
          { intervalMs: config.RETENTION_INTERVAL_MINUTES * 60_000, log: serviceLogger('monitoring-retention'), metrics: deps.retentionMetrics },
        );
        retention.start();
        started.push({ close: () => retention.stop() });
      } catch (error) {
        await stop();
        throw error;
      }
      return stop;
    },
  };
}
