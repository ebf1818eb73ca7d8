import { Field, Float, ID, Int, ObjectType } from 'type-graphql';
import { ModelVersionRef } from './drift.type.js';
import type { FeedbackEntity } from './feedback.entity.js';
import type { FeedbackBatch as FeedbackBatchData, VersionPerformance } from './feedback.service.js';

@ObjectType({ description: "A person's change label for one result, scored against the result's mask" })
export class Feedback {
  @Field(() => ID)
  id!: string;

  @Field(() => ID)
  jobId!: string;

  @Field(() => Int)
  pairIndex!: number;

  @Field()
  modelName!: string;

  @Field(() => ModelVersionRef, { description: 'The version that produced the scored result' })
  modelVersion!: ModelVersionRef;

  @Field(() => ID)
  labelUploadId!: string;

  @Field(() => Float, { description: 'Pixels changed in both the label and the result' })
  truePositives!: number;

  @Field(() => Float, { description: 'Pixels the result marks changed and the label does not' })
  falsePositives!: number;

  @Field(() => Float, { description: 'Pixels the label marks changed and the result does not' })
  falseNegatives!: number;

  @Field(() => Float)
  trueNegatives!: number;

  @Field(() => Float, { description: 'IoU of the changed class (1 when neither marks any change)' })
  iou!: number;

  @Field(() => Float, { description: 'F1 of the changed class (1 when neither marks any change)' })
  f1!: number;

  @Field()
  createdBy!: string;

  @Field()
  createdAt!: Date;
}

@ObjectType({ description: "Consecutive feedback of one model version, scored together (micro: from the summed pixel counts)" })
export class FeedbackBatch {
  @Field(() => Int, { description: "0 for the version's first batch" })
  index!: number;

  @Field({ description: 'Fewer pairs than the batch size so far; a partial batch never raises an alert' })
  partial!: boolean;

  @Field(() => Int)
  pairCount!: number;

  @Field({ description: 'When its first feedback was given' })
  windowStart!: Date;

  @Field({ description: 'When its last feedback was given' })
  windowEnd!: Date;

  @Field(() => Float)
  iou!: number;

  @Field(() => Float)
  f1!: number;

  @Field(() => Float)
  truePositives!: number;

  @Field(() => Float)
  falsePositives!: number;

  @Field(() => Float)
  falseNegatives!: number;

  @Field(() => Float)
  trueNegatives!: number;

  @Field({ description: 'A complete batch whose IoU or F1 is more than the margin below the evaluation (a MODEL_DRIFT alert)' })
  belowEvaluation!: boolean;
}

@ObjectType({ description: "One model version's quality on labelled feedback, batch by batch, beside its evaluation" })
export class ModelVersionPerformance {
  @Field()
  modelName!: string;

  @Field(() => ModelVersionRef)
  modelVersion!: ModelVersionRef;

  @Field(() => Int, { nullable: true, description: 'The version number, when the models service knows the version' })
  version!: number | null;

  @Field(() => Float, { nullable: true, description: "The version's evaluation IoU (null when it has none)" })
  evaluationIou!: number | null;

  @Field(() => Float, { nullable: true, description: "The version's evaluation F1 (null when it has none)" })
  evaluationF1!: number | null;

  @Field(() => Int)
  feedbackCount!: number;

  @Field(() => Int, { description: 'Pairs per batch (FEEDBACK_BATCH_SIZE)' })
  batchSize!: number;

  @Field(() => Float, { description: 'How far below the evaluation a batch may fall before an alert (FEEDBACK_ALERT_MARGIN)' })
  margin!: number;

  @Field(() => [FeedbackBatch], { description: 'Oldest first; the last one may be partial' })
  batches!: FeedbackBatch[];
}

const modelVersionRef = (id: string) => Object.assign(new ModelVersionRef(), { id });

export function toFeedback(e: FeedbackEntity): Feedback {
  return Object.assign(new Feedback(), {
    id: e.id,
    jobId: e.jobId,
    pairIndex: e.pairIndex,
    modelName: e.modelName,
    modelVersion: modelVersionRef(e.modelVersionId),
    labelUploadId: e.labelUploadId,
    truePositives: e.tp,
    falsePositives: e.fp,
    falseNegatives: e.fn,
    trueNegatives: e.tn,
    iou: e.iou,
    f1: e.f1,
    createdBy: e.createdBy,
    createdAt: e.createdAt,
  });
}

function toFeedbackBatch(b: FeedbackBatchData): FeedbackBatch {
  return Object.assign(new FeedbackBatch(), {
    index: b.index,
    partial: b.partial,
    pairCount: b.pairCount,
    windowStart: b.windowStart,
    windowEnd: b.windowEnd,
    iou: b.iou,
    f1: b.f1,
    truePositives: b.tp,
    falsePositives: b.fp,
    falseNegatives: b.fn,
    trueNegatives: b.tn,
    belowEvaluation: b.belowEvaluation,
  });
}

export function toModelVersionPerformance(p: VersionPerformance): ModelVersionPerformance {
  return Object.assign(new ModelVersionPerformance(), {
    modelName: p.modelName,
    modelVersion: modelVersionRef(p.modelVersionId),
    version: p.evaluation.version,
    evaluationIou: p.evaluation.iou,
    evaluationF1: p.evaluation.f1,
    feedbackCount: p.feedbackCount,
    batchSize: p.batchSize,
    margin: p.margin,
    batches: p.batches.map(toFeedbackBatch),
  });
}
