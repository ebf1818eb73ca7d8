import { Entity, Enum, Index, OptionalProps, PrimaryKey, Property, Unique } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { JobKind, JobStatus } from './job.contracts.js';

@Entity({ tableName: 'job' })
@Unique({ properties: ['tenant', 'idempotencyKey'] })
@Index({
  name: 'job_tenant_created_index',
  // Keyset pagination, newest first (lib/graphql/connection.ts); it also serves every other lookup by tenant.
  expression: (table, _columns, name) => `create index "${name}" on "${table.schema}"."${table.name}" ("tenant", "created_at" desc, "id" desc)`,
})
export class JobEntity {
  [OptionalProps]?:
    | 'id'
    | 'status'
    | 'succeededCount'
    | 'failedCount'
    | 'modelVersionId'
    | 'threshold'
    | 'datasetVersionId'
    | 'idempotencyKey'
    | 'error'
    | 'createdAt'
    | 'updatedAt'
    | 'startedAt'
    | 'finishedAt'
    | 'dispatchedAt'
    | 'eventSequence';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @Enum({ items: () => JobKind, type: 'text' })
  kind!: JobKind;

  @Enum({ items: () => JobStatus, type: 'text' })
  status: JobStatus = JobStatus.QUEUED;

  @Property({ type: 'integer' })
  pairCount!: number;

  @Property({ type: 'integer' })
  succeededCount: number = 0;

  @Property({ type: 'integer' })
  failedCount: number = 0;

  @Property({ type: 'text' })
  modelName!: string;

  /** A model version of the models subgraph (uuid), known once a worker reports which version served the job. */
  @Property({ type: 'text', nullable: true })
  modelVersionId: string | null = null;

  /** Overrides the model's own threshold when set. */
  @Property({ type: 'double', nullable: true })
  threshold: number | null = null;

  /** A dataset version of the datasets subgraph (sha256) the pairs were taken from, if any. */
  @Property({ type: 'text', nullable: true })
  datasetVersionId: string | null = null;

  @Property({ type: 'text', nullable: true })
  idempotencyKey: string | null = null;

  /** sha256 of the canonical input: a reused idempotency key with other input is refused. */
  @Property({ type: 'text' })
  inputHash!: string;

  @Property({ type: 'text' })
  requestedBy!: string;

  @Property({ type: 'text', nullable: true })
  error: string | null = null;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();

  @Property({ type: 'timestamptz', onUpdate: () => new Date() })
  updatedAt: Date = new Date();

  @Property({ type: 'timestamptz', nullable: true })
  startedAt: Date | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  finishedAt: Date | null = null;

  /** When the pair messages of a batch job were all sent; null until then (a job to dispatch again). */
  @Property({ type: 'timestamptz', nullable: true })
  dispatchedAt: Date | null = null;

  /** Counts the job's changes; carried by its progress events so that subscribers can drop stale ones. */
  @Property({ type: 'integer' })
  eventSequence: number = 0;
}
