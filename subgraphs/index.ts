// The four subgraphs of the platform, for the embedded start and for `npm run compose`.
import type { Env } from '../lib/config.js';
import type { SubgraphDefinition } from '../lib/graphql/run-subgraph.js';
import { loadDatasetsConfig } from './datasets/config.js';
import { datasetsSubgraph } from './datasets/schema.js';
import { loadJobsConfig } from './jobs/config.js';
import { jobsSubgraph } from './jobs/schema.js';
import { loadModelsConfig } from './models/config.js';
import { modelsSubgraph } from './models/schema.js';
import { loadMonitoringConfig } from './monitoring/config.js';
import { monitoringSubgraph } from './monitoring/schema.js';

export const SUBGRAPH_NAMES = ['jobs', 'models', 'datasets', 'monitoring'] as const;
export type SubgraphName = (typeof SUBGRAPH_NAMES)[number];

export interface SubgraphSetup {
  definition: SubgraphDefinition<unknown>;
  port: number;
  databaseUrl?: string;
}

export function subgraphSetups(env: Env): Record<SubgraphName, SubgraphSetup> {
  const jobs = loadJobsConfig(env);
  const models = loadModelsConfig(env);
  const datasets = loadDatasetsConfig(env);
  const monitoring = loadMonitoringConfig(env);
  return {
    jobs: { definition: jobsSubgraph(jobs) as SubgraphDefinition<unknown>, port: jobs.JOBS_PORT, databaseUrl: jobs.JOBS_DATABASE_URL },
    models: { definition: modelsSubgraph(models) as SubgraphDefinition<unknown>, port: models.MODELS_PORT, databaseUrl: models.MODELS_DATABASE_URL },
    datasets: { definition: datasetsSubgraph(datasets) as SubgraphDefinition<unknown>, port: datasets.DATASETS_PORT, databaseUrl: datasets.DATASETS_DATABASE_URL },
    monitoring: {
      definition: monitoringSubgraph(monitoring) as SubgraphDefinition<unknown>,
      port: monitoring.MONITORING_PORT,
      databaseUrl: monitoring.MONITORING_DATABASE_URL,
    },
  };
}
