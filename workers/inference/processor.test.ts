import { describe, expect, it } from 'vitest';
import { geoTiffTagsForEpsg, readGeoReference } from '../../lib/imaging/georef.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeImage } from '../../lib/imaging/decode.js';
import { memoryRaster, openRaster, type RasterInfo, type RasterSource } from '../../lib/imaging/raster-source.js';
import { validateModelContract, type ModelContract } from '../../lib/model/contract.js';
import { CONTRACT_METADATA, fakeOnnxModel, sharedData } from '../../lib/model/testing.js';
import {
  blendWeights,
  PairInputError,
  planPair,
  planTiling,
  processPair,
  reflectIndex,
  sampledTileIndices,
  tilePositions,
  type ModelRunner,
  type RowSink,
} from './processor.js';

const contract = validateModelContract(fakeOnnxModel()); // 3 bands, tile 64, multiple 16, embedding 32

/** Changed where band 0 got brighter by more than ~20 levels: logit = 10 × (after − before − 0.4) in normalised units. */
function differenceModel(c: ModelContract = contract): ModelRunner & { calls: number[] } {
  const calls: number[] = [];
  return {
    contract: c,
    calls,
    async run(before, after, n, h, w) {
      calls.push(n);
      const plane = h * w;
      const logits = new Float32Array(n * plane);
      const embedding = new Float32Array(n * c.embeddingDim);
      for (let k = 0; k < n; k++) {
        for (let i = 0; i < plane; i++) {
          const d = after[k * c.bands * plane + i]! - before[k * c.bands * plane + i]!;
          logits[k * plane + i] = 10 * (d - 0.4);
          embedding[k * c.embeddingDim] += Math.abs(d) / plane;
        }
      }
      return { logits, embedding };
    },
  };
}

class CollectingSink implements RowSink {
  mask: Uint8Array;
  probability: Float32Array;
  nextRow = 0;
  constructor(readonly width: number, height: number) {
    this.mask = new Uint8Array(width * height);
    this.probability = new Float32Array(width * height);
  }
  async writeRows(y: number, rows: number, mask: Uint8Array, probability: Float32Array) {
    expect(y).toBe(this.nextRow);
    this.mask.set(mask, y * this.width);
    this.probability.set(probability, y * this.width);
    this.nextRow += rows;
  }
}

/** An RGB scene of `value` with a brighter rectangle in `after`. */
function pair(width: number, height: number, rect: [number, number, number, number], extra: Partial<RasterInfo> = {}): [RasterSource, RasterSource] {
  const before = new Float32Array(width * height * 3).fill(100);
  const after = new Float32Array(width * height * 3).fill(100);
  const [x0, y0, x1, y1] = rect;
  for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) after[(y * width + x) * 3] = 200;
  return [memoryRaster({ width, height, bands: 3, sampleType: 'uint8', georef: null, ...extra }, before), memoryRaster({ width, height, bands: 3, sampleType: 'uint8', georef: null, ...extra }, after)];
}

const options = { threshold: 0.5, batchSize: 4, minRegionPixels: 0, simplifyTolerance: 0 };

describe('tiling', () => {
  it('places tiles every stride and the last one against the far border', () => {
    expect(tilePositions(64, 64, 56)).toEqual([0]);
    expect(tilePositions(100, 64, 56)).toEqual([0, 36]);
    expect(tilePositions(200, 64, 56)).toEqual([0, 56, 112, 136]);
    expect(tilePositions(30, 64, 56)).toEqual([0]);
  });

  it('ramps blending weights over the overlap', () => {
    expect(Array.from(blendWeights(8, 0))).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(Array.from(blendWeights(8, 2))).toEqual([0.25, 0.75, 1, 1, 1, 1, 0.75, 0.25]);
  });

  it('reflects indexes past the border like numpy reflect padding', () => {
    expect([-2, -1, 0, 1, 2, 3, 4, 5].map((i) => reflectIndex(i, 4))).toEqual([2, 1, 0, 1, 2, 3, 2, 1]);
    expect(reflectIndex(5, 1)).toBe(0);
  });

  it('pads a side shorter than a tile to the size multiple, and tiles a longer one', () => {
    const plan = planTiling(150, 30, contract, 8);
    expect(plan).toMatchObject({ tileWidth: 64, tileHeight: 32, xs: [0, 56, 86], ys: [0] });
  });
});

