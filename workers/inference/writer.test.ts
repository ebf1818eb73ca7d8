import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { geoTiffTagsForEpsg, readGeoReference } from '../../lib/imaging/georef.js';
import { memoryRaster, openRaster } from '../../lib/imaging/raster-source.js';
import { validateModelContract } from '../../lib/model/contract.js';
import { fakeOnnxModel } from '../../lib/model/testing.js';
import { createObjectStore, type ObjectStore } from '../../lib/storage/index.js';
import { processPair, type ModelRunner } from './processor.js';
import { PairOutputs, type ResultMeta } from './writer.js';

const contract = validateModelContract(fakeOnnxModel());
let dir: string;
let store: ObjectStore;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lcd-writer-'));
  store = createObjectStore({ url: undefined, localDir: join(dir, 'objects'), publicBaseUrl: 'http://127.0.0.1:1', signingSecret: randomBytes(32) });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Changed where band 0 got brighter (a pixel-wise stand-in for the model). */
const model: ModelRunner = {
  contract,
  async run(before, after, n, h, w) {
    const plane = h * w;
    const logits = new Float32Array(n * plane);
    for (let k = 0; k < n; k++) for (let i = 0; i < plane; i++) logits[k * plane + i] = 10 * (after[k * 3 * plane + i]! - before[k * 3 * plane + i]! - 0.4);
    return { logits, embedding: new Float32Array(n * contract.embeddingDim) };
  },
};

const meta = (jobId: string): ResultMeta => ({
  jobId,
  pairIndex: 0,
  modelName: 'm',
  modelVersionId: 'v',
  threshold: 0.5,
  minRegionPixels: 1,
  simplifyTolerance: 0,
  model: { datasetVersion: null, configHash: null, embeddingDim: 32 },
});

async function run(memoryPixels: number, jobId: string) {
  const W = 70;
  const H = 50;
  const georef = readGeoReference(geoTiffTagsForEpsg(32633, 'projected', [500_000, 0.5, 0, 5_000_000, 0, -0.5]));
  const before = new Float32Array(W * H * 3).fill(100);
  const after = new Float32Array(W * H * 3).fill(100);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) if ((x - 30) ** 2 + (y - 25) ** 2 < 200 && (x - 30) ** 2 + (y - 25) ** 2 > 30) after[(y * W + x) * 3] = 220;
  const info = { width: W, height: H, bands: 3, sampleType: 'uint8' as const, georef, format: 'tiff' as const };
  const outputs = await PairOutputs.open(store, join(dir, 'tmp'), `results/acme/${jobId}/0`, { width: W, height: H, georef }, { memoryPixels });
  try {
    const outcome = await processPair(memoryRaster(info, before), memoryRaster(info, after), model, outputs, { threshold: 0.5, batchSize: 4, minRegionPixels: 1, simplifyTolerance: 0 });
    return await outputs.finish(outcome, meta(jobId), {});
  } finally {
    await outputs.dispose();
  }
}

describe('PairOutputs', () => {
  it('writes the same outputs in memory and through temporary files', async () => {
    const inMemory = await run(Number.MAX_SAFE_INTEGER, 'memory');
    const streamed = await run(0, 'streamed');
    expect(streamed.stats).toEqual(inMemory.stats);
    expect(inMemory.stats.regions).toBe(1);
    expect(inMemory.stats.areaSquareMeters).toBeCloseTo(inMemory.stats.changedPixels * 0.25, 9);
    for (const name of ['mask', 'probability'] as const) {
      const a = PNG.sync.read(await store.get(inMemory.keys[name]));
      const b = PNG.sync.read(await store.get(streamed.keys[name]));
      expect(Buffer.compare(a.data, b.data), name).toBe(0);
    }
    const polygons = async (key: string) => JSON.parse((await store.get(key)).toString('utf8')) as { features: unknown[]; lcd: Record<string, unknown>; crs: unknown };
    const [a, b] = [await polygons(inMemory.keys.polygons), await polygons(streamed.keys.polygons)];
    expect(b.features).toEqual(a.features);
    expect(a.features).toHaveLength(1);
    expect(a.crs).toEqual({ type: 'name', properties: { name: 'urn:ogc:def:crs:EPSG::32633' } });
    expect(a.lcd).toMatchObject({ coordinates: 'map', regions: 1, crs: 'EPSG:32633' });
    for (const key of [inMemory.keys.maskGeoTiff!, streamed.keys.maskGeoTiff!]) {
      const tiff = await openRaster({ kind: 'bytes', bytes: await store.get(key) });
      expect(tiff.info.georef?.transform).toEqual([500_000, 0.5, 0, 5_000_000, 0, -0.5]);
      const rows = await tiff.readRows(50);
      expect(rows.filter((v) => v === 255).length).toBe(inMemory.stats.changedPixels);
    }
    const stats = JSON.parse((await store.get(streamed.keys.stats)).toString('utf8')) as { regionsBeforeFilter: number; jobId: string };
    expect(stats).toMatchObject({ regionsBeforeFilter: 1, jobId: 'streamed' });
  });
});
