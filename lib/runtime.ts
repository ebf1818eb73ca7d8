// The shared parts every service is built from: configuration common to all, object storage, the broker and the
// token verifier. In embedded mode (`npm start`) one runtime serves every service of the process.
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { createTokenVerifier, DEV_AUDIENCE, DEV_ISSUER, type TokenVerifier } from './auth.js';
import { createBroker } from './broker/broker.js';
import type { Broker } from './broker/broker.js';
import { commonEnv, parseConfig, portEnv, z, type Env } from './config.js';
import { createObjectStore, type ConfiguredObjectStore } from './storage/index.js';
import { serviceLogger } from './telemetry.js';

export const runtimeEnv = z.object({
  ...commonEnv,
  AUTH_JWKS_URL: z.url().optional(),
  AUTH_ISSUER: z.string().default(DEV_ISSUER),
  AUTH_AUDIENCE: z.string().default(DEV_AUDIENCE),
  AUTH_ALGORITHMS: z
    .string()
    .default('RS256,ES256,PS256,EdDSA')
    .transform((v) => v.split(',').map((a) => a.trim()))
    .refine((algs) => algs.every((a) => a !== 'none' && !a.startsWith('HS')), {
      message: '"none" and HMAC algorithms are never accepted for user tokens',
    }),
  AUTH_CLOCK_TOLERANCE_SECONDS: z.coerce.number().int().min(0).max(300).default(30),
  AUTH_TENANT_CLAIM: z.string().default('tenant'),
  AUTH_ROLES_CLAIM: z.string().default('roles'),
  STORAGE_SIGNING_SECRET: z.string().min(32).optional(),
  INTROSPECTION: z.enum(['true', 'false']).optional(),
  GATEWAY_PORT: portEnv(4000),
});
export type RuntimeConfig = Readonly<z.infer<typeof runtimeEnv>>;

export function loadRuntimeConfig(env: Env): RuntimeConfig {
  return parseConfig(runtimeEnv, env);
}

export interface Runtime {
  config: RuntimeConfig;
  store: ConfiguredObjectStore;
  broker: Broker;
  verifier: TokenVerifier;
  /** Public base URL of the gateway, where clients reach GraphQL and (local backend) signed storage URLs. */
  publicUrl: string;
  introspection: boolean;
  log: Logger;
  close(): Promise<void>;
}

async function signingSecret(config: RuntimeConfig): Promise<Buffer> {
  if (config.STORAGE_SIGNING_SECRET) return Buffer.from(config.STORAGE_SIGNING_SECRET);
  const path = join(config.STATE_DIR, 'storage-signing-secret');
  try {
    return Buffer.from(await readFile(path, 'utf8'), 'base64');
  } catch {
    await mkdir(config.STATE_DIR, { recursive: true });
    await writeFile(path, randomBytes(32).toString('base64'), { mode: 0o600, flag: 'wx' }).catch(() => undefined);
    return Buffer.from(await readFile(path, 'utf8'), 'base64');
  }
}

export async function createRuntime(config: RuntimeConfig): Promise<Runtime> {
  const log = serviceLogger('runtime');
  const publicUrl = (config.PUBLIC_URL ?? `http://localhost:${config.GATEWAY_PORT}`).replace(/\/$/, '');
  const store = createObjectStore({
    url: config.STORAGE_URL,
    localDir: join(config.STATE_DIR, 'objects'),
    publicBaseUrl: publicUrl,
    signingSecret: await signingSecret(config),
  });
  const broker = await createBroker({ url: config.AMQP_URL });
  const verifier = await createTokenVerifier({
    jwksUrl: config.AUTH_JWKS_URL,
    issuer: config.AUTH_ISSUER,
    audience: config.AUTH_AUDIENCE,
    algorithms: config.AUTH_ALGORITHMS,
    clockToleranceSeconds: config.AUTH_CLOCK_TOLERANCE_SECONDS,
    stateDir: config.STATE_DIR,
    tenantClaim: config.AUTH_TENANT_CLAIM,
    rolesClaim: config.AUTH_ROLES_CLAIM,
  });
  const introspection = config.INTROSPECTION ? config.INTROSPECTION === 'true' : config.NODE_ENV !== 'production';
  log.info({ storage: store.kind, broker: broker.kind, auth: config.AUTH_JWKS_URL ? 'jwks' : 'dev-key' }, 'runtime ready');
  return { config, store, broker, verifier, publicUrl, introspection, log, close: async () => {
      await broker.close();
      await store.close();
    },
  };
}

export interface RunningService {
  name: string;
  url: string;
  close(): Promise<void>;
}
