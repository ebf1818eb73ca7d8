// Builds a Federation 2 subgraph schema from type-graphql resolvers and serves it with Apollo Server: the identity
// of every request is verified here (a forwarded JWT), and errors are masked to their stable codes.
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginInlineTraceDisabled } from '@apollo/server/plugin/disabled';
import { buildSubgraphSchema, printSubgraphSchema } from '@apollo/subgraph';
import type { GraphQLResolverMap } from '@apollo/subgraph/dist/schema-helper/resolverMap.js';
import { printSchemaWithDirectives } from '@graphql-tools/utils';
import { GraphQLError, parse, type GraphQLFormattedError, type GraphQLSchema } from 'graphql';
import type { IncomingMessage } from 'node:http';
import type { EntityManager } from '@mikro-orm/core';
import type { Logger } from 'pino';
import { buildSchema, createResolversMap, type BuildSchemaOptions, type ContainerType } from 'type-graphql';
import { AuthError, type Identity, type TokenVerifier } from '../auth.js';
import { translateDbError } from '../errors.js';
import { servedByGateway } from './subscriptions.js';
import type { TraceContext } from '../telemetry.js';

export const FEDERATION_LINK =
  'extend schema @link(url: "https://specs.apollo.dev/federation/v2.7", import: ["@key", "@shareable", "@external", "@requires", "@provides", "@inaccessible"])';

export interface RequestContext {
  identity: Identity;
  em: EntityManager;
  trace: TraceContext;
  log: Logger;
}

export interface FederatedSchemaOptions {
  resolvers: BuildSchemaOptions['resolvers'];
  orphanedTypes?: BuildSchemaOptions['orphanedTypes'];
  referenceResolvers?: GraphQLResolverMap<RequestContext>;
  container?: ContainerType;
}

/** The subgraph's executable schema (federation entities and `_service` included). */
export async function buildFederatedSchema(options: FederatedSchemaOptions): Promise<GraphQLSchema> {
  const schema = await buildSchema({
    resolvers: options.resolvers,
    orphanedTypes: options.orphanedTypes,
    container: options.container,
    skipCheck: true,
    validate: false,
    // Subscriptions are declared here but executed by the gateway; no subgraph ever publishes through type-graphql.
    pubSub: { publish: () => servedByGateway(), subscribe: () => servedByGateway() },
    emitSchemaFile: false,
  });
  // type-graphql keeps @key & co. on partial AST nodes, which printSchemaWithDirectives reads and Apollo's printer does not.
  const typeDefs = parse(`${FEDERATION_LINK}\n${printSchemaWithDirectives(schema)}`);
  const resolvers = createResolversMap(schema) as Record<string, Record<string, unknown>>;
  // Reference resolvers go in with the rest: @apollo/subgraph reads __resolveReference only from its own resolver map.
  for (const [type, fields] of Object.entries(options.referenceResolvers ?? {})) {
    resolvers[type] = { ...(resolvers[type] ?? {}), ...(fields as Record<string, unknown>) };
  }
  return buildSubgraphSchema({ typeDefs, resolvers: resolvers as GraphQLResolverMap<unknown> });
}

/** The SDL committed in schema/<name>.graphql and composed by the gateway. */
export function subgraphSdl(schema: GraphQLSchema): string {
  return `${printSubgraphSchema(schema).trim()}\n`;
}

/**
 * A small container for type-graphql: services are registered instances; a resolver is built on first use with its
 * constructor parameters (from decorator metadata) taken from the container.
 */
export function containerOf(instances: (object | undefined)[]): ContainerType {
  // Undefined entries are skipped so that a schema can be built for printing (npm run compose) without services.
  const byClass = new Map<unknown, object>(instances.filter((i): i is object => !!i).map((i) => [i.constructor, i]));
  const get = (someClass: unknown): object => {
    const found = byClass.get(someClass);
    if (found) return found;
    const Ctor = someClass as new (...args: unknown[]) => object;
    const params = (Reflect.getMetadata('design:paramtypes', Ctor) as unknown[] | undefined) ?? [];
    const created = new Ctor(...params.map((p) => get(p)));
    byClass.set(someClass, created);
    return created;
  };
  return { get };
}

export function formatError(log: Logger) {
  return (formatted: GraphQLFormattedError, error: unknown): GraphQLFormattedError => {
    const original = error instanceof GraphQLError ? (error.originalError ?? error) : error;
    const code = formatted.extensions?.code;
    // Errors raised by the API itself carry their code and a message written for users: pass them as they are.
    if (original instanceof GraphQLError && typeof original.extensions?.code === 'string' && code !== 'INTERNAL_SERVER_ERROR') {
      const { stacktrace: _s, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, extensions };
    }
    if (typeof code === 'string' && code !== 'INTERNAL_SERVER_ERROR') {
      const { stacktrace: _s, ...extensions } = formatted.extensions ?? {};
      return { ...formatted, extensions };
    }
    const translated = translateDbError(original);
    if (translated.extensions.code === 'INTERNAL_SERVER_ERROR') log.error({ err: original }, 'unexpected resolver error');
    return { message: translated.message, path: formatted.path, locations: formatted.locations, extensions: translated.extensions };
  };
}

export interface SubgraphServerOptions {
  name: string;
  schema: GraphQLSchema;
  verifier: TokenVerifier;
  fork: () => EntityManager;
  log: Logger;
  introspection: boolean;
  plugins?: ApolloServerPlugin<RequestContext>[];
}

export function createSubgraphServer(options: SubgraphServerOptions) {
  const server = new ApolloServer<RequestContext>({
    schema: options.schema,
    introspection: options.introspection,
    includeStacktraceInErrorResponses: false,
    formatError: formatError(options.log),
    // Inline tracing (ftv1) is for Apollo's hosted studio, which this platform does not report to.
    plugins: [ApolloServerPluginInlineTraceDisabled(), ...(options.plugins ?? [])],
    csrfPrevention: true,
  });
  const context = async (req: Pick<IncomingMessage, 'headers'>, trace: TraceContext): Promise<RequestContext> => {
    let identity: Identity;
    try {
      identity = await options.verifier.verify(req.headers.authorization);
    } catch (error) {
      const reason = error instanceof AuthError ? error.reason : 'TOKEN_MALFORMED';
      const message = error instanceof AuthError ? error.message : 'The token could not be verified';
      throw new GraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', reason, http: { status: 401 } } });
    }
    return { identity, em: options.fork(), trace, log: options.log.child({ tenant: identity.tenant, subject: identity.subject }) };
  };
  return { server, context };
}
