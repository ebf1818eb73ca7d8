// Starts one subgraph: its database (migrated), its schema, Apollo Server and the HTTP server with health,
// readiness (database, broker, storage) and metrics. Every subgraph's main.ts and the embedded start use this.
import type { Constructor } from '@mikro-orm/core';
import type { GraphQLSchema } from 'graphql';
import { applyMiddleware } from 'graphql-middleware';
import type { IRules } from 'graphql-shield';
import { Gauge } from 'prom-client';
import { openDatabase, type Database, type Migration } from '../db.js';
import { localGraphQLFetch, startServiceServer, type LocalFetch, type RouteHandler } from '../http.js';
import type { Runtime, RunningService } from '../runtime.js';
import { createMetricsRegistry, serviceLogger } from '../telemetry.js';
import { createSubgraphServer } from './subgraph.js';
import { permissionsMiddleware } from '../rbac.js';
import type { Registry } from 'prom-client';

export interface SubgraphDefinition<TDeps> {
  name: string;
  /** Postgres schema the subgraph owns. */
  dbSchema: string;
  entities: Constructor<object>[];
  migrations: { name: string; class: Constructor<Migration> }[];
  /** Builds the subgraph's services (what resolvers need) once the database is open. */
  setup(ctx: { db: Database; runtime: Runtime; registry: Registry }): Promise<TDeps>;
  schema(deps: TDeps): Promise<GraphQLSchema>;
  /** graphql-shield rules: every field needs one (a test checks); anything unnamed is denied. */
  permissions: IRules;
  routes?(deps: TDeps): RouteHandler[];
  /** Background work (consumers, schedulers) started after the server listens; returns its stop function. */
  background?(deps: TDeps, ctx: { db: Database; runtime: Runtime }): Promise<() => Promise<void>>;
}

export interface SubgraphRunOptions {
  runtime: Runtime;
  port: number;
  host: string;
  databaseUrl?: string;
  /** null: PGlite in memory (tests); a folder: PGlite there. Ignored with databaseUrl. */
  stateDir: string | null;
}

export interface RunningSubgraph<TDeps> extends RunningService {
  /** Calls this subgraph's GraphQL endpoint from this process without HTTP (lib/http.ts). */
  localFetch: LocalFetch;
  db: Database;
  deps: TDeps;
  registry: Registry;
}

export async function runSubgraph<TDeps>(def: SubgraphDefinition<TDeps>, options: SubgraphRunOptions): Promise<RunningSubgraph<TDeps>> {
  const log = serviceLogger(`${def.name}-subgraph`);
  const registry = createMetricsRegistry(`${def.name}-subgraph`);
  const db = await openDatabase({
    schema: def.dbSchema,
    entities: def.entities,
    migrations: def.migrations,
    databaseUrl: options.databaseUrl,
    stateDir: options.stateDir,
  });
  const deps = await def.setup({ db, runtime: options.runtime, registry });
  const schema = applyMiddleware(await def.schema(deps), permissionsMiddleware(def.permissions));
  const { server, context } = createSubgraphServer({
    name: def.name,
    schema,
    verifier: options.runtime.verifier,
    fork: db.fork,
    log,
    introspection: options.runtime.introspection,
  });
  await server.start();
  const up = new Gauge({ name: 'lcd_dependency_up', help: 'Whether a dependency answers (1) or not (0)', labelNames: ['dependency'] as const, registers: [registry] });
  const readiness = async () => {
    const [database, storage] = await Promise.all([db.isHealthy(), options.runtime.store.isHealthy()]);
    const checks = { database, broker: options.runtime.broker.isHealthy(), storage };
    for (const [name, ok] of Object.entries(checks)) up.set({ dependency: name }, ok ? 1 : 0);
    return checks;
  };
  const http = await startServiceServer({
    name: `${def.name}-subgraph`,
    host: options.host,
    port: options.port,
    registry,
    readiness,
    graphql: { server, context },
    routes: def.routes?.(deps),
  });
  const stopBackground = def.background ? await def.background(deps, { db, runtime: options.runtime }) : async () => undefined;
  log.info({ url: `${http.url}/graphql`, database: db.kind }, 'subgraph listening');
  return {
    name: def.name,
    url: `${http.url}/graphql`,
    localFetch: localGraphQLFetch({ server, context }, `${http.url}/graphql`),
    db,
    deps,
    registry,
    async close() {
      await stopBackground();
      await http.close();
      await server.stop();
      await db.close();
    },
  };
}
