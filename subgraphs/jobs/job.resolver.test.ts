import type { GraphQLSchema } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { subgraphSdl } from '../../lib/graphql/subgraph.js';
import { JobKind } from './job.contracts.js';
import type { JobsDeps } from './schema.js';
import { aJob, aPair, aResult, execute, jobsDefinition, openJobsDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;
let deps: JobsDeps;
let schema: GraphQLSchema;

beforeAll(async () => {
  ({ db, close } = await openJobsDatabase());
  deps = await jobsDefinition.setup({ db } as Parameters<typeof jobsDefinition.setup>[0]);
  schema = await jobsDefinition.schema(deps);
});
afterAll(async () => {
  await close();
});

interface Page<N> {
  edges: { node: N; cursor: string }[];
  pageInfo: { hasNextPage: boolean; endCursor: string | null };
  totalCount: number;
}

const JOB_FIELDS = `id kind status progress pairCount succeededCount failedCount modelName threshold requestedBy error
  createdAt startedAt finishedAt modelVersion { id } datasetVersion { id }`;

describe('schema', () => {
  it('declares Job as an entity and refers to ModelVersion and DatasetVersion without resolving them', () => {
    // Descriptions dropped and whitespace folded, so that the printer's line breaks do not matter.
    const sdl = subgraphSdl(schema).replace(/"""[^]*?"""/g, '').replace(/\s+/g, ' ');
    expect(sdl).toContain('type Job @key(fields: "id") {');
    expect(sdl).toContain('type ModelVersion @key(fields: "id", resolvable: false) { id: ID! }');
    expect(sdl).toContain('type DatasetVersion @key(fields: "id", resolvable: false) { id: ID! }');
    expect(sdl).toMatch(/jobs\((?=[^)]*filter: JobFilter)(?=[^)]*first: Int)(?=[^)]*after: String)[^)]*\): JobConnection!/);
    expect(sdl).toContain('job(id: ID!): Job!');
    expect(sdl).toMatch(/pairs\( first: Int after: String \): JobPairConnection!/);
    expect(sdl).toContain('type JobPair { index: Int! status: JobPairStatus! attempts: Int! error: String errorCode: String stats: ChangeStats width: Int height: Int result: ChangeResult }');
  });
});

describe('job', () => {
  it('returns a job of your tenant with its progress and references', async () => {
    const job = await deps.service.createJob(db.fork(), aJob('acme', { datasetVersionId: 'b'.repeat(64), threshold: null }));
    await deps.service.markPairSucceeded(db.fork(), { tenant: 'acme', jobId: job.id, index: 0 }, aResult(job.id, 0));
    await deps.service.markPairFailed(db.fork(), { tenant: 'acme', jobId: job.id, index: 1 }, 'bad image', { final: true });
    const { data, errors } = await execute<{ job: Record<string, unknown> }>(schema, db, 'acme', `query ($id: ID!) { job(id: $id) { ${JOB_FIELDS} } }`, {
      id: job.id,
    });
    expect(errors).toBeUndefined();
    expect(data?.job).toMatchObject({
      id: job.id,
      kind: 'BATCH',
      status: 'RUNNING',
      progress: 2 / 3,
      pairCount: 3,
      succeededCount: 1,
      failedCount: 1,
      modelName: 'snunet',
      threshold: null,
      requestedBy: 'analyst@acme',
      error: null,
      finishedAt: null,
      modelVersion: { id: aResult(job.id, 0).modelVersionId },
      datasetVersion: { id: 'b'.repeat(64) },
    });
  });

  it("reads another tenant's job, and a malformed id, as NOT_FOUND", async () => {
    const job = await deps.service.createJob(db.fork(), aJob('acme'));
    const query = `query ($id: ID!) { job(id: $id) { id } }`;
    expect((await execute(schema, db, 'globex', query, { id: job.id })).codes).toEqual(['NOT_FOUND']);
    expect((await execute(schema, db, 'acme', query, { id: 'x' })).codes).toEqual(['NOT_FOUND']);
  });

  it('pages through the pairs in index order, with their stats', async () => {
    const job = await deps.service.createJob(db.fork(), aJob('acme', { pairs: Array.from({ length: 5 }, () => aPair('acme')) }));
    await deps.service.markPairRunning(db.fork(), { tenant: 'acme', jobId: job.id, index: 2 });
    await deps.service.markPairSucceeded(db.fork(), { tenant: 'acme', jobId: job.id, index: 2 }, aResult(job.id, 2));
    const query = `query ($id: ID!, $after: String) { job(id: $id) { pairs(first: 2, after: $after) {
      totalCount pageInfo { hasNextPage endCursor }
      edges { cursor node { index status attempts error width height stats { changedPixels changedFraction regions areaSquareMeters areaHectares } } } } } }`;
    type PairPage = Page<{ index: number; status: string; attempts: number; stats: unknown }>;
    const seen: number[] = [];
    let after: string | null = null;
    for (let page = 0; page < 3; page += 1) {
      const result = await execute<{ job: { pairs: PairPage } }>(schema, db, 'acme', query, { id: job.id, after });
      expect(result.errors).toBeUndefined();
      const pairs: PairPage = result.data!.job.pairs;
      expect(pairs.totalCount).toBe(5);
      seen.push(...pairs.edges.map((e) => e.node.index));
      expect(pairs.pageInfo.hasNextPage).toBe(page < 2);
      after = pairs.pageInfo.endCursor;
      const third = pairs.edges.find((e) => e.node.index === 2);
      if (third) {
        expect(third.node).toMatchObject({ status: 'SUCCEEDED', attempts: 1, stats: aResult(job.id, 2).stats });
      }
    }
    expect(seen).toEqual([0, 1, 2, 3, 4]);
  });

  it('refuses a malformed pairs cursor with BAD_USER_INPUT', async () => {
    const job = await deps.service.createJob(db.fork(), aJob('acme'));
    const result = await execute(schema, db, 'acme', `query ($id: ID!) { job(id: $id) { pairs(after: "garbage") { totalCount } } }`, { id: job.id });
    expect(result.codes).toEqual(['BAD_USER_INPUT']);
  });
});

