// The foundation as a client meets it: one federated API over four subgraphs, uploads through signed URLs,
// content-addressed dataset versions from real imagery, typed errors for bad input, health and metrics.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCodes, sharedData, startTestPlatform, uploadFile, type TestPlatform } from '../support/platform.js';

let t: TestPlatform;

beforeAll(async () => {
  t = await startTestPlatform();
});
afterAll(async () => {
  await t?.close();
});

const levir = (dir: 'A' | 'B' | 'label', name = 'test_7_0256_0512.png') => readFile(join(sharedData, 'levir-cd-256', dir, name));

function png(width: number, height: number, fill: (x: number, y: number) => [number, number, number]): Buffer {
  const image = new PNG({ width, height });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const [r, g, b] = fill(x, y);
      const i = (y * width + x) * 4;
      image.data[i] = r;
      image.data[i + 1] = g;
      image.data[i + 2] = b;
      image.data[i + 3] = 255;
    }
  }
  return PNG.sync.write(image);
}

async function createDataset(name: string, token?: string): Promise<string> {
  const res = await t.gql<{ createDataset: { id: string } }>(
    `mutation($input: CreateDatasetInput!) { createDataset(input: $input) { id } }`,
    { input: { name, description: 'e2e' } },
    token,
  );
  expect(res.errors).toBeUndefined();
  return res.data!.createDataset.id;
}

const CREATE_VERSION = `mutation($datasetId: ID!, $items: [DatasetItemInput!]!) {
  createDatasetVersion(datasetId: $datasetId, items: $items) { id number itemCount labelledCount totalBytes dataset { id name } }
}`;

