// Entry point of the training service when it runs alone (one Kubernetes Deployment): configuration, runtime
// (broker, storage), the consumer and its health, readiness and metrics endpoints. SIGTERM stops the running trainer;
// its request is delivered again.
import 'reflect-metadata';
import { exitOnConfigError, onShutdown } from '../../lib/main.js';
import { createRuntime, loadRuntimeConfig } from '../../lib/runtime.js';
import { loadTrainingConfig } from './config.js';
import { startTrainingService } from './service.js';

try {
  const env = process.env;
  const runtimeConfig = loadRuntimeConfig(env);
  const config = loadTrainingConfig(env);
  const runtime = await createRuntime(runtimeConfig);
  const running = await startTrainingService({ runtime, config, host: runtimeConfig.HOST, port: config.TRAINING_PORT });
  onShutdown(async () => {
    await running.close();
    await runtime.close();
  });
} catch (error) {
  exitOnConfigError(error);
}