describe('jobs', () => {
  const query = `query ($filter: JobFilter, $first: Int, $after: String) {
    jobs(filter: $filter, first: $first, after: $after) { totalCount pageInfo { hasNextPage endCursor } edges { node { id kind status modelName } } } }`;
  type Jobs = { jobs: Page<{ id: string; kind: string; status: string; modelName: string }> };

  it('lists only your tenant, newest first, page by page without gaps or repeats', async () => {
    const tenant = 'paging';
    const made: string[] = [];
    for (let i = 0; i < 5; i += 1) made.push((await deps.service.createJob(db.fork(), aJob(tenant))).id);
    await deps.service.createJob(db.fork(), aJob('other-tenant'));
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const { data, errors }: { data?: Jobs | null; errors?: unknown } = await execute<Jobs>(schema, db, tenant, query, { first: 2, after });
      expect(errors).toBeUndefined();
      expect(data!.jobs.totalCount).toBe(5);
      seen.push(...data!.jobs.edges.map((e) => e.node.id));
      after = data!.jobs.pageInfo.hasNextPage ? data!.jobs.pageInfo.endCursor : null;
    } while (after);
    expect(seen).toEqual([...made].reverse());
  });

  it('filters by status, kind and model name', async () => {
    const tenant = 'filters';
    const sync = await deps.service.createJob(db.fork(), aJob(tenant, { kind: JobKind.SYNC, pairs: [aPair(tenant)], modelName: 'fast' }));
    const batch = await deps.service.createJob(db.fork(), aJob(tenant, { pairs: [aPair(tenant)] }));
    await deps.service.markPairSucceeded(db.fork(), { tenant, jobId: batch.id, index: 0 }, aResult(batch.id, 0));
    const ids = async (filter: Record<string, unknown>) => {
      const { data, errors } = await execute<Jobs>(schema, db, tenant, query, { filter });
      expect(errors).toBeUndefined();
      return data!.jobs.edges.map((e) => e.node.id);
    };
    expect(await ids({})).toEqual([batch.id, sync.id]);
    expect(await ids({ status: 'SUCCEEDED' })).toEqual([batch.id]);
    expect(await ids({ kind: 'SYNC' })).toEqual([sync.id]);
    expect(await ids({ modelName: 'fast' })).toEqual([sync.id]);
    expect(await ids({ modelName: 'fast', status: 'SUCCEEDED' })).toEqual([]);
  });

  it('refuses a malformed cursor and an out-of-range page size with BAD_USER_INPUT', async () => {
    expect((await execute(schema, db, 'acme', query, { after: 'not-a-cursor' })).codes).toEqual(['BAD_USER_INPUT']);
    expect((await execute(schema, db, 'acme', query, { first: 0 })).codes).toEqual(['BAD_USER_INPUT']);
    expect((await execute(schema, db, 'acme', query, { first: 101 })).codes).toEqual(['BAD_USER_INPUT']);
  });
});

describe('Job reference', () => {
  it("resolves a job of the caller's tenant, and another tenant's as null", async () => {
    const job = await deps.service.createJob(db.fork(), aJob('acme'));
    const query = `query ($representations: [_Any!]!) { _entities(representations: $representations) { ... on Job { id status } } }`;
    const representations = [{ __typename: 'Job', id: job.id }];
    const mine = await execute<{ _entities: unknown[] }>(schema, db, 'acme', query, { representations });
    expect(mine.data?._entities).toEqual([{ id: job.id, status: 'QUEUED' }]);
    const theirs = await execute<{ _entities: unknown[] }>(schema, db, 'globex', query, { representations });
    expect(theirs.data?._entities).toEqual([null]);
  });
});
