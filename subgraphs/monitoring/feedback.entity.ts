import { Entity, Index, OptionalProps, PrimaryKey, Property, Unique } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';

/** One labelled pair: a person's change label for one result of a job, scored against the result's mask. */
@Entity({ tableName: 'feedback' })
@Unique({ properties: ['tenant', 'jobId', 'pairIndex'] })
@Index({
  name: 'feedback_tenant_model_created_index',
  // modelPerformance reads a model's feedback oldest first and cuts it into batches in this order.
  expression: (table, _columns, name) => `create index "${name}" on "${table.schema}"."${table.name}" ("tenant", "model_name", "created_at", "id")`,
})
export class FeedbackEntity {
  [OptionalProps]?: 'id' | 'createdAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  /** A job of the jobs subgraph (uuid). */
  @Property({ type: 'text' })
  jobId!: string;

  @Property({ type: 'integer' })
  pairIndex!: number;

  @Property({ type: 'text' })
  modelName!: string;

  /** The model version of the models subgraph that produced the scored result (uuid). */
  @Property({ type: 'text' })
  modelVersionId!: string;

  /** The upload of the datasets subgraph that held the label. */
  @Property({ type: 'text' })
  labelUploadId!: string;

  /** Object key of the label, as the datasets subgraph resolved the upload. */
  @Property({ type: 'text' })
  labelKey!: string;

  /** Pixels changed in both the label and the result. */
  @Property({ type: 'bigint', runtimeType: 'number' })
  tp!: number;

  /** Pixels the result marks changed and the label does not. */
  @Property({ type: 'bigint', runtimeType: 'number' })
  fp!: number;

  /** Pixels the label marks changed and the result does not. */
  @Property({ type: 'bigint', runtimeType: 'number' })
  fn!: number;

  @Property({ type: 'bigint', runtimeType: 'number' })
  tn!: number;

  @Property({ type: 'double' })
  iou!: number;

  @Property({ type: 'double' })
  f1!: number;

  @Property({ type: 'text' })
  createdBy!: string;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();
}
