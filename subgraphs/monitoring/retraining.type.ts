import { GraphQLJSONObject } from 'graphql-scalars';
import { Directive, Field, ID, Int, ObjectType, registerEnumType } from 'type-graphql';
import type { RetrainingDecisionEntity } from './retraining-decision.entity.js';
import type { RetrainingPolicyEntity } from './retraining-policy.entity.js';
import { RetrainingOutcome, RetrainingTrigger } from './retraining.contracts.js';

registerEnumType(RetrainingTrigger, {
  name: 'RetrainingTrigger',
  description: "What asked for a retraining: the policy's cron schedule, a drift alert, a new version of the dataset the model was trained on, or a person",
});
registerEnumType(RetrainingOutcome, {
  name: 'RetrainingOutcome',
  description: 'STARTED: a training run was queued; SKIPPED: the policy said no (see skipReason); FAILED: see error; PENDING: the models service is being asked',
});

/** The models subgraph owns TrainingRun; this subgraph only refers to it by id. */
@Directive('@key(fields: "id", resolvable: false)')
@ObjectType('TrainingRun')
export class TrainingRunRef {
  @Field(() => ID)
  id!: string;
}

@ObjectType({ description: "When and how a model is retrained; a retrained version passes the same evaluation gate (STAGING at best) and never reaches PRODUCTION without an approval" })
export class RetrainingPolicy {
  @Field(() => ID)
  id!: string;

  @Field()
  modelName!: string;

  @Field(() => String, { nullable: true, description: 'Cron expression (minute hour day-of-month month day-of-week, UTC); null: no scheduled retraining' })
  schedule!: string | null;

  @Field({ description: 'Retrain when a drift alert is raised for the model' })
  onDrift!: boolean;

  @Field({ description: 'Retrain on a new version of a dataset the model was trained on' })
  onNewDatasetVersion!: boolean;

  @Field(() => Int, { description: 'No run starts within this many minutes of the last run the policy started' })
  cooldownMinutes!: number;

  @Field(() => Int, { nullable: true, description: 'Most runs started in any 24 hours; null: no limit besides the cooldown' })
  maxRunsPerDay!: number | null;

  @Field(() => String, { nullable: true, description: "Dataset version to train on; null: the model's latest succeeded run's (or the new version that triggered)" })
  datasetVersionId!: string | null;

  @Field(() => GraphQLJSONObject, { nullable: true, description: "Training config; null: the model's latest succeeded run's" })
  config!: Record<string, unknown> | null;

  @Field()
  enabled!: boolean;

  @Field(() => Date, { nullable: true, description: 'Next fire time of the schedule (UTC)' })
  nextScheduledAt!: Date | null;

  @Field()
  createdBy!: string;

  @Field()
  updatedBy!: string;

  @Field()
  createdAt!: Date;

  @Field()
  updatedAt!: Date;
}

@ObjectType({ description: 'What a retraining policy decided on one trigger, and why' })
export class RetrainingDecision {
  @Field(() => ID)
  id!: string;

  @Field()
  modelName!: string;

  @Field(() => RetrainingTrigger)
  trigger!: RetrainingTrigger;

  @Field({ description: 'What triggered it: the fire time, the alert, the dataset version, or the reason a person gave' })
  reason!: string;

  @Field(() => RetrainingOutcome)
  outcome!: RetrainingOutcome;

  @Field(() => ID, { nullable: true, description: 'The training run started, when STARTED' })
  trainingRunId!: string | null;

  @Field(() => TrainingRunRef, { nullable: true, description: 'The training run started (models subgraph), when STARTED' })
  trainingRun!: TrainingRunRef | null;

  @Field(() => String, { nullable: true, description: 'Why nothing started, when SKIPPED (cooldown until …, max runs per day, policy disabled, no dataset version, …)' })
  skipReason!: string | null;

  @Field(() => String, { nullable: true, description: 'What went wrong, when FAILED' })
  error!: string | null;

  @Field(() => String, { nullable: true, description: "Dataset version the run trains on (null when none was started and none was named)" })
  datasetVersionId!: string | null;

  @Field({ description: 'Who or what asked: a user, retraining-scheduler, drift-alert, dataset-version' })
  requestedBy!: string;

  @Field()
  at!: Date;

  @Field(() => Date, { nullable: true })
  decidedAt!: Date | null;
}

export function toRetrainingPolicy(e: RetrainingPolicyEntity, nextScheduledAt: Date | null): RetrainingPolicy {
  return Object.assign(new RetrainingPolicy(), {
    id: e.id,
    modelName: e.modelName,
    schedule: e.schedule,
    onDrift: e.onDrift,
    onNewDatasetVersion: e.onNewDatasetVersion,
    cooldownMinutes: e.cooldownMinutes,
    maxRunsPerDay: e.maxRunsPerDay,
    datasetVersionId: e.datasetVersionId,
    config: e.config,
    enabled: e.enabled,
    nextScheduledAt,
    createdBy: e.createdBy,
    updatedBy: e.updatedBy,
    createdAt: e.createdAt,
    updatedAt: e.updatedAt,
  });
}

export function toRetrainingDecision(e: RetrainingDecisionEntity): RetrainingDecision {
  return Object.assign(new RetrainingDecision(), {
    id: e.id,
    modelName: e.modelName,
    trigger: e.trigger,
    reason: e.reason,
    outcome: e.outcome,
    trainingRunId: e.trainingRunId,
    trainingRun: e.trainingRunId ? Object.assign(new TrainingRunRef(), { id: e.trainingRunId }) : null,
    skipReason: e.skipReason,
    error: e.error,
    datasetVersionId: e.datasetVersionId,
    requestedBy: e.requestedBy,
    at: e.at,
    decidedAt: e.decidedAt,
  });
}
