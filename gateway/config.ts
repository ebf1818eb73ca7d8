import { parseConfig, portEnv, z, type Env } from '../lib/config.js';

const optionalUrl = z.url().optional();

export const gatewayEnv = z.object({
  GATEWAY_PORT: portEnv(4000),
  SUPERGRAPH_CONFIG: z.string().default('supergraph.yaml'),
  JOBS_URL: optionalUrl,
  MODELS_URL: optionalUrl,
  DATASETS_URL: optionalUrl,
  MONITORING_URL: optionalUrl,
  MAX_REQUEST_BYTES: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
  SUBGRAPH_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(60_000),
});
export type GatewayConfig = Readonly<z.infer<typeof gatewayEnv>>;

export const loadGatewayConfig = (env: Env): GatewayConfig => parseConfig(gatewayEnv, env);
