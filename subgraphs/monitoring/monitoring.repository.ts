import type { EntityManager, FilterQuery } from '@mikro-orm/core';
import { paginate } from '../../lib/graphql/connection.js';
import { AuditEventEntity } from './audit-event.entity.js';
import { DriftAlertEntity } from './drift-alert.entity.js';
import { DriftReportEntity } from './drift-report.entity.js';
import type { AuditOutcome, DriftAlertStatus } from './monitoring.contracts.js';

type PageArgs = { first?: number | null; after?: string | null };

export interface AuditEventListFilter {
  actor?: string | null;
  fieldName?: string | null;
  outcome?: AuditOutcome | null;
  /** Inclusive. */
  from?: Date | null;
  /** Exclusive. */
  to?: Date | null;
}

export interface DriftReportListFilter {
  modelName: string;
  /** Reports whose window overlaps [from, to). */
  from?: Date | null;
  to?: Date | null;
}

export interface DriftAlertListFilter {
  modelName?: string | null;
  status?: DriftAlertStatus | null;
}

/** Every query of the monitoring subgraph, always scoped to one tenant. */
export class MonitoringRepository {
  findAuditEvent(em: EntityManager, tenant: string, id: string) {
    return em.findOne(AuditEventEntity, { id, tenant });
  }

  /** By id alone: an event id is unique across tenants, so a redelivered event is found whatever it claims. */
  findAuditEventById(em: EntityManager, id: string) {
    return em.findOne(AuditEventEntity, { id });
  }

  pageAuditEvents<N>(em: EntityManager, tenant: string, filter: AuditEventListFilter, args: PageArgs, map: (e: AuditEventEntity) => N) {
    const where: FilterQuery<AuditEventEntity> = { tenant };
    if (filter.actor) where.actor = filter.actor;
    if (filter.fieldName) where.fieldName = filter.fieldName;
    if (filter.outcome) where.outcome = filter.outcome;
    if (filter.from || filter.to) {
      where.createdAt = { ...(filter.from ? { $gte: filter.from } : {}), ...(filter.to ? { $lt: filter.to } : {}) };
    }
    return paginate(em, AuditEventEntity, where, args, map);
  }

  findDriftReport(em: EntityManager, tenant: string, id: string) {
    return em.findOne(DriftReportEntity, { id, tenant });
  }

  pageDriftReports<N>(em: EntityManager, tenant: string, filter: DriftReportListFilter, args: PageArgs, map: (e: DriftReportEntity) => N) {
    const where: FilterQuery<DriftReportEntity> = { tenant, modelName: filter.modelName };
    if (filter.from) where.windowEnd = { $gt: filter.from };
    if (filter.to) where.windowStart = { $lt: filter.to };
    return paginate(em, DriftReportEntity, where, args, map);
  }

  findDriftAlert(em: EntityManager, tenant: string, id: string) {
    return em.findOne(DriftAlertEntity, { id, tenant });
  }

  pageDriftAlerts<N>(em: EntityManager, tenant: string, filter: DriftAlertListFilter, args: PageArgs, map: (e: DriftAlertEntity) => N) {
    const where: FilterQuery<DriftAlertEntity> = { tenant };
    if (filter.modelName) where.modelName = filter.modelName;
    if (filter.status) where.status = filter.status;
    return paginate(em, DriftAlertEntity, where, args, map);
  }
}