describe('processPair', () => {
  it('finds a changed rectangle exactly across tile seams, streams rows in order, and batches tiles', async () => {
    const [before, after] = pair(150, 130, [40, 50, 100, 90]);
    const model = differenceModel();
    const sink = new CollectingSink(150, 130);
    const outcome = await processPair(before, after, model, sink, { ...options, overlap: 8 });
    expect(sink.nextRow).toBe(130);
    let changed = 0;
    for (let y = 0; y < 130; y++) {
      for (let x = 0; x < 150; x++) {
        const inside = x >= 40 && x < 100 && y >= 50 && y < 90;
        if (sink.mask[y * 150 + x] !== (inside ? 255 : 0)) throw new Error(`pixel ${x},${y} is wrong`);
        changed += inside ? 1 : 0;
      }
    }
    expect(outcome.stats).toEqual({ changedPixels: changed, changedFraction: changed / (150 * 130), regions: 1, areaSquareMeters: null, areaHectares: null });
    expect(outcome.tiles).toBe(9); // 3 × 3 tiles of 64 with an overlap of 8
    expect(model.calls).toEqual([3, 3, 3]); // one call per strip (batch 4, 3 tiles a strip)
    expect(outcome.trace.polygons[0]!.bbox).toEqual([40, 50, 100, 90]);
    expect(outcome.georef).toBeNull();
  });

  it('reads 8-bit PNG rows as bytes with the same outputs and statistics as from float samples (LEVIR-CD pair)', async () => {
    const file = (dir: string) => readFile(join(sharedData, 'levir-cd-256', dir, 'test_7_0256_0512.png'));
    const [a, b] = await Promise.all([file('A'), file('B')]);
    // Bytes: PNG rows decoded in the decode threads and normalised through per-level tables.
    const bytesSide = await Promise.all([openRaster({ kind: 'bytes', bytes: a }), openRaster({ kind: 'bytes', bytes: b })]);
    expect(bytesSide[0]!.readRowBytes).toBeTypeOf('function');
    // Floats: the same pixels as float samples, normalised one by one.
    const floats = (image: ReturnType<typeof decodeImage>) =>
      memoryRaster({ width: image.width, height: image.height, bands: image.bands, sampleType: 'uint8', georef: null }, Float32Array.from(image.data));
    const floatSide = [floats(decodeImage(a)), floats(decodeImage(b))];
    expect(floatSide[0]!.readRowBytes).toBeUndefined();
    const run = async ([before, after]: RasterSource[]) => {
      const sink = new CollectingSink(256, 256);
      const outcome = await processPair(before!, after!, differenceModel(), sink, { ...options, overlap: 8 });
      return { sink, outcome };
    };
    const fromBytes = await run(bytesSide);
    const fromFloats = await run(floatSide);
    expect(fromBytes.outcome.tiles).toBe(25); // 256 px in tiles of 64 every 56
    expect(fromBytes.outcome.stats.changedPixels).toBeGreaterThan(0);
    expect(fromBytes.sink.mask).toEqual(fromFloats.sink.mask);
    for (let i = 0; i < 256 * 256; i += 97) expect(fromBytes.sink.probability[i]).toBeCloseTo(fromFloats.sink.probability[i]!, 5);
    expect(fromBytes.outcome.stats).toEqual(fromFloats.outcome.stats);
    for (const side of ['before', 'after'] as const) {
      fromBytes.outcome.drift.input[side].forEach((band, c) => {
        const other = fromFloats.outcome.drift.input[side][c]!;
        expect(band.histogram).toEqual(other.histogram);
        expect([band.min, band.max]).toEqual([other.min, other.max]);
        expect(band.mean).toBeCloseTo(other.mean, 9);
        expect(band.std).toBeCloseTo(other.std, 9);
      });
    }
  });

  it('pads an image smaller than a tile and crops the output back', async () => {
    const [before, after] = pair(30, 20, [5, 5, 10, 8]);
    const sink = new CollectingSink(30, 20);
    const outcome = await processPair(before, after, differenceModel(), sink, options);
    expect(outcome.stats.changedPixels).toBe(15);
    expect(outcome.tiles).toBe(1);
  });

  it('reports input statistics per band and date, and the embedding summary', async () => {
    const [before, after] = pair(64, 64, [0, 0, 32, 64]);
    const outcome = await processPair(before, after, differenceModel(), new CollectingSink(64, 64), options);
    const red = outcome.drift.input.after[0]!;
    expect(red.name).toBe('red');
    expect(red.mean).toBeCloseTo(150, 6);
    expect(red.std).toBeCloseTo(50, 6);
    expect(red.histogram.reduce((a, b) => a + b, 0)).toBe(64 * 64);
    // Bins of the trainer's reference statistics: bin i holds [4i, 4i + 4).
    expect(red.histogram[200 / 4]).toBe(32 * 64);
    expect(outcome.drift.input.before[1]).toMatchObject({ mean: 100, std: 0, min: 100, max: 100 });
    expect(outcome.drift.prediction.changedFraction).toBeCloseTo(0.5, 6);
    expect(outcome.drift.embedding).toMatchObject({ dim: 32, tiles: 1 });
    expect(outcome.drift.embedding.mean[0]).toBeGreaterThan(0);
    // The one tile is the drift sample: its embedding and the changed half of it.
    expect(outcome.drift.tiles).toHaveLength(1);
    expect(outcome.drift.tiles[0]!.embedding).toEqual(outcome.drift.embedding.mean);
    expect(outcome.drift.tiles[0]!.changedFraction).toBeCloseTo(0.5, 6);
  });

  it('samples up to eight tiles per pair, spread evenly and always the same ones', () => {
    expect(sampledTileIndices(3)).toEqual([0, 1, 2]);
    expect(sampledTileIndices(16)).toEqual([1, 3, 5, 7, 9, 11, 13, 15]);
    expect(sampledTileIndices(100)).toEqual(sampledTileIndices(100));
    expect(new Set(sampledTileIndices(100)).size).toBe(8);
  });

  it('gives the changed area in m² and hectares for a georeferenced pair', async () => {
    const georef = readGeoReference(geoTiffTagsForEpsg(32633, 'projected', [500_000, 0.5, 0, 5_000_000, 0, -0.5]));
    const [before, after] = pair(64, 64, [0, 0, 20, 10], { georef, format: 'tiff' });
    const outcome = await processPair(before, after, differenceModel(), new CollectingSink(64, 64), options);
    expect(outcome.stats.areaSquareMeters).toBeCloseTo(200 * 0.25, 9);
    expect(outcome.stats.areaHectares).toBeCloseTo(0.005, 12);
  });

  it('stops at the deadline', async () => {
    const [before, after] = pair(64, 64, [0, 0, 1, 1]);
    const error = await processPair(before, after, differenceModel(), new CollectingSink(64, 64), { ...options, deadline: Date.now() - 1 }).catch((e: unknown) => e);
    expect((error as PairInputError).code).toBe('DEADLINE_EXCEEDED');
  });

  it('names NaN and infinite values in float bands', async () => {
    const data = new Float32Array(16 * 16 * 3).fill(0.5);
    data[(3 * 16 + 7) * 3 + 1] = Number.NaN;
    const info = { width: 16, height: 16, bands: 3, sampleType: 'float32' as const, georef: null };
    const error = await processPair(memoryRaster(info, new Float32Array(16 * 16 * 3)), memoryRaster(info, data), differenceModel(), new CollectingSink(16, 16), options).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(PairInputError);
    expect((error as PairInputError).code).toBe('NAN_IN_INPUT');
    expect((error as Error).message).toBe('after image has NaN in band 2 (green) at row 3, column 7');
  });
});

