// Entry point of the inference worker when it runs alone (one Kubernetes Deployment): configuration, runtime
// (broker, storage), the worker and its health, readiness and metrics endpoints; SIGTERM lets running pairs finish.
import 'reflect-metadata';
import { exitOnConfigError, onShutdown } from '../../lib/main.js';
import { createRuntime, loadRuntimeConfig } from '../../lib/runtime.js';
import { loadInferenceConfig } from './config.js';
import { startInferenceWorker } from './service.js';

try {
  const env = process.env;
  const runtimeConfig = loadRuntimeConfig(env);
  const config = loadInferenceConfig(env);
  const runtime = await createRuntime(runtimeConfig);
  const running = await startInferenceWorker({ runtime, config, host: runtimeConfig.HOST, port: config.INFERENCE_PORT });
  onShutdown(async () => {
    await running.close();
    await runtime.close();
  });
} catch (error) {
  exitOnConfigError(error);
}
