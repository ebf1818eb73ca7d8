// Entry point of the jobs subgraph when it runs alone (one Kubernetes Deployment).
import 'reflect-metadata';
import { runService } from '../../lib/main.js';
import { loadJobsConfig } from './config.js';
import { jobsSubgraph } from './schema.js';

await runService('jobs', async (runtime, env) => {
  const config = loadJobsConfig(env);
  return { definition: jobsSubgraph(config), port: config.JOBS_PORT, databaseUrl: config.JOBS_DATABASE_URL };
});
