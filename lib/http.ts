// The HTTP server every service runs: GraphQL (Apollo Server through its integration API, no framework), plus
// /healthz, /readyz and /metrics, a request size limit and the trace context of each request.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { HeaderMap, type ApolloServer, type BaseContext } from '@apollo/server';
import { Histogram, type Registry } from 'prom-client';
import { newTrace, parseTraceparent, serviceLogger, withTrace, type TraceContext } from './telemetry.js';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

export interface GraphQLMount<TContext extends BaseContext> {
  server: ApolloServer<TContext>;
  /** Builds a request's context from its headers (the token); the same for HTTP and in-process calls. */
  context: (req: Pick<IncomingMessage, 'headers'>, trace: TraceContext) => Promise<TContext>;
  path?: string;
}

export interface ServiceServerOptions<TContext extends BaseContext> {
  name: string;
  host: string;
  port: number;
  registry: Registry;
  /** Each dependency's state; /readyz answers 200 only when all are true. */
  readiness: () => Promise<Record<string, boolean>>;
  graphql?: GraphQLMount<TContext>;
  routes?: RouteHandler[];
  maxBodyBytes?: number;
  /** Called when a request is refused before it reaches GraphQL (its body is over maxBodyBytes). */
  onRefused?: (limit: 'bodyBytes') => void;
}

export interface ServiceServer {
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** The answer to a GraphQL request whose body does not parse, over HTTP and in process alike. */
const INVALID_JSON_BODY = { errors: [{ message: 'The request body is not valid JSON', extensions: { code: 'BAD_REQUEST' } }] };

/**
 * A fetch() for one GraphQL mount of this process, without a socket: the gateway calls the subgraphs running beside it
 * (`npm start`'s embedded mode) this way instead of over loopback HTTP. The request goes through the same pipeline as
 * one over HTTP (headers, trace context, token verification, plugins, permissions); only the sockets, the HTTP parsing
 * and the request metrics of the subgraph's server are skipped.
 */
export type LocalFetch = (init: { method?: string; headers?: Record<string, string>; body?: string }) => Promise<Response>;

export function localGraphQLFetch<TContext extends BaseContext>(mount: GraphQLMount<TContext>, url: string): LocalFetch {
  return async (init) => {
    const headers = new HeaderMap();
    for (const [key, value] of Object.entries(init.headers ?? {})) headers.set(key, value);
    const trace = newTrace(parseTraceparent(headers.get('traceparent')));
    let body: unknown;
    try {
      body = init.body ? JSON.parse(init.body) : undefined;
    } catch {
      return localResponse(url, 400, new HeaderMap([['content-type', 'application/json']]), JSON.stringify(INVALID_JSON_BODY));
    }
    const plainHeaders = Object.fromEntries(headers);
    const response = await withTrace(trace, () =>
      mount.server.executeHTTPGraphQLRequest({
        httpGraphQLRequest: { method: init.method ?? 'POST', headers, search: '', body },
        context: () => mount.context({ headers: plainHeaders }, trace),
      }),
    );
    let text: string;
    if (response.body.kind === 'complete') text = response.body.string;
    else {
      text = '';
      for await (const chunk of response.body.asyncIterator) text += chunk;
    }
    return localResponse(url, response.status ?? 200, response.headers, text);
  };
}

/** The parts of a fetch Response that Apollo's RemoteGraphQLDataSource reads, without a body stream to go through. */
function localResponse(url: string, status: number, headers: HeaderMap, text: string): Response {
  const fetchHeaders = new Headers([...headers]);
  return {
    ok: status >= 200 && status < 300,
    status,
    statusText: '',
    url,
    headers: fetchHeaders,
    json: async () => JSON.parse(text) as unknown,
    text: async () => text,
  } as Response;
}

export class BodyTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`Request body exceeds the limit of ${limit} bytes`);
  }
}

