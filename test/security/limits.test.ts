// Limits as a client runs into them, on a gateway configured with small ones: operation limits (tokens, root fields,
// aliases, depth, cost), batches, oversized bodies and headers, rate limits per identity (in Redis when
// TEST_REDIS_URL is set, shared by two gateway instances), and introspection switched off. Every refusal names its
// limit, carries no internals, reaches no subgraph, and the services stay up.
import { randomUUID } from 'node:crypto';
import { request } from 'node:http';
import { getIntrospectionQuery } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startExtraGateway, startTestPlatform, type TestPlatform } from '../support/platform.js';
import { codes, expectNoInternals } from './support.js';

const redisUrl = process.env.TEST_REDIS_URL;
const LIMITS = {
  MAX_QUERY_TOKENS: '400',
  MAX_ROOT_FIELDS: '4',
  MAX_QUERY_ALIASES: '5',
  MAX_QUERY_DEPTH: '6',
  MAX_QUERY_COST: '2000',
  MAX_REQUEST_BYTES: '65536',
  // 20 requests at once, then one every 20 s: nothing refills while a test runs.
  RATE_LIMIT_BURST: '20',
  RATE_LIMIT_REFILL_PER_SECOND: '0.05',
  RATE_LIMIT_COSTS: 'detectChanges=10,startTraining=20,createDataset=8',
  RATE_LIMIT_KEY_PREFIX: `lcd:test:${randomUUID()}:`,
  REDIS_URL: redisUrl,
};

let t: TestPlatform;
beforeAll(async () => {
  t = await startTestPlatform(LIMITS);
});
afterAll(async () => {
  await t?.close();
});

/** A token for a caller of its own, so that each test has its own rate-limit bucket. */
const caller = (roles: Parameters<TestPlatform['token']>[0] = ['admin']) => t.token(roles, 'limits', `caller-${randomUUID()}`);

