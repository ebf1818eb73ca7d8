// Authorisation as a client meets it: every root field of the supergraph × every role, sent through the gateway and
// compared with the one expected table (expected-permissions.ts); tenant isolation for reads, writes, entity lookups
// and guessed ids; and the development tokens `npm run token` prints.
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  buildClientSchema,
  getIntrospectionQuery,
  getNamedType,
  isEnumType,
  isInputObjectType,
  isLeafType,
  isListType,
  isNonNullType,
  isScalarType,
  Kind,
  parse,
  type GraphQLField,
  type GraphQLInputType,
  type GraphQLSchema,
  type IntrospectionQuery,
} from 'graphql';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Role } from '../../lib/auth.js';
import { repoRoot, startTestPlatform, uploadFile, type TestPlatform } from '../support/platform.js';
import { ALL_ROLES, EXPECTED_MUTATIONS, EXPECTED_QUERIES, type FieldExpectation } from './expected-permissions.js';
import { codes, expectNoInternals } from './support.js';

let t: TestPlatform;
let schema: GraphQLSchema;

beforeAll(async () => {
  t = await startTestPlatform();
  const introspection = await t.gql<IntrospectionQuery>(getIntrospectionQuery());
  schema = buildClientSchema(introspection.data!);
});
afterAll(async () => {
  await t?.close();
});

/** Root fields of a type in the committed supergraph, the contract clients are given. */
async function supergraphFields(typeName: 'Query' | 'Mutation'): Promise<string[]> {
  const document = parse(await readFile(join(repoRoot, 'schema', 'supergraph.graphql'), 'utf8'));
  return document.definitions.flatMap((d) =>
    (d.kind === Kind.OBJECT_TYPE_DEFINITION || d.kind === Kind.OBJECT_TYPE_EXTENSION) && d.name.value === typeName ? (d.fields ?? []).map((f) => f.name.value) : [],
  );
}

/** A minimal value that looks valid for an input type: required fields only, one item per list. */
function sampleValue(type: GraphQLInputType): unknown {
  if (isNonNullType(type)) return sampleValue(type.ofType);
  if (isListType(type)) return [sampleValue(type.ofType)];
  if (isEnumType(type)) return type.getValues()[0]!.value;
  if (isInputObjectType(type)) {
    const fields = Object.values(type.getFields()).filter((f) => isNonNullType(f.type) && f.defaultValue === undefined);
    return Object.fromEntries(fields.map((f) => [f.name, sampleValue(f.type)]));
  }
  if (isScalarType(type)) {
    switch (type.name) {
      case 'ID':
        return randomUUID();
      case 'Int':
        return 1;
      case 'Float':
        return 0.5;
      case 'Boolean':
        return false;
      case 'String':
        return 'probe';
      case 'DateTimeISO':
      case 'DateTime':
        return new Date().toISOString();
      case 'JSON':
      case 'JSONObject':
        return {};
      default:
        return 'probe';
    }
  }
  throw new Error(`no sample for ${String(type)}`);
}

/** The operation a client would send for one root field, with its required arguments as variables. */
function probe(operation: 'query' | 'mutation', field: GraphQLField<unknown, unknown>, expectation: FieldExpectation) {
  const args = field.args.filter((a) => (isNonNullType(a.type) && a.defaultValue === undefined) || expectation.variables?.[a.name] !== undefined);
  const definitions = args.map((a) => `$${a.name}: ${String(a.type)}`).join(', ');
  const call = args.length ? `(${args.map((a) => `${a.name}: $${a.name}`).join(', ')})` : '';
  const selection = isLeafType(getNamedType(field.type)) ? '' : ' { __typename }';
  const variables = Object.fromEntries(args.map((a) => [a.name, expectation.variables?.[a.name] ?? sampleValue(a.type)]));
  return { query: `${operation} Probe${definitions ? `(${definitions})` : ''} { ${field.name}${call}${selection} }`, variables };
}

