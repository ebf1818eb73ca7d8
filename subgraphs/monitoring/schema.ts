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
import { DriftService } from './drift.service.js';
import { toDriftAlert, toDriftReport } from './drift.type.js';
import { Migration0001Initial } from './migrations/0001-initial.js';
import { AuditEventResolver, DriftAlertResolver, DriftReportResolver } from './monitoring.resolver.js';
import { MonitoringRepository } from './monitoring.repository.js';

export interface MonitoringDeps {
  audit: AuditService;
  drift: DriftService;
  repository: MonitoringRepository;
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
    entities: [AuditEventEntity, DriftReportEntity, DriftAlertEntity],
    migrations: [{ name: '0001-initial', class: Migration0001Initial }],
    async setup() {
      const repository = new MonitoringRepository();
      return { audit: new AuditService(repository), drift: new DriftService(repository), repository };
    },
    schema: (deps) =>
      buildFederatedSchema({
        resolvers: [AuditEventResolver, DriftReportResolver, DriftAlertResolver, DriftEventsResolver],
        referenceResolvers: referenceResolvers(deps),
        // Resolvers are made here with their services; the container hands type-graphql these instances.
        container: containerOf([new AuditEventResolver(deps.audit), new DriftReportResolver(deps.drift), new DriftAlertResolver(deps.drift)]),
      }),
    async background(deps, { db, runtime }) {
      const audit = await consumeAuditRecords({
        broker: runtime.broker,
        queue: config.AUDIT_QUEUE,
        db,
        audit: deps.audit,
        log: serviceLogger('monitoring-audit'),
      });
      return () => audit.close();
    },
  };
}
