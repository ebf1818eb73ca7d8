// The change-detection domain's wire contract: queue names, message types, event routing keys and the zod schemas of
// every payload exchanged between the jobs subgraph and the inference workers. Both sides import this file.
import { z } from 'zod';

export const INFERENCE_QUEUES = {
  /** RPC: one pair, answered within the caller's timeout (detectChanges). */
  detect: 'inference.detect',
  /** Work queue: one message per pair of a batch job. */
  pairs: 'inference.pairs',
} as const;

/**
 * Deliveries of a pair message before it is dead-lettered. Part of the queue's definition, which both the jobs subgraph
 * (sender) and the workers (consumers) assert: one constant, so that the two declarations always agree.
 */
export const PAIR_DELIVERY_LIMIT = 5;

/** Durable queue the jobs subgraph consumes: what workers report about each pair (started, succeeded, failed). */
export const JOBS_PAIR_RESULTS_QUEUE = 'jobs.pair-results';

export const MESSAGE_TYPES = {
  detectRequest: 'inference.detect.request',
  detectReply: 'inference.detect.reply',
  pairRequest: 'inference.pair.request',
  pairReport: 'job.pair.report',
  jobProgress: 'job.progress',
  jobCancelled: 'job.cancelled',
  modelStage: 'model.stage',
} as const;

/** Routing keys on the `lcd.events` topic exchange. */
export const EVENT_KEYS = {
  jobProgress: (jobId: string) => `job.${jobId}.progress`,
  jobCancelled: (jobId: string) => `job.${jobId}.cancelled`,
  /** Published by the models subgraph when a version's stage changes. */
  modelStage: (modelName: string) => `model.${modelName}.stage`,
  allJobCancellations: 'job.*.cancelled',
  allModelStages: 'model.*.stage',
} as const;

/** Idempotency key of a pair's message: one effect per pair however often it is sent or delivered. */
export const pairIdempotencyKey = (jobId: string, index: number) => `job:${jobId}:pair:${index}`;

/** Where a pair's outputs live in object storage. */
export const resultPrefix = (tenant: string, jobId: string, index: number) => `results/${tenant}/${jobId}/${index}`;

export const RESULT_FILES = {
  mask: 'mask.png',
  maskGeoTiff: 'mask.tif',
  probability: 'probability.png',
  probabilityGeoTiff: 'probability.tif',
  polygons: 'polygons.geojson',
  stats: 'stats.json',
  drift: 'drift.json',
} as const;
export type ResultOutput = keyof typeof RESULT_FILES;

/**
 * Why a pair failed. Input problems name the side (`BEFORE_…` / `AFTER_…`) where they concern one file; they are
 * permanent (no retry). INTERNAL and MODEL_UNAVAILABLE are retried.
 */
export const IMAGE_PROBLEMS = ['EMPTY_FILE', 'NOT_AN_IMAGE', 'TRUNCATED', 'CORRUPT', 'TOO_LARGE', 'UNSUPPORTED', 'NOT_FOUND'] as const;
export type ImageProblem = (typeof IMAGE_PROBLEMS)[number];
export const PAIR_ERROR_CODES = [
  ...IMAGE_PROBLEMS.map((p) => `BEFORE_${p}` as const),
  ...IMAGE_PROBLEMS.map((p) => `AFTER_${p}` as const),
  'SIZE_MISMATCH',
  'BAND_COUNT',
  'NAN_IN_INPUT',
  'CRS_MISMATCH',
  'TRANSFORM_MISMATCH',
  'GEOREFERENCE_MISMATCH',
  'TOO_LARGE_FOR_SYNC',
  'MODEL_NOT_FOUND',
  'MODEL_INVALID',
  'DEADLINE_EXCEEDED',
  'MODEL_UNAVAILABLE',
  'INTERNAL',
] as const;
export type PairErrorCode = (typeof PAIR_ERROR_CODES)[number];
/** Codes worth retrying: the same message may succeed later. */
export const TRANSIENT_ERROR_CODES: readonly PairErrorCode[] = ['MODEL_UNAVAILABLE', 'INTERNAL'];

export const pairErrorSchema = z.object({
  code: z.enum(PAIR_ERROR_CODES),
  message: z.string().max(2000),
});
export type PairError = z.infer<typeof pairErrorSchema>;

const objectKey = z.string().min(1).max(1024);
const uuid = z.uuid();

export const changeStatsSchema = z.object({
  changedPixels: z.number().int().nonnegative(),
  changedFraction: z.number().min(0).max(1),
  /** Polygons written (regions at least the minimum size). */
  regions: z.number().int().nonnegative(),
  areaSquareMeters: z.number().nonnegative().nullable(),
  areaHectares: z.number().nonnegative().nullable(),
});
export type ChangeStatsPayload = z.infer<typeof changeStatsSchema>;

export const crsSummarySchema = z.object({
  epsg: z.number().int().nullable(),
  kind: z.enum(['projected', 'geographic', 'geocentric', 'unknown']),
  /** `EPSG:32633` or a description of a user-defined CRS. */
  name: z.string(),
});

