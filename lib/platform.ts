// Runs the whole platform in one process: one runtime (broker, storage, verifier) shared by the gateway, the four
// subgraphs and the workers. `npm start` uses it on the embedded defaults; end-to-end tests use it on free ports.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type RunningGateway } from '../gateway/gateway.js';
import { loadGatewayConfig } from '../gateway/config.js';
import { subgraphSetups, SUBGRAPH_NAMES, type SubgraphName } from '../subgraphs/index.js';
import type { Env } from './config.js';
import { runSubgraph, type RunningSubgraph } from './graphql/run-subgraph.js';
import { createRuntime, loadRuntimeConfig, type Runtime } from './runtime.js';

export interface PlatformOptions {
  env: Env;
  /** Listen on free ports (tests) instead of the configured ones. */
  ephemeralPorts?: boolean;
  /** Per-subgraph database URLs (tests give each its own database); falls back to the configuration. */
  databaseUrls?: Partial<Record<SubgraphName, string | undefined>>;
  /** null keeps PGlite in memory (tests). */
  stateDir?: string | null;
}

export interface Platform {
  runtime: Runtime;
  gateway: RunningGateway;
  subgraphs: Record<SubgraphName, RunningSubgraph<unknown>>;
  close(): Promise<void>;
}

/** A port free right now, for a server whose URL must be known before it listens (the gateway signs URLs with it). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export async function startPlatform(options: PlatformOptions): Promise<Platform> {
  let env = options.env;
  if (options.ephemeralPorts) {
    const port = await freePort();
    env = { ...env, GATEWAY_PORT: String(port), PUBLIC_URL: `http://127.0.0.1:${port}` };
  }
  const config = loadRuntimeConfig(env);
  const gatewayConfig = loadGatewayConfig(env);
  const setups = subgraphSetups(env);
  const runtime = await createRuntime(config);
  const started: RunningSubgraph<unknown>[] = [];
  try {
    const subgraphs = {} as Record<SubgraphName, RunningSubgraph<unknown>>;
    for (const name of SUBGRAPH_NAMES) {
      const setup = setups[name];
      subgraphs[name] = await runSubgraph(setup.definition, {
        runtime,
        port: options.ephemeralPorts ? 0 : setup.port,
        host: config.HOST,
        databaseUrl: options.databaseUrls?.[name] ?? setup.databaseUrl ?? config.DATABASE_URL,
        stateDir: options.stateDir === undefined ? config.STATE_DIR : options.stateDir,
      });
      started.push(subgraphs[name]);
    }
    const gateway = await startGateway({
      runtime,
      config: gatewayConfig,
      host: config.HOST,
      subgraphUrls: Object.fromEntries(SUBGRAPH_NAMES.map((n) => [n, subgraphs[n].url])),
    });
    return {
      runtime,
      gateway,
      subgraphs,
      async close() {
        await gateway.close();
        for (const s of started.reverse()) await s.close();
        await runtime.close();
      },
    };
  } catch (error) {
    for (const s of started.reverse()) await s.close().catch(() => undefined);
    await runtime.close().catch(() => undefined);
    throw error;
  }
}
