import { Entity, Index, OptionalProps, PrimaryKey, Property } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import type { DriftSampleSummary } from './drift-samples.contract.js';

/** What a worker saw of one successful pair, kept until a drift window of its model version takes it in. */
@Entity({ tableName: 'drift_sample' })
@Index({
  name: 'drift_sample_key_unique',
  // One row per pair however often the queue delivers it (`<jobId>#<pairIndex>`).
  expression: (table, _columns, name) => `create unique index "${name}" on "${table.schema}"."${table.name}" ("sample_key")`,
})
@Index({
  name: 'drift_sample_pending_index',
  // The samples of a tenant's model version not yet in a report, oldest first: what the window evaluation reads.
  expression: (table, _columns, name) =>
    `create index "${name}" on "${table.schema}"."${table.name}" ("tenant", "model_version_id", "at") where "report_id" is null`,
})
@Index({
  name: 'drift_sample_at_index',
  // The retention pass deletes the oldest first, reported or not.
  expression: (table, _columns, name) => `create index "${name}" on "${table.schema}"."${table.name}" ("at")`,
})
export class DriftSampleEntity {
  [OptionalProps]?: 'id' | 'reportId' | 'createdAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  sampleKey!: string;

  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  modelName!: string;

  @Property({ type: 'text' })
  modelVersionId!: string;

  @Property({ type: 'text', nullable: true })
  referenceStatsKey: string | null = null;

  @Property({ type: 'text' })
  jobId!: string;

  @Property({ type: 'integer' })
  pairIndex!: number;

  /** When the worker finished the pair. */
  @Property({ type: 'timestamptz' })
  at!: Date;

  @Property({ type: 'json' })
  summary!: DriftSampleSummary;

  /** The drift report whose window took the sample in; null while it waits. */
  @Property({ type: 'uuid', nullable: true })
  reportId: string | null = null;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();
}
