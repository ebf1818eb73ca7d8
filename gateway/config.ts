import { parseCosts } from '../lib/security/rate-limit.js';
import { boolEnv, parseConfig, portEnv, z, type Env } from '../lib/config.js';

const optionalUrl = z.url().optional();
const positiveInt = (fallback: number, max: number) => z.coerce.number().int().min(1).max(max).default(fallback);

export const gatewayEnv = z
  .object({
    GATEWAY_PORT: portEnv(4000),
    SUPERGRAPH_CONFIG: z.string().default('supergraph.yaml'),
    JOBS_URL: optionalUrl,
    MODELS_URL: optionalUrl,
    DATASETS_URL: optionalUrl,
    MONITORING_URL: optionalUrl,
    MAX_REQUEST_BYTES: z.coerce.number().int().min(1024).max(64 * 1024 * 1024).default(1024 * 1024),
    SUBGRAPH_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(60_000),
    // Subgraphs running in the gateway's own process (npm start) are called there, not over loopback HTTP.
    GATEWAY_IN_PROCESS_SUBGRAPHS: boolEnv(true),
    // Operation limits, checked before anything reaches a subgraph.
    MAX_QUERY_TOKENS: positiveInt(3000, 1_000_000),
    MAX_QUERY_DEPTH: positiveInt(12, 1000),
    MAX_QUERY_ALIASES: positiveInt(30, 100_000),
    MAX_ROOT_FIELDS: positiveInt(10, 10_000),
    MAX_QUERY_COST: positiveInt(25_000, 1_000_000_000),
    // Rate limits per identity (token bucket; Redis when REDIS_URL is set, else in memory).
    RATE_LIMIT_ENABLED: boolEnv(true),
    RATE_LIMIT_BURST: positiveInt(100, 1_000_000),
    RATE_LIMIT_REFILL_PER_SECOND: z.coerce.number().positive().max(1_000_000).default(10),
    RATE_LIMIT_COSTS: z
      .string()
      .default('detectChanges=10,startTraining=20')
      .transform((text, ctx) => {
        try {
          return parseCosts(text);
        } catch (error) {
          ctx.addIssue({ code: 'custom', message: `${(error as Error).message}; expected e.g. detectChanges=10,startTraining=20` });
          return z.NEVER;
        }
      }),
    RATE_LIMIT_KEY_PREFIX: z.string().regex(/^[\x21-\x7e]{1,100}$/).default('lcd:ratelimit:'),
    AUDIT_QUEUE: z.string().regex(/^[A-Za-z0-9_.:-]{1,200}$/).default('monitoring.audit'),
    MAX_SUBSCRIPTIONS_PER_CONNECTION: z.coerce.number().int().min(1).max(10_000).default(100),
    MAX_PENDING_EVENTS_PER_SUBSCRIPTION: z.coerce.number().int().min(10).max(1_000_000).default(1000),
    /** Bytes a subscriber's socket may hold unsent (it does not read) before it is closed with 4408. */
    MAX_SUBSCRIPTION_BUFFER_BYTES: z.coerce.number().int().min(16 * 1024).max(1024 * 1024 * 1024).default(4 * 1024 * 1024),
  })
  .superRefine((config, ctx) => {
    for (const [field, cost] of Object.entries(config.RATE_LIMIT_COSTS)) {
      if (cost > config.RATE_LIMIT_BURST) {
        ctx.addIssue({
          code: 'custom',
          path: ['RATE_LIMIT_COSTS'],
          message: `${field} costs ${cost}, more than RATE_LIMIT_BURST (${config.RATE_LIMIT_BURST}): it could never run`,
        });
      }
    }
  });
export type GatewayConfig = Readonly<z.infer<typeof gatewayEnv>>;

export const loadGatewayConfig = (env: Env): GatewayConfig => parseConfig(gatewayEnv, env);
