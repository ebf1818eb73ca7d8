import { GraphQLJSON } from 'graphql-scalars';
import { Field, Float, Int, ObjectType, registerEnumType } from 'type-graphql';
import { EvaluationStatus, type EvaluationRecord, type EvaluationResultMetrics } from './model-evaluation.contracts.js';
import { EvaluationDatasetOrigin, type EvaluationDatasetChoice } from './model-evaluation.service.js';

registerEnumType(EvaluationStatus, { name: 'EvaluationStatus', description: 'PENDING while an inference worker evaluates the version' });
registerEnumType(EvaluationDatasetOrigin, {
  name: 'EvaluationDatasetOrigin',
  description: 'SET with setEvaluationDataset, or by default the dataset version of the Production (else newest trained) version',
});

@ObjectType({ description: 'Pixel counts of the thresholded masks against the labels, summed over the evaluated items' })
export class ConfusionCounts {
  @Field(() => Float, { description: 'Changed in both' })
  tp!: number;

  @Field(() => Float, { description: 'Predicted changed, labelled unchanged' })
  fp!: number;

  @Field(() => Float, { description: 'Predicted unchanged, labelled changed' })
  fn!: number;

  @Field(() => Float, { description: 'Unchanged in both' })
  tn!: number;
}

@ObjectType({ description: 'A version run on every labelled item of a frozen dataset version, and what it scored' })
export class ModelEvaluation {
  @Field(() => EvaluationStatus)
  status!: EvaluationStatus;

  @Field(() => String, { nullable: true, description: 'The dataset version evaluated on; null when none was available' })
  datasetVersionId!: string | null;

  @Field(() => String, { nullable: true, description: '`test` (its test items) or `all-labelled` (it has no test split)' })
  split!: string | null;

  @Field(() => Int, { nullable: true, description: 'Items evaluated' })
  items!: number | null;

  @Field(() => Float, { nullable: true, description: "Probability above which a pixel counted as changed (the model's own)" })
  threshold!: number | null;

  @Field(() => GraphQLJSON, { nullable: true, description: 'precision, recall, f1, iou, overallAccuracy, kappa of the changed class' })
  metrics!: EvaluationResultMetrics | null;

  @Field(() => ConfusionCounts, { nullable: true })
  confusion!: ConfusionCounts | null;

  @Field(() => String, { nullable: true, description: 'Why it failed, e.g. BAND_COUNT, LABEL_SIZE, MODEL_RUN_FAILED, NO_EVALUATION_DATASET' })
  errorCode!: string | null;

  @Field(() => String, { nullable: true })
  error!: string | null;

  @Field()
  requestedBy!: string;

  @Field()
  requestedAt!: Date;

  @Field(() => Date, { nullable: true })
  evaluatedAt!: Date | null;
}

@ObjectType({ description: "The frozen dataset version a model's versions are evaluated on" })
export class EvaluationDataset {
  @Field()
  datasetVersionId!: string;

  @Field(() => EvaluationDatasetOrigin)
  origin!: EvaluationDatasetOrigin;
}

export function toModelEvaluation(record: EvaluationRecord): ModelEvaluation {
  return Object.assign(new ModelEvaluation(), {
    status: record.status,
    datasetVersionId: record.datasetVersionId,
    split: record.split,
    items: record.items,
    threshold: record.threshold,
    metrics: record.metrics,
    confusion: record.confusion ? Object.assign(new ConfusionCounts(), record.confusion) : null,
    errorCode: record.error?.code ?? null,
    error: record.error?.message ?? null,
    requestedBy: record.requestedBy,
    requestedAt: new Date(record.requestedAt),
    evaluatedAt: record.evaluatedAt ? new Date(record.evaluatedAt) : null,
  });
}

export const toEvaluationDataset = (choice: EvaluationDatasetChoice): EvaluationDataset => Object.assign(new EvaluationDataset(), choice);
