// Entry point of the gateway when it runs alone (one Kubernetes Deployment).
import 'reflect-metadata';
import { exitOnConfigError, onShutdown } from '../lib/main.js';
import { createRuntime, loadRuntimeConfig } from '../lib/runtime.js';
import { loadGatewayConfig } from './config.js';
import { startGateway } from './gateway.js';

try {
  const runtimeConfig = loadRuntimeConfig(process.env);
  const config = loadGatewayConfig(process.env);
  const runtime = await createRuntime(runtimeConfig);
  const gateway = await startGateway({ runtime, config, host: runtimeConfig.HOST });
  onShutdown(async () => {
    await gateway.close();
    await runtime.close();
  });
} catch (error) {
  exitOnConfigError(error);
}
