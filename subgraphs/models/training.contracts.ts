// The training domain's wire contract between the models subgraph and the training service: queue names, message
// types, event routing keys and the zod schema of every payload. Both sides import this file; neither reads the
// other's tables.
import { z } from 'zod';

/** Default names; both may be overridden (TRAINING_REQUESTS_QUEUE / TRAINING_EVENTS_QUEUE) to isolate platforms. */
export const TRAINING_QUEUES = {
  /** Durable work queue the training service consumes with prefetch 1: one message per run. */
  requests: 'training.requests',
  /** Durable queue the models subgraph consumes: what the training service reports about each run. */
  events: 'models.training-events',
} as const;

/** A request is redelivered this often (the service crashed mid-run) before it is dead-lettered. */
export const TRAINING_REQUEST_DELIVERY_LIMIT = 3;

export const TRAINING_MESSAGE_TYPES = {
  request: 'training.request',
  event: 'training.event',
} as const;

/** Types of the events the models subgraph appends to its event log (see lib/events/event-log.ts). */
export const TRAINING_LOGGED_EVENT_TYPES = {
  progress: 'training.progress',
  cancelRequested: 'training.cancel-requested',
  modelStage: 'model.stage',
} as const;

/** Routing keys on the `lcd.events` topic exchange and the event-log streams they belong to. */
export const TRAINING_EVENT_KEYS = {
  progress: (runId: string) => `training.${runId}.progress`,
  cancel: (runId: string) => `training.${runId}.cancel`,
  allCancels: 'training.*.cancel',
  modelStage: (modelName: string) => `model.${modelName}.stage`,
} as const;

export const TRAINING_STREAMS = {
  run: (runId: string) => `training:${runId}`,
  model: (tenant: string, modelName: string) => `model:${tenant}:${modelName}`,
} as const;

/** Config keys the training service reads itself; they are not passed to the trainer. */
export const SERVICE_CONFIG_KEYS = ['timeLimitSeconds'] as const;

const uuid = z.uuid();
const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const finite = z.number().refine(Number.isFinite, 'must be a finite number');

export const trainingRequestSchema = z.object({
  runId: uuid,
  tenant: z.string().min(1).max(200),
  modelName: z.string().min(1).max(100),
  datasetVersionId: sha256,
  /** Object key of the dataset version's manifest (DatasetService: `{datasetId, items: [{before, after, label, …}]}`). */
  manifestKey: z.string().min(1).max(1024),
  /** The trainer's config as submitted, without the service's own keys. */
  config: z.record(z.string(), z.unknown()),
  /** Wall-clock limit of the trainer process. */
  timeLimitSeconds: z.number().int().positive(),
  requestedBy: z.string().min(1).max(200),
});
export type TrainingRequest = z.infer<typeof trainingRequestSchema>;

export const trainingArtifactSchema = z.object({
  name: z.string().min(1).max(200),
  key: z.string().min(1).max(1024),
  byteSize: z.number().int().nonnegative(),
  sha256: z.string(),
});

export const trainingMetricSchema = z.object({
  name: z.string().min(1).max(100),
  step: z.number().int().nonnegative(),
  epoch: z.number().int().nonnegative().nullable().optional(),
  value: finite,
  /** Epoch milliseconds when the trainer reported it. */
  at: z.number().int().nonnegative().optional(),
});
export type TrainingMetricReport = z.infer<typeof trainingMetricSchema>;

/** What the trainer said about itself when it started: everything needed to reproduce the run. */
export const trainerEnvironmentSchema = z.object({
  codeVersion: z.string().min(1).max(300),
  configHash: z.string().max(200),
  resolvedConfig: z.record(z.string(), z.unknown()),
  datasetVersion: z.string().max(300),
  torch: z.string().max(100),
  device: z.string().max(100),
  threads: z.number().int().nonnegative(),
  counts: z.record(z.string(), z.number().int().nonnegative()),
  parameters: z.number().int().nonnegative(),
  python: z.string().max(1000),
});
export type TrainerEnvironment = z.infer<typeof trainerEnvironmentSchema>;

export const registrationSchema = z.object({
  artifactKey: z.string().min(1).max(1024),
  sha256,
  byteSize: z.number().int().positive(),
  /** The registry's view of the ONNX contract (lib/model/contract.ts registryContract). */
  contract: z.record(z.string(), z.unknown()),
  /** Evaluation metrics on the held-out split (f1, iou, precision, recall, kappa, …). */
  metrics: z.record(z.string(), finite),
  /** Which split the metrics come from: `test`, `val`, or `train` when the dataset had nothing held out. */
  evaluationSplit: z.string().max(20).default('val'),
  referenceStatsKey: z.string().min(1).max(1024).nullable(),
  weightsSha256: z.string().max(200),
  /** Largest absolute difference between onnxruntime and PyTorch outputs on the held-back pairs. */
  parityMaxAbsDiff: finite,
});
export type RegistrationReport = z.infer<typeof registrationSchema>;

export const trainingEventSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('started'), runId: uuid, attempt: z.number().int().positive() }),
  z.object({ kind: z.literal('environment'), runId: uuid, environment: trainerEnvironmentSchema }),
  z.object({ kind: z.literal('metrics'), runId: uuid, metrics: z.array(trainingMetricSchema).min(1).max(1000) }),
  z.object({ kind: z.literal('artifacts'), runId: uuid, artifacts: z.array(trainingArtifactSchema).max(100), logKey: z.string().max(1024).nullable() }),
  z.object({
    kind: z.literal('succeeded'),
    runId: uuid,
    registration: registrationSchema,
    /** Where the service's time went: materialising the dataset, the trainer process, the ONNX checks, uploads. */
    timings: z.object({ datasetSeconds: finite, trainerSeconds: finite, checkSeconds: finite, uploadSeconds: finite }).optional(),
  }),
  z.object({ kind: z.literal('failed'), runId: uuid, code: z.string().min(1).max(100), message: z.string().min(1).max(4000) }),
  z.object({ kind: z.literal('cancelled'), runId: uuid, message: z.string().max(1000) }),
]);
export type TrainingEvent = z.infer<typeof trainingEventSchema>;
export type TrainingEventKind = TrainingEvent['kind'];

/** Payload of the `training.<runId>.cancel` event (inside the event log's envelope). */
export const cancelRequestSchema = z.object({ runId: uuid, tenant: z.string().min(1) });
export type CancelRequest = z.infer<typeof cancelRequestSchema>;

/** Payload of `model.<name>.stage` events: the inference workers reload on them. */
export interface ModelStageEventPayload extends Record<string, unknown> {
  modelName: string;
  versionId: string;
  stage: string;
  tenant: string;
}

/** Object keys of a run's files: `training/<tenant>/<runId>/<name>`. */
export const runArtifactKey = (tenant: string, runId: string, name: string): string => `training/${tenantSegment(tenant)}/${runId}/${name}`;

/** Object key of a registered ONNX file, content-addressed within its model. */
export const modelArtifactKey = (tenant: string, modelName: string, sha: string): string => `models/${tenantSegment(tenant)}/${modelName}/${sha}.onnx`;

/** The platform tenant `*` is spelled `platform` in object keys. */
export const tenantSegment = (tenant: string): string => (tenant === '*' ? 'platform' : tenant);
