import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { changedAreaSquareMeters, compareGeoReferences, pixelToMap, readGeoReference, geoTiffTagsForEpsg } from './georef.js';
import { encodePng, PngRowWriter } from './png-stream.js';
import { ImageDecodeError } from './probe.js';
import { openRaster, type RasterInput, type RasterSource } from './raster-source.js';
import { geoTiff, pngHeaderOnly, rawPng } from './testing.js';
import { sharedData } from '../model/testing.js';
import { encodeTiff } from './tiff-writer.js';

const shared = sharedData;
const bytes = (b: Uint8Array): RasterInput => ({ kind: 'bytes', bytes: b });

async function readAll(source: RasterSource, chunk = 7): Promise<Float32Array> {
  const { width, height, bands } = source.info;
  const out = new Float32Array(width * height * bands);
  for (let y = 0; y < height; y += chunk) {
    const n = Math.min(chunk, height - y);
    out.set(await source.readRows(n), y * width * bands);
  }
  await source.close();
  return out;
}

async function problemOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof ImageDecodeError) return error.problem;
    throw error;
  }
  throw new Error('expected an ImageDecodeError');
}

describe('PNG, row by row', () => {
  it('reads a real RGB pair exactly as pngjs decodes it, from bytes and from a file', async () => {
    const path = join(shared, 'levir-cd-256', 'A', 'test_7_0256_0512.png');
    const file = await readFile(path);
    const reference = PNG.sync.read(file);
    for (const input of [bytes(file), { kind: 'file', path } as RasterInput]) {
      const source = await openRaster(input);
      expect(source.info).toMatchObject({ format: 'png', width: 256, height: 256, bands: 3, sampleType: 'uint8', georef: null });
      const data = await readAll(source, 13);
      for (let p = 0; p < 256 * 256; p += 97) {
        for (let c = 0; c < 3; c++) expect(data[p * 3 + c]).toBe(reference.data[p * 4 + c]);
      }
    }
  });

  it('reads every filter type (the encoder pngjs uses picks them adaptively)', async () => {
    const image = new PNG({ width: 61, height: 37 });
    for (let i = 0; i < image.data.length; i++) image.data[i] = (i * 7919 + (i >> 5) * 31) & 0xff;
    for (let filterType = 0; filterType <= 4; filterType++) {
      const file = PNG.sync.write(image, { filterType, colorType: 6 } as never);
      const data = await readAll(await openRaster(bytes(file)));
      expect(Array.from(data.subarray(0, 4 * 61 * 2))).toEqual(Array.from(image.data.subarray(0, 4 * 61 * 2)));
      expect(data[data.length - 1]).toBe(image.data[image.data.length - 1]);
    }
  });

  it('reads 16-bit samples, palettes and low-bit grey, over many IDAT chunks', async () => {
    const w = 5;
    const h = 3;
    const sixteen = Buffer.alloc(w * h * 2);
    for (let i = 0; i < w * h; i++) sixteen.writeUInt16BE(i * 4000, i * 2);
    const s16 = await openRaster(bytes(rawPng({ width: w, height: h, bitDepth: 16, colorType: 0, scanlines: sixteen, idatChunks: 4 })));
    expect(s16.info).toMatchObject({ bands: 1, sampleType: 'uint16', bitsPerSample: 16 });
    expect(Array.from(await readAll(s16))).toEqual(Array.from({ length: w * h }, (_, i) => i * 4000));

    const palette = Buffer.from([10, 20, 30, 200, 100, 50, 1, 2, 3]);
    const indexes = Buffer.from([0b00010000, 0b10000000, 0b00000000]); // 2-bit: one row of 5 pixels needs 2 bytes
    const packed = Buffer.alloc(2 * h);
    for (let y = 0; y < h; y++) packed.set([indexes[y]!, 0], y * 2);
    const pal = await openRaster(bytes(rawPng({ width: w, height: h, bitDepth: 2, colorType: 3, scanlines: packed, palette })));
    expect(pal.info.bands).toBe(3);
    const palData = await readAll(pal);
    expect(Array.from(palData.subarray(0, 6))).toEqual([10, 20, 30, 200, 100, 50]);
    expect(Array.from(palData.subarray(15, 18))).toEqual([1, 2, 3]);

    const grey4 = Buffer.from([0xf0, 0x00, 0x00, 0x0f, 0x00, 0x00]); // 4-bit, 5 px → 3 bytes a row
    const g4 = await readAll(await openRaster(bytes(rawPng({ width: w, height: 2, bitDepth: 4, colorType: 0, scanlines: grey4 }))));
    expect(Array.from(g4.subarray(0, 5))).toEqual([255, 0, 0, 0, 0]);
    expect(g4[5 + 1]).toBe(255);
  });

  it('names an empty file, a file that is not an image, a truncated file and a corrupt one (in memory and streamed)', async () => {
    const real = await readFile(join(shared, 'levir-cd-256', 'B', 'test_7_0256_0512.png'));
    const dir = await mkdtemp(join(tmpdir(), 'lcd-png-'));
    try {
      const inputs = async (b: Uint8Array, name: string): Promise<RasterInput[]> => {
        const path = join(dir, name);
        await writeFile(path, b);
        return [bytes(b), { kind: 'file', path }];
      };
      const corrupt = Buffer.from(real);
      corrupt[corrupt.length / 2] ^= 0xff;
      const cases: [Uint8Array, string, boolean][] = [
        [new Uint8Array(0), 'EMPTY_FILE', false],
        [Buffer.from('{"type":"FeatureCollection"}'), 'NOT_AN_IMAGE', false],
        [real.subarray(0, 5), 'NOT_AN_IMAGE', false],
        [real.subarray(0, 20), 'TRUNCATED', false],
        [real.subarray(0, real.length / 2), 'TRUNCATED', true],
        [corrupt, 'CORRUPT', true],
      ];
      for (const [i, [b, problem, whileReading]] of cases.entries()) {
        for (const input of await inputs(b, `case-${i}.png`)) {
          const opened = openRaster(input);
          const got = await problemOf(whileReading ? opened.then(readAll) : opened);
          expect(got, `${problem} from ${input.kind}`).toBe(problem);
        }
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('names a bad filter type, image data that does not inflate and missing rows, decoded in a thread and streamed', async () => {
    const w = 7;
    const h = 4;
    const scanlines = Buffer.alloc(w * h * 3, 9);
    const cases: [Buffer, string][] = [
      [rawPng({ width: w, height: h, bitDepth: 8, colorType: 2, scanlines, filterBytes: [0, 1, 9, 0] }), 'CORRUPT'],
      [rawPng({ width: w, height: h, bitDepth: 8, colorType: 2, scanlines, imageData: Buffer.from('not zlib data at all') }), 'CORRUPT'],
      [rawPng({ width: w, height: h, bitDepth: 8, colorType: 2, scanlines, dataRows: 2 }), 'TRUNCATED'],
    ];
    const dir = await mkdtemp(join(tmpdir(), 'lcd-png-'));
    try {
      for (const [i, [file, problem]] of cases.entries()) {
        const path = join(dir, `case-${i}.png`);
        await writeFile(path, file);
        // In memory the image decodes in a decode thread as it opens; a file streams row by row.
        expect(await problemOf(openRaster(bytes(file)).then(readAll)), `case ${i} in memory`).toBe(problem);
        expect(await problemOf(openRaster({ kind: 'file', path }).then(readAll)), `case ${i} streamed`).toBe(problem);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('refuses a decompression bomb from its header, before inflating anything', async () => {
    const error = await openRaster(bytes(pngHeaderOnly(200_000, 200_000))).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ImageDecodeError);
    expect((error as ImageDecodeError).problem).toBe('TOO_LARGE');
    expect((error as Error).message).toContain('200000×200000');
  });

  it('writes rows that read back the same (grey and RGB)', async () => {
    const grey = Uint8Array.from({ length: 40 * 30 }, (_, i) => (i * 13) & 0xff);
    const png = await encodePng({ width: 40, height: 30, colorType: 0 }, grey);
    const back = PNG.sync.read(png);
    for (let i = 0; i < grey.length; i++) expect(back.data[i * 4]).toBe(grey[i]);
    const sink = new PassThrough();
    const parts: Buffer[] = [];
    sink.on('data', (b: Buffer) => parts.push(b));
    const writer = new PngRowWriter({ width: 3, height: 2, colorType: 2, level: 9 }, sink);
    await writer.writeRows(Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]), 1);
    await writer.writeRows(Uint8Array.from([9, 8, 7, 6, 5, 4, 3, 2, 1]), 1);
    await writer.finish();
    expect(Array.from(await readAll(await openRaster(bytes(Buffer.concat(parts)))))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
  });
});

describe('JPEG', () => {
  it('decodes whole, within its own limit', async () => {
    const data = Buffer.alloc(32 * 16 * 4, 128);
    const file = jpeg.encode({ width: 32, height: 16, data }, 90).data;
    const source = await openRaster(bytes(file));
    expect(source.info).toMatchObject({ format: 'jpeg', width: 32, height: 16, bands: 3 });
    const pixels = await readAll(source);
    expect(Math.abs(pixels[0]! - 128)).toBeLessThan(3);
    const limited = await openRaster(bytes(file), { maxPixels: 1e9, maxSide: 1e5, maxFullDecodePixels: 100, maxBlockBytes: 1e9 }).catch((e: unknown) => e);
    expect((limited as ImageDecodeError).problem).toBe('TOO_LARGE');
  });

  it('names a truncated JPEG', async () => {
    const file = jpeg.encode({ width: 32, height: 32, data: Buffer.alloc(32 * 32 * 4, 77) }, 90).data;
    expect(await problemOf(openRaster(bytes(file.subarray(0, 40))))).toBe('TRUNCATED');
  });
});

describe('GeoTIFF', () => {
  it('round-trips pixels, CRS and transform, over many strips, for 8-bit, 16-bit and float bands', async () => {
    const w = 33;
    const h = 21;
    const transform: [number, number, number, number, number, number] = [412_000, 0.5, 0, 5_650_000, 0, -0.5];
    const cases = [
      { sampleType: 'uint8' as const, bands: 3, data: Uint8Array.from({ length: w * h * 3 }, (_, i) => i & 0xff) },
      { sampleType: 'uint16' as const, bands: 4, data: Uint16Array.from({ length: w * h * 4 }, (_, i) => i * 7) },
      { sampleType: 'float32' as const, bands: 1, data: Float32Array.from({ length: w * h }, (_, i) => i / 3) },
    ];
    for (const c of cases) {
      const file = await geoTiff({ width: w, height: h, bands: c.bands, sampleType: c.sampleType, transform, rowsPerStrip: 4, bandNames: Array.from({ length: c.bands }, (_, i) => `b${i}`) }, c.data);
      const source = await openRaster(bytes(file));
      expect(source.info).toMatchObject({ format: 'tiff', width: w, height: h, bands: c.bands, sampleType: c.sampleType });
      expect(source.info.bandNames).toEqual(Array.from({ length: c.bands }, (_, i) => `b${i}`));
      expect(source.info.georef?.crs).toEqual({ epsg: 32633, kind: 'projected', metresPerUnit: 1, citation: null });
      expect(source.info.georef?.transform).toEqual(transform);
      const data = await readAll(source, 5);
      expect(Array.from(data)).toEqual(Array.from(c.data, (v) => Math.fround(v)));
    }
  });

  it('carries a rotated transform (ModelTransformation) and a geographic CRS', async () => {
    const rotated: [number, number, number, number, number, number] = [1000, 0.4, 0.3, 2000, 0.3, -0.4];
    const file = await geoTiff({ width: 4, height: 4, bands: 1, transform: rotated }, new Uint8Array(16));
    expect((await openRaster(bytes(file))).info.georef?.transform).toEqual(rotated);
    const geographic = await geoTiff({ width: 4, height: 4, bands: 1, geographic: true, transform: [10, 0.001, 0, 50, 0, -0.001] }, new Uint8Array(16));
    expect((await openRaster(bytes(geographic))).info.georef?.crs).toMatchObject({ epsg: 4326, kind: 'geographic', metresPerUnit: null });
  });

  it('reads a plain TIFF as not georeferenced', async () => {
    const file = await encodeTiff({ width: 3, height: 2, bands: 1, sampleType: 'uint8' }, Uint8Array.from([1, 2, 3, 4, 5, 6]));
    const source = await openRaster(bytes(file));
    expect(source.info.georef).toBeNull();
    expect(Array.from(await readAll(source))).toEqual([1, 2, 3, 4, 5, 6]);
  });

  it('names a truncated TIFF and refuses a single huge strip', async () => {
    const file = await geoTiff({ width: 64, height: 64, bands: 3 }, Uint8Array.from({ length: 64 * 64 * 3 }, (_, i) => (i * 31) & 0xff));
    const problem = await problemOf(openRaster(bytes(file.subarray(0, 200))).then(readAll));
    expect(['TRUNCATED', 'CORRUPT']).toContain(problem);
    const oneStrip = await encodeTiff({ width: 64, height: 64, bands: 3, sampleType: 'uint8', rowsPerStrip: 64 }, new Uint8Array(64 * 64 * 3));
    const error = await openRaster(bytes(oneStrip), { maxPixels: 1e9, maxSide: 1e5, maxFullDecodePixels: 1e9, maxBlockBytes: 1000 }).catch((e: unknown) => e);
    expect((error as ImageDecodeError).problem).toBe('TOO_LARGE');
    expect((error as Error).message).toContain('TILED=YES');
  });
});

describe('georeferencing', () => {
  const utm = readGeoReference(geoTiffTagsForEpsg(32633, 'projected', [500_000, 0.5, 0, 5_000_000, 0, -0.5]))!;

  it('maps pixel corners to map coordinates', () => {
    expect(pixelToMap(utm.transform, 0, 0)).toEqual([500_000, 5_000_000]);
    expect(pixelToMap(utm.transform, 10, 4)).toEqual([500_005, 4_999_998]);
  });

  it('gives the area of changed pixels in m² for a metric CRS, and per latitude for a geographic one', () => {
    expect(changedAreaSquareMeters(utm, [4, 0, 6])).toBeCloseTo(2.5, 10);
    const wgs84 = readGeoReference(geoTiffTagsForEpsg(4326, 'geographic', [0, 1, 0, 1, 0, -1]))!;
    // One 1°×1° cell at the equator: about 111.2 km × 110.6 km on the authalic sphere.
    const area = changedAreaSquareMeters(wgs84, [1])!;
    expect(area / 1e6).toBeGreaterThan(12_300);
    expect(area / 1e6).toBeLessThan(12_400);
    const feet = readGeoReference({ ...geoTiffTagsForEpsg(2263, 'projected', [0, 1, 0, 0, 0, -1]), geoKeyDirectory: [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 2263] })!;
    expect(feet.crs.metresPerUnit).toBeNull();
    expect(changedAreaSquareMeters(feet, [10])).toBeNull();
  });

  it('tells a different CRS from a shifted grid', () => {
    const other = readGeoReference(geoTiffTagsForEpsg(32634, 'projected', utm.transform))!;
    expect(compareGeoReferences(utm, other)?.problem).toBe('CRS_MISMATCH');
    const shifted = readGeoReference(geoTiffTagsForEpsg(32633, 'projected', [500_001, 0.5, 0, 5_000_000, 0, -0.5]))!;
    expect(compareGeoReferences(utm, shifted)?.problem).toBe('TRANSFORM_MISMATCH');
    expect(compareGeoReferences(utm, readGeoReference(geoTiffTagsForEpsg(32633, 'projected', utm.transform))!)).toBeNull();
  });
});