/** What a pair produced: object keys of its outputs, stats, and the model version that made it. */
export const changeResultSchema = z.object({
  width: z.number().int().positive(),
  height: z.number().int().positive(),
  georeferenced: z.boolean(),
  crs: crsSummarySchema.nullable(),
  modelName: z.string(),
  modelVersionId: z.string().min(1),
  threshold: z.number(),
  keys: z.object({
    mask: objectKey,
    maskGeoTiff: objectKey.optional(),
    probability: objectKey,
    probabilityGeoTiff: objectKey.optional(),
    polygons: objectKey,
    stats: objectKey,
    drift: objectKey,
  }),
  stats: changeStatsSchema,
  tiles: z.number().int().nonnegative(),
  /** Seconds per stage (fetch, decode, inference: onnxruntime's own time, modelCall: the same runs as the worker waited for them, stitch, encode, polygons) and in all (total). */
  timings: z.record(z.string(), z.number()),
});
export type ChangeResultPayload = z.infer<typeof changeResultSchema>;

/** inference.pairs: one pair of a batch job; the model version was pinned when the job was submitted. */
export const pairRequestSchema = z.object({
  jobId: uuid,
  pairIndex: z.number().int().nonnegative(),
  beforeKey: objectKey,
  afterKey: objectKey,
  modelName: z.string().min(1).max(100),
  modelVersionId: z.string().min(1).max(100),
  threshold: z.number().min(0).max(1).nullable(),
});
export type PairRequest = z.infer<typeof pairRequestSchema>;

/** inference.detect (RPC): one pair, within a deadline and a size cap read from the image headers. */
export const detectRequestSchema = z.object({
  jobId: uuid,
  beforeKey: objectKey,
  afterKey: objectKey,
  modelName: z.string().min(1).max(100),
  threshold: z.number().min(0).max(1).nullable(),
  /** Refuse (TOO_LARGE_FOR_SYNC) from the headers when width × height exceeds this. */
  maxPixels: z.number().int().positive(),
  /** Epoch ms after which the caller no longer waits: the worker stops. */
  deadline: z.number().int().positive(),
  /** Sizes the datasets subgraph has just checked: the worker reads such inputs without asking the store first. */
  beforeBytes: z.number().int().nonnegative().optional(),
  afterBytes: z.number().int().nonnegative().optional(),
});
export type DetectRequest = z.infer<typeof detectRequestSchema>;

export const detectReplySchema = z.discriminatedUnion('ok', [
  z.object({ ok: z.literal(true), result: changeResultSchema }),
  z.object({ ok: z.literal(false), error: pairErrorSchema }),
]);
export type DetectReply = z.infer<typeof detectReplySchema>;

/** jobs.pair-results: a worker's report on one pair. Applied idempotently by the jobs subgraph. */
export const pairReportSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('started'), jobId: uuid, pairIndex: z.number().int().nonnegative(), attempt: z.number().int().positive() }),
  z.object({ kind: z.literal('succeeded'), jobId: uuid, pairIndex: z.number().int().nonnegative(), result: changeResultSchema }),
  z.object({
    kind: z.literal('failed'),
    jobId: uuid,
    pairIndex: z.number().int().nonnegative(),
    error: pairErrorSchema,
    /** false: the message will be retried; true: the pair has failed for good (its message is dead-lettered). */
    final: z.boolean(),
  }),
]);
export type PairReport = z.infer<typeof pairReportSchema>;

/** `job.<id>.progress`: published by the jobs subgraph after every change a report made. */
export const jobProgressEventSchema = z.object({
  jobId: uuid,
  tenant: z.string(),
  /** Increases with every change of the job; lets a subscriber drop stale or repeated events. */
  sequence: z.number().int().nonnegative(),
  status: z.enum(['QUEUED', 'RUNNING', 'SUCCEEDED', 'PARTIAL', 'FAILED', 'CANCELLED']),
  progress: z.number().min(0).max(1),
  pairCount: z.number().int().nonnegative(),
  succeededCount: z.number().int().nonnegative(),
  failedCount: z.number().int().nonnegative(),
  pair: z
    .object({
      index: z.number().int().nonnegative(),
      status: z.enum(['QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED']),
      error: z.string().nullable(),
      errorCode: z.string().nullable(),
    })
    .nullable(),
});
export type JobProgressEvent = z.infer<typeof jobProgressEventSchema>;

/** `job.<id>.cancelled`: workers skip the job's remaining pairs. */
export const jobCancelledEventSchema = z.object({ jobId: uuid, tenant: z.string() });
export type JobCancelledEvent = z.infer<typeof jobCancelledEventSchema>;

/** `model.<name>.stage` (published by the models subgraph): workers reload the Production version. */
export const modelStageEventSchema = z.object({
  modelName: z.string(),
  versionId: z.string(),
  stage: z.string(),
  tenant: z.string(),
});
export type ModelStageEvent = z.infer<typeof modelStageEventSchema>;
