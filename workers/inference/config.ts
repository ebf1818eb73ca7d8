// The inference worker's configuration, validated once at start-up. Nothing else in the worker reads process.env.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { boolEnv, parseConfig, portEnv, z, type Env } from '../../lib/config.js';
import type { SessionSettings } from '../../lib/model/ort-session.js';
import { EVALUATION_QUEUES } from '../../subgraphs/models/model-evaluation.contracts.js';

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const inferenceEnv = z.object({
  INFERENCE_PORT: portEnv(4005),
  /** Name of the model detectChanges and jobs use when the request names none (registered platform-wide). */
  DEFAULT_MODEL_NAME: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/).default('lcd-demo'),
  /** `auto` (CUDA when its provider loads, else CPU), `cpu`, `cuda` (fail without it), or a list such as `cuda,cpu`. */
  INFERENCE_EXECUTION_PROVIDERS: z
    .string()
    .default('auto')
    .transform((v) => v.split(',').map((p) => p.trim().toLowerCase()))
    .refine((list) => list.every((p) => ['auto', 'cpu', 'cuda'].includes(p)) && (!list.includes('auto') || list.length === 1), {
      message: 'must be auto, cpu, cuda, or a comma-separated list of cpu and cuda',
    }),
  INFERENCE_CUDA_DEVICE_ID: z.coerce.number().int().min(0).default(0),
  /** ORT intra-op threads (0: onnxruntime's default, one per physical core). */
  INFERENCE_INTRA_OP_THREADS: z.coerce.number().int().min(0).default(0),
  /**
   * Let onnxruntime's threads spin-wait after each run (its own default) rather than sleep. Off by default: spinning
   * holds the cores that the worker's own thread needs right then (decoding, writing outputs, answering).
   */
  INFERENCE_ORT_SPIN_WAIT: boolEnv(false),
  /** Tiles per onnxruntime call. */
  INFERENCE_BATCH_SIZE: positiveInt(4),
  /** Overlap of neighbouring tiles in pixels; default an eighth of the model's tile size. */
  INFERENCE_TILE_OVERLAP: z.coerce.number().int().min(0).optional(),
  /** Batch pairs processed at once by one worker (each uses every core through onnxruntime). */
  INFERENCE_PAIR_CONCURRENCY: positiveInt(1),
  INFERENCE_RPC_CONCURRENCY: positiveInt(2),
  /** Loaded model versions kept (least recently used goes first). */
  INFERENCE_MODEL_CACHE_SIZE: positiveInt(3),
  /** How long a resolved Production version is trusted without a `model.<name>.stage` event. */
  INFERENCE_RESOLUTION_TTL_SECONDS: positiveInt(60),
  INFERENCE_RPC_TIMEOUT_MS: positiveInt(10_000),
  INFERENCE_MAX_PIXELS: positiveInt(16_384 * 16_384),
  INFERENCE_MAX_SIDE: z.coerce.number().int().positive().max(65_536).default(65_536),
  INFERENCE_MAX_FULL_DECODE_PIXELS: positiveInt(8_192 * 8_192),
  INFERENCE_MAX_TIFF_BLOCK_BYTES: positiveInt(256 * 1024 * 1024),
  /** Changed regions smaller than this many pixels are left out of the polygons. */
  INFERENCE_MIN_REGION_PIXELS: z.coerce.number().int().min(0).default(4),
  /** Douglas–Peucker tolerance for polygon rings, in pixels (0: exact pixel boundaries). */
  INFERENCE_SIMPLIFY_TOLERANCE: z.coerce.number().min(0).max(100).default(0.5),
  /** Polygons stop after this many vertices in all (a noise-like mask); the GeoJSON then says `truncated`. */
  INFERENCE_MAX_POLYGON_VERTICES: positiveInt(20_000_000),
  /** Inputs up to this size are read into memory; larger ones are streamed through a temporary file. */
  INFERENCE_IN_MEMORY_BYTES: positiveInt(64 * 1024 * 1024),
  INFERENCE_TMP_DIR: z.string().default(join(tmpdir(), 'lcd-inference')),
  /** Seconds between GPU utilisation samples (nvidia-smi) when running on CUDA. */
  INFERENCE_GPU_SAMPLE_SECONDS: positiveInt(10),
  /** Queue of model evaluation requests (the models subgraph's MODEL_EVALUATION_REQUESTS_QUEUE). */
  INFERENCE_EVALUATION_QUEUE: z.string().min(1).default(EVALUATION_QUEUES.requests),
});
export type InferenceConfig = Readonly<z.infer<typeof inferenceEnv>>;

export const loadInferenceConfig = (env: Env): InferenceConfig => parseConfig(inferenceEnv, env);

/** The onnxruntime session settings the configuration asks for. */
export const sessionSettings = (config: InferenceConfig): SessionSettings => ({
  providers: config.INFERENCE_EXECUTION_PROVIDERS,
  cudaDeviceId: config.INFERENCE_CUDA_DEVICE_ID,
  intraOpThreads: config.INFERENCE_INTRA_OP_THREADS,
  spinWait: config.INFERENCE_ORT_SPIN_WAIT,
});
