import { parseConfig, portEnv, z, type Env } from '../../lib/config.js';
import { VERSION_RESOLUTION_QUEUE } from './version-resolution.rpc.js';

export const datasetsEnv = z.object({
  /** Interpreter for the synthetic generator (numpy, PIL); default /usr/bin/python3 when it has them, else python3. */
  LCD_PYTHON: z.string().optional(),
  SYNTHETIC_MAX_PAIRS: z.coerce.number().int().positive().default(5000),
  /** Bound on pairs × size² of one synthetic version. */
  SYNTHETIC_MAX_PIXELS: z.coerce.number().int().positive().default(128 * 1024 * 1024),
  SYNTHETIC_TIMEOUT_SECONDS: z.coerce.number().int().positive().default(1800),
  DATASET_VERSION_RESOLUTION_QUEUE: z.string().default(VERSION_RESOLUTION_QUEUE),
  DATASETS_PORT: portEnv(4003),
  DATASETS_DATABASE_URL: z.string().optional(),
  MAX_UPLOAD_BYTES: z.coerce.number().int().positive().default(512 * 1024 * 1024),
  UPLOAD_URL_TTL_SECONDS: z.coerce.number().int().min(30).max(7 * 24 * 3600).default(900),
  MAX_ITEMS_PER_VERSION: z.coerce.number().int().positive().default(10_000),
  MAX_IMAGE_PIXELS: z.coerce.number().int().positive().default(16_384 * 16_384),
});
export type DatasetsConfig = Readonly<z.infer<typeof datasetsEnv>>;

export const loadDatasetsConfig = (env: Env): DatasetsConfig => parseConfig(datasetsEnv, env);
