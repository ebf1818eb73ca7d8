// Owns the reading side of drift monitoring: reports per model version and window, and the alerts they raised.
import { LockMode, type EntityManager } from '@mikro-orm/core';
import { badInput, notFound } from '../../lib/errors.js';
import { isUuid } from '../../lib/ids.js';
import { checkTimeRange, type Actor } from './audit.service.js';
import { DriftAlertEntity } from './drift-alert.entity.js';
import { DriftAlertStatus } from './monitoring.contracts.js';
import type { DriftReportEntity } from './drift-report.entity.js';
import type { DriftAlertListFilter, DriftReportListFilter, MonitoringRepository } from './monitoring.repository.js';

type Page = { first?: number | null; after?: string | null };

export class DriftService {
  constructor(private readonly repository: MonitoringRepository) {}

  async listReports<N>(em: EntityManager, actor: Actor, filter: DriftReportListFilter, page: Page, map: (e: DriftReportEntity) => N) {
    if (filter.modelName.trim() === '') throw badInput('modelName is required', 'modelName');
    checkTimeRange(filter.from, filter.to);
    return this.repository.pageDriftReports(em, actor.tenant, filter, page, map);
  }

  async getAlert(em: EntityManager, actor: Actor, id: string): Promise<DriftAlertEntity> {
    const alert = isUuid(id) ? await this.repository.findDriftAlert(em, actor.tenant, id) : null;
    if (!alert) throw notFound('DriftAlert', id);
    return alert;
  }

  /**
   * Marks an alert ACKNOWLEDGED by the caller, now. Acknowledging it again changes nothing (the first acknowledgement
   * stays); another tenant's alert is not found. An acknowledged alert no longer blocks a new alert for its metric.
   */
  async acknowledgeAlert(em: EntityManager, actor: Actor, id: string): Promise<DriftAlertEntity> {
    if (!isUuid(id)) throw notFound('DriftAlert', id);
    return em.transactional(async (tx) => {
      const alert = await tx.findOne(DriftAlertEntity, { id, tenant: actor.tenant }, { lockMode: LockMode.PESSIMISTIC_WRITE });
      if (!alert) throw notFound('DriftAlert', id);
      if (alert.status === DriftAlertStatus.ACKNOWLEDGED) return alert;
      alert.status = DriftAlertStatus.ACKNOWLEDGED;
      alert.acknowledgedBy = actor.subject;
      alert.acknowledgedAt = new Date();
      return alert;
    });
  }

  async listAlerts<N>(em: EntityManager, actor: Actor, filter: DriftAlertListFilter, page: Page, map: (e: DriftAlertEntity) => N) {
    return this.repository.pageDriftAlerts(em, actor.tenant, filter, page, map);
  }
}
