import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalObjectStore } from '../../lib/storage/index.js';
import { DatasetCache, DatasetUnavailableError } from './dataset-cache.js';

let dir: string;
let store: LocalObjectStore;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lcd-dataset-cache-'));
  store = new LocalObjectStore({ root: join(dir, 'objects'), publicBaseUrl: 'http://127.0.0.1:1', signingSecret: Buffer.alloc(32, 5) });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function version(files: Buffer[], label: boolean) {
  const stored = [];
  for (const bytes of files) {
    const key = `datasets/t/objects/${sha(bytes)}`;
    await store.put(key, bytes);
    stored.push({ sha256: sha(bytes), size: bytes.length, key });
  }
  const manifest = { datasetId: randomUUID(), items: [{ before: stored[0], after: stored[1], label: label ? stored[2] : null, width: 1, height: 1, bands: 3 }] };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const id = sha(bytes);
  await store.put(`m/${id}.json`, bytes);
  return { id, key: `m/${id}.json`, stored };
}

describe('dataset cache', () => {
  it("writes the trainer's manifest over content-addressed files once, and reuses it", async () => {
    const cache = new DatasetCache(store, join(dir, 'cache'));
    const v = await version([Buffer.from('before'), Buffer.from('after'), Buffer.from('label')], true);
    const [a, b] = await Promise.all([cache.materialise(v.id, v.key), cache.materialise(v.id, v.key)]);
    expect(a).toBe(b);
    expect(a).toMatchObject({ items: 1, reused: false, downloaded: 3 });
    const manifest = JSON.parse(await readFile(a.manifestPath, 'utf8')) as { datasetVersion: string; items: { before: string; label: string | null }[] };
    expect(manifest.datasetVersion).toBe(v.id);
    expect(await readFile(join(dirname(a.manifestPath), manifest.items[0]!.before), 'utf8')).toBe('before');
    expect(await cache.materialise(v.id, v.key)).toMatchObject({ reused: true, downloaded: 0 });
    // Another version sharing files downloads only what is new; a missing label stays null for the trainer to refuse.
    const w = await version([Buffer.from('before'), Buffer.from('other after')], false);
    const second = await cache.materialise(w.id, w.key);
    expect(second.downloaded).toBe(1);
    expect((JSON.parse(await readFile(second.manifestPath, 'utf8')) as { items: { label: null }[] }).items[0]!.label).toBeNull();
  });

  it('refuses a file whose bytes do not match its hash', async () => {
    const cache = new DatasetCache(store, join(dir, 'cache-2'));
    const v = await version([Buffer.from('b2'), Buffer.from('a2'), Buffer.from('l2')], true);
    await store.put(v.stored[1]!.key, Buffer.from('tampered'));
    await expect(cache.materialise(v.id, v.key)).rejects.toBeInstanceOf(DatasetUnavailableError);
    await expect(cache.materialise(v.id, v.key)).rejects.toThrow(/does not match its sha256/);
  });
});
