import { Entity, Index, OptionalProps, PrimaryKey, Property } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import type { DriftMetrics } from './monitoring.contracts.js';

/** Drift scores of one model version over one time window of inputs. */
@Entity({ tableName: 'drift_report' })
@Index({
  name: 'drift_report_tenant_model_created_index',
  // driftReports always names the model: keyset pagination within one model, newest first.
  expression: (table, _columns, name) =>
    `create index "${name}" on "${table.schema}"."${table.name}" ("tenant", "model_name", "created_at" desc, "id" desc)`,
})
export class DriftReportEntity {
  [OptionalProps]?: 'id' | 'createdAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  modelName!: string;

  /** A model version of the models subgraph (uuid). */
  @Property({ type: 'text' })
  modelVersionId!: string;

  @Property({ type: 'timestamptz' })
  windowStart!: Date;

  @Property({ type: 'timestamptz' })
  windowEnd!: Date;

  @Property({ type: 'integer' })
  sampleCount!: number;

  @Property({ type: 'json' })
  metrics!: DriftMetrics;

  @Property({ type: 'boolean' })
  drifted!: boolean;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();
}