async function checkMatrix(operation: 'query' | 'mutation', table: Record<string, FieldExpectation>) {
  const rootType = operation === 'query' ? schema.getQueryType()! : schema.getMutationType()!;
  const committed = await supergraphFields(operation === 'query' ? 'Query' : 'Mutation');
  const served = Object.keys(rootType.getFields());
  expect(served.sort(), 'the gateway serves the committed supergraph').toEqual([...committed].sort());
  expect(committed.filter((f) => !table[f]), `root fields without a row in test/security/expected-permissions.ts`).toEqual([]);

  const tokens = new Map<Role, string>();
  for (const role of ALL_ROLES) tokens.set(role, await t.token([role], 'matrix', `matrix-${role}`));
  const mismatches: string[] = [];
  for (const fieldName of committed) {
    const expectation = table[fieldName]!;
    const { query, variables } = probe(operation, rootType.getFields()[fieldName]!, expectation);
    for (const role of ALL_ROLES) {
      const res = await t.post({ query, variables }, { token: tokens.get(role)! });
      expectNoInternals(res);
      const got = codes(res);
      const refused = res.status === 401 || res.status === 403 || got.includes('FORBIDDEN') || got.includes('UNAUTHENTICATED');
      const allowed = expectation.allowed.includes(role);
      if (allowed === refused) mismatches.push(`${fieldName} as ${role}: expected ${allowed ? 'allowed' : 'FORBIDDEN'}, got ${res.status} ${got.join(',') || 'no error'}`);
      if (!allowed && !got.includes('FORBIDDEN')) mismatches.push(`${fieldName} as ${role}: refused without the FORBIDDEN code (${got.join(',')})`);
    }
  }
  expect(mismatches).toEqual([]);
}

describe('authorisation matrix (every root field × every role)', () => {
  it('allows or refuses every mutation exactly as the table says', async () => {
    await checkMatrix('mutation', EXPECTED_MUTATIONS);
  });

  it('allows or refuses every query exactly as the table says', async () => {
    await checkMatrix('query', EXPECTED_QUERIES);
  });

  it('refuses a token with no platform role everywhere except where nothing is read', async () => {
    const nobody = await t.token([], 'matrix', 'no-roles');
    const res = await t.post({ query: '{ datasets { totalCount } }' }, { token: nobody });
    expect(codes(res)).toEqual(['FORBIDDEN']);
    const typename = await t.post({ query: '{ __typename }' }, { token: nobody });
    expect(typename.json?.data).toEqual({ __typename: 'Query' });
  });
});

function png(size: number, value: number): Buffer {
  const image = new PNG({ width: size, height: size });
  image.data.fill(value);
  for (let i = 3; i < image.data.length; i += 4) image.data[i] = 255;
  return PNG.sync.write(image);
}