describe('planPair', () => {
  const info = (over: Partial<RasterInfo>): RasterInfo => ({
    format: 'png',
    width: 10,
    height: 10,
    bands: 3,
    sampleType: 'uint8',
    bitsPerSample: 8,
    bandNames: [null, null, null],
    alphaBand: null,
    georef: null,
    noData: null,
    ...over,
  });
  const codeOf = (f: () => unknown) => {
    try {
      f();
    } catch (error) {
      return (error as PairInputError).code;
    }
    return null;
  };

  it('refuses pairs of different sizes, georeferencing or grids', () => {
    expect(codeOf(() => planPair(info({}), info({ width: 11 }), contract))).toBe('SIZE_MISMATCH');
    const utm = readGeoReference(geoTiffTagsForEpsg(32633, 'projected', [0, 1, 0, 0, 0, -1]));
    const otherZone = readGeoReference(geoTiffTagsForEpsg(32634, 'projected', [0, 1, 0, 0, 0, -1]));
    const shifted = readGeoReference(geoTiffTagsForEpsg(32633, 'projected', [5, 1, 0, 0, 0, -1]));
    expect(codeOf(() => planPair(info({ georef: utm }), info({}), contract))).toBe('GEOREFERENCE_MISMATCH');
    expect(codeOf(() => planPair(info({ georef: utm }), info({ georef: otherZone }), contract))).toBe('CRS_MISMATCH');
    expect(codeOf(() => planPair(info({ georef: utm }), info({ georef: shifted }), contract))).toBe('TRANSFORM_MISMATCH');
  });

  it('drops an alpha band, picks named bands, and refuses a band count the model does not take', () => {
    expect(planPair(info({ bands: 4, alphaBand: 3 }), info({}), contract).bands.before).toEqual([0, 1, 2]);
    const named = info({ format: 'tiff', bands: 4, bandNames: ['nir', 'Blue', 'green', 'red'] });
    expect(planPair(named, named, contract).bands.after).toEqual([3, 2, 1]);
    expect(codeOf(() => planPair(info({ bands: 1 }), info({}), contract))).toBe('BAND_COUNT');
    expect(() => planPair(info({ bands: 5, bandNames: [null, null, null, null, null] }), info({}), contract)).toThrow(
      'before image has 5 band(s); the model takes 3 (red, green, blue)',
    );
  });

  it('rescales 16-bit input for an 8-bit model', () => {
    expect(planPair(info({ sampleType: 'uint16' }), info({}), contract).unitScale).toEqual({ before: 255 / 65535, after: 1 });
    const sixteen = validateModelContract(fakeOnnxModel({ metadata: { ...CONTRACT_METADATA, 'lcd.normalization': '{"mean":[0,0,0],"std":[1,1,1],"scale":65535}' } }));
    expect(planPair(info({ sampleType: 'uint16' }), info({ sampleType: 'uint16' }), sixteen).unitScale.before).toBe(1);
  });
});