export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new BodyTooLargeError(limit);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new BodyTooLargeError(limit);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export async function startServiceServer<TContext extends BaseContext>(
  options: ServiceServerOptions<TContext>,
): Promise<ServiceServer> {
  const log = serviceLogger(options.name);
  const maxBody = options.maxBodyBytes ?? 1024 * 1024;
  const graphqlPath = options.graphql?.path ?? '/graphql';
  const duration = new Histogram({
    name: 'lcd_http_request_duration_seconds',
    help: 'HTTP request duration by route and status',
    labelNames: ['route', 'status'] as const,
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [options.registry],
  });

  async function handle(req: IncomingMessage, res: ServerResponse, trace: TraceContext): Promise<string> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (path === '/healthz') {
      sendJson(res, 200, { status: 'ok', service: options.name });
      return 'healthz';
    }
    if (path === '/readyz') {
      const checks = await options.readiness().catch(() => ({ readiness: false }));
      const ready = Object.values(checks).every(Boolean);
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not ready', checks });
      return 'readyz';
    }
    if (path === '/metrics') {
      const text = await options.registry.metrics();
      res.writeHead(200, { 'content-type': options.registry.contentType });
      res.end(text);
      return 'metrics';
    }
    if (options.graphql && path === graphqlPath) {
      await serveGraphQL(options.graphql, req, res, trace, maxBody);
      return 'graphql';
    }
    for (const route of options.routes ?? []) {
      if (await route(req, res)) return 'route';
    }
    sendJson(res, 404, { error: { code: 'NOT_FOUND', message: `No route for ${req.method} ${path}` } });
    return 'not_found';
  }

  const server = createServer((req, res) => {
    const trace = newTrace(parseTraceparent(req.headers.traceparent as string | undefined));
    const stop = duration.startTimer();
    void withTrace(trace, async () => {
      let route = 'unknown';
      try {
        route = await handle(req, res, trace);
      } catch (error) {
        if (error instanceof BodyTooLargeError) {
          options.onRefused?.('bodyBytes');
          if (!res.headersSent) sendJson(res, 413, { errors: [{ message: error.message, extensions: { code: 'PAYLOAD_TOO_LARGE', limit: 'bodyBytes', max: error.limit } }] }, { connection: 'close' });
        } else {
          log.error({ err: error }, 'request failed');
          if (!res.headersSent) sendJson(res, 500, { errors: [{ message: 'Internal error', extensions: { code: 'INTERNAL_SERVER_ERROR' } }] });
          else res.destroy();
        }
      } finally {
        stop({ route, status: String(res.statusCode) });
      }
    });
  });
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.maxHeadersCount = 100;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  const host = address.address.includes(':') ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  return {
    server,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

async function serveGraphQL<TContext extends BaseContext>(
  mount: GraphQLMount<TContext>,
  req: IncomingMessage,
  res: ServerResponse,
  trace: TraceContext,
  maxBody: number,
): Promise<void> {
  const headers = new HeaderMap();
  for (const [key, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers.set(key, Array.isArray(value) ? value.join(', ') : value);
  }
  let body: unknown = undefined;
  if (req.method === 'POST') {
    const raw = await readBody(req, maxBody);
    const type = headers.get('content-type') ?? '';
    if (raw.length > 0 && type.includes('json')) {
      try {
        body = JSON.parse(raw.toString('utf8'));
      } catch {
        sendJson(res, 400, INVALID_JSON_BODY);
        return;
      }
    } else body = raw.toString('utf8');
  }
  const search = (req.url ?? '').includes('?') ? (req.url ?? '').slice((req.url ?? '').indexOf('?')) : '';
  const response = await mount.server.executeHTTPGraphQLRequest({
    httpGraphQLRequest: { method: req.method ?? 'GET', headers, search, body },
    context: () => mount.context(req, trace),
  });
  for (const [key, value] of response.headers) res.setHeader(key, value);
  res.statusCode = response.status ?? 200;
  if (response.body.kind === 'complete') {
    res.end(response.body.string);
    return;
  }
  for await (const chunk of response.body.asyncIterator) res.write(chunk);
  res.end();
}
