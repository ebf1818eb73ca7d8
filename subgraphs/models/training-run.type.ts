import { GraphQLJSON } from 'graphql-scalars';
import { Directive, Field, Float, ID, Int, ObjectType, registerEnumType } from 'type-graphql';
import { Connection } from '../../lib/graphql/connection.js';
import { TrainingRunStatus } from './models.contracts.js';
import type { TrainingMetricEntity } from './training-metric.entity.js';
import type { TrainingRunEntity } from './training-run.entity.js';

registerEnumType(TrainingRunStatus, { name: 'TrainingRunStatus', description: 'QUEUED → RUNNING → SUCCEEDED, FAILED or CANCELLED' });

@ObjectType({ description: 'One value of a training metric at one step' })
export class Metric {
  @Field()
  name!: string;

  @Field(() => Float)
  value!: number;

  @Field(() => Int)
  step!: number;

  @Field(() => Int, { nullable: true })
  epoch!: number | null;

  @Field()
  recordedAt!: Date;
}

@ObjectType({ description: 'A file a training run produced, in object storage' })
export class Artifact {
  @Field()
  name!: string;

  @Field({ description: 'Object key' })
  key!: string;

  @Field(() => Int)
  byteSize!: number;

  @Field()
  sha256!: string;
}

/** The datasets subgraph owns DatasetVersion; this subgraph only refers to it by id. */
@Directive('@key(fields: "id", resolvable: false)')
@ObjectType('DatasetVersion')
export class DatasetVersionRef {
  @Field(() => ID)
  id!: string;
}

@Directive('@key(fields: "id")')
@ObjectType({ description: 'One training of a model on a dataset version: its configuration, metrics and artifacts' })
export class TrainingRun {
  @Field(() => ID)
  id!: string;

  tenant!: string;

  @Field(() => TrainingRunStatus)
  status!: TrainingRunStatus;

  @Field({ description: 'Name of the registered model the run trains' })
  modelName!: string;

  @Field(() => GraphQLJSON, { description: 'The training configuration as submitted' })
  params!: Record<string, unknown>;

  @Field(() => [Artifact])
  artifacts!: Artifact[];

  @Field(() => String, { nullable: true, description: 'Why the run failed or was cancelled' })
  error!: string | null;

  @Field(() => String, { nullable: true, description: 'Stable code of the failure: invalid_config, size_mismatch, time_limit, out_of_memory, parity_mismatch, …' })
  errorCode!: string | null;

  @Field(() => GraphQLJSON, {
    nullable: true,
    description: 'What the trainer reported when it started: codeVersion, configHash, resolvedConfig (with defaults), torch, device, threads, python',
  })
  environment!: Record<string, unknown> | null;

  @Field(() => String, { nullable: true, description: 'sha256 of the trained weights: equal for runs reproduced on the same data, config and seed (CPU)' })
  weightsSha256!: string | null;

  @Field(() => String, { nullable: true, description: "Object key of the trainer's log" })
  logKey!: string | null;

  @Field({ description: 'A cancellation was asked for; the run is CANCELLED once the trainer has stopped' })
  cancelRequested!: boolean;

  @Field({ description: 'Trainer code the run used (commit or image digest)' })
  codeVersion!: string;

  @Field()
  requestedBy!: string;

  @Field()
  createdAt!: Date;

  @Field(() => Date, { nullable: true })
  startedAt!: Date | null;

  @Field(() => Date, { nullable: true })
  finishedAt!: Date | null;

  datasetVersionId!: string;

  modelVersionId!: string | null;
}

export const TrainingRunConnection = Connection(TrainingRun, 'TrainingRun');

export function toTrainingRun(e: TrainingRunEntity): TrainingRun {
  return Object.assign(new TrainingRun(), {
    id: e.id,
    tenant: e.tenant,
    status: e.status,
    modelName: e.modelName,
    params: e.params,
    artifacts: e.artifacts.map((a) => Object.assign(new Artifact(), { name: a.name, key: a.key, byteSize: a.byteSize, sha256: a.sha256 })),
    error: e.error,
    errorCode: e.errorCode,
    environment: e.environment,
    weightsSha256: e.weightsSha256,
    logKey: e.logKey,
    cancelRequested: e.cancelRequestedAt !== null,
    codeVersion: e.codeVersion,
    requestedBy: e.requestedBy,
    createdAt: e.createdAt,
    startedAt: e.startedAt,
    finishedAt: e.finishedAt,
    datasetVersionId: e.datasetVersionId,
    modelVersionId: e.modelVersion?.id ?? null,
  });
}

export function toMetric(e: TrainingMetricEntity): Metric {
  return Object.assign(new Metric(), { name: e.name, value: e.value, step: e.step, epoch: e.epoch, recordedAt: e.recordedAt });
}
