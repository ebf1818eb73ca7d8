// Process entry for one subgraph running alone: reads the environment once, builds the runtime, starts the
// subgraph and shuts it down cleanly on SIGTERM/SIGINT. A bad configuration stops the process with its message.
import { ConfigError, type Env } from './config.js';
import { runSubgraph, type SubgraphDefinition } from './graphql/run-subgraph.js';
import { createRuntime, loadRuntimeConfig, type Runtime } from './runtime.js';
import { logger } from './telemetry.js';

export interface ServiceFactoryResult<TDeps> {
  definition: SubgraphDefinition<TDeps>;
  port: number;
  databaseUrl?: string;
}

export function exitOnConfigError(error: unknown): never {
  if (error instanceof ConfigError) {
    process.stderr.write(`${error.message}\n`);
    process.exit(78); // EX_CONFIG
  }
  logger.fatal({ err: error }, 'start-up failed');
  process.exit(1);
}

export function onShutdown(close: () => Promise<void>): void {
  let closing = false;
  const stop = (signal: string) => {
    if (closing) return;
    closing = true;
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => process.exit(1), 15_000);
    timer.unref();
    close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}

export async function runService<TDeps>(name: string, factory: (runtime: Runtime, env: Env) => Promise<ServiceFactoryResult<TDeps>>): Promise<void> {
  const env: Env = process.env;
  try {
    const config = loadRuntimeConfig(env);
    const runtime = await createRuntime(config);
    const { definition, port, databaseUrl } = await factory(runtime, env);
    const running = await runSubgraph(definition, {
      runtime,
      port,
      host: config.HOST,
      databaseUrl: databaseUrl ?? config.DATABASE_URL,
      stateDir: config.STATE_DIR,
    });
    logger.info({ service: name, url: running.url }, 'service started');
    onShutdown(async () => {
      await running.close();
      await runtime.close();
    });
  } catch (error) {
    exitOnConfigError(error);
  }
}
