// Configuration parsing shared by every service's own config module: a zod schema validated once at start-up,
// an error that names each bad variable, and a frozen typed result. Only config modules read process.env.
import { resolve } from 'node:path';
import { z } from 'zod';

export class ConfigError extends Error {
  constructor(readonly issues: string[]) {
    super(`Invalid configuration:\n${issues.map((i) => `  - ${i}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export type Env = Record<string, string | undefined>;

export function parseConfig<S extends z.ZodType>(schema: S, env: Env): Readonly<z.infer<S>> {
  // Empty strings mean "unset": shells and Kubernetes manifests produce them for optional values.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schema.safeParse(cleaned);
  if (!result.success) {
    throw new ConfigError(result.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`));
  }
  return Object.freeze(result.data) as Readonly<z.infer<S>>;
}

const urlWithProtocols = (protocols: string[]) =>
  z.string().refine(
    (value) => {
      try {
        return protocols.includes(new URL(value).protocol);
      } catch {
        return false;
      }
    },
    { message: `must be a URL starting with ${protocols.map((p) => `${p}//`).join(' or ')}` },
  );

const port = (fallback: number) => z.coerce.number().int().min(0).max(65535).default(fallback);

/** Variables every service understands; each service extends this with its own. */
export const commonEnv = {
  NODE_ENV: z.enum(['development', 'production', 'test']).default('development'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  STATE_DIR: z
    .string()
    .default('./state')
    .transform((p) => resolve(p)),
  DATABASE_URL: urlWithProtocols(['postgres:', 'postgresql:']).optional(),
  AMQP_URL: urlWithProtocols(['amqp:', 'amqps:']).optional(),
  STORAGE_URL: urlWithProtocols(['s3:']).optional(),
  REDIS_URL: urlWithProtocols(['redis:', 'rediss:']).optional(),
  PUBLIC_URL: urlWithProtocols(['http:', 'https:']).optional(),
  HOST: z.string().default('127.0.0.1'),
};

export const portEnv = port;
export const env = { url: urlWithProtocols };

/** `true` or `false` (nothing else), as a boolean. */
export const boolEnv = (fallback: boolean) =>
  z
    .enum(['true', 'false'])
    .default(fallback ? 'true' : 'false')
    .transform((v) => v === 'true');
export { z };
