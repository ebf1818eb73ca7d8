import { Entity, Enum, Index, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { RetrainingOutcome, RetrainingTrigger } from './retraining.contracts.js';
import { RetrainingPolicyEntity } from './retraining-policy.entity.js';

/** What a policy decided on one trigger: a run started, or why not. Append-only apart from settling PENDING. */
@Entity({ tableName: 'retraining_decision' })
@Index({
  name: 'retraining_decision_tenant_model_at_index',
  expression: (table, _columns, name) => `create index "${name}" on "${table.schema}"."${table.name}" ("tenant", "model_name", "at" desc, "id" desc)`,
})
// One decision per policy and trigger occurrence (schedule fire time, alert, dataset version): two replicas handling
// the same occurrence cannot both start a run.
@Unique({ name: 'retraining_decision_policy_trigger_key_unique', properties: ['policy', 'triggerKey'] })
export class RetrainingDecisionEntity {
  [OptionalProps]?: 'id' | 'trainingRunId' | 'skipReason' | 'error' | 'datasetVersionId' | 'at' | 'decidedAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @ManyToOne(() => RetrainingPolicyEntity, { deleteRule: 'cascade' })
  policy!: Rel<RetrainingPolicyEntity>;

  @Property({ type: 'text' })
  modelName!: string;

  @Enum({ items: () => RetrainingTrigger, type: 'text' })
  trigger!: RetrainingTrigger;

  /** Identifies the occurrence: `schedule:<fire time>`, `drift:<alert id>`, `dataset-version:<id>`, `manual:<uuid>`. */
  @Property({ type: 'text' })
  triggerKey!: string;

  @Property({ type: 'text' })
  reason!: string;

  @Enum({ items: () => RetrainingOutcome, type: 'text' })
  outcome!: RetrainingOutcome;

  /** The run started (models subgraph), when STARTED. */
  @Property({ type: 'text', nullable: true })
  trainingRunId: string | null = null;

  /** Why nothing started, when SKIPPED. */
  @Property({ type: 'text', nullable: true })
  skipReason: string | null = null;

  /** What went wrong, when FAILED. */
  @Property({ type: 'text', nullable: true })
  error: string | null = null;

  /** The dataset version asked for (the policy's, or the new version that triggered); null: the model's latest. */
  @Property({ type: 'text', nullable: true })
  datasetVersionId: string | null = null;

  @Property({ type: 'text' })
  requestedBy!: string;

  @Property({ type: 'timestamptz' })
  at: Date = new Date();

  /** When the outcome was settled (equal to `at` unless the models subgraph was asked). */
  @Property({ type: 'timestamptz', nullable: true })
  decidedAt: Date | null = null;
}
