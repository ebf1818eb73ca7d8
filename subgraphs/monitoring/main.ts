// Entry point of the monitoring subgraph when it runs alone (one Kubernetes Deployment).
import 'reflect-metadata';
import { runService } from '../../lib/main.js';
import { loadMonitoringConfig } from './config.js';
import { monitoringSubgraph } from './schema.js';

await runService('monitoring', async (runtime, env) => {
  const config = loadMonitoringConfig(env);
  return { definition: monitoringSubgraph(config), port: config.MONITORING_PORT, databaseUrl: config.MONITORING_DATABASE_URL };
});
