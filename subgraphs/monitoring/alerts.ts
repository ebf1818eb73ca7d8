// Raising drift alerts: one OPEN alert per model version, kind and metric (a repeat returns the open one), logged on
// the tenant's `drift:<tenant>` event stream in the same transaction, relayed to subscribers after commit, counted.
import type { EntityManager } from '@mikro-orm/core';
import { Counter, type Registry } from 'prom-client';
import { appendEvents } from '../../lib/events/event-log.js';
import { DriftAlertEntity } from './drift-alert.entity.js';
import { DriftAlertKind, DriftAlertStatus } from './monitoring.contracts.js';

/** Event stream of a tenant's drift alerts (served by the gateway's `driftAlerts` subscription). */
export const driftStream = (tenant: string): string => `drift:${tenant}`;
export const DRIFT_ALERT_ROUTING_KEY = 'drift.alert';
export const DRIFT_ALERT_EVENT_TYPE = 'drift.alert';

export interface RaiseAlertInput {
  tenant: string;
  modelName: string;
  /** Null where the alert concerns a model as a whole (e.g. feedback not tied to one version). */
  modelVersionId: string | null;
  kind: DriftAlertKind | 'DATA_DRIFT' | 'MODEL_DRIFT';
  /** e.g. `psi.band2`, `mmd`, `iou`. */
  metric: string;
  value: number;
  threshold: number;
  windowStart: Date;
  windowEnd: Date;
  /** Extra facts for the event payload (never needed to read the alert). */
  details?: Record<string, unknown>;
}

/** Prometheus counters of alerts; one per registry. */
export class AlertMetrics {
  readonly raised: Counter<'model' | 'kind' | 'metric'>;
  readonly repeated: Counter<'model' | 'kind' | 'metric'>;

  constructor(registry: Registry) {
    this.raised = new Counter({
      name: 'lcd_drift_alerts_total',
      help: 'Drift alerts raised, by model, kind (DATA_DRIFT, MODEL_DRIFT) and metric',
      labelNames: ['model', 'kind', 'metric'] as const,
      registers: [registry],
    });
    this.repeated = new Counter({
      name: 'lcd_drift_alerts_suppressed_total',
      help: 'Metrics over their alert threshold while an alert for them was still OPEN (no new alert)',
      labelNames: ['model', 'kind', 'metric'] as const,
      registers: [registry],
    });
  }
}

/** What raising an alert needs besides the entity manager; both parts are optional (tests, schema printing). */
export interface AlertDeps {
  /** The monitoring event relay: kicked after commit so subscribers hear of the alert at once. */
  relay: { kick(): void } | null;
  metrics: AlertMetrics | null;
}

export interface RaisedAlert {
  alert: DriftAlertEntity;
  /** False when an OPEN alert for the same model version, kind and metric already existed (it is returned). */
  created: boolean;
}

const openAlertWhere = (input: RaiseAlertInput) => ({
  tenant: input.tenant,
  modelName: input.modelName,
  modelVersionId: input.modelVersionId,
  kind: input.kind as DriftAlertKind,
  metric: input.metric,
  status: DriftAlertStatus.OPEN,
});

function checkInput(input: RaiseAlertInput): void {
  if (!input.tenant || !input.modelName || !input.metric) throw new Error('raiseAlert: tenant, modelName and metric are required');
  if (input.kind !== DriftAlertKind.DATA_DRIFT && input.kind !== DriftAlertKind.MODEL_DRIFT) throw new Error(`raiseAlert: unknown kind ${String(input.kind)}`);
  if (!Number.isFinite(input.value) || !Number.isFinite(input.threshold)) throw new Error(`raiseAlert: ${input.metric} value and threshold must be finite`);
}

/**
 * Creates the alert and its event in one transaction (nested in the caller's when `em` is in one), or returns the
 * OPEN alert that already exists for the same model version, kind and metric. A concurrent raise of the same alert
 * loses on the partial unique index `drift_alert_open_unique` and returns the winner's alert.
 */
export async function raiseAlert(em: EntityManager, deps: AlertDeps, input: RaiseAlertInput): Promise<RaisedAlert> {
  checkInput(input);
  const labels = { model: input.modelName, kind: input.kind, metric: input.metric };
  const existing = await em.findOne(DriftAlertEntity, openAlertWhere(input));
  if (existing) {
    deps.metrics?.repeated.inc(labels);
    return { alert: existing, created: false };
  }
  let alert: DriftAlertEntity;
  try {
    alert = await em.transactional(async (tx) => {
      const created = tx.create(DriftAlertEntity, {
        tenant: input.tenant,
        modelName: input.modelName,
        modelVersionId: input.modelVersionId,
        kind: input.kind as DriftAlertKind,
        metric: input.metric,
        value: input.value,
        threshold: input.threshold,
        windowStart: input.windowStart,
        windowEnd: input.windowEnd,
      });
      await tx.flush();
      await appendEvents(tx, [
        {
          stream: driftStream(input.tenant),
          type: DRIFT_ALERT_EVENT_TYPE,
          tenant: input.tenant,
          routingKey: DRIFT_ALERT_ROUTING_KEY,
          payload: {
            alertId: created.id,
            tenant: input.tenant,
            modelName: input.modelName,
            modelVersionId: input.modelVersionId,
            kind: input.kind,
            metric: input.metric,
            value: input.value,
            threshold: input.threshold,
            windowStart: input.windowStart.toISOString(),
            windowEnd: input.windowEnd.toISOString(),
            ...(input.details ? { details: input.details } : {}),
          },
        },
      ]);
      return created;
    });
  } catch (error) {
    // Someone else raised it between our look and our insert: theirs is the alert.
    const winner = await em.fork().findOne(DriftAlertEntity, openAlertWhere(input));
    if (!winner) throw error;
    deps.metrics?.repeated.inc(labels);
    return { alert: winner, created: false };
  }
  deps.metrics?.raised.inc(labels);
  deps.relay?.kick();
  return { alert, created: true };
}
