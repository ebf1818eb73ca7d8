import { Entity, Enum, ManyToOne, OptionalProps, PrimaryKey, Property, Unique, type Rel } from '@mikro-orm/core';
import { randomUUID } from 'node:crypto';
import { JobPairStatus, type ChangeStatistics, type PairResultDetails, type PairResultKeys } from './job.contracts.js';
import { JobEntity } from './job.entity.js';

@Entity({ tableName: 'job_pair' })
@Unique({ properties: ['job', 'index'] })
export class JobPairEntity {
  [OptionalProps]?:
    | 'id'
    | 'status'
    | 'attempts'
    | 'beforeUploadId'
    | 'afterUploadId'
    | 'error'
    | 'resultKeys'
    | 'stats'
    | 'width'
    | 'height'
    | 'modelVersionId'
    | 'startedAt'
    | 'finishedAt'
    | 'errorCode'
    | 'details';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @ManyToOne(() => JobEntity, { deleteRule: 'cascade' })
  job!: Rel<JobEntity>;

  @Property({ type: 'integer' })
  index!: number;

  @Property({ type: 'text' })
  beforeKey!: string;

  @Property({ type: 'text' })
  afterKey!: string;

  @Property({ type: 'text', nullable: true })
  beforeUploadId: string | null = null;

  @Property({ type: 'text', nullable: true })
  afterUploadId: string | null = null;

  @Enum({ items: () => JobPairStatus, type: 'text' })
  status: JobPairStatus = JobPairStatus.QUEUED;

  /** Deliveries to a worker so far (a redelivery after a crash is a new attempt). */
  @Property({ type: 'integer' })
  attempts: number = 0;

  @Property({ type: 'text', nullable: true })
  error: string | null = null;

  /** Stable code of the error (`BEFORE_NOT_AN_IMAGE`, `SIZE_MISMATCH`, …; see workers/inference/contracts.ts). */
  @Property({ type: 'text', nullable: true })
  errorCode: string | null = null;

  @Property({ type: 'json', nullable: true })
  resultKeys: PairResultKeys | null = null;

  @Property({ type: 'json', nullable: true })
  stats: ChangeStatistics | null = null;

  /** Georeferencing, threshold and timings of the result. */
  @Property({ type: 'json', nullable: true })
  details: PairResultDetails | null = null;

  @Property({ type: 'integer', nullable: true })
  width: number | null = null;

  @Property({ type: 'integer', nullable: true })
  height: number | null = null;

  /** The model version that produced the result. */
  @Property({ type: 'text', nullable: true })
  modelVersionId: string | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  startedAt: Date | null = null;

  @Property({ type: 'timestamptz', nullable: true })
  finishedAt: Date | null = null;
}
