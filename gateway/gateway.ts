// The one public entry point: Apollo Gateway inside Apollo Server on a static supergraph composed from the
// committed SDL. It verifies the caller's token once, forwards it (never client identity headers) to subgraphs,
// refuses operations over the limits or the caller's rate limit before planning them, audits every mutation, and
// serves health, readiness, metrics and — with local storage — the platform's own signed upload/download URLs.
import { ApolloGateway, RemoteGraphQLDataSource, type GraphQLDataSourceProcessOptions } from '@apollo/gateway';
import { ApolloServer, HeaderMap, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { GraphQLError, type GraphQLFormattedError } from 'graphql';
import type { IncomingMessage } from 'node:http';
import type { Logger } from 'pino';
import { Counter } from 'prom-client';
import { AuthError, type Identity } from '../lib/auth.js';
import { composeFromConfig } from '../lib/graphql/compose.js';
import { formatError } from '../lib/graphql/subgraph.js';
import { startServiceServer, type LocalFetch, type RouteHandler } from '../lib/http.js';
import type { Runtime, RunningService } from '../lib/runtime.js';
import { AuditPublisher } from '../lib/security/audit.js';
import { operationLimitMessage } from '../lib/security/operation-limits.js';
import { createRateLimiter } from '../lib/security/rate-limit.js';
import { createLocalSignedUrlHandler } from '../lib/storage/index.js';
import { createMetricsRegistry, formatTraceparent, newTrace, serviceLogger, type TraceContext } from '../lib/telemetry.js';
import type { GatewayConfig } from './config.js';
import { graphiqlRoute } from './graphiql.js';
import type { ExecuteAs, FetchResult } from './subscriptions/entity-fetcher.js';
import { startSubscriptionServer } from './subscriptions/subscription-server.js';
import { createSecurityMetrics, securityPlugin, type SecurityMetrics } from './security.plugin.js';

export interface GatewayContext {
  identity: Identity;
  trace: TraceContext;
  /** Set for operations the gateway runs itself on a subscriber's behalf (subscription event fields). */
  internal?: boolean;
}

export interface GatewayOptions {
  runtime: Runtime;
  config: GatewayConfig;
  host: string;
  /** Routing URL overrides by subgraph name (embedded mode passes the ports it started). */
  subgraphUrls?: Record<string, string | undefined>;
  /** Subgraphs running in this process, by URL: called in process (GATEWAY_IN_PROCESS_SUBGRAPHS) rather than over HTTP. */
  localSubgraphs?: Record<string, LocalFetch>;
  /** Runs just before the gateway binds its port (the platform frees the port it held for it here). */
  beforeListen?: () => Promise<void>;
}

export interface RunningGateway extends RunningService {
  supergraphSdl: string;
  subscriptions: Awaited<ReturnType<typeof startSubscriptionServer>>;
}

class AuthenticatedDataSource extends RemoteGraphQLDataSource<GatewayContext> {
  constructor(
    config: ConstructorParameters<typeof RemoteGraphQLDataSource<GatewayContext>>[0],
    private readonly log: Logger,
  ) {
    super(config);
  }

  override willSendRequest({ request, context }: GraphQLDataSourceProcessOptions<GatewayContext>): void {
    const headers = request.http?.headers;
    if (!headers) return;
    // Only what the gateway verified travels on: the subgraph verifies this token again itself.
    if ('identity' in context && context.identity) headers.set('authorization', `Bearer ${context.identity.token}`);
    if ('trace' in context && context.trace) headers.set('traceparent', formatTraceparent(newTrace(context.trace)));
  }

  /**
   * A subgraph that cannot be reached or answers with an HTTP error: Apollo's own error carries the subgraph's
   * internal URL and response body, so the client gets a clean one instead and the details go to the log.
   */
  override didEncounterError(error: Error, _request: unknown, response?: { status: number }): void {
    this.log.warn({ err: error, subgraph: this.url, status: response?.status }, 'subgraph request failed');
    if (response?.status === 401) {
      throw new GraphQLError('A service did not accept the token (it may have just expired); sign in again', {
        extensions: { code: 'UNAUTHENTICATED', reason: 'TOKEN_REFUSED_DOWNSTREAM' },
      });
    }
    throw new GraphQLError('A service is unavailable right now; retry shortly', { extensions: { code: 'UNAVAILABLE', retryable: true } });
  }
}

/** Rejects like an HTTP call past SUBGRAPH_TIMEOUT_MS would (the in-process call itself runs on). */
function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DOMException(`The subgraph did not answer within ${ms} ms`, 'TimeoutError')), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
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
  const local = config.GATEWAY_IN_PROCESS_SUBGRAPHS ? (options.localSubgraphs ?? {}) : {};
  const gateway = new ApolloGateway({
    supergraphSdl,
    buildService: ({ url }) => {
      const inProcess = url ? local[url] : undefined;
      return new AuthenticatedDataSource(
        {
          url,
          fetcher: (inProcess
            ? (_input: string, init: Parameters<LocalFetch>[0]) => withTimeout(inProcess(init), config.SUBGRAPH_TIMEOUT_MS)
            : // Node's fetch (undici) keeps connections to the subgraphs alive; the gateway's default fetcher does not.
              (input: string, init?: RequestInit) => fetch(input, { ...init, signal: AbortSignal.timeout(config.SUBGRAPH_TIMEOUT_MS), keepalive: true } as RequestInit)) as never,
        },
        log,
      );
    },
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
  const audit = new AuditPublisher(runtime.broker, log, config.AUDIT_QUEUE);
  await audit.start();
  const rateLimiter = config.RATE_LIMIT_ENABLED
    ? createRateLimiter({
        burst: config.RATE_LIMIT_BURST,
        refillPerSecond: config.RATE_LIMIT_REFILL_PER_SECOND,
        redisUrl: runtime.config.REDIS_URL,
        keyPrefix: config.RATE_LIMIT_KEY_PREFIX,
      })
    : null;
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
  try {
    await server.start();
  } catch (error) {
    await rateLimiter?.close();
    throw error;
  }

  const context = async (req: Pick<IncomingMessage, 'headers'>, trace: TraceContext): Promise<GatewayContext> => {
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

  await options.beforeListen?.();
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
  }).catch(async (error: unknown) => {
    await server.stop();
    await rateLimiter?.close();
    throw error;
  });
  const executeAs: ExecuteAs = async (identity, query, variables) => {
    const response = await server.executeOperation({ query, variables }, { contextValue: { identity, trace: newTrace(), internal: true } });
    if (response.body.kind !== 'single') return { data: null, errors: [{ message: 'Incremental delivery is not supported here' }] };
    const { data, errors } = response.body.singleResult;
    return { data: (data as Record<string, unknown> | null | undefined) ?? null, errors: errors as FetchResult['errors'] };
  };
  const subscriptions = await startSubscriptionServer({
    httpServer: http.server,
    path: '/graphql',
    apiSchema: gateway.schema!,
    verifier: runtime.verifier,
    broker: runtime.broker,
    executeAs,
    registry,
    log,
    operationLimits: limits,
    limits: {
      maxSubscriptionsPerConnection: config.MAX_SUBSCRIPTIONS_PER_CONNECTION,
      maxPendingEvents: config.MAX_PENDING_EVENTS_PER_SUBSCRIPTION,
      maxBufferedBytes: config.MAX_SUBSCRIPTION_BUFFER_BYTES,
    },
  });
  log.info({ url: `${http.url}/graphql` }, 'gateway listening');
  return {
    name: 'gateway',
    url: `${http.url}/graphql`,
    supergraphSdl,
    subscriptions,
    async close() {
      await subscriptions.close();
      await http.close();
      await server.stop();
      // Audit records of the last answered mutations are still being sent: they reach the broker before it closes.
      await audit.drain();
      await rateLimiter?.close();
    },
  };
}

/**
 * The gateway's error formatting on top of the shared one: Apollo Server refuses a JSON array (a batch) with a generic
 * BAD_REQUEST before any plugin runs, and it answers as the operation limit it is; subgraph names are dropped.
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
    // Which subgraph answered is the gateway's business, not the client's.
    const { serviceName: _serviceName, ...extensions } = formatted.extensions ?? {};
    return format({ ...formatted, extensions }, error);
  };
}
