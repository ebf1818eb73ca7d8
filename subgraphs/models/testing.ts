// Builders for the models subgraph's tests: a migrated database of its own per test file, and valid inputs that a
// test overrides field by field. Imported by *.test.ts only.
import { randomBytes } from 'node:crypto';
import { graphql, type GraphQLSchema } from 'graphql';
import { pino } from 'pino';
import { testDatabaseUrl } from '../../test/support/test-database.js';
import type { Role } from '../../lib/auth.js';
import { openDatabase, type Database } from '../../lib/db.js';
import type { RequestContext } from '../../lib/graphql/subgraph.js';
import { ModelVersionSource, type ModelContract } from './models.contracts.js';
import type { CreateTrainingRunInput, RegisterVersionInput } from './model-registry.inputs.js';
import { loadModelsConfig } from './config.js';
import { modelsSubgraph } from './schema.js';

export const modelsDefinition = modelsSubgraph(loadModelsConfig({ MODELS_PORT: '0' }));

/** PGlite in memory, or a fresh PostgreSQL database when TEST_DATABASE_URL is set; `close` drops it. */
export async function openModelsDatabase(): Promise<{ db: Database; close(): Promise<void> }> {
  const target = await testDatabaseUrl();
  const db = await openDatabase({
    schema: 'models',
    entities: modelsDefinition.entities,
    migrations: modelsDefinition.migrations,
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

export const sha256Of = (seed: string): string => Buffer.from(seed.padEnd(32, '.').slice(0, 32)).toString('hex');
export const randomSha256 = (): string => randomBytes(32).toString('hex');

export function aContract(overrides: Partial<ModelContract> = {}): ModelContract {
  return {
    bands: 3,
    bandNames: ['red', 'green', 'blue'],
    normalization: { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] },
    tileSize: 256,
    threshold: 0.5,
    embeddingDim: 64,
    inputs: [
      { name: 'before', dtype: 'float32', shape: ['N', 3, 'H', 'W'] },
      { name: 'after', dtype: 'float32', shape: ['N', 3, 'H', 'W'] },
    ],
    outputs: [
      { name: 'change_logits', dtype: 'float32', shape: ['N', 1, 'H', 'W'] },
      { name: 'embedding', dtype: 'float32', shape: ['N', 64] },
    ],
    ...overrides,
  };
}

export function aRun(tenant: string, overrides: Partial<CreateTrainingRunInput> = {}): CreateTrainingRunInput {
  return {
    tenant,
    modelName: 'snunet',
    params: { epochs: 2, learningRate: 0.001, loss: { bce: 0.5, dice: 0.5 } },
    datasetVersionId: sha256Of('dataset-version'),
    codeVersion: 'trainer@1a2b3c4',
    requestedBy: 'user-1',
    ...overrides,
  };
}

export function anUploadedVersion(tenant: string, overrides: Partial<RegisterVersionInput> = {}): RegisterVersionInput {
  const sha256 = randomSha256();
  return {
    tenant,
    modelName: 'snunet',
    artifactKey: `models/${tenant === '*' ? 'platform' : tenant}/snunet/${sha256}.onnx`,
    sha256,
    byteSize: 1_234_567,
    metrics: { iou: 0.71, f1: 0.83 },
    contract: aContract(),
    source: ModelVersionSource.UPLOADED,
    createdBy: 'user-1',
    ...overrides,
  };
}

const silent = pino({ level: 'silent' });

/** Runs an operation as a member of `tenant` (a viewer unless `roles` says otherwise), on a fresh entity manager per call. */
export function executorFor(schema: GraphQLSchema, db: Database) {
  return async (tenant: string, source: string, variableValues: Record<string, unknown> = {}, roles: Role[] = ['viewer']) => {
    const contextValue: RequestContext = {
      identity: { subject: `user-of-${tenant}`, tenant, roles, token: 'test', expiresAt: Date.now() / 1000 + 3600 },
      em: db.fork(),
      trace: { traceId: '0'.repeat(31) + '1', spanId: '0'.repeat(15) + '1' },
      log: silent,
    };
    return graphql({ schema, source, variableValues, contextValue });
  };
}
