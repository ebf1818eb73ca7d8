import { parseConfig, portEnv, z, type Env } from '../../lib/config.js';

export const jobsEnv = z.object({
  JOBS_PORT: portEnv(4001),
  JOBS_DATABASE_URL: z.string().optional(),
  MAX_PAIRS_PER_JOB: z.coerce.number().int().positive().default(10_000),
  /** The model detectChanges and jobs use when the request names none (registered platform-wide). */
  DEFAULT_MODEL_NAME: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/).default('lcd-demo'),
  /** detectChanges refuses larger images (width × height, read from the headers): they go through a batch job. */
  SYNC_MAX_PIXELS: z.coerce.number().int().positive().default(4096 * 4096),
  /** How long detectChanges waits for the worker. */
  SYNC_TIMEOUT_MS: z.coerce.number().int().min(1000).max(300_000).default(30_000),
  /** Lifetime of the signed download URLs of results. */
  RESULT_URL_TTL_SECONDS: z.coerce.number().int().min(60).max(7 * 24 * 3600).default(3600),
  /** Timeout of the calls to the datasets and models subgraphs (upload and model resolution). */
  JOBS_RPC_TIMEOUT_MS: z.coerce.number().int().positive().default(10_000),
  /** Batch jobs whose pair messages were not all sent are sent again after this long (a process stopped half-way). */
  JOBS_REDISPATCH_AFTER_SECONDS: z.coerce.number().int().positive().default(60),
});
export type JobsConfig = Readonly<z.infer<typeof jobsEnv>>;

export const loadJobsConfig = (env: Env): JobsConfig => parseConfig(jobsEnv, env);
