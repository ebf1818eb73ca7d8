// Wires the training service into a running process: its metrics registry, the dataset cache, the consumer and the
// HTTP server with /healthz, /readyz (broker and storage reachable) and /metrics. Used by main.ts (one Kubernetes
// Deployment) and by the embedded start (lib/platform.ts), which shares its runtime.
import { mkdir } from 'node:fs/promises';
import { startServiceServer } from '../../lib/http.js';
import type { Runtime } from '../../lib/runtime.js';
import { createMetricsRegistry, serviceLogger } from '../../lib/telemetry.js';
import type { TrainingConfig } from './config.js';
import { TrainingConsumer } from './consumer.js';
import { DatasetCache } from './dataset-cache.js';
import { TrainingMetrics } from './metrics.js';
import { findTrainingDir, probePython, resolvePython, torchUnavailableMessage } from './python-runtime.js';

export interface RunningTrainingService {
  name: 'training';
  url: string;
  consumer: TrainingConsumer;
  metrics: TrainingMetrics;
  python: string;
  close(): Promise<void>;
}

export interface TrainingServiceOptions {
  runtime: Pick<Runtime, 'broker' | 'store'>;
  config: TrainingConfig;
  host: string;
  port: number;
  /** The environment trainer processes inherit (default: this process's). */
  baseEnv?: NodeJS.ProcessEnv;
  /** The Python module run as the trainer (tests and benchmarks substitute fakes). */
  trainerModule?: string;
}

export async function startTrainingService(options: TrainingServiceOptions): Promise<RunningTrainingService> {
  const { config, runtime } = options;
  const log = serviceLogger('training-service');
  const registry = createMetricsRegistry('training-service');
  const metrics = new TrainingMetrics(registry);
  const trainingDir = findTrainingDir();
  const python = await resolvePython(config.LCD_PYTHON);
  await mkdir(config.cacheDir, { recursive: true });
  await mkdir(config.workDir, { recursive: true });
  const consumer = new TrainingConsumer({
    config,
    store: runtime.store,
    broker: runtime.broker,
    cache: new DatasetCache(runtime.store, config.cacheDir),
    python,
    trainingDir,
    baseEnv: options.baseEnv,
    log,
    metrics,
    trainerModule: options.trainerModule,
  });
  const http = await startServiceServer({
    name: 'training-service',
    host: options.host,
    port: options.port,
    registry,
    readiness: async () => ({ broker: runtime.broker.isHealthy(), storage: await runtime.store.isHealthy() }),
  });
  try {
    await consumer.start();
  } catch (error) {
    await http.close();
    throw error;
  }
  // Not a start-up failure: runs fail with this message until an interpreter with torch is configured.
  void probePython(python).then((probe) => {
    if (!probe.torch) log.warn({ python }, torchUnavailableMessage(probe));
    else log.info({ python, torch: probe.torch }, 'trainer interpreter ready');
  });
  log.info({ url: http.url, queue: config.TRAINING_REQUESTS_QUEUE, python }, 'training service started');
  return {
    name: 'training',
    url: http.url,
    consumer,
    metrics,
    python,
    async close() {
      await consumer.stop();
      await http.close();
    },
  };
}
