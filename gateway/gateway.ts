// The one public entry point: Apollo Gateway inside Apollo Server on a static supergraph composed from the
// committed SDL. It verifies the caller's token once, forwards it (never client identity headers) to subgraphs,
// refuses operations over the limits or the caller's rate limit before planning them, audits every mutation, and
// serves health, readiness, metrics and — with local storage — the platform's own signed upload/download URLs.
import { ApolloGateway, RemoteGraphQLDataSource, type GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { ApolloServer, HeaderMap, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import type { IncomingMessage } from 'node:http';
import { Counter } from 'prom-client';
import { AuthError, type Identity } from '../lib/auth.js';
import { composeFromConfig } from '../lib/graphql/compose.js';
import { formatError } from '../lib/graphql/subgraph.js';
import { startServiceServer, type RouteHandler } from '../lib/http.js';
import type { Runtime, RunningService } from '../lib/runtime.js';
import { AuditPublisher } from '../lib/security/audit.js';
import { operationLimitMessage } from '../lib/security/operation-limits.js';
import { createRateLimiter } from '../lib/security/rate-limit.js';
import { createLocalSignedUrlHandler } from '../lib/storage/index.js';
import { createMetricsRegistry, formatTraceparent, newTrace, serviceLogger, type TraceContext } from '../lib/telemetry.js';
import type { GatewayConfig } from './config.js';
import { graphiqlRoute } from './graphiql.js';
import { createSecurityMetrics, securityPlugin, type SecurityMetrics } from './security.plugin.js';

export interface GatewayContext {
  identity: Identity;
  trace: TraceContext;
}

export interface GatewayOptions {
  runtime: Runtime;
  config: GatewayConfig;
  host: string;
  /** Routing URL overrides by subgraph name (embedded mode passes the ports it started). */
  subgraphUrls?: Record<string, string | undefined>;
}

export interface RunningGateway extends RunningService {
  supergraphSdl: string;
}

class AuthenticatedDataSource extends RemoteGraphQLDataSource<GatewayContext> {
  override willSendRequest({ request, context }: GraphQLDataSourceProcessOptions<GatewayContext>): void {
    const headers = request.http?.headers;
    if (!headers) return;
    // Only what the gateway verified travels on: the subgraph verifies this token again itself.
    if ('identity' in context && context.identity) headers.set('authorization', `Bearer ${context.identity.token}`);
    if ('trace' in context && context.trace) headers.set('traceparent', formatTraceparent(newTrace(context.trace)));
  }
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const { runtime, config } = options;
  const log = serviceLogger('gateway');
  const registry = createMetricsRegistry('gateway');
  const operations = new Counter({
    name: 'lcd_graphql_operations_total',
    help: 'GraphQL operations handled by the gateway, by type and outcome',
    labelNames: ['operation_type', 'outcome'] as const,
    registers: [registry],
  });
  const urls = {
    jobs: options.subgraphUrls?.jobs ?? config.JOBS_URL,
    models: options.subgraphUrls?.models ?? config.MODELS_URL,
    datasets: options.subgraphUrls?.datasets ?? config.DATASETS_URL,
    monitoring: options.subgraphUrls?.monitoring ?? config.MONITORING_URL,
  };
  const supergraphSdl = await composeFromConfig(config.SUPERGRAPH_CONFIG, urls);
  const gateway = new ApolloGateway({
    supergraphSdl,
    buildService: ({ url }) =>
      new AuthenticatedDataSource({
        url,
        // Node's fetch (undici) keeps connections to the subgraphs alive; the gateway's default fetcher does not.
        fetcher: ((input: string, init?: RequestInit) =>
          fetch(input, { ...init, signal: AbortSignal.timeout(config.SUBGRAPH_TIMEOUT_MS), keepalive: true } as RequestInit)) as never,
      }),
  });

  const metricsPlugin: ApolloServerPlugin<GatewayContext> = {
    async requestDidStart() {
      return {
        async willSendResponse({ operation, errors }) {
          operations.inc({ operation_type: operation?.operation ?? 'unknown', outcome: errors?.length ? 'error' : 'ok' });
        },
      };
    },
  };

  const security = createSecurityMetrics(registry);
  const rateLimiter = config.RATE_LIMIT_ENABLED
    ? createRateLimiter({
        burst: config.RATE_LIMIT_BURST,
        refillPerSecond: config.RATE_LIMIT_REFILL_PER_SECOND,
        redisUrl: runtime.config.REDIS_URL,
        keyPrefix: config.RATE_LIMIT_KEY_PREFIX,
      })
    : null;
  const audit = new AuditPublisher(runtime.broker, log, config.AUDIT_QUEUE);
  await audit.start();
  const limits = {
    tokens: config.MAX_QUERY_TOKENS,
    rootFields: config.MAX_ROOT_FIELDS,
    aliases: config.MAX_QUERY_ALIASES,
    depth: config.MAX_QUERY_DEPTH,
    cost: config.MAX_QUERY_COST,
  };

  const server = new ApolloServer<GatewayContext>({
    gateway,
    introspection: runtime.introspection,
    includeStacktraceInErrorResponses: false,
    formatError: gatewayFormatError(formatError(log), security),
    csrfPrevention: true,
    // Every request carries its query text: the limits are checked on it before anything else happens.
    persistedQueries: false,
    allowBatchedHttpRequests: false,
    parseOptions: { maxTokens: limits.tokens },
    plugins: [
      ApolloServerPluginLandingPageDisabled(),
      metricsPlugin,
      securityPlugin({ limits, rateLimiter, costs: config.RATE_LIMIT_COSTS, audit, metrics: security, log }),
    ],
  });
  await server.start();

  const context = async (req: IncomingMessage, trace: TraceContext): Promise<GatewayContext> => {
    try {
      return { identity: await runtime.verifier.verify(req.headers.authorization), trace };
    } catch (error) {
      const reason = error instanceof AuthError ? error.reason : 'TOKEN_MALFORMED';
      security.authFailures.inc({ reason });
      if (reason === 'ISSUER_UNAVAILABLE') {
        throw new GraphQLError('The identity provider cannot be reached to check the token; retry shortly', {
          extensions: { code: 'UNAVAILABLE', reason, retryable: true, http: { status: 503, headers: new HeaderMap([['retry-after', '5']]) } },
        });
      }
      const message = error instanceof AuthError ? error.message : 'The token could not be verified';
      const challenge = reason === 'TOKEN_MISSING' ? 'Bearer' : `Bearer error="invalid_token", error_description="${reason}"`;
      throw new GraphQLError(message, {
        extensions: { code: 'UNAUTHENTICATED', reason, http: { status: 401, headers: new HeaderMap([['www-authenticate', challenge]]) } },
      });
    }
  };

  const routes: RouteHandler[] = [];
  if (runtime.store.kind === 'local') routes.push(createLocalSignedUrlHandler(runtime.store));
  if (runtime.introspection) routes.push(graphiqlRoute('/graphql'));

  const subgraphHealth = Object.entries(urls).map(([name, url]) => ({ name, url: url ?? '' }));
  const readiness = async () => {
    const checks: Record<string, boolean> = { broker: runtime.broker.isHealthy() };
    await Promise.all(
      subgraphHealth.map(async ({ name, url }) => {
        if (!url) {
          checks[name] = true; // routing URL from supergraph.yaml; checked by the first query
          return;
        }
        try {
          const res = await fetch(new URL('/readyz', url), { signal: AbortSignal.timeout(2000) });
          checks[name] = res.ok;
        } catch {
          checks[name] = false;
        }
      }),
    );
    return checks;
  };

  const http = await startServiceServer({
    name: 'gateway',
    host: options.host,
    port: config.GATEWAY_PORT,
    registry,
    readiness,
    graphql: { server, context },
    routes,
    maxBodyBytes: config.MAX_REQUEST_BYTES,
    onRefused: (limit) => security.refused.inc({ limit }),
  });
  log.info({ url: `${http.url}/graphql` }, 'gateway listening');
  return {
    name: 'gateway',
    url: `${http.url}/graphql`,
    supergraphSdl,
    async close() {
      await http.close();
      await server.stop();
      await rateLimiter?.close();
    },
  };
}

/**
 * Apollo Server refuses a JSON array (a batch) with a generic BAD_REQUEST before any plugin runs; it is an operation
 * limit like the others, so it answers as one.
 */
function gatewayFormatError(
  format: (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError,
  metrics: SecurityMetrics,
): (formatted: GraphQLFormattedError, error: unknown) => GraphQLFormattedError {
  return (formatted, error) => {
    if (formatted.extensions?.code === 'BAD_REQUEST' && formatted.message === 'Operation batching disabled.') {
      metrics.refused.inc({ limit: 'batch' });
      return { message: `${operationLimitMessage('batch')} (batch)`, extensions: { code: 'OPERATION_LIMIT', limit: 'batch', max: 1 } };
    }
    return format(formatted, error);
  };
}
