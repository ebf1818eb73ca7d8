import { Entity, Enum, Index, OptionalProps, PrimaryKey, Property } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { DriftAlertKind, DriftAlertStatus } from './monitoring.contracts.js';

/** One metric of one model version over its threshold in one window. */
@Entity({ tableName: 'drift_alert' })
@Index({
  name: 'drift_alert_tenant_created_index',
  // Keyset pagination, newest first (lib/graphql/connection.ts); the model and status filters are applied on it.
  expression: (table, _columns, name) => `create index "${name}" on "${table.schema}"."${table.name}" ("tenant", "created_at" desc, "id" desc)`,
})
@Index({
  name: 'drift_alert_open_unique',
  // At most one OPEN alert per model version (or model, without one), kind and metric: raiseAlert relies on it.
  expression: (table, _columns, name) =>
    `create unique index "${name}" on "${table.schema}"."${table.name}" ("tenant", "model_name", coalesce("model_version_id", ''), "kind", "metric") where "status" = 'OPEN'`,
})
export class DriftAlertEntity {
  [OptionalProps]?: 'id' | 'status' | 'acknowledgedBy' | 'acknowledgedAt' | 'createdAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  modelName!: string;

  /** A model version of the models subgraph (uuid); null when the alert concerns the model as a whole. */
  @Property({ type: 'text', nullable: true })
  modelVersionId!: string | null;

  @Enum({ items: () => DriftAlertKind, type: 'text' })
  kind!: DriftAlertKind;

  /** e.g. `psi.band2`, `mmd`, `iou`. */
  @Property({ type: 'text' })
  metric!: string;

  @Property({ type: 'double' })
  value!: number;

  @Property({ type: 'double' })
  threshold!: number;

  @Property({ type: 'timestamptz' })
  windowStart!: Date;

  @Property({ type: 'timestamptz' })
  windowEnd!: Date;

  @Enum({ items: () => DriftAlertStatus, type: 'text' })
  status: DriftAlertStatus = DriftAlertStatus.OPEN;

  @Property({ type: 'text', nullable: true })
  acknowledgedBy: string | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  acknowledgedAt: Date | null = null;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();
}
