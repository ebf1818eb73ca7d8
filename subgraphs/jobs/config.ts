import { parseConfig, portEnv, z, type Env } from '../../lib/config.js';

export const jobsEnv = z.object({
  JOBS_PORT: portEnv(4001),
  JOBS_DATABASE_URL: z.string().optional(),
  MAX_PAIRS_PER_JOB: z.coerce.number().int().positive().default(10_000),
});
export type JobsConfig = Readonly<z.infer<typeof jobsEnv>>;

export const loadJobsConfig = (env: Env): JobsConfig => parseConfig(jobsEnv, env);