describe('tenant isolation', () => {
  const A = 'tenant-a';
  const B = 'tenant-b';
  let tokenA: string;
  let tokenB: string;
  const ids = { dataset: '', version: '', upload: '' };

  beforeAll(async () => {
    tokenA = await t.token(['admin'], A, 'admin-a');
    tokenB = await t.token(['admin'], B, 'admin-b');
    const dataset = await t.gql<{ createDataset: { id: string } }>(`mutation { createDataset(input: {name: "private"}) { id } }`, {}, tokenA);
    ids.dataset = dataset.data!.createDataset.id;
    const before = await uploadFile(t, png(16, 10), 'before.png', 'image/png', tokenA);
    const after = await uploadFile(t, png(16, 200), 'after.png', 'image/png', tokenA);
    ids.upload = before;
    const version = await t.gql<{ createDatasetVersion: { id: string } }>(
      `mutation($d: ID!, $items: [DatasetItemInput!]!) { createDatasetVersion(datasetId: $d, items: $items) { id } }`,
      { d: ids.dataset, items: [{ before, after }] },
      tokenA,
    );
    expect(version.errors).toBeUndefined();
    ids.version = version.data!.createDatasetVersion.id;
  });

  it("reads another tenant's records as not found, exactly like ids that do not exist", async () => {
    const guessed = { dataset: randomUUID(), version: 'f'.repeat(64), upload: randomUUID() };
    const reads: [string, string, string][] = [
      ['dataset', `query($id: ID!) { dataset(id: $id) { id name } }`, 'dataset'],
      ['datasetVersion', `query($id: ID!) { datasetVersion(id: $id) { id } }`, 'version'],
      ['upload', `query($id: ID!) { upload(id: $id) { id url } }`, 'upload'],
    ];
    for (const [field, query, key] of reads) {
      expect((await t.gql(query, { id: ids[key as keyof typeof ids] }, tokenA)).errors, `${field} as its owner`).toBeUndefined();
      const theirs = await t.post({ query, variables: { id: ids[key as keyof typeof ids] } }, { token: tokenB });
      const nobodys = await t.post({ query, variables: { id: guessed[key as keyof typeof guessed] } }, { token: tokenB });
      expect(codes(theirs), field).toEqual(['NOT_FOUND']);
      expect(codes(nobodys), field).toEqual(['NOT_FOUND']);
      // Nothing but the id tells the two answers apart: no existence oracle.
      const strip = (r: typeof theirs) => r.json!.errors![0]!.message.replace(/"[^"]*"/, '"…"');
      expect(strip(theirs), field).toBe(strip(nobodys));
    }
    for (const [query, id] of [
      [`query($id: ID!) { job(id: $id) { id } }`, randomUUID()],
      [`query($id: ID!) { trainingRun(id: $id) { id } }`, randomUUID()],
      [`query($id: ID!) { modelVersion(id: $id) { id } }`, randomUUID()],
    ] as const) {
      expect(codes(await t.post({ query, variables: { id } }, { token: tokenB }))).toEqual(['NOT_FOUND']);
    }
    const lists = await t.gql<{ datasets: { totalCount: number } }>(`{ datasets { totalCount } }`, {}, tokenB);
    expect(lists.data!.datasets.totalCount).toBe(0);
  });

  it("refuses to write into or from another tenant's records, and writes nothing", async () => {
    const intoTheirs = await t.post(
      { query: `mutation($d: ID!, $items: [DatasetItemInput!]!) { createDatasetVersion(datasetId: $d, items: $items) { id } }`, variables: { d: ids.dataset, items: [{ before: ids.upload, after: ids.upload }] } },
      { token: tokenB },
    );
    expect(codes(intoTheirs)).toEqual(['NOT_FOUND']);
    const own = await t.gql<{ createDataset: { id: string } }>(`mutation { createDataset(input: {name: "mine"}) { id } }`, {}, tokenB);
    const fromTheirs = await t.post(
      { query: `mutation($d: ID!, $items: [DatasetItemInput!]!) { createDatasetVersion(datasetId: $d, items: $items) { id } }`, variables: { d: own.data!.createDataset.id, items: [{ before: ids.upload, after: ids.upload }] } },
      { token: tokenB },
    );
    expect(['NOT_FOUND', 'BAD_USER_INPUT']).toContain(codes(fromTheirs)[0]);
    const versions = await t.gql<{ dataset: { versionCount: number } }>(`query($id: ID!) { dataset(id: $id) { versionCount } }`, { id: own.data!.createDataset.id }, tokenB);
    expect(versions.data!.dataset.versionCount).toBe(0);
    const mine = await t.gql<{ dataset: { versionCount: number } }>(`query($id: ID!) { dataset(id: $id) { versionCount } }`, { id: ids.dataset }, tokenA);
    expect(mine.data!.dataset.versionCount).toBe(1);
  });

  it("resolves another tenant's entities as null in a subgraph's own _entities lookup", async () => {
    const query = `query($r: [_Any!]!) { _entities(representations: $r) { ... on Dataset { id name } ... on DatasetVersion { id } } }`;
    const variables = { r: [{ __typename: 'Dataset', id: ids.dataset }, { __typename: 'DatasetVersion', id: ids.version }] };
    const url = t.platform.subgraphs.datasets.url;
    const owner = await t.post({ query, variables }, { token: tokenA, url });
    expect(owner.json?.data).toEqual({ _entities: [{ id: ids.dataset, name: 'private' }, { id: ids.version }] });
    const other = await t.post({ query, variables }, { token: tokenB, url });
    expect(other.json?.data).toEqual({ _entities: [null, null] });
    const jobs = await t.post(
      { query: `query($r: [_Any!]!) { _entities(representations: $r) { ... on Job { id } } }`, variables: { r: [{ __typename: 'Job', id: randomUUID() }] } },
      { token: tokenB, url: t.platform.subgraphs.jobs.url },
    );
    expect(jobs.json?.data).toEqual({ _entities: [null] });
  });
});

describe('development tokens', () => {
  it('`npm run token -- --role analyst --tenant acme` prints one token, alone on its line, that carries that role', async () => {
    const run = promisify(execFile);
    await run(process.execPath, ['scripts/build.mjs'], { cwd: repoRoot });
    const { stdout } = await run(process.execPath, ['dist/scripts/token.js', '--role', 'analyst', '--tenant', 'acme', '--subject', 'cli-user'], {
      cwd: repoRoot,
      env: { ...process.env, STATE_DIR: t.stateDir, LOG_LEVEL: 'silent' },
    });
    const lines = stdout.split('\n').filter(Boolean);
    expect(lines).toHaveLength(1);
    const token = lines[0]!;
    expect(token).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    const upload = await t.post({ query: `mutation { createUpload(input: {filename: "a.png", contentType: "image/png", byteSize: 10}) { id } }` }, { token });
    expect(upload.json?.errors).toBeUndefined();
    const dataset = await t.post({ query: `mutation { createDataset(input: {name: "cli"}) { id } }` }, { token });
    expect(codes(dataset)).toEqual(['FORBIDDEN']);
    const unknown = await run(process.execPath, ['dist/scripts/token.js', '--role', 'superuser'], { cwd: repoRoot, env: { ...process.env, STATE_DIR: t.stateDir } }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(unknown).toMatchObject({ code: 2, stderr: expect.stringContaining('Unknown role(s): superuser') });
  });
});
