import { GraphQLJSONObject } from 'graphql-scalars';
import { Field, InputType, Int } from 'type-graphql';

@InputType({ description: "Creates or replaces your tenant's retraining policy of one of your models" })
export class SetRetrainingPolicyInput {
  @Field()
  modelName!: string;

  @Field(() => String, { nullable: true, description: 'Cron expression, five fields in UTC (e.g. "0 3 * * 1"); null: no scheduled retraining' })
  schedule?: string | null;

  @Field()
  onDrift!: boolean;

  @Field()
  onNewDatasetVersion!: boolean;

  @Field(() => Int, { description: 'Minutes after a started run during which no other run starts (0 or more)' })
  cooldownMinutes!: number;

  @Field(() => Int, { nullable: true, description: 'Most runs started in any 24 hours (1–1440); null: no limit' })
  maxRunsPerDay?: number | null;

  @Field(() => String, { nullable: true, description: "Dataset version to train on; default: the model's latest succeeded run's" })
  datasetVersionId?: string | null;

  @Field(() => GraphQLJSONObject, { nullable: true, description: "Training config; default: the model's latest succeeded run's" })
  config?: Record<string, unknown> | null;

  @Field(() => Boolean, { nullable: true, description: 'Default true; a disabled policy records every trigger as SKIPPED' })
  enabled?: boolean | null;
}