describe('federated API', () => {
  it('answers one query that touches all four subgraphs', async () => {
    const res = await t.gql<Record<string, { totalCount: number }>>(
      `{ datasets { totalCount } jobs { totalCount } trainingRuns { totalCount } auditEvents { totalCount } }`,
    );
    expect(res.errors).toBeUndefined();
    expect(res.data).toMatchObject({
      datasets: { totalCount: expect.any(Number) },
      jobs: { totalCount: 0 },
      trainingRuns: { totalCount: 0 },
      auditEvents: { totalCount: expect.any(Number) },
    });
  });

  it('refuses a request without a valid token, with no data', async () => {
    const missing = await t.gql(`{ datasets { totalCount } }`, {}, null);
    expect(missing.status).toBe(401);
    expect(errorCodes(missing)).toEqual(['UNAUTHENTICATED']);
    const garbage = await t.gql(`{ datasets { totalCount } }`, {}, 'not-a-jwt');
    expect(garbage.status).toBe(401);
    expect(missing.data).toBeNull();
  });

  it('keeps a subgraph called directly, without identity, to health and metrics', async () => {
    const subgraph = t.platform.subgraphs.datasets.url;
    const res = await fetch(subgraph, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ query: '{ datasets { totalCount } }' }) });
    expect(res.status).toBe(401);
    // a client-made identity header is not an identity
    const spoofed = await fetch(subgraph, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-tenant': 'acme', 'x-user': 'admin' },
      body: JSON.stringify({ query: '{ datasets { totalCount } }' }),
    });
    expect(spoofed.status).toBe(401);
    const base = subgraph.replace(/\/graphql$/, '');
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { database: true, broker: true, storage: true } });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toContain('lcd_http_request_duration_seconds');
  });

  it('holds a subgraph called in process (the gateway of `npm start`) to the same token check as over HTTP', async () => {
    const local = t.platform.subgraphs.datasets.localFetch;
    const body = JSON.stringify({ query: '{ datasets { totalCount } }' });
    const anonymous = await local({ method: 'POST', headers: { 'content-type': 'application/json' }, body });
    expect(anonymous.status).toBe(401);
    expect(((await anonymous.json()) as { errors: { extensions: { code: string } }[] }).errors[0]!.extensions.code).toBe('UNAUTHENTICATED');
    const signed = await local({ method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${await t.token(['viewer'])}` }, body });
    expect(signed.status).toBe(200);
    expect(await signed.json()).toMatchObject({ data: { datasets: { totalCount: expect.any(Number) } } });
    expect((await local({ method: 'POST', headers: { 'content-type': 'application/json' }, body: '{not json' })).status).toBe(400);
  });

  it('reports gateway readiness from the subgraphs', async () => {
    const base = t.url.replace(/\/graphql$/, '');
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { jobs: true, models: true, datasets: true, monitoring: true, broker: true } });
    expect(await (await fetch(`${base}/metrics`)).text()).toContain('lcd_graphql_operations_total');
  });

  it('serves an offline GraphiQL page and its scripts', async () => {
    const base = t.url.replace(/\/graphql$/, '');
    const page = await fetch(`${base}/graphiql`);
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toContain('/graphiql/assets/graphiql.js');
    expect(html).not.toMatch(/https?:\/\/(cdn|unpkg|embeddable)/);
    const script = await fetch(`${base}/graphiql/assets/graphiql.js`);
    expect(script.status).toBe(200);
    expect((await script.text()).length).toBeGreaterThan(100_000);
  });
});

describe('uploads and datasets', () => {
  it('turns uploaded real pairs into a content-addressed dataset version, the same items into the same version', async () => {
    const datasetId = await createDataset('levir-sample');
    const items = [];
    for (const name of ['test_7_0256_0512.png', 'val_27_0000_0256.png']) {
      items.push({
        before: await uploadFile(t, await levir('A', name), `A-${name}`),
        after: await uploadFile(t, await levir('B', name), `B-${name}`),
        label: await uploadFile(t, await levir('label', name), `L-${name}`),
      });
    }
    const first = await t.gql<{ createDatasetVersion: { id: string; number: number; itemCount: number; labelledCount: number; dataset: { id: string } } }>(
      CREATE_VERSION,
      { datasetId, items },
    );
    expect(first.errors).toBeUndefined();
    const version = first.data!.createDatasetVersion;
    expect(version.id).toMatch(/^[0-9a-f]{64}$/);
    expect(version).toMatchObject({ number: 1, itemCount: 2, labelledCount: 2, dataset: { id: datasetId } });

    const again = await t.gql<{ createDatasetVersion: { id: string; number: number } }>(CREATE_VERSION, { datasetId, items });
    expect(again.data!.createDatasetVersion).toEqual(expect.objectContaining({ id: version.id, number: 1 }));

    const read = await t.gql<{ dataset: { versionCount: number; versions: { edges: { node: { id: string; items: { totalCount: number; edges: { node: { width: number; height: number; bands: number; label: { key: string } | null } }[] } } }[] } } }>(
      `query($id: ID!) { dataset(id: $id) { versionCount versions { edges { node { id items { totalCount edges { node { width height bands label { key } } } } } } } } }`,
      { id: datasetId },
    );
    expect(read.errors).toBeUndefined();
    expect(read.data!.dataset.versionCount).toBe(1);
    const node = read.data!.dataset.versions.edges[0]!.node;
    expect(node.id).toBe(version.id);
    expect(node.items.totalCount).toBe(2);
    expect(node.items.edges[0]!.node).toMatchObject({ width: 256, height: 256, bands: 3, label: { key: expect.stringContaining('/objects/') } });
  });

  it('reports an upload as pending until its bytes arrive, then uploaded', async () => {
    const bytes = await levir('A');
    const created = await t.gql<{ createUpload: { id: string; url: string; headers: { name: string; value: string }[]; status: string } }>(
      `mutation($input: CreateUploadInput!) { createUpload(input: $input) { id url status headers { name value } } }`,
      { input: { filename: 'a.png', contentType: 'image/png', byteSize: bytes.length } },
    );
    const upload = created.data!.createUpload;
    const status = async () => (await t.gql<{ upload: { status: string } }>(`query($id: ID!) { upload(id: $id) { status } }`, { id: upload.id })).data!.upload.status;
    expect(await status()).toBe('PENDING');
    const headers = Object.fromEntries(upload.headers.map((h) => [h.name, h.value]));
    expect((await fetch(upload.url, { method: 'PUT', headers, body: bytes })).ok).toBe(true);
    expect(await status()).toBe('UPLOADED');
  });

  it('refuses a PUT with the wrong size or type, or a tampered signature, and keeps nothing', async () => {
    const bytes = await levir('A');
    const created = await t.gql<{ createUpload: { id: string; url: string; headers: { name: string; value: string }[] } }>(
      `mutation($input: CreateUploadInput!) { createUpload(input: $input) { id url headers { name value } } }`,
      { input: { filename: 'a.png', contentType: 'image/png', byteSize: bytes.length } },
    );
    const { url, headers: list } = created.data!.createUpload;
    const headers = Object.fromEntries(list.map((h) => [h.name, h.value]));
    const shorter = await fetch(url, { method: 'PUT', headers: { ...headers, 'content-type': 'image/png' }, body: bytes.subarray(0, 100) }).catch(() => null);
    expect(shorter === null || !shorter.ok).toBe(true);
    const wrongType = await fetch(url, { method: 'PUT', headers: { ...headers, 'content-type': 'image/jpeg' }, body: bytes });
    expect(wrongType.ok).toBe(false);
    const tampered = new URL(url);
    if (tampered.searchParams.has('sig')) tampered.searchParams.set('sig', 'A'.repeat(43));
    else tampered.searchParams.set('X-Amz-Signature', '0'.repeat(64));
    expect((await fetch(tampered, { method: 'PUT', headers, body: bytes })).status).toBe(403);
    const status = await t.gql<{ upload: { status: string } }>(`query($id: ID!) { upload(id: $id) { status } }`, { id: created.data!.createUpload.id });
    expect(status.data!.upload.status).toBe('PENDING');
  });

  it('refuses bad createUpload input with BAD_USER_INPUT naming the field', async () => {
    const cases = [
      { filename: '../etc/passwd', contentType: 'image/png', byteSize: 10, field: 'filename' },
      { filename: 'a.exe', contentType: 'application/x-msdownload', byteSize: 10, field: 'contentType' },
      { filename: 'a.png', contentType: 'image/png', byteSize: 0, field: 'byteSize' },
    ];
    for (const { field, ...input } of cases) {
      const res = await t.gql(`mutation($input: CreateUploadInput!) { createUpload(input: $input) { id } }`, { input });
      expect(errorCodes(res)).toEqual(['BAD_USER_INPUT']);
      expect(res.errors![0]!.extensions!.field).toBe(field);
    }
  });

  it('refuses a version with mismatched sizes, a non-binary label, a non-image or missing bytes, writing nothing', async () => {
    const datasetId = await createDataset('bad-inputs');
    const before = await uploadFile(t, await levir('A'), 'a.png');
    const after = await uploadFile(t, await levir('B'), 'b.png');
    const small = await uploadFile(t, png(64, 64, () => [10, 20, 30]), 'small.png');
    const greyLabel = await uploadFile(t, png(256, 256, (x) => [x % 256, x % 256, x % 256]), 'grey.png');
    const text = await uploadFile(t, Buffer.from('this is not an image at all'), 'notes.png');
    const pending = (
      await t.gql<{ createUpload: { id: string } }>(`mutation { createUpload(input: {filename: "p.png", contentType: "image/png", byteSize: 1000}) { id } }`)
    ).data!.createUpload.id;

    const attempts: { items: unknown[]; message: RegExp; field: string }[] = [
      { items: [{ before, after: small }], message: /256×256 but after is 64×64/, field: 'items[0].after' },
      { items: [{ before, after, label: greyLabel }], message: /label is not binary/, field: 'items[0].label' },
      { items: [{ before, after: text }], message: /not a PNG, JPEG or TIFF/, field: 'items[0].after' },
      { items: [{ before, after }, { before: pending, after }], message: /has no bytes yet/, field: 'items[1].before' },
      { items: [], message: /at least one item/, field: 'items' },
    ];
    for (const attempt of attempts) {
      const res = await t.gql(CREATE_VERSION, { datasetId, items: attempt.items });
      expect(errorCodes(res)).toEqual(['BAD_USER_INPUT']);
      expect(res.errors![0]!.message).toMatch(attempt.message);
      expect(res.errors![0]!.extensions!.field).toBe(attempt.field);
    }
    const dataset = await t.gql<{ dataset: { versionCount: number; versions: { totalCount: number } } }>(
      `query($id: ID!) { dataset(id: $id) { versionCount versions { totalCount } } }`,
      { id: datasetId },
    );
    expect(dataset.data!.dataset).toEqual({ versionCount: 0, versions: { totalCount: 0 } });
  });

  it('answers unknown ids with NOT_FOUND and malformed cursors with BAD_USER_INPUT', async () => {
    expect(errorCodes(await t.gql(`{ dataset(id: "00000000-0000-4000-8000-000000000000") { id } }`))).toEqual(['NOT_FOUND']);
    expect(errorCodes(await t.gql(`{ dataset(id: "not-a-uuid") { id } }`))).toEqual(['NOT_FOUND']);
    expect(errorCodes(await t.gql(`{ datasetVersion(id: "abc") { id } }`))).toEqual(['NOT_FOUND']);
    expect(errorCodes(await t.gql(`{ job(id: "00000000-0000-4000-8000-000000000000") { id } }`))).toEqual(['NOT_FOUND']);
    expect(errorCodes(await t.gql(`{ trainingRun(id: "nope") { id } }`))).toEqual(['NOT_FOUND']);
    const cursor = await t.gql(`{ datasets(after: "garbage!") { totalCount } }`);
    expect(errorCodes(cursor)).toEqual(['BAD_USER_INPUT']);
    expect(cursor.errors![0]!.message).toMatch(/after/);
    expect(errorCodes(await t.gql(`{ datasets(first: 1000) { totalCount } }`))).toEqual(['BAD_USER_INPUT']);
  });

  it('pages datasets with cursors, newest first, without gaps or repeats', async () => {
    const token = await t.token(['admin'], 'pager');
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await createDataset(`page-${i}`, token));
    const seen: string[] = [];
    let after: string | null = null;
    for (;;) {
      const res: Awaited<ReturnType<typeof t.gql<{ datasets: { edges: { node: { id: string } }[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } } }>>> = await t.gql(
        `query($after: String) { datasets(first: 2, after: $after) { edges { node { id } } pageInfo { hasNextPage endCursor } } }`,
        { after },
        token,
      );
      seen.push(...res.data!.datasets.edges.map((e) => e.node.id));
      if (!res.data!.datasets.pageInfo.hasNextPage) break;
      after = res.data!.datasets.pageInfo.endCursor;
    }
    expect(seen).toEqual([...ids].reverse());
  });

  it("keeps tenants apart: another tenant's dataset reads as not found", async () => {
    const ownerToken = await t.token(['admin'], 'tenant-a');
    const otherToken = await t.token(['admin'], 'tenant-b');
    const id = await createDataset('private', ownerToken);
    const res = await t.gql(`query($id: ID!) { dataset(id: $id) { id name } }`, { id }, otherToken);
    expect(errorCodes(res)).toEqual(['NOT_FOUND']);
    const list = await t.gql<{ datasets: { totalCount: number } }>(`{ datasets { totalCount } }`, {}, otherToken);
    expect(list.data!.datasets.totalCount).toBe(0);
  });

  it('refuses a second dataset with the same name as CONFLICT', async () => {
    await createDataset('twin');
    const res = await t.gql(`mutation { createDataset(input: {name: "twin"}) { id } }`);
    expect(errorCodes(res)).toEqual(['CONFLICT']);
  });
});
