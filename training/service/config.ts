// The training service's configuration, validated once at start-up. Nothing else in the service reads process.env
// (the trainer child process inherits the environment it was given).
import { join } from 'node:path';
import { commonEnv, parseConfig, portEnv, z, type Env } from '../../lib/config.js';
import { TRAINING_QUEUES } from '../../subgraphs/models/training.contracts.js';

const positiveInt = (fallback: number) => z.coerce.number().int().positive().default(fallback);

export const trainingEnv = z.object({
  STATE_DIR: commonEnv.STATE_DIR,
  TRAINING_PORT: portEnv(4006),
  /** Interpreter with torch, numpy and PIL; default /usr/bin/python3 when it imports torch, else python3. */
  LCD_PYTHON: z.string().optional(),
  /** Recorded as the run's code version and in the model metadata; default: the trainer's own (git commit or source hash). */
  LCD_CODE_VERSION: z.string().max(300).optional(),
  /** Content-addressed dataset cache (default STATE_DIR/training/datasets). */
  TRAINING_CACHE_DIR: z.string().optional(),
  /** Working folders of running trainings (default STATE_DIR/training/runs); removed after upload. */
  TRAINING_WORK_DIR: z.string().optional(),
  TRAINING_KEEP_WORK_DIRS: z.enum(['true', 'false']).default('false'),
  /** Upper bound of a run's time limit, whatever the request says. */
  TRAINING_MAX_TIME_LIMIT_SECONDS: positiveInt(48 * 3600),
  TRAINING_KILL_GRACE_SECONDS: positiveInt(10),
  /** Address-space limit of the trainer process in MiB (unset: none). */
  TRAINING_MEMORY_LIMIT_MB: z.coerce.number().int().min(64).optional(),
  /** OMP/MKL threads of the trainer (unset: torch's default, one per core). */
  TRAINING_THREADS: z.coerce.number().int().min(1).max(1024).optional(),
  /** How often buffered metric values are reported. */
  TRAINING_METRICS_FLUSH_MS: positiveInt(2000),
  /** Largest accepted |onnxruntime − PyTorch| on the held-back pairs. */
  TRAINING_PARITY_TOLERANCE: z.coerce.number().positive().max(1).default(1e-3),
  TRAINING_REQUESTS_QUEUE: z.string().default(TRAINING_QUEUES.requests),
  TRAINING_EVENTS_QUEUE: z.string().default(TRAINING_QUEUES.events),
});
export type TrainingConfig = Readonly<z.infer<typeof trainingEnv> & { cacheDir: string; workDir: string }>;

export function loadTrainingConfig(env: Env): TrainingConfig {
  const config = parseConfig(trainingEnv, env);
  return Object.freeze({
    ...config,
    cacheDir: config.TRAINING_CACHE_DIR ?? join(config.STATE_DIR, 'training', 'datasets'),
    workDir: config.TRAINING_WORK_DIR ?? join(config.STATE_DIR, 'training', 'runs'),
  });
}
