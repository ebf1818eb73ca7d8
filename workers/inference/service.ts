// Wires the inference worker into a running service: its metrics registry, the worker itself and the HTTP server
// with /healthz, /readyz (broker connected and the default model loaded) and /metrics. Used by main.ts (one
// Kubernetes Deployment) and by the embedded start (lib/platform.ts), which shares its runtime.
import { startServiceServer } from '../../lib/http.js';
import type { Runtime } from '../../lib/runtime.js';
import { createMetricsRegistry, serviceLogger } from '../../lib/telemetry.js';
import type { InferenceConfig } from './config.js';
import { InferenceWorker } from './consumer.js';
import { consumeEvaluations } from './evaluation.js';
import { InferenceMetrics } from './metrics.js';

export interface RunningInferenceWorker {
  name: 'inference';
  url: string;
  worker: InferenceWorker;
  metrics: InferenceMetrics;
  close(): Promise<void>;
}

export async function startInferenceWorker(options: {
  runtime: Pick<Runtime, 'broker' | 'store'>;
  config: InferenceConfig;
  host: string;
  port: number;
}): Promise<RunningInferenceWorker> {
  const log = serviceLogger('inference-worker');
  const registry = createMetricsRegistry('inference-worker');
  const metrics = new InferenceMetrics(registry);
  const worker = new InferenceWorker({ broker: options.runtime.broker, store: options.runtime.store, config: options.config, log, metrics });
  const http = await startServiceServer({
    name: 'inference-worker',
    host: options.host,
    port: options.port,
    registry,
    readiness: async () => {
      const checks = worker.readiness();
      return { ...checks, storage: await options.runtime.store.isHealthy() };
    },
  });
  let evaluations;
  try {
    await worker.start();
    // Versions to evaluate on a frozen dataset version (workers/inference/evaluation.ts), beside the pairs.
    evaluations = await consumeEvaluations({ broker: options.runtime.broker, store: options.runtime.store, config: options.config, log }, options.config.INFERENCE_EVALUATION_QUEUE);
  } catch (error) {
    await worker.stop();
    await http.close();
    throw error;
  }
  log.info({ url: http.url }, 'inference worker started');
  return {
    name: 'inference',
    url: http.url,
    worker,
    metrics,
    async close() {
      await evaluations.close();
      await worker.stop();
      await http.close();
    },
  };
}
