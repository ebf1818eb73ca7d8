// Builders for the jobs subgraph's tests: a migrated database of its own per test file, valid inputs that a test
// overrides field by field, and GraphQL execution as a given identity. Imported by *.test.ts only.
import { randomBytes } from 'node:crypto';
import { graphql, GraphQLError, type GraphQLSchema } from 'graphql';
import { pino } from 'pino';
import { testDatabaseUrl } from '../../test/support/test-database.js';
import { openDatabase, type Database } from '../../lib/db.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { loadJobsConfig } from './config.js';
import { JobKind } from './job.contracts.js';
import type { CreateJobInput, JobPairInput } from './job.service.js';
import { jobsSubgraph } from './schema.js';

export const jobsDefinition = jobsSubgraph(loadJobsConfig({ JOBS_PORT: '0', MAX_PAIRS_PER_JOB: '50' }));

/** PGlite in memory, or a fresh PostgreSQL database when TEST_DATABASE_URL is set; `close` drops it. */
export async function openJobsDatabase(): Promise<{ db: Database; close(): Promise<void> }> {
  const target = await testDatabaseUrl();
  const db = await openDatabase({
    schema: 'jobs',
    entities: jobsDefinition.entities,
    migrations: jobsDefinition.migrations,
    databaseUrl: target.url,
    stateDir: null,
  });
  return {
    db,
    async close() {
      await db.close();
      await target.drop();
    },
  };
}

export function aPair(tenant: string, overrides: Partial<JobPairInput> = {}): JobPairInput {
  const id = randomBytes(8).toString('hex');
  return { beforeKey: `uploads/${tenant}/${id}-before`, afterKey: `uploads/${tenant}/${id}-after`, ...overrides };
}

export function aJob(tenant: string, overrides: Partial<CreateJobInput> = {}): CreateJobInput {
  return {
    tenant,
    requestedBy: `analyst@${tenant}`,
    kind: JobKind.BATCH,
    modelName: 'snunet',
    threshold: 0.5,
    pairs: [aPair(tenant), aPair(tenant), aPair(tenant)],
    ...overrides,
  };
}

export const aResult = (jobId: string, index: number) => ({
  resultKeys: { mask: `jobs/acme/${jobId}/${index}/mask.png`, polygons: `jobs/acme/${jobId}/${index}/polygons.geojson` },
  stats: { changedPixels: 120, changedFraction: 0.12, regions: 3, areaSquareMeters: 1200, areaHectares: 0.12 },
  width: 32,
  height: 32,
  modelVersionId: '7d0f7a5e-0c1b-4c39-9a59-5f6f2f2d1a10',
});

/** The extensions.code of the API error a call fails with. */
export async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof GraphQLError) return error.extensions.code;
    throw error;
  }
  throw new Error('expected an API error');
}

/** Runs an operation against the subgraph schema as a member of `tenant`, on a fresh entity manager. */
export async function execute<T = Record<string, unknown>>(
  schema: GraphQLSchema,
  db: Database,
  tenant: string,
  source: string,
  variables: Record<string, unknown> = {},
) {
  const contextValue: RequestContext = {
    identity: { subject: `analyst@${tenant}`, tenant, roles: ['analyst'], token: '', expiresAt: 0 },
    em: db.fork(),
    trace: { traceId: '0'.repeat(32), spanId: '0'.repeat(16) },
    log: pino({ level: 'silent' }),
  };
  const result = await graphql({ schema, source, variableValues: variables, contextValue });
  return {
    data: result.data as T | null | undefined,
    errors: result.errors,
    codes: (result.errors ?? []).map((e) => e.extensions.code),
  };
}
