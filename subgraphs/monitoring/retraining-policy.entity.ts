import { Entity, OptionalProps, PrimaryKey, Property, Unique } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';

/** When and how a tenant's model is retrained; one per tenant and model (setRetrainingPolicy upserts it). */
@Entity({ tableName: 'retraining_policy' })
@Unique({ name: 'retraining_policy_tenant_model_unique', properties: ['tenant', 'modelName'] })
export class RetrainingPolicyEntity {
  [OptionalProps]?: 'id' | 'maxRunsPerDay' | 'datasetVersionId' | 'config' | 'enabled' | 'lastScheduledAt' | 'createdAt' | 'updatedAt' | 'scheduleSince';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  modelName!: string;

  /** Five-field cron expression in UTC (lib/cron.ts); null: no scheduled retraining. */
  @Property({ type: 'text', nullable: true })
  schedule!: string | null;

  @Property({ type: 'boolean' })
  onDrift!: boolean;

  @Property({ type: 'boolean' })
  onNewDatasetVersion!: boolean;

  /** No run starts within this many minutes of the last one this policy started. */
  @Property({ type: 'integer' })
  cooldownMinutes!: number;

  /** At most this many runs started in any 24 hours; null: no limit besides the cooldown. */
  @Property({ type: 'integer', nullable: true })
  maxRunsPerDay: number | null = null;

  /** Train on this dataset version; null: the one of the model's latest succeeded run (or the new one that triggered). */
  @Property({ type: 'text', nullable: true })
  datasetVersionId: string | null = null;

  /** Training config; null: the one of the model's latest succeeded run. */
  @Property({ type: 'json', nullable: true })
  config: Record<string, unknown> | null = null;

  @Property({ type: 'boolean' })
  enabled: boolean = true;

  /** Fire times of the schedule are counted from here (when the schedule was last set). */
  @Property({ type: 'timestamptz' })
  scheduleSince: Date = new Date();

  /** The last fire time of the schedule the scheduler has handled. */
  @Property({ type: 'timestamptz', nullable: true })
  lastScheduledAt: Date | null = null;

  @Property({ type: 'text' })
  createdBy!: string;

  @Property({ type: 'text' })
  updatedBy!: string;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();

  @Property({ type: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Date = new Date();
}
