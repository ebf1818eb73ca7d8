import { parseConfig, portEnv, z, type Env } from '../../lib/config.js';
import { VERSION_RESOLUTION_QUEUE } from '../datasets/version-resolution.rpc.js';
import { EVALUATION_QUEUES } from './model-evaluation.contracts.js';
import { TRAINING_QUEUES } from './training.contracts.js';

const probability = (fallback: number) => z.coerce.number().min(0).max(1).default(fallback);

export const modelsEnv = z.object({
  MODELS_PORT: portEnv(4002),
  MODELS_DATABASE_URL: z.string().optional(),
  TRAINING_REQUESTS_QUEUE: z.string().default(TRAINING_QUEUES.requests),
  TRAINING_EVENTS_QUEUE: z.string().default(TRAINING_QUEUES.events),
  DATASET_VERSION_RESOLUTION_QUEUE: z.string().default(VERSION_RESOLUTION_QUEUE),
  /** Evaluation of versions by the inference workers: requests out, results in (the worker reads its queue from INFERENCE_EVALUATION_QUEUE). */
  MODEL_EVALUATION_REQUESTS_QUEUE: z.string().default(EVALUATION_QUEUES.requests),
  MODEL_EVALUATION_RESULTS_QUEUE: z.string().default(EVALUATION_QUEUES.results),
  /**
   * An evaluation PENDING this long after its request was sent is taken as lost and sent again, at most
   * MODEL_EVALUATION_MAX_ATTEMPTS times in all; then it fails as timed out. Fractions are allowed (tests).
   */
  MODEL_EVALUATION_TIMEOUT_MINUTES: z.coerce.number().positive().default(30),
  MODEL_EVALUATION_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3),
  /** Time limit of a run whose config sets no `timeLimitSeconds`. */
  TRAINING_TIME_LIMIT_SECONDS: z.coerce.number().int().positive().default(6 * 3600),
  TRAINING_MAX_TIME_LIMIT_SECONDS: z.coerce.number().int().positive().default(48 * 3600),
  /** Shown as a queued run's code version until the trainer reports its own. */
  LCD_CODE_VERSION: z.string().max(300).optional(),
  /** Evaluation gate: a trained version goes to STAGING when its held-out metrics reach these minimums… */
  GATE_MIN_F1: probability(0.7),
  GATE_MIN_IOU: probability(0.5),
  /** …and are not worse than the Production version's by more than this. */
  GATE_MAX_REGRESSION: probability(0.02),
  /** The demo model registered platform-wide as Production on first start (`false` to skip). */
  DEMO_MODEL: z.enum(['true', 'false']).default('true'),
  DEMO_MODEL_NAME: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/).default('lcd-demo'),
  /** Folder with model.onnx, evaluation.json, reference_stats.json (default: training/demo-model of the repository). */
  DEMO_MODEL_DIR: z.string().optional(),
  MODEL_MAX_UPLOAD_BYTES: z.coerce.number().int().positive().default(512 * 1024 * 1024),
  MODELS_RPC_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  /** MLflow tracking server to mirror runs, metrics, artifacts and versions to (REST API 2.0); unset: no mirror. */
  MLFLOW_TRACKING_URI: z.url().optional(),
  MLFLOW_TRACKING_TOKEN: z.string().optional(),
  MLFLOW_TRACKING_USERNAME: z.string().optional(),
  MLFLOW_TRACKING_PASSWORD: z.string().optional(),
  MLFLOW_EXPERIMENT_PREFIX: z.string().default('lcd'),
  MLFLOW_MIRROR_QUEUE: z.string().default('models.mlflow-mirror'),
  /** Artifacts larger than this are recorded as tags (their object key) instead of uploaded to MLflow. */
  MLFLOW_ARTIFACT_MAX_BYTES: z.coerce.number().int().nonnegative().default(64 * 1024 * 1024),
  MLFLOW_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
});
export type ModelsConfig = Readonly<z.infer<typeof modelsEnv>>;

export const loadModelsConfig = (env: Env): ModelsConfig => parseConfig(modelsEnv, env);
