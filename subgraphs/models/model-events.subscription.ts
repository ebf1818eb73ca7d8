// Model events clients can subscribe to through the gateway: training progress of a run (ends with the run) and
// stage changes of model versions.
import { Arg, Field, Float, ID, Int, ObjectType, Resolver, Subscription } from 'type-graphql';
import { servedByGateway } from '../../lib/graphql/subscriptions.js';
import { ModelStage, TrainingRunStatus } from './models.contracts.js';
import { ModelVersion } from './model-version.type.js';
import { TrainingRun } from './training-run.type.js';

@ObjectType()
export class TrainingMetricPoint {
  @Field()
  name!: string;

  @Field(() => Float)
  value!: number;

  @Field(() => Int)
  step!: number;
}

@ObjectType({ description: 'A training run moved on: status, epoch and step, metrics of that step' })
export class TrainingProgressEvent {
  @Field(() => Int)
  sequence!: number;

  @Field()
  occurredAt!: string;

  @Field(() => ID)
  runId!: string;

  @Field(() => TrainingRunStatus)
  status!: TrainingRunStatus;

  @Field({ description: 'What happened: queued, started, metrics, artifacts, succeeded, failed, cancelled, …' })
  kind!: string;

  @Field(() => String, { nullable: true })
  error!: string | null;

  @Field(() => Int, { nullable: true })
  epoch!: number | null;

  @Field(() => Int, { nullable: true })
  step!: number | null;

  @Field(() => [TrainingMetricPoint])
  metrics!: TrainingMetricPoint[];

  @Field(() => String, { nullable: true })
  message!: string | null;

  @Field(() => TrainingRun)
  run!: TrainingRun;
}

@ObjectType({ description: 'A model version changed stage' })
export class ModelStageEvent {
  @Field(() => Int)
  sequence!: number;

  @Field()
  occurredAt!: string;

  @Field()
  modelName!: string;

  @Field(() => ModelStage)
  stage!: ModelStage;

  @Field(() => ModelStage, { nullable: true })
  previousStage!: ModelStage | null;

  @Field(() => String, { nullable: true, description: 'Who made the change' })
  changedBy!: string | null;

  @Field(() => String, { nullable: true })
  reason!: string | null;

  @Field(() => ModelVersion)
  modelVersion!: ModelVersion;
}

@Resolver()
export class ModelEventsResolver {
  @Subscription(() => TrainingProgressEvent, { subscribe: servedByGateway, description: 'Progress of one training run; completes when it ends' })
  trainingProgress(
    @Arg('runId', () => ID) _runId: string,
    @Arg('afterSequence', () => Int, { nullable: true }) _afterSequence?: number,
  ): TrainingProgressEvent {
    return servedByGateway();
  }

  @Subscription(() => ModelStageEvent, { subscribe: servedByGateway, description: "Stage changes of your tenant's model versions" })
  modelVersionStageChanged(
    @Arg('modelName', () => String, { nullable: true }) _modelName?: string,
    @Arg('afterSequence', () => Int, { nullable: true }) _afterSequence?: number,
  ): ModelStageEvent {
    return servedByGateway();
  }
}
