// One contract, both backends: the local folder always, S3 when TEST_STORAGE_URL names a bucket (CI starts Swift's S3
// layer with scripts/ci/start-swift.sh, which checks SigV4 signatures like AWS does).
import { randomBytes, randomUUID } from 'node:crypto';
import { readdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  createLocalSignedUrlHandler,
  createObjectStore,
  InvalidObjectKeyError,
  LocalObjectStore,
  ObjectNotFoundError,
  ObjectSizeMismatchError,
  type CreateObjectStoreOptions,
  type NodeRequestHandler,
  type ObjectStore,
  type ObjectStoreConfig,
} from './index.js';

const TEST_STORAGE_URL = process.env.TEST_STORAGE_URL;
const MiB = 1024 * 1024;

interface Harness {
  store: ObjectStore;
  /** Another store on the same backend, e.g. with a past clock to mint expired URLs. */
  variant(options: CreateObjectStoreOptions, config?: Partial<ObjectStoreConfig>): ObjectStore;
  /** Status an S3-style server or the local handler gives a refused presigned request. */
  refusedStatus: { badSignature: number; wrongSize: number; wrongType: number };
  close(): Promise<void>;
}

interface Backend {
  name: 'local' | 's3';
  skip: boolean;
  start(): Promise<Harness>;
}

interface LocalHarness extends Harness {
  store: LocalObjectStore;
  root: string;
  baseUrl: string;
}

