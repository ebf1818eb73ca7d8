import { printSubgraphSchema } from '@apollo/subgraph';
import { isObjectType, type ExecutionResult, type GraphQLSchema } from 'graphql';
import { applyMiddleware } from 'graphql-middleware';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { encodeCursor } from '../../lib/graphql/connection.js';
import { permissionsMiddleware } from '../../lib/rbac.js';
import { ModelStage, ModelVersionSource, PLATFORM_TENANT, type ModelContract } from './models.contracts.js';
import { ModelRegistryRepository } from './model-registry.repository.js';
import { ModelRegistryService } from './model-registry.service.js';
import type { ModelVersionEntity } from './model-version.entity.js';
import { modelsPermissions } from './permissions.js';
import type { ModelsDeps } from './schema.js';
import type { TrainingRunEntity } from './training-run.entity.js';
import { anUploadedVersion, aRun, executorFor, modelsDefinition, openModelsDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;
let schema: GraphQLSchema;
let run: ReturnType<typeof executorFor>;
const repository = new ModelRegistryRepository();
const service = new ModelRegistryService(repository);

// Seed: acme has 5 runs (3 of snunet, 2 of unet), one of which registered version 1 of snunet; the platform has a
// demo model in Production; globex has one run.
const acmeRuns: TrainingRunEntity[] = [];
let trainedVersion: ModelVersionEntity;
let demoVersion: ModelVersionEntity;
let globexRun: TrainingRunEntity;

beforeAll(async () => {
  ({ db, close } = await openModelsDatabase());
  schema = await modelsDefinition.schema({ service, repository } as unknown as ModelsDeps);
  run = executorFor(schema, db);
  for (const modelName of ['snunet', 'unet', 'snunet', 'unet', 'snunet']) {
    acmeRuns.push(await service.createTrainingRun(db.fork(), aRun('acme', { modelName })));
  }
  await service.recordMetrics(db.fork(), 'acme', acmeRuns[0]!.id, [
    { name: 'loss', step: 2, epoch: 1, value: 0.4 },
    { name: 'loss', step: 1, epoch: 0, value: 0.8 },
    { name: 'iou', step: 2, epoch: 1, value: 0.6 },
  ]);
  trainedVersion = await service.registerVersion(
    db.fork(),
    anUploadedVersion('acme', { modelName: 'snunet', source: ModelVersionSource.TRAINED, trainingRunId: acmeRuns[0]!.id }),
  );
  await service.registerVersion(db.fork(), anUploadedVersion('acme', { modelName: 'snunet' }));
  demoVersion = await service.registerVersion(db.fork(), anUploadedVersion(PLATFORM_TENANT, { modelName: 'demo' }));
  await service.setStage(db.fork(), PLATFORM_TENANT, demoVersion.id, ModelStage.PRODUCTION);
  globexRun = await service.createTrainingRun(db.fork(), aRun('globex'));
});
afterAll(async () => {
  await close();
});

function data<T>(result: ExecutionResult): T {
  expect(result.errors).toBeUndefined();
  return result.data as T;
}

interface Page<N> {
  totalCount: number;
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  edges: { node: N }[];
}

const codes = (result: ExecutionResult) => result.errors?.map((e) => e.extensions?.code);

/** `name(arg: Type, …): Type` of each field of an object type, in declaration order. */
function fieldsOf(typeName: string): string[] {
  const type = schema.getType(typeName);
  if (!isObjectType(type)) throw new Error(`${typeName} is not an object type`);
  return Object.values(type.getFields()).map((field) => {
    const args = field.args.length > 0 ? `(${field.args.map((a) => `${a.name}: ${String(a.type)}`).join(', ')})` : '';
    return `${field.name}${args}: ${String(field.type)}`;
  });
}

describe('models schema', () => {
  it('declares the federated types other subgraphs rely on', () => {
    const sdl = printSubgraphSchema(schema);
    expect(sdl).toMatch(/type TrainingRun\s+@key\(fields: "id"\)/);
    expect(sdl).toMatch(/type RegisteredModel\s+@key\(fields: "id"\)/);
    expect(sdl).toMatch(/type ModelVersion\s+@key\(fields: "id"\)/);
    expect(sdl).toMatch(/type DatasetVersion\s+@key\(fields: "id", resolvable: false\)\s*{\s+id: ID!\s+}/);
    expect(fieldsOf('Query')).toEqual(
      expect.arrayContaining([
        'trainingRuns(first: Int, after: String, modelName: String): TrainingRunConnection!',
        'trainingRun(id: ID!): TrainingRun!',
        'registeredModels(first: Int, after: String): RegisteredModelConnection!',
        'registeredModel(name: String!): RegisteredModel!',
        'modelVersion(id: ID!): ModelVersion!',
      ]),
    );
    expect(fieldsOf('TrainingRun')).toEqual([
      'id: ID!',
      'status: TrainingRunStatus!',
      'modelName: String!',
      'params: JSON!',
      'artifacts: [Artifact!]!',
      'error: String',
      'errorCode: String',
      'environment: JSON',
      'weightsSha256: String',
      'logKey: String',
      'cancelRequested: Boolean!',
      'codeVersion: String!',
      'requestedBy: String!',
      'createdAt: DateTimeISO!',
      'startedAt: DateTimeISO',
      'finishedAt: DateTimeISO',
      'metrics(name: String): [Metric!]!',
      'datasetVersion: DatasetVersion',
      'modelVersion: ModelVersion',
    ]);
    expect(fieldsOf('Metric')).toEqual(['name: String!', 'value: Float!', 'step: Int!', 'epoch: Int', 'recordedAt: DateTimeISO!']);
    expect(fieldsOf('Artifact')).toEqual(['name: String!', 'key: String!', 'byteSize: Int!', 'sha256: String!']);
    expect(fieldsOf('RegisteredModel')).toEqual([
      'id: ID!',
      'name: String!',
      'description: String!',
      'platformWide: Boolean!',
      'evaluationDatasetVersionId: String',
      'createdAt: DateTimeISO!',
      'evaluationDataset: EvaluationDataset',
      'versions(first: Int, after: String): ModelVersionConnection!',
      'latestVersion: ModelVersion',
      'productionVersion: ModelVersion',
      'stageHistory: [StageChange!]!',
      'aliases: [ModelAlias!]!',
    ]);
    expect(fieldsOf('ModelVersion')).toEqual([
      'id: ID!',
      'version: Int!',
      'stage: ModelStage!',
      'aliases: [String!]!',
      'artifactKey: String!',
      'sha256: String!',
      'byteSize: Int!',
      'metrics: JSON!',
      'contract: JSON!',
      'source: ModelVersionSource!',
      'gate: GateDecision',
      'referenceStatsKey: String',
      'evaluation: ModelEvaluation',
      'createdBy: String!',
      'createdAt: DateTimeISO!',
      'registeredModel: RegisteredModel!',
      'trainingRun: TrainingRun',
    ]);
  });

  it('pages training runs newest first, following cursors to the end', async () => {
    const query = `query ($after: String, $modelName: String) {
      trainingRuns(first: 2, after: $after, modelName: $modelName) {
        totalCount pageInfo { hasNextPage endCursor } edges { node { id modelName } }
      }
    }`;
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const page: Page<{ id: string }> = data<{ trainingRuns: Page<{ id: string }> }>(await run('acme', query, { after })).trainingRuns;
      expect(page.totalCount).toBe(5);
      seen.push(...page.edges.map((e) => e.node.id));
      if (!page.pageInfo.hasNextPage) break;
      after = page.pageInfo.endCursor;
    }
    expect(seen).toEqual(acmeRuns.map((r) => r.id).reverse());
    const unet = data<{ trainingRuns: Page<{ modelName: string }> }>(await run('acme', query, { modelName: 'unet' })).trainingRuns;
    expect(unet.totalCount).toBe(2);
    expect(unet.edges.map((e) => e.node.modelName)).toEqual(['unet', 'unet']);
  });

  it('refuses a malformed cursor or page size with BAD_USER_INPUT', async () => {
    const query = `query ($after: String, $first: Int) { trainingRuns(first: $first, after: $after) { totalCount } }`;
    expect(codes(await run('acme', query, { after: 'not-a-cursor' }))).toEqual(['BAD_USER_INPUT']);
    const forged = encodeCursor({ createdAt: new Date(), id: "x' or 1=1" });
    expect(codes(await run('acme', query, { after: forged }))).toEqual(['BAD_USER_INPUT']);
    expect(codes(await run('acme', query, { first: 0 }))).toEqual(['BAD_USER_INPUT']);
    const models = `query ($after: String) { registeredModels(after: $after) { totalCount } }`;
    expect(codes(await run('acme', models, { after: 'bm9wZQ' }))).toEqual(['BAD_USER_INPUT']);
  });

  it('returns a run with its metrics, artifacts, dataset version and registered version', async () => {
    const result = data<{ trainingRun: { metrics: { name: string; step: number }[] } }>(
      await run(
        'acme',
        `query ($id: ID!) { trainingRun(id: $id) {
          id status modelName params codeVersion requestedBy error startedAt finishedAt createdAt
          metrics { name step epoch value recordedAt } loss: metrics(name: "loss") { step value }
          artifacts { name key byteSize sha256 }
          datasetVersion { id }
          modelVersion { id version source trainingRun { id } }
        } }`,
        { id: acmeRuns[0]!.id },
      ),
    );
    expect(result.trainingRun).toMatchObject({
      id: acmeRuns[0]!.id,
      status: 'QUEUED',
      params: { epochs: 2, learningRate: 0.001, loss: { bce: 0.5, dice: 0.5 } },
      error: null,
      startedAt: null,
      artifacts: [],
      datasetVersion: { id: acmeRuns[0]!.datasetVersionId },
      modelVersion: { id: trainedVersion.id, version: 1, source: 'TRAINED', trainingRun: { id: acmeRuns[0]!.id } },
      loss: [
        { step: 1, value: 0.8 },
        { step: 2, value: 0.4 },
      ],
    });
    expect(result.trainingRun.metrics.map((m) => `${m.name}@${m.step}`)).toEqual(['iou@2', 'loss@1', 'loss@2']);
  });

  it('answers NOT_FOUND for unknown, malformed and other tenants’ ids', async () => {
    const runQuery = `query ($id: ID!) { trainingRun(id: $id) { id } }`;
    expect(codes(await run('acme', runQuery, { id: 'nope' }))).toEqual(['NOT_FOUND']);
    expect(codes(await run('acme', runQuery, { id: globexRun.id }))).toEqual(['NOT_FOUND']);
    expect(codes(await run('acme', runQuery, { id: '5f0c7b8e-2c1a-4d1e-9a3b-7c6d5e4f3a2b' }))).toEqual(['NOT_FOUND']);
    const versionQuery = `query ($id: ID!) { modelVersion(id: $id) { id } }`;
    expect(codes(await run('globex', versionQuery, { id: trainedVersion.id }))).toEqual(['NOT_FOUND']);
    expect(codes(await run('globex', versionQuery, { id: '12' }))).toEqual(['NOT_FOUND']);
    expect(codes(await run('globex', `{ registeredModel(name: "snunet") { id } }`))).toEqual(['NOT_FOUND']);
  });

  it('lists own and platform-wide models, with versions, latest and Production version', async () => {
    const list = data<{ registeredModels: Page<{ name: string; platformWide: boolean }> }>(
      await run('acme', `{ registeredModels { totalCount edges { node { name platformWide } } } }`),
    ).registeredModels;
    expect(list.totalCount).toBe(2);
    expect(list.edges.map((e) => `${e.node.name}:${e.node.platformWide}`).sort()).toEqual(['demo:true', 'snunet:false']);
    const globex = data<{ registeredModels: Page<{ name: string }> }>(await run('globex', `{ registeredModels { edges { node { name } } } }`)).registeredModels;
    expect(globex.edges.map((e) => e.node.name)).toEqual(['demo']);

    const model = data<{ registeredModel: { versions: Page<{ contract: ModelContract }> } }>(
      await run(
        'acme',
        `{ registeredModel(name: "snunet") {
          name description platformWide createdAt
          versions(first: 1) { totalCount pageInfo { hasNextPage } edges { node { version stage aliases metrics contract createdBy } } }
          latestVersion { version } productionVersion { version }
        } }`,
      ),
    ).registeredModel;
    expect(model).toMatchObject({
      name: 'snunet',
      platformWide: false,
      versions: { totalCount: 2, pageInfo: { hasNextPage: true } },
      latestVersion: { version: 2 },
      productionVersion: null,
    });
    expect(model.versions.edges[0].node).toMatchObject({ version: 2, stage: 'NONE', aliases: [], metrics: { iou: 0.71, f1: 0.83 } });
    expect(model.versions.edges[0]!.node.contract.inputs.map((t) => t.name)).toEqual(['before', 'after']);

    const demo = data<{ registeredModel: unknown }>(
      await run('globex', `{ registeredModel(name: "demo") { platformWide productionVersion { id stage registeredModel { name } trainingRun { id } } } }`),
    ).registeredModel;
    expect(demo).toEqual({
      platformWide: true,
      productionVersion: { id: demoVersion.id, stage: 'PRODUCTION', registeredModel: { name: 'demo' }, trainingRun: null },
    });
  });

  it('lets any role read and denies a caller without one, as the subgraph server applies the rules', async () => {
    const guarded = executorFor(applyMiddleware(schema, permissionsMiddleware(modelsPermissions)), db);
    const query = `{ trainingRuns(first: 1) { totalCount edges { node { id metrics { value } } } } registeredModels { totalCount } }`;
    expect(codes(await guarded('acme', query, {}, []))).toContain('FORBIDDEN');
    const viewer = data<{ trainingRuns: { totalCount: number } }>(await guarded('acme', query, {}, ['viewer']));
    expect(viewer.trainingRuns.totalCount).toBe(5);
  });

  it('resolves references tenant-scoped: another tenant’s record is null, platform records resolve for all', async () => {
    const query = `query ($representations: [_Any!]!) { _entities(representations: $representations) {
      ... on TrainingRun { id modelName }
      ... on ModelVersion { id version }
      ... on RegisteredModel { id name }
    } }`;
    const representations = [
      { __typename: 'TrainingRun', id: acmeRuns[1]!.id },
      { __typename: 'TrainingRun', id: globexRun.id },
      { __typename: 'ModelVersion', id: trainedVersion.id },
      { __typename: 'ModelVersion', id: demoVersion.id },
      { __typename: 'RegisteredModel', id: demoVersion.registeredModel.id },
      { __typename: 'RegisteredModel', id: trainedVersion.registeredModel.id },
      { __typename: 'ModelVersion', id: 'not-a-uuid' },
    ];
    const entities = data<{ _entities: unknown[] }>(await run('acme', query, { representations }))._entities;
    expect(entities).toEqual([
      { id: acmeRuns[1]!.id, modelName: 'unet' },
      null,
      { id: trainedVersion.id, version: 1 },
      { id: demoVersion.id, version: 1 },
      { id: demoVersion.registeredModel.id, name: 'demo' },
      { id: trainedVersion.registeredModel.id, name: 'snunet' },
      null,
    ]);
    const asGlobex = data<{ _entities: unknown[] }>(await run('globex', query, { representations }))._entities;
    expect(asGlobex.map((e: unknown) => e !== null)).toEqual([false, true, false, true, true, false, false]);
  });
});
