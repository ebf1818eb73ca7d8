import { Entity, Enum, Index, OneToOne, OptionalProps, PrimaryKey, Property, Unique, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { TRAINING_RUN_STATUSES, TrainingRunStatus, type TrainingArtifact } from './models.contracts.js';
import { ModelVersionEntity } from './model-version.entity.js';

@Entity({ tableName: 'training_run' })
@Index({
  name: 'training_run_tenant_created_index',
  expression: 'create index "training_run_tenant_created_index" on "models"."training_run" ("tenant", "created_at" desc, "id" desc)',
})
@Unique({ properties: ['tenant', 'idempotencyKey'] })
export class TrainingRunEntity {
  [OptionalProps]?:
    | 'id'
    | 'status'
    | 'error'
    | 'startedAt'
    | 'finishedAt'
    | 'createdAt'
    | 'updatedAt'
    | 'artifacts'
    | 'logKey'
    | 'idempotencyKey'
    | 'modelVersion'
    | 'errorCode'
    | 'environment'
    | 'weightsSha256'
    | 'request'
    | 'dispatchedAt'
    | 'cancelRequestedAt'
    | 'attempt'
    | 'mlflowRunId';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  /** Lookups by tenant use the (tenant, created_at, id) index above. */
  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  modelName!: string;

  @Enum({ items: () => TRAINING_RUN_STATUSES, type: 'text' })
  status: TrainingRunStatus = TrainingRunStatus.QUEUED;

  /** The training configuration as submitted (epochs, learning rate, loss weights, …). */
  @Property({ type: 'json' })
  params!: Record<string, unknown>;

  /** Id (sha256 of the manifest) of the dataset version owned by the datasets subgraph; no foreign key across schemas. */
  @Property({ type: 'text' })
  datasetVersionId!: string;

  /** Trainer code the run used (git commit or image digest), so a result can be reproduced. */
  @Property({ type: 'text' })
  codeVersion!: string;

  @Property({ type: 'text' })
  requestedBy!: string;

  @Property({ type: 'text', nullable: true })
  error: string | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  startedAt: Date | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  finishedAt: Date | null = null;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();

  @Property({ type: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Date = new Date();

  @Property({ type: 'json' })
  artifacts: TrainingArtifact[] = [];

  /** Object key of the trainer's log. */
  @Property({ type: 'text', nullable: true })
  logKey: string | null = null;

  /** Client-chosen key: a retried start returns the run it already made. Unique per tenant; NULLs never collide. */
  @Property({ type: 'text', nullable: true })
  idempotencyKey: string | null = null;

  /** Stable code of the failure (`invalid_config`, `time_limit`, `parity_mismatch`, …); the message is in `error`. */
  @Property({ type: 'text', nullable: true })
  errorCode: string | null = null;

  /** What the trainer reported about itself: code version, config hash, resolved config, torch, device, threads. */
  @Property({ type: 'json', nullable: true })
  environment: Record<string, unknown> | null = null;

  /** sha256 over the trained weights (state dict): equal for reproduced runs. */
  @Property({ type: 'text', nullable: true })
  weightsSha256: string | null = null;

  /** The request sent to the training service, kept to send it again when its first sending failed. */
  @Property({ type: 'json', nullable: true })
  request: Record<string, unknown> | null = null;

  /** When the request reached the training queue; null while it has not. */
  @Property({ type: 'timestamptz', nullable: true })
  dispatchedAt: Date | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  cancelRequestedAt: Date | null = null;

  /** How many times the training service started the run (more than 1 after a crash of the service). */
  @Property({ type: 'integer' })
  attempt: number = 0;

  /** The mirrored run in MLflow, when MLFLOW_TRACKING_URI is set. */
  @Property({ type: 'text', nullable: true })
  mlflowRunId: string | null = null;

  /** The version this run registered, once it has; a run registers at most one. */
  @OneToOne(() => ModelVersionEntity, { owner: true, nullable: true, deleteRule: 'set null' })
  modelVersion: Rel<ModelVersionEntity> | null = null;
}