async function startLocal(): Promise<LocalHarness> {
  const root = await mkdtemp(join(tmpdir(), 'lcd-storage-contract-'));
  const mounted: { handler?: NodeRequestHandler } = {};
  // The handler is mounted like the gateway mounts it: first in line, everything else falls through.
  const server: Server = createServer((req, res) => {
    void (async () => {
      if (mounted.handler && (await mounted.handler(req, res))) return;
      res.statusCode = 418;
      res.end('not a storage path');
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const config: ObjectStoreConfig = { localDir: root, publicBaseUrl: baseUrl, signingSecret: randomBytes(32) };
  const store = createObjectStore(config);
  if (!(store instanceof LocalObjectStore)) throw new Error('expected the local backend without STORAGE_URL');
  mounted.handler = createLocalSignedUrlHandler(store);
  return {
    store,
    root,
    baseUrl,
    variant: (options, overrides = {}) => createObjectStore({ ...config, ...overrides }, options),
    refusedStatus: { badSignature: 403, wrongSize: 400, wrongType: 400 },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(root, { recursive: true, force: true });
    },
  };
}

async function startS3(): Promise<Harness> {
  const config: ObjectStoreConfig = {
    url: TEST_STORAGE_URL,
    localDir: '/nonexistent',
    publicBaseUrl: 'http://unused.invalid',
    signingSecret: randomBytes(32),
  };
  const store = createObjectStore(config);
  const variants: ObjectStore[] = [];
  return {
    store,
    variant: (options, overrides = {}) => {
      const variant = createObjectStore({ ...config, ...overrides }, options);
      variants.push(variant);
      return variant;
    },
    // S3 refuses any request whose signed headers differ: 403 SignatureDoesNotMatch.
    refusedStatus: { badSignature: 403, wrongSize: 403, wrongType: 403 },
    close: async () => {
      await Promise.all([store, ...variants].map((s) => s.close()));
    },
  };
}

const backends: Backend[] = [
  { name: 'local', skip: false, start: startLocal },
  { name: 's3', skip: !TEST_STORAGE_URL, start: startS3 },
];

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of iterable) items.push(item);
  return items;
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

/** `total` pseudo-random bytes in odd-sized chunks, as a network stream delivers them. */
function chunkedStream(bytes: Buffer): Readable {
  return Readable.from(
    (function* () {
      for (let offset = 0; offset < bytes.length; offset += 65_537) yield bytes.subarray(offset, offset + 65_537);
    })(),
  );
}

function withQueryParam(url: string, name: string, change: (value: string) => string): string {
  const parsed = new URL(url);
  const value = parsed.searchParams.get(name);
  if (value === null) throw new Error(`${name} missing from ${url}`);
  parsed.searchParams.set(name, change(value));
  return parsed.toString();
}

function flipLastChar(value: string): string {
  const last = value.at(-1);
  return value.slice(0, -1) + (last === 'A' || last === '0' ? 'B' : last === 'a' ? 'b' : last === 'B' ? 'C' : '0');
}

async function errorCode(response: Response): Promise<string | undefined> {
  const body = (await response.json()) as { error?: { code?: string } };
  return body.error?.code;
}

for (const backend of backends) {
  describe.skipIf(backend.skip)(`ObjectStore contract: ${backend.name}`, () => {
    let h: Harness;
    const prefixes: string[] = [];

    beforeAll(async () => {
      h = await backend.start();
    });

    afterAll(async () => {
      await h?.close();
    });

    /** A fresh key prefix per test; everything under it is deleted after the test. */
    function scope(): string {
      const prefix = `contract/${randomUUID()}/`;
      prefixes.push(prefix);
      return prefix;
    }

    afterEach(async () => {
      for (const prefix of prefixes.splice(0)) {
        for (const { key } of await collect(h.store.list(prefix))) await h.store.delete(key);
        expect(await collect(h.store.list(prefix))).toEqual([]);
      }
    });

    it('puts, gets, heads, lists and deletes an object', async () => {
      const p = scope();
      const bytes = randomBytes(3000);
      const written = await h.store.put(`${p}mask.png`, bytes, { contentType: 'image/png' });
      expect(written.size).toBe(3000);
      expect(written.etag).toMatch(/^[0-9a-f]{32}$/);

      expect((await h.store.get(`${p}mask.png`)).equals(bytes)).toBe(true);
      expect((await readAll(await h.store.getStream(`${p}mask.png`))).equals(bytes)).toBe(true);
      const info = await h.store.head(`${p}mask.png`);
      expect(info).toMatchObject({ size: 3000, contentType: 'image/png', etag: written.etag });
      expect(info?.lastModified).toBeInstanceOf(Date);
      expect(await collect(h.store.list(p))).toEqual([{ key: `${p}mask.png`, size: 3000 }]);

      await h.store.delete(`${p}mask.png`);
      expect(await h.store.head(`${p}mask.png`)).toBeNull();
      expect(await collect(h.store.list(p))).toEqual([]);
    });

    it('defaults the content type and stores empty objects', async () => {
      const p = scope();
      await h.store.put(`${p}empty`, Buffer.alloc(0));
      expect(await h.store.get(`${p}empty`)).toEqual(Buffer.alloc(0));
      expect(await h.store.head(`${p}empty`)).toMatchObject({ size: 0, contentType: 'application/octet-stream' });
      await h.store.put(`${p}u8`, new Uint8Array([1, 2, 3]));
      expect([...(await h.store.get(`${p}u8`))]).toEqual([1, 2, 3]);
    });

    it('reports a missing key with ObjectNotFoundError naming it; head is null; delete is idempotent', async () => {
      const key = `${scope()}missing.bin`;
      const error = await h.store.get(key).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(ObjectNotFoundError);
      expect(error).toMatchObject({ code: 'OBJECT_NOT_FOUND', key });
      expect((error as Error).message).toContain(key);
      await expect(h.store.getStream(key)).rejects.toBeInstanceOf(ObjectNotFoundError);
      expect(await h.store.head(key)).toBeNull();
      await expect(h.store.delete(key)).resolves.toBeUndefined();
    });

    it('overwrites bytes and content type together', async () => {
      const key = `${scope()}result.json`;
      await h.store.put(key, Buffer.from('{"v":1}'), { contentType: 'application/json' });
      await h.store.put(key, Buffer.from('second version, longer'), { contentType: 'text/plain; charset=utf-8' });
      expect((await h.store.get(key)).toString()).toBe('second version, longer');
      expect(await h.store.head(key)).toMatchObject({ size: 22, contentType: 'text/plain; charset=utf-8' });
      expect(await collect(h.store.list(key))).toEqual([{ key, size: 22 }]);
    });

    it('streams uploads of unknown length in and downloads out (multipart on S3)', async () => {
      const key = `${scope()}big.tif`;
      const bytes = randomBytes(12 * MiB + 123); // two 8 MiB parts on S3
      const written = await h.store.put(key, chunkedStream(bytes), { contentType: 'image/tiff' });
      expect(written.size).toBe(bytes.length);
      expect(await h.store.head(key)).toMatchObject({ size: bytes.length, contentType: 'image/tiff' });
      expect((await readAll(await h.store.getStream(key))).equals(bytes)).toBe(true);
      const small = await h.store.put(`${key}.small`, chunkedStream(Buffer.from('tiny')));
      expect(small.size).toBe(4);
      expect((await h.store.get(`${key}.small`)).toString()).toBe('tiny');
    });

    it('lists by string prefix in key order, with keys that are also "folders"', async () => {
      const p = scope();
      const keys = [`${p}b/c`, `${p}a`, `${p}b-c`, `${p}ab`, `${p}b`, `${p}b.c`, `${p}b/d/e`];
      for (const [i, key] of keys.entries()) await h.store.put(key, Buffer.alloc(i + 1));
      const sorted = [...keys].sort();
      expect(sorted).toEqual([`${p}a`, `${p}ab`, `${p}b`, `${p}b-c`, `${p}b.c`, `${p}b/c`, `${p}b/d/e`]);
      expect(await collect(h.store.list(p))).toEqual(sorted.map((key) => ({ key, size: keys.indexOf(key) + 1 })));
      expect((await collect(h.store.list(`${p}a`))).map((o) => o.key)).toEqual([`${p}a`, `${p}ab`]);
      expect((await collect(h.store.list(`${p}b/`))).map((o) => o.key)).toEqual([`${p}b/c`, `${p}b/d/e`]);
      expect((await collect(h.store.list(`${p}b/d`))).map((o) => o.key)).toEqual([`${p}b/d/e`]);
      expect(await collect(h.store.list(`${p}zzz`))).toEqual([]);
      // Several pages (S3 ListObjectsV2 continuation); the local backend has no pages and must agree.
      const paged = h.variant({ listPageSize: 2 });
      expect((await collect(paged.list(p))).map((o) => o.key)).toEqual(sorted);
    });

    it('refuses unsafe keys with InvalidObjectKeyError before touching storage', async () => {
      const p = scope();
      const bad = ['', '/abs', 'a//b', '../x', 'a/../b', 'a/./b', 'a/..', 'dir/', 'a b', 'a\nb', 'é', 'a~obj', 'a?b', 'a%2e', 'x'.repeat(1025)];
      for (const key of bad) {
        await expect(h.store.put(key, Buffer.from('x')), JSON.stringify(key)).rejects.toBeInstanceOf(InvalidObjectKeyError);
        await expect(h.store.get(key)).rejects.toMatchObject({ code: 'INVALID_OBJECT_KEY' });
        await expect(h.store.head(key)).rejects.toBeInstanceOf(InvalidObjectKeyError);
        await expect(h.store.delete(key)).rejects.toBeInstanceOf(InvalidObjectKeyError);
        await expect(
          h.store.presignPut(key, { contentType: 'image/png', byteSize: 1, expiresInSeconds: 60 }),
        ).rejects.toBeInstanceOf(InvalidObjectKeyError);
      }
      await expect(collect(h.store.list('../'))).rejects.toBeInstanceOf(InvalidObjectKeyError);
      // The allowed characters all round-trip, including through a signed URL.
      const odd = `${p}date=2024-01-01/Tile_0.5-x.bin`;
      await h.store.put(odd, Buffer.from('ok'));
      expect((await h.store.get(odd)).toString()).toBe('ok');
      const { url } = await h.store.presignGet(odd, { expiresInSeconds: 60 });
      expect(await (await fetch(url)).text()).toBe('ok');
    });

    it('never shows a reader a partially written object', async () => {
      const key = `${scope()}model.onnx`;
      const versions = [Buffer.alloc(2 * MiB, 'a'), Buffer.alloc(3 * MiB, 'b')];
      await h.store.put(key, versions[0]!);
      let writing = true;
      let reads = 0;
      const writer = (async () => {
        try {
          for (let i = 1; i <= 6; i++) await h.store.put(key, chunkedStream(versions[i % 2]!));
        } finally {
          writing = false;
        }
      })();
      const reader = async (useStream: boolean): Promise<void> => {
        do {
          const got = useStream ? await readAll(await h.store.getStream(key)) : await h.store.get(key);
          reads++;
          expect(got.equals(versions[0]!) || got.equals(versions[1]!)).toBe(true);
        } while (writing);
      };
      await Promise.all([writer, reader(false), reader(true), reader(false)]);
      expect(reads).toBeGreaterThan(3);
    });

    it('presigned PUT takes the exact signed upload', async () => {
      const key = `${scope()}upload/before.png`;
      const bytes = randomBytes(10_000);
      const signed = await h.store.presignPut(key, { contentType: 'image/png', byteSize: bytes.length, expiresInSeconds: 300 });
      expect(signed.method).toBe('PUT');
      expect(signed.headers).toEqual({ 'Content-Type': 'image/png', 'Content-Length': '10000' });
      expect(signed.expiresAt.getTime()).toBeGreaterThan(Date.now() + 290_000);
      const response = await fetch(signed.url, { method: 'PUT', headers: signed.headers, body: bytes });
      expect(response.status, await response.clone().text()).toBe(200);
      expect((await h.store.get(key)).equals(bytes)).toBe(true);
      expect(await h.store.head(key)).toMatchObject({ size: 10_000, contentType: 'image/png' });
    });

    it('presigned PUT refuses a body of another size', async () => {
      const key = `${scope()}upload/size.png`;
      const signed = await h.store.presignPut(key, { contentType: 'image/png', byteSize: 10, expiresInSeconds: 300 });
      for (const size of [11, 9, 0]) {
        const response = await fetch(signed.url, {
          method: 'PUT',
          headers: { 'Content-Type': 'image/png' }, // fetch sends the true Content-Length
          body: Buffer.alloc(size, 1),
        });
        expect(response.status).toBe(h.refusedStatus.wrongSize);
        if (backend.name === 'local') expect(await errorCode(response)).toBe('SIZE_MISMATCH');
      }
      expect(await h.store.head(key)).toBeNull();
    });

    it('presigned PUT refuses another content type', async () => {
      const key = `${scope()}upload/type.png`;
      const signed = await h.store.presignPut(key, { contentType: 'image/png', byteSize: 4, expiresInSeconds: 300 });
      for (const contentType of ['text/html', 'image/png; charset=utf-8']) {
        const response = await fetch(signed.url, { method: 'PUT', headers: { 'Content-Type': contentType }, body: 'evil' });
        expect(response.status).toBe(h.refusedStatus.wrongType);
        if (backend.name === 'local') expect(await errorCode(response)).toBe('CONTENT_TYPE_MISMATCH');
      }
      expect(await h.store.head(key)).toBeNull();
    });

    it('refuses expired URLs', async () => {
      const key = `${scope()}old.png`;
      await h.store.put(key, Buffer.from('old'));
      const anHourAgo = h.variant({ clock: () => new Date(Date.now() - 3600_000) });
      const put = await anHourAgo.presignPut(key, { contentType: 'image/png', byteSize: 3, expiresInSeconds: 60 });
      const get = await anHourAgo.presignGet(key, { expiresInSeconds: 60 });
      expect(put.expiresAt.getTime()).toBeLessThan(Date.now());
      const putResponse = await fetch(put.url, { method: 'PUT', headers: put.headers, body: 'new' });
      expect(putResponse.status).toBe(403);
      const getResponse = await fetch(get.url);
      expect(getResponse.status).toBe(403);
      if (backend.name === 'local') {
        expect(await errorCode(putResponse)).toBe('URL_EXPIRED');
        expect(await errorCode(getResponse)).toBe('URL_EXPIRED');
      } else {
        expect(await putResponse.text()).toMatch(/expired/i);
      }
      expect((await h.store.get(key)).toString()).toBe('old');
    });

    it('refuses tampered signatures and parameters', async () => {
      const p = scope();
      const key = `${p}tamper.png`;
      const signed = await h.store.presignPut(key, { contentType: 'image/png', byteSize: 3, expiresInSeconds: 300 });
      const sigParam = backend.name === 'local' ? 'sig' : 'X-Amz-Signature';
      const expParam = backend.name === 'local' ? 'exp' : 'X-Amz-Expires';
      const tampered = [
        withQueryParam(signed.url, sigParam, flipLastChar),
        withQueryParam(signed.url, expParam, (v) => String(Number(v) + 3600)),
        signed.url.replace('tamper.png', 'other.png'),
      ];
      for (const url of tampered) {
        const response = await fetch(url, { method: 'PUT', headers: signed.headers, body: 'abc' });
        expect(response.status, url).toBe(h.refusedStatus.badSignature);
        if (backend.name === 'local') expect(await errorCode(response)).toBe('SIGNATURE_INVALID');
        else expect(await response.text()).toContain('SignatureDoesNotMatch');
      }
      expect(await collect(h.store.list(p))).toEqual([]);

      await h.store.put(key, Buffer.from('abc'));
      const get = await h.store.presignGet(key, { expiresInSeconds: 300 });
      const response = await fetch(withQueryParam(get.url, sigParam, flipLastChar));
      expect(response.status).toBe(h.refusedStatus.badSignature);
    });

    it('presigned GET downloads the object with its type and file name', async () => {
      const key = `${scope()}results/probability.tif`;
      const bytes = randomBytes(50_000);
      await h.store.put(key, bytes, { contentType: 'image/tiff' });
      const signed = await h.store.presignGet(key, { expiresInSeconds: 120, filename: 'change "map" é.tif' });
      expect(signed.expiresAt.getTime()).toBeGreaterThan(Date.now() + 110_000);
      const response = await fetch(signed.url);
      expect(response.status).toBe(200);
      expect(response.headers.get('content-type')).toBe('image/tiff');
      const disposition = response.headers.get('content-disposition') ?? '';
      expect(disposition).toContain('attachment');
      expect(disposition).toContain("filename*=UTF-8''change%20%22map%22%20%C3%A9.tif");
      expect(Buffer.from(await response.arrayBuffer()).equals(bytes)).toBe(true);

      const plain = await h.store.presignGet(key, { expiresInSeconds: 120 });
      expect((await fetch(plain.url)).headers.get('content-disposition')).toBeNull();
      const missing = await h.store.presignGet(`${key}.missing`, { expiresInSeconds: 120 });
      expect((await fetch(missing.url)).status).toBe(404);
    });

    it('validates presign options', async () => {
      const key = `${scope()}x.png`;
      const base = { contentType: 'image/png', byteSize: 1, expiresInSeconds: 60 };
      for (const bad of [
        { ...base, contentType: 'not a type' },
        { ...base, byteSize: -1 },
        { ...base, byteSize: 1.5 },
        { ...base, expiresInSeconds: 0 },
        { ...base, expiresInSeconds: 8 * 24 * 3600 },
      ]) {
        await expect(h.store.presignPut(key, bad)).rejects.toMatchObject({ code: 'INVALID_STORAGE_ARGUMENT' });
      }
      await expect(h.store.presignGet(key, { expiresInSeconds: 60, filename: 'a\r\nSet-Cookie: x' })).rejects.toMatchObject({
        code: 'INVALID_STORAGE_ARGUMENT',
      });
      await expect(h.store.put(key, Buffer.from('x'), { contentType: 'text/html\r\nX: y' })).rejects.toMatchObject({
        code: 'INVALID_STORAGE_ARGUMENT',
      });
    });

    it('is healthy', async () => {
      expect(await h.store.isHealthy()).toBe(true);
    });

    it.runIf(backend.name === 's3')('is refused by the server when signed with a wrong secret (SignatureDoesNotMatch)', async () => {
      const wrong = new URL(TEST_STORAGE_URL!);
      wrong.password = `${decodeURIComponent(wrong.password)}-wrong`;
      const impostor = h.variant({}, { url: wrong.toString() });
      const key = `${scope()}impostor.bin`;
      await expect(impostor.put(key, Buffer.from('x'))).rejects.toMatchObject({ name: 'SignatureDoesNotMatch' });
      await expect(impostor.get(key)).rejects.toMatchObject({ name: 'SignatureDoesNotMatch' });
      expect(await impostor.isHealthy()).toBe(false);
      // A presigned URL from the wrong secret is refused too.
      const signed = await impostor.presignPut(key, { contentType: 'image/png', byteSize: 1, expiresInSeconds: 60 });
      const response = await fetch(signed.url, { method: 'PUT', headers: signed.headers, body: 'x' });
      expect(response.status).toBe(403);
      expect(await response.text()).toContain('SignatureDoesNotMatch');
      expect(await h.store.head(key)).toBeNull();
    });
  });
}

// What only the local backend has: the platform's own signed-URL endpoint and its file layout.
describe('local signed URL handler', () => {
  let h: LocalHarness;

  beforeAll(async () => {
    h = await startLocal();
  });

  afterAll(async () => {
    await h?.close();
  });

  async function tempFiles(): Promise<string[]> {
    const entries = await readdir(h.root, { recursive: true });
    return entries.filter((name) => name.includes('.~tmp-'));
  }

  it('answers only under its prefix', async () => {
    expect(await (await fetch(`${h.baseUrl}/graphql`)).text()).toBe('not a storage path');
    expect((await fetch(`${h.baseUrl}/storage-other/x`)).status).toBe(418);
  });

  it('names each refusal with a status and code', async () => {
    const key = `handler/${randomUUID()}/a.png`;
    const put = await h.store.presignPut(key, { contentType: 'image/png', byteSize: 2, expiresInSeconds: 60 });
    const get = await h.store.presignGet(key, { expiresInSeconds: 60 });

    const cases: { name: string; response: Promise<Response>; status: number; code: string }[] = [
      { name: 'unsigned', response: fetch(`${h.baseUrl}/storage/${key}`), status: 403, code: 'SIGNATURE_INVALID' },
      { name: 'missing object', response: fetch(get.url), status: 404, code: 'OBJECT_NOT_FOUND' },
      {
        name: 'GET on a PUT URL',
        response: fetch(put.url),
        status: 405,
        code: 'METHOD_NOT_ALLOWED',
      },
      {
        name: 'PUT on a GET URL',
        response: fetch(get.url, { method: 'PUT', headers: { 'Content-Type': 'image/png' }, body: 'xx' }),
        status: 405,
        code: 'METHOD_NOT_ALLOWED',
      },
      { name: 'DELETE', response: fetch(put.url, { method: 'DELETE' }), status: 405, code: 'METHOD_NOT_ALLOWED' },
      {
        name: 'bad key',
        response: fetch(`${h.baseUrl}/storage/a%20b?op=get&exp=1&sig=x`),
        status: 400,
        code: 'INVALID_OBJECT_KEY',
      },
    ];
    for (const c of cases) {
      const response = await c.response;
      expect(response.status, c.name).toBe(c.status);
      expect(response.headers.get('content-type'), c.name).toMatch(/^application\/json/);
      const body = (await response.json()) as { error: { code: string; message: string } };
      expect(body.error.code, c.name).toBe(c.code);
      expect(body.error.message.length, c.name).toBeGreaterThan(0);
    }
  });

  it('requires Content-Length on uploads (no chunked bodies)', async () => {
    const key = `handler/${randomUUID()}/chunked.bin`;
    const put = await h.store.presignPut(key, { contentType: 'application/octet-stream', byteSize: 4, expiresInSeconds: 60 });
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(put.url, { method: 'PUT', headers: { 'Content-Type': 'application/octet-stream' } }, (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      });
      req.on('error', reject);
      req.write('ab'); // no Content-Length: Node sends Transfer-Encoding: chunked
      req.end('cd');
    });
    expect(status).toBe(411);
    expect(await h.store.head(key)).toBeNull();
  });

  it('leaves nothing behind when an upload is cut off or runs over', async () => {
    const key = `handler/${randomUUID()}/cut.bin`;
    const put = await h.store.presignPut(key, { contentType: 'application/octet-stream', byteSize: 1 * MiB, expiresInSeconds: 60 });
    await new Promise<void>((resolve) => {
      const req = httpRequest(put.url, { method: 'PUT', headers: put.headers });
      req.on('error', () => resolve());
      req.write(Buffer.alloc(64 * 1024), () => setTimeout(() => req.destroy(), 50));
    });
    for (let i = 0; i < 100 && (await tempFiles()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await tempFiles()).toEqual([]);
    expect(await h.store.head(key)).toBeNull();

    // The store side of the same guarantee: a body longer than promised is refused and removed.
    await expect(
      h.store.write(key, chunkedStream(Buffer.alloc(200_000)), 'application/octet-stream', { exactBytes: 100_000 }),
    ).rejects.toBeInstanceOf(ObjectSizeMismatchError);
    expect(await tempFiles()).toEqual([]);
    expect(await h.store.head(key)).toBeNull();
  });

  it('serves downloads as inert attachments (nosniff, sandboxed)', async () => {
    const key = `handler/${randomUUID()}/page.html`;
    await h.store.put(key, Buffer.from('<script>alert(1)</script>'), { contentType: 'text/html' });
    const response = await fetch((await h.store.presignGet(key, { expiresInSeconds: 60 })).url);
    expect(response.headers.get('x-content-type-options')).toBe('nosniff');
    expect(response.headers.get('content-security-policy')).toContain('sandbox');
    await h.store.delete(key);
  });

  it('prunes folders a delete leaves empty', async () => {
    const id = randomUUID();
    await h.store.put(`prune/${id}/a/b/c.bin`, Buffer.from('x'));
    await h.store.put(`prune/${id}/keep.bin`, Buffer.from('y'));
    await h.store.delete(`prune/${id}/a/b/c.bin`);
    expect(await readdir(join(h.root, 'prune', id))).toEqual(['keep.bin~obj']);
    await h.store.delete(`prune/${id}/keep.bin`);
    expect(await readdir(h.root)).not.toContain('prune');
  });
});
