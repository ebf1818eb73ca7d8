// Entry point of the models subgraph when it runs alone (one Kubernetes Deployment).
import 'reflect-metadata';
import { runService } from '../../lib/main.js';
import { loadModelsConfig } from './config.js';
import { modelsSubgraph } from './schema.js';

await runService('models', async (_runtime, env) => {
  const config = loadModelsConfig(env);
  return { definition: modelsSubgraph(config), port: config.MODELS_PORT, databaseUrl: config.MODELS_DATABASE_URL };
});