/** Requests the datasets subgraph has served: a refused operation must not change it. */
async function datasetsSubgraphRequests(): Promise<number> {
  const metrics = await (await fetch(t.platform.subgraphs.datasets.url.replace(/\/graphql$/, '/metrics'))).text();
  return [...metrics.matchAll(/^lcd_http_request_duration_seconds_count\{[^}]*route="graphql"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
}

async function gatewayMetrics(url = t.url): Promise<string> {
  return (await fetch(url.replace(/\/graphql$/, '/metrics'))).text();
}

describe('operation limits', () => {
  const cases: [string, string, { limit: string; max: number }][] = [
    ['deeply nested', '{ datasets { edges { node { versions { edges { node { dataset { id } } } } } } } }', { limit: 'depth', max: 6 }],
    ['alias-bombed', `{ datasets { ${Array.from({ length: 6 }, (_, i) => `a${i}: totalCount`).join(' ')} } }`, { limit: 'aliases', max: 5 }],
    ['too many root fields', `{ ${Array.from({ length: 5 }, (_, i) => `r${i}: datasets { totalCount }`).join(' ')} }`, { limit: 'rootFields', max: 4 }],
    ['too expensive', '{ datasets(first: 100) { edges { node { versions(first: 100) { totalCount } } } } }', { limit: 'cost', max: 2000 }],
    ['too long', `{ datasets { ${'totalCount '.repeat(400)}} }`, { limit: 'tokens', max: 400 }],
    ['an introspection bomb', '{ __type(name: "Dataset") { fields { type { fields { type { fields { type { fields { name } } } } } } } } }', { limit: 'introspection', max: 3 }],
    // Refused for its size before anyone looks at what it asks for: the alias bomb of fields that do not exist.
    ['alias-bombed and invalid', `{ ${Array.from({ length: 50 }, (_, i) => `x${i}: nope`).join(' ')} }`, { limit: 'rootFields', max: 4 }],
    ['unparsable and too long', `{ ${'a '.repeat(500)}`, { limit: 'tokens', max: 400 }],
  ];

  it('refuses each with 400 OPERATION_LIMIT naming the limit and its maximum, before any subgraph is called', async () => {
    const token = await caller();
    const before = await datasetsSubgraphRequests();
    for (const [name, query, expected] of cases) {
      const res = await t.post({ query }, { token });
      expect(res.status, name).toBe(400);
      expect(codes(res), name).toEqual(['OPERATION_LIMIT']);
      expect(res.json?.errors?.[0]?.extensions, name).toMatchObject(expected);
      expect(res.json?.data, name).toBeUndefined();
      expectNoInternals(res);
    }
    expect(await datasetsSubgraphRequests()).toBe(before);
    const metrics = await gatewayMetrics();
    for (const limit of ['depth', 'aliases', 'rootFields', 'cost', 'tokens', 'introspection']) expect(metrics).toMatch(new RegExp(`lcd_operation_refused_total\\{limit="${limit}"`));
  });

  it('counts list sizes from variables, and lets an operation within every limit through', async () => {
    const token = await caller();
    const query = 'query($n: Int) { datasets(first: $n) { edges { node { versions(first: $n) { totalCount } } } } }';
    const expensive = await t.post({ query, variables: { n: 100 } }, { token });
    expect(expensive.json?.errors?.[0]?.extensions).toMatchObject({ code: 'OPERATION_LIMIT', limit: 'cost' });
    const cheap = await t.post({ query, variables: { n: 5 } }, { token });
    expect(cheap.status).toBe(200);
    expect(cheap.json?.errors).toBeUndefined();
    const introspection = await t.post({ query: getIntrospectionQuery() }, { token }); // deeper than 6, but introspection
    expect(introspection.json?.errors).toBeUndefined();
  });

  it('refuses a batch (a JSON array of operations) as one operation limit', async () => {
    const res = await t.post([{ query: '{ datasets { totalCount } }' }, { query: '{ jobs { totalCount } }' }], { token: await caller() });
    expect(res.status).toBe(400);
    expect(codes(res)).toEqual(['OPERATION_LIMIT']);
    expect(res.json?.errors?.[0]?.extensions).toMatchObject({ limit: 'batch', max: 1 });
    expectNoInternals(res);
  });

  it('refuses an oversized body with 413 and an oversized header with 431, and stays up', async () => {
    const token = await caller();
    const body = JSON.stringify({ query: '{ datasets { totalCount } }', variables: { padding: 'x'.repeat(70_000) } });
    const big = await t.post(body, { token });
    expect(big.status).toBe(413);
    expect(big.json?.errors?.[0]?.extensions).toEqual({ code: 'PAYLOAD_TOO_LARGE', limit: 'bodyBytes', max: 65536 });
    expectNoInternals(big);

    const status = await new Promise<number>((resolve, reject) => {
      const { hostname, port, pathname } = new URL(t.url);
      const req = request({ hostname, port, path: pathname, method: 'POST', headers: { 'content-type': 'application/json', 'x-padding': 'x'.repeat(20_000) } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.end('{}');
    });
    expect(status).toBe(431);

    const after = await t.post({ query: '{ datasets { totalCount } }' }, { token });
    expect(after.status).toBe(200);
    expect(await gatewayMetrics()).toMatch(/lcd_operation_refused_total\{limit="bodyBytes"/);
  });
});

describe(`rate limits per identity (${redisUrl ? 'Redis' : 'in memory'})`, () => {
  it('lets a burst through, then answers 429 RATE_LIMITED with when to retry, for that identity only', async () => {
    const flooder = await caller();
    const bystander = await caller();
    const responses = [];
    for (let i = 0; i < 25; i++) responses.push(await t.post({ query: '{ datasets { totalCount } }' }, { token: flooder }));
    expect(responses.filter((r) => r.status === 200)).toHaveLength(20);
    const refused = responses.filter((r) => r.status === 429);
    expect(refused).toHaveLength(5);
    for (const res of refused) {
      expect(codes(res)).toEqual(['RATE_LIMITED']);
      const retryAfter = res.json!.errors![0]!.extensions!.retryAfterSeconds as number;
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(20);
      expect(res.headers.get('retry-after')).toBe(String(retryAfter));
      expect(res.json?.data).toBeUndefined();
      expectNoInternals(res);
    }
    expect((await t.post({ query: '{ datasets { totalCount } }' }, { token: bystander })).status).toBe(200);
    expect(await gatewayMetrics()).toMatch(/^lcd_rate_limited_total\{service="gateway"\} [1-9]/m);
  });

  it('charges heavier operations more, and refuses them before they reach a subgraph', async () => {
    const token = await caller(['ml-engineer']);
    const create = (name: string) => t.post({ query: `mutation { createDataset(input: {name: "${name}"}) { id } }` }, { token });
    expect((await create(`heavy-${randomUUID()}`)).status).toBe(200); // 8 of 20
    expect((await create(`heavy-${randomUUID()}`)).status).toBe(200); // 16 of 20
    const before = await datasetsSubgraphRequests();
    const third = await create('heavy-refused');
    expect(third.status).toBe(429);
    expect(codes(third)).toEqual(['RATE_LIMITED']);
    expect(await datasetsSubgraphRequests()).toBe(before);
    expect((await t.post({ query: '{ datasets { totalCount } }' }, { token })).status).toBe(200); // 1 still fits
    const list = await t.gql<{ datasets: { edges: { node: { name: string } }[] } }>(`{ datasets(first: 100) { edges { node { name } } } }`, {}, await caller());
    expect(list.data!.datasets.edges.map((e) => e.node.name)).not.toContain('heavy-refused');
  });

  it.skipIf(!redisUrl)('shares one budget between two gateway instances (Redis)', async () => {
    const second = await startExtraGateway(t);
    try {
      const token = await caller();
      const statuses: number[] = [];
      for (let i = 0; i < 30; i++) statuses.push((await t.post({ query: '{ datasets { totalCount } }' }, { token, url: i % 2 ? second.url : t.url })).status);
      expect(statuses.filter((s) => s === 200)).toHaveLength(20);
      expect(statuses.filter((s) => s === 429)).toHaveLength(10);
    } finally {
      await second.close();
    }
  });
});

describe('a subgraph that cannot be reached', () => {
  it('answers UNAVAILABLE without its address or any internals, and the gateway stays up', async () => {
    const gateway = await startExtraGateway(t, {}, { subgraphUrls: { datasets: 'http://127.0.0.1:1/graphql' } });
    try {
      const token = await caller();
      const res = await t.post({ query: '{ datasets { totalCount } }' }, { token, url: gateway.url });
      expect(codes(res)).toEqual(['UNAVAILABLE']);
      expectNoInternals(res);
      expect(res.text).not.toContain('127.0.0.1:1');
      const jobs = await t.post({ query: '{ jobs { totalCount } }' }, { token, url: gateway.url });
      expect(jobs.json?.data).toEqual({ jobs: { totalCount: 0 } });
    } finally {
      await gateway.close();
    }
  });
});

describe('introspection and GraphiQL', () => {
  const graphiql = async (url: string) => (await fetch(url.replace(/\/graphql$/, '/graphiql'))).status;

  it('are on in development', async () => {
    const res = await t.post({ query: '{ __schema { queryType { name } } }' }, { token: await caller() });
    expect(res.json?.data).toEqual({ __schema: { queryType: { name: 'Query' } } });
    expect(await graphiql(t.url)).toBe(200);
  });

  for (const [name, env] of [
    ['INTROSPECTION=false', { INTROSPECTION: 'false' }],
    ['NODE_ENV=production', { NODE_ENV: 'production', INTROSPECTION: undefined }],
  ] as const) {
    it(`are off with ${name}, while queries work`, async () => {
      const gateway = await startExtraGateway(t, env, { ownRuntime: true });
      try {
        const token = await caller();
        const introspection = await t.post({ query: '{ __schema { queryType { name } } }' }, { token, url: gateway.url });
        expect(introspection.status).toBe(400);
        expect(codes(introspection)).toEqual(['GRAPHQL_VALIDATION_FAILED']);
        expect(introspection.json?.errors?.[0]?.message).toMatch(/introspection is not allowed/i);
        expectNoInternals(introspection);
        expect(codes(await t.post({ query: '{ __type(name: "Dataset") { name } }' }, { token, url: gateway.url }))).toEqual(['GRAPHQL_VALIDATION_FAILED']);
        expect(await graphiql(gateway.url)).toBe(404);
        const query = await t.post({ query: '{ datasets { totalCount } }' }, { token, url: gateway.url });
        expect(query.json?.errors).toBeUndefined();
      } finally {
        await gateway.close();
      }
    });
  }
});
