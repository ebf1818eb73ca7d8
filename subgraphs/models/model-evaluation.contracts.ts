// The evaluation domain's wire contract between the models subgraph and the inference workers: queue names, message
// types, the zod schemas of the request and the result, and the evaluation record stored on a model version (the
// evidence the gate and promotion requests read). Both sides import this file; neither reads the other's tables.
import { z } from 'zod';

/** Default names; both may be overridden (MODEL_EVALUATION_REQUESTS_QUEUE / MODEL_EVALUATION_RESULTS_QUEUE). */
export const EVALUATION_QUEUES = {
  /** Durable work queue the inference workers consume: one message per evaluation of one version on one dataset. */
  requests: 'inference.evaluate',
  /** Durable queue the models subgraph consumes: what the workers found. */
  results: 'models.evaluation-results',
} as const;

export const EVALUATION_MESSAGE_TYPES = {
  request: 'model.evaluation.request',
  result: 'model.evaluation.result',
} as const;

/** A request is delivered this often (a worker crashed or storage failed) before the worker reports it failed. */
export const EVALUATION_DELIVERY_LIMIT = 3;

/** Idempotency key of an evaluation: one effect per version and dataset version however often it is sent. */
export const evaluationIdempotencyKey = (versionId: string, datasetVersionId: string): string => `model-evaluation:${versionId}:${datasetVersionId}`;

export const EvaluationStatus = {
  PENDING: 'PENDING',
  SUCCEEDED: 'SUCCEEDED',
  FAILED: 'FAILED',
} as const;
export type EvaluationStatus = (typeof EvaluationStatus)[keyof typeof EvaluationStatus];
export const EVALUATION_STATUSES = Object.values(EvaluationStatus);

/**
 * Which items were evaluated: the dataset version's `test` items, or all its labelled items when no item carries a
 * split (the record says which, because the second may include what a model was trained on).
 */
export const EVALUATION_SPLITS = ['test', 'all-labelled'] as const;
export type EvaluationSplit = (typeof EVALUATION_SPLITS)[number];

/**
 * Why an evaluation failed. Found before anything was sent: NO_EVALUATION_DATASET, DATASET_NOT_FOUND,
 * NO_LABELLED_ITEMS, DATASET_UNAVAILABLE, BROKER_UNAVAILABLE. Found by the models subgraph's sweep: TIMED_OUT (no
 * result after every attempt). Found by the worker: the rest, and a pair's own problems under the inference worker's
 * codes (workers/inference/contracts.ts: BAND_COUNT, SIZE_MISMATCH, BEFORE_CORRUPT, …).
 */
export const EVALUATION_ERROR_CODES = [
  'NO_EVALUATION_DATASET',
  'DATASET_NOT_FOUND',
  'DATASET_UNAVAILABLE',
  'NO_LABELLED_ITEMS',
  'BROKER_UNAVAILABLE',
  'MODEL_INVALID',
  'MODEL_RUN_FAILED',
  'LABEL_SIZE',
  'LABEL_NOT_BINARY',
  'LABEL_UNREADABLE',
  'ITEM_INVALID',
  'INTERNAL',
  'TIMED_OUT',
] as const;
export type EvaluationErrorCode = (typeof EVALUATION_ERROR_CODES)[number] | (string & {});
const errorCode = z.string().regex(/^[A-Z][A-Z0-9_]{1,63}$/);

const uuid = z.uuid();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const objectKey = z.string().min(1).max(1024);
const count = z.number().int().nonnegative();
const unit = z.number().min(0).max(1);

export const evaluationRequestSchema = z.object({
  /** Names this attempt: a result for an older attempt is ignored. */
  requestId: uuid,
  modelVersionId: uuid,
  modelName: z.string().min(1).max(100),
  /** The exact ONNX file: the worker checks the bytes against the sha256 before loading them. */
  artifactKey: objectKey,
  sha256,
  datasetVersionId: sha256,
  /** Object key of the dataset version's manifest (`{datasetId, items: [{before, after, label, split?}]}`). */
  manifestKey: objectKey,
  /** Where the worker reports. */
  resultsQueue: z.string().min(1).max(255),
});
export type EvaluationRequest = z.infer<typeof evaluationRequestSchema>;

export const confusionSchema = z.object({ tp: count, fp: count, fn: count, tn: count });
export type ConfusionCounts = z.infer<typeof confusionSchema>;

export const evaluationMetricsSchema = z.object({
  precision: unit,
  recall: unit,
  f1: unit,
  iou: unit,
  overallAccuracy: unit,
  kappa: z.number().min(-1).max(1),
});
export type EvaluationResultMetrics = z.infer<typeof evaluationMetricsSchema>;

const resultBase = { requestId: uuid, modelVersionId: uuid, datasetVersionId: sha256 };

export const evaluationResultSchema = z.discriminatedUnion('ok', [
  z.object({
    ...resultBase,
    ok: z.literal(true),
    split: z.enum(EVALUATION_SPLITS),
    /** Items evaluated. */
    items: z.number().int().positive(),
    /** Probability above which a pixel counted as changed (the model's own threshold). */
    threshold: unit,
    metrics: evaluationMetricsSchema,
    confusion: confusionSchema,
  }),
  z.object({
    ...resultBase,
    ok: z.literal(false),
    code: errorCode,
    message: z.string().min(1).max(2000),
  }),
]);
export type EvaluationResult = z.infer<typeof evaluationResultSchema>;

/** The evaluation of a model version on a frozen dataset version, as stored on the version (`evaluation`). */
export interface EvaluationRecord {
  status: EvaluationStatus;
  /** The attempt; a result that names another is ignored. */
  requestId: string;
  /** null only when no evaluation dataset was available. */
  datasetVersionId: string | null;
  split: EvaluationSplit | null;
  items: number | null;
  threshold: number | null;
  metrics: EvaluationResultMetrics | null;
  confusion: ConfusionCounts | null;
  requestedBy: string;
  requestedAt: string;
  /**
   * How often the request was sent: 1, then one more each time the sweep re-sends a PENDING one whose result did not
   * come (absent in records written before re-sending existed: 1). Every attempt carries the same requestId, so the
   * first result to arrive applies and the others are ignored.
   */
  attempts?: number;
  /** When the request was last sent (absent: requestedAt). */
  lastSentAt?: string;
  evaluatedAt: string | null;
  error: { code: EvaluationErrorCode; message: string } | null;
}

/**
 * Binary change metrics from confusion counts, as the trainer computes them (training/lcd_training/metrics.py): when
 * there is nothing to find and nothing was predicted, precision, recall, F1 and IoU are 1; otherwise a zero
 * denominator gives 0.
 */
export function summarizeConfusion({ tp, fp, fn, tn }: ConfusionCounts): EvaluationResultMetrics {
  const empty = tp + fp + fn === 0 ? 1 : 0;
  const div = (a: number, b: number, fallback: number) => (b > 0 ? a / b : fallback);
  const n = tp + fp + fn + tn;
  const oa = div(tp + tn, n, 0);
  const pe = div((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn), n * n, 0);
  const round = (v: number) => Math.round(v * 1e6) / 1e6;
  return {
    precision: round(div(tp, tp + fp, empty)),
    recall: round(div(tp, tp + fn, empty)),
    f1: round(div(2 * tp, 2 * tp + fp + fn, empty)),
    iou: round(div(tp, tp + fp + fn, empty)),
    overallAccuracy: round(oa),
    kappa: round(pe < 1 ? (oa - pe) / (1 - pe) : 1),
  };
}
