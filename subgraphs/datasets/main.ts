// Entry point of the datasets subgraph when it runs alone (one Kubernetes Deployment).
import 'reflect-metadata';
import { runService } from '../../lib/main.js';
import { loadDatasetsConfig } from './config.js';
import { datasetsSubgraph } from './schema.js';

await runService('datasets', async (runtime, env) => {
  const config = loadDatasetsConfig(env);
  return { definition: datasetsSubgraph(config), port: config.DATASETS_PORT, databaseUrl: config.DATASETS_DATABASE_URL };
});
