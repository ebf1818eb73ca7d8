// Runs the whole platform in one process: one runtime (broker, storage, verifier) shared by the gateway, the four
// subgraphs and the workers. `npm start` uses it on the embedded defaults; end-to-end tests use it on free ports.
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, type RunningGateway } from '../gateway/gateway.js';
import { loadGatewayConfig } from '../gateway/config.js';
import { subgraphSetups, SUBGRAPH_NAMES, type SubgraphName } from '../subgraphs/index.js';
import { loadInferenceConfig } from '../workers/inference/config.js';
import { startInferenceWorker, type RunningInferenceWorker } from '../workers/inference/service.js';
import { loadTrainingConfig } from '../training/service/config.js';
import { startTrainingService, type RunningTrainingService } from '../training/service/service.js';
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
  /** false: no inference worker in this process (tests that drive the queues themselves). */
  inferenceWorker?: boolean;
  /** false: no training service in this process. */
  trainingService?: boolean;
}

export interface Platform {
  runtime: Runtime;
  gateway: RunningGateway;
  subgraphs: Record<SubgraphName, RunningSubgraph<unknown>>;
  /** The in-process inference worker (null when disabled). */
  inference: RunningInferenceWorker | null;
  /** The in-process training service (null when disabled). */
  training: RunningTrainingService | null;
  close(): Promise<void>;
}

/**
 * Holds a free port for a server whose URL must be known before it listens (the gateway signs URLs with it). The
 * port stays bound until `release`, so that the servers started meanwhile on port 0 cannot be given it.
 */
export async function reservePort(): Promise<{ port: number; release(): Promise<void> }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address() as AddressInfo;
  let released = false;
  return {
    port,
    release: async () => {
      if (released) return;
      released = true;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

export async function startPlatform(options: PlatformOptions): Promise<Platform> {
  let env = options.env;
  const reservation = options.ephemeralPorts ? await reservePort() : null;
  if (reservation) env = { ...env, GATEWAY_PORT: String(reservation.port), PUBLIC_URL: `http://127.0.0.1:${reservation.port}` };
  let loaded;
  try {
    const config = loadRuntimeConfig(env);
    loaded = { config, gatewayConfig: loadGatewayConfig(env), inferenceConfig: loadInferenceConfig(env), trainingConfig: loadTrainingConfig(env), setups: subgraphSetups(env), runtime: await createRuntime(config) };
  } catch (error) {
    await reservation?.release();
    throw error;
  }
  const { config, gatewayConfig, inferenceConfig, trainingConfig, setups, runtime } = loaded;
  const started: { close(): Promise<void> }[] = [];
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
    // The models subgraph has registered the demo model platform-wide (tenant `*`) as it started (DEMO_MODEL,
    // DEMO_MODEL_DIR: subgraphs/models/demo-model.ts), so that every tenant can run detectChanges at once.
    let inference: RunningInferenceWorker | null = null;
    if (options.inferenceWorker !== false) {
      inference = await startInferenceWorker({ runtime, config: inferenceConfig, host: config.HOST, port: options.ephemeralPorts ? 0 : inferenceConfig.INFERENCE_PORT });
      started.push(inference);
    }
    let training: RunningTrainingService | null = null;
    if (options.trainingService !== false) {
      training = await startTrainingService({ runtime, config: trainingConfig, host: config.HOST, port: options.ephemeralPorts ? 0 : trainingConfig.TRAINING_PORT });
      started.push(training);
    }
    const gateway = await startGateway({
      runtime,
      config: gatewayConfig,
      host: config.HOST,
      subgraphUrls: Object.fromEntries(SUBGRAPH_NAMES.map((n) => [n, subgraphs[n].url])),
      localSubgraphs: Object.fromEntries(SUBGRAPH_NAMES.map((n) => [subgraphs[n].url, subgraphs[n].localFetch])),
      beforeListen: reservation?.release,
    });
    return {
      runtime,
      gateway,
      subgraphs,
      inference,
      training,
      async close() {
        await gateway.close();
        for (const s of started.reverse()) await s.close();
        await runtime.close();
      },
    };
  } catch (error) {
    await reservation?.release();
    for (const s of started.reverse()) await s.close().catch(() => undefined);
    await runtime.close().catch(() => undefined);
    throw error;
  }
}
