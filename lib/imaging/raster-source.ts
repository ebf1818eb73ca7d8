// Opens a before/after image for streaming: the header first (format, size, bands, sample type, georeference), checked
// against the limits before any pixel is decoded, then rows top to bottom as float32. PNG is inflated row by row and
// GeoTIFF read by window, so memory stays bounded whatever the scene size; JPEG and interlaced PNG have no row access
// and are decoded whole, under a smaller limit.
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fromArrayBuffer, fromFile, type GeoTIFF, type GeoTIFFImage } from 'geotiff';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { readGeoReference, type GeoReference, type GeoTiffTags } from './georef.js';
import { PngBufferReader, PngRowReader, type PngHeader } from './png-stream.js';
import { ImageDecodeError, sniffFormat, type ImageFormat } from './probe.js';

export type SampleType = 'uint8' | 'uint16' | 'uint32' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';

export type RasterInput = { kind: 'bytes'; bytes: Uint8Array } | { kind: 'file'; path: string };

export interface RasterLimits {
  /** Largest width × height accepted. */
  maxPixels: number;
  /** Largest side accepted. */
  maxSide: number;
  /** Largest width × height for formats decoded whole (JPEG, interlaced PNG). */
  maxFullDecodePixels: number;
  /** Largest decoded TIFF strip or tile, in bytes (a single-strip scene would otherwise be decoded whole). */
  maxBlockBytes: number;
}

export const DEFAULT_RASTER_LIMITS: RasterLimits = {
  maxPixels: 16_384 * 16_384,
  maxSide: 65_536,
  maxFullDecodePixels: 8_192 * 8_192,
  maxBlockBytes: 256 * 1024 * 1024,
};

export interface RasterInfo {
  format: ImageFormat;
  width: number;
  height: number;
  bands: number;
  sampleType: SampleType;
  bitsPerSample: number;
  /** Per band, from GeoTIFF band descriptions (GDAL_METADATA); null where unknown. */
  bandNames: (string | null)[];
  /** Index of an alpha band, if the image has one. */
  alphaBand: number | null;
  georef: GeoReference | null;
  /** Value marking missing data (GDAL_NODATA), if declared. */
  noData: number | null;
}

export interface RasterSource {
  readonly info: RasterInfo;
  /** The next `count` rows, top to bottom, as interleaved float32 samples: (row × width + x) × bands + band. */
  readRows(count: number): Promise<Float32Array>;
  /**
   * Where the samples are 8-bit (sampleType uint8) and the format has them as bytes: the next `count` rows as
   * readRows gives them, without the conversion to float. Either method reads on from where the other stopped.
   */
  readRowBytes?(count: number): Promise<Uint8Array>;
  close(): Promise<void>;
}

function checkSize(width: number, height: number, limits: RasterLimits, wholeDecode: boolean): void {
  if (!(width >= 1 && height >= 1)) throw new ImageDecodeError('CORRUPT', `The image has an invalid size ${width}×${height}`);
  if (width > limits.maxSide || height > limits.maxSide || width * height > limits.maxPixels) {
    throw new ImageDecodeError(
      'TOO_LARGE',
      `The image is ${width}×${height} pixels; the limit is ${limits.maxPixels} pixels (${Math.floor(Math.sqrt(limits.maxPixels))}² ) and ${limits.maxSide} a side`,
    );
  }
  if (wholeDecode && width * height > limits.maxFullDecodePixels) {
    throw new ImageDecodeError(
      'TOO_LARGE',
      `The image is ${width}×${height} pixels in a format decoded whole (JPEG or interlaced PNG); the limit for those is ${limits.maxFullDecodePixels} pixels — convert it to a tiled GeoTIFF or non-interlaced PNG`,
    );
  }
}

async function firstBytes(input: RasterInput, n: number): Promise<Uint8Array> {
  if (input.kind === 'bytes') return input.bytes.subarray(0, n);
  const stream = createReadStream(input.path, { start: 0, end: n - 1 });
  const parts: Buffer[] = [];
  for await (const part of stream) parts.push(part as Buffer);
  return Buffer.concat(parts);
}

async function allBytes(input: RasterInput): Promise<Uint8Array> {
  return input.kind === 'bytes' ? input.bytes : readFile(input.path);
}

/** Opens an image for row reading. Throws ImageDecodeError naming the problem (EMPTY_FILE, NOT_AN_IMAGE, TOO_LARGE…). */
export async function openRaster(input: RasterInput, limits: RasterLimits = DEFAULT_RASTER_LIMITS): Promise<RasterSource> {
  const head = await firstBytes(input, 16);
  if (head.byteLength === 0) throw new ImageDecodeError('EMPTY_FILE', 'The file is empty (0 bytes)');
  const format = sniffFormat(head);
  switch (format) {
    case 'png':
      return openPng(input, limits);
    case 'jpeg':
      return openJpeg(input, limits);
    case 'tiff':
      return openTiff(input, limits);
    case null:
      throw new ImageDecodeError('NOT_AN_IMAGE', 'The file is not a PNG, JPEG or TIFF image');
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// In-memory rasters (JPEG, interlaced PNG) and the row cursor over them
// ---------------------------------------------------------------------------------------------------------------------
class MemoryRaster implements RasterSource {
  private next = 0;

  constructor(
    readonly info: RasterInfo,
    private readonly data: ArrayLike<number>,
  ) {}

  async readRows(count: number): Promise<Float32Array> {
    const { width, bands, height } = this.info;
    if (this.next + count > height) throw new Error(`only ${height - this.next} rows left`);
    const start = this.next * width * bands;
    const out = new Float32Array(count * width * bands);
    for (let i = 0; i < out.length; i++) out[i] = this.data[start + i]!;
    this.next += count;
    return out;
  }

  async close(): Promise<void> {}
}

/** A raster held in memory as a RasterSource (tests, tools). */
export function memoryRaster(info: Omit<RasterInfo, 'format' | 'bitsPerSample' | 'bandNames' | 'alphaBand' | 'noData'> & Partial<RasterInfo>, data: ArrayLike<number>): RasterSource {
  return new MemoryRaster(
    { format: 'png', bitsPerSample: 8, bandNames: Array(info.bands).fill(null), alphaBand: null, noData: null, ...info },
    data,
  );
}

// ---------------------------------------------------------------------------------------------------------------------
// PNG
// ---------------------------------------------------------------------------------------------------------------------
function pngSource(input: RasterInput): AsyncIterable<Uint8Array> {
  if (input.kind === 'file') return createReadStream(input.path, { highWaterMark: 1024 * 1024 });
  const bytes = input.bytes;
  return (async function* () {
    yield bytes;
  })();
}

/** Images in memory whose inflated data is at most this large are decoded in one go rather than streamed. */
const BUFFER_DECODE_BYTES = 64 * 1024 * 1024;

async function openPng(input: RasterInput, limits: RasterLimits): Promise<RasterSource> {
  let header: PngHeader | null = null;
  let palette: Uint8Array | null;
  let rows: Iterator<Uint8Array> | AsyncIterator<Uint8Array>;
  let closeReader: () => Promise<void>;
  let buffered: PngBufferReader | null = null;
  if (input.kind === 'bytes') {
    buffered = PngBufferReader.open(input.bytes);
    header = buffered.header;
    checkSize(header.width, header.height, limits, header.interlaced);
    if (header.interlaced || header.height * (header.rowBytes + 1) > BUFFER_DECODE_BYTES) buffered = null;
  }
  if (buffered) {
    // Decoded at once, in a decode thread: the two images of a pair, opened together, decode in parallel.
    await buffered.decode();
    palette = buffered.palette;
    rows = buffered.rows();
    closeReader = async () => undefined;
  } else {
    const reader = await PngRowReader.open(pngSource(input));
    header = reader.header;
    palette = reader.palette;
    try {
      checkSize(reader.header.width, reader.header.height, limits, reader.header.interlaced);
    } catch (error) {
      await reader.close();
      throw error;
    }
    if (reader.header.interlaced) {
      await reader.close();
      return decodeInterlaced(input, reader.header);
    }
    const stream = reader.rows();
    rows = stream;
    closeReader = async () => {
      await stream.return(undefined);
      await reader.close();
    };
  }
  const h = header!;
  const isPalette = h.colorType === 3;
  const bands = isPalette ? 3 : h.channels;
  const sixteen = h.bitDepth === 16;
  const info = pngInfo(h);
  const rowSamples = h.width * bands;
  const scaleLow = h.bitDepth < 8 && !isPalette ? 255 / (2 ** h.bitDepth - 1) : 1;
  const nextRow = async (): Promise<Uint8Array> => {
    const next = await rows.next();
    if (next.done) throw new ImageDecodeError('TRUNCATED', 'The PNG has fewer rows than its header says');
    return next.value;
  };
  return {
    info,
    ...(h.bitDepth === 8 &&
      !isPalette && {
        async readRowBytes(count: number): Promise<Uint8Array> {
          const out = new Uint8Array(count * rowSamples);
          for (let r = 0; r < count; r++) out.set(await nextRow(), r * rowSamples);
          return out;
        },
      }),
    async readRows(count: number): Promise<Float32Array> {
      const out = new Float32Array(count * rowSamples);
      for (let r = 0; r < count; r++) {
        const row = await nextRow();
        const base = r * rowSamples;
        if (isPalette) {
          const pal = palette!;
          for (let x = 0; x < h.width; x++) {
            const index = h.bitDepth === 8 ? row[x]! : (row[(x * h.bitDepth) >> 3]! >> (8 - h.bitDepth - ((x * h.bitDepth) & 7))) & ((1 << h.bitDepth) - 1);
            if (index * 3 + 2 >= pal.length) throw new ImageDecodeError('CORRUPT', `The PNG uses palette entry ${index}, past its palette`);
            out[base + x * 3] = pal[index * 3]!;
            out[base + x * 3 + 1] = pal[index * 3 + 1]!;
            out[base + x * 3 + 2] = pal[index * 3 + 2]!;
          }
        } else if (sixteen) {
          for (let i = 0; i < rowSamples; i++) out[base + i] = (row[2 * i]! << 8) | row[2 * i + 1]!;
        } else if (h.bitDepth === 8) {
          for (let i = 0; i < rowSamples; i++) out[base + i] = row[i]!;
        } else {
          const d = h.bitDepth;
          for (let x = 0; x < h.width; x++) {
            const v = (row[(x * d) >> 3]! >> (8 - d - ((x * d) & 7))) & ((1 << d) - 1);
            out[base + x] = v * scaleLow;
          }
        }
      }
      return out;
    },
    close: closeReader,
  };
}

function pngInfo(h: PngHeader): RasterInfo {
  const bands = h.colorType === 3 ? 3 : h.channels;
  const sixteen = h.bitDepth === 16;
  return {
    format: 'png',
    width: h.width,
    height: h.height,
    bands,
    sampleType: sixteen ? 'uint16' : 'uint8',
    bitsPerSample: sixteen ? 16 : 8,
    bandNames: Array(bands).fill(null),
    alphaBand: h.colorType === 4 ? 1 : h.colorType === 6 ? 3 : null,
    georef: null,
    noData: null,
  };
}

/** Adam7 images have no row order to stream: decoded whole with pngjs (under the whole-decode limit). */
async function decodeInterlaced(input: RasterInput, h: PngHeader): Promise<RasterSource> {
  const info = pngInfo(h);
  const bands = info.bands;
  const sixteen = h.bitDepth === 16;
  const bytes = Buffer.from(await allBytes(input));
  let png: PNG;
  try {
    png = PNG.sync.read(bytes, { skipRescale: true } as never);
  } catch (error) {
    const message = (error as Error).message ?? '';
    throw new ImageDecodeError(/end|truncat/i.test(message) ? 'TRUNCATED' : 'CORRUPT', `The PNG could not be decoded: ${message}`);
  }
  // pngjs expands to RGBA; keep the real bands.
  const pick = bands === 1 ? [0] : bands === 2 ? [0, 3] : bands === 3 ? [0, 1, 2] : [0, 1, 2, 3];
  const src = png.data as unknown as ArrayLike<number>;
  const pixels = h.width * h.height;
  const data = sixteen ? new Uint16Array(pixels * bands) : new Uint8Array(pixels * bands);
  for (let p = 0; p < pixels; p++) for (let c = 0; c < bands; c++) data[p * bands + c] = src[p * 4 + pick[c]!]!;
  return new MemoryRaster(info, data);
}

// ---------------------------------------------------------------------------------------------------------------------
// JPEG
// ---------------------------------------------------------------------------------------------------------------------
function jpegSize(b: Uint8Array): { width: number; height: number; components: number } {
  let offset = 2;
  while (offset + 4 <= b.length) {
    if (b[offset] !== 0xff) throw new ImageDecodeError('CORRUPT', 'The JPEG marker stream is corrupt');
    const marker = b[offset + 1]!;
    if (marker === 0xff) {
      offset += 1;
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7)) {
      offset += 2;
      continue;
    }
    const length = (b[offset + 2]! << 8) | b[offset + 3]!;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (offset + 10 > b.length) break;
      return { height: (b[offset + 5]! << 8) | b[offset + 6]!, width: (b[offset + 7]! << 8) | b[offset + 8]!, components: b[offset + 9]! };
    }
    offset += 2 + length;
  }
  throw new ImageDecodeError('TRUNCATED', 'The JPEG ends before its frame header');
}

async function openJpeg(input: RasterInput, limits: RasterLimits): Promise<RasterSource> {
  const bytes = await allBytes(input);
  const { width, height } = jpegSize(bytes);
  checkSize(width, height, limits, true);
  let decoded: { width: number; height: number; data: Uint8Array };
  try {
    decoded = jpeg.decode(bytes, {
      useTArray: true,
      formatAsRGBA: false,
      maxResolutionInMP: Math.ceil(limits.maxFullDecodePixels / 1_000_000),
      maxMemoryUsageInMB: 4096,
    });
  } catch (error) {
    const message = (error as Error).message ?? String(error);
    throw new ImageDecodeError(/end|offset|bounds|truncat/i.test(message) ? 'TRUNCATED' : 'CORRUPT', `The JPEG could not be decoded: ${message}`);
  }
  const bands = decoded.data.length / (decoded.width * decoded.height);
  if (!Number.isInteger(bands) || bands < 1) throw new ImageDecodeError('CORRUPT', 'The JPEG decoded to an unexpected number of samples');
  return new MemoryRaster(
    {
      format: 'jpeg',
      width: decoded.width,
      height: decoded.height,
      bands,
      sampleType: 'uint8',
      bitsPerSample: 8,
      bandNames: Array(bands).fill(null),
      alphaBand: null,
      georef: null,
      noData: null,
    },
    decoded.data,
  );
}

// ---------------------------------------------------------------------------------------------------------------------
// TIFF / GeoTIFF
// ---------------------------------------------------------------------------------------------------------------------
function tiffError(error: unknown, what: string): ImageDecodeError {
  if (error instanceof ImageDecodeError) return error;
  const message = (error as Error)?.message ?? String(error);
  const truncated = error instanceof RangeError || /bounds|offset|end of|truncat|beyond/i.test(message);
  return new ImageDecodeError(truncated ? 'TRUNCATED' : 'CORRUPT', `${what}: ${message}${truncated ? ' (truncated file?)' : ''}`);
}

function sampleTypeOf(format: number, bits: number): SampleType | null {
  if (format === 1) return bits === 8 ? 'uint8' : bits === 16 ? 'uint16' : bits === 32 ? 'uint32' : null;
  if (format === 2) return bits === 8 ? 'int8' : bits === 16 ? 'int16' : bits === 32 ? 'int32' : null;
  if (format === 3) return bits === 32 ? 'float32' : bits === 64 ? 'float64' : null;
  return null;
}

function numbers(value: unknown): number[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'number') return [value];
  return Array.from(value as ArrayLike<number>);
}

function geoTagsOf(dir: Record<string, unknown>): GeoTiffTags | null {
  const keys = numbers(dir.GeoKeyDirectory);
  if (!keys) return null;
  const tags: GeoTiffTags = { geoKeyDirectory: keys };
  const doubles = numbers(dir.GeoDoubleParams);
  if (doubles) tags.geoDoubleParams = doubles;
  if (typeof dir.GeoAsciiParams === 'string') tags.geoAsciiParams = dir.GeoAsciiParams;
  const scale = numbers(dir.ModelPixelScale);
  if (scale) tags.modelPixelScale = scale;
  const tiepoint = numbers(dir.ModelTiepoint);
  if (tiepoint) tags.modelTiepoint = tiepoint;
  const transformation = numbers(dir.ModelTransformation);
  if (transformation) tags.modelTransformation = transformation;
  return tags;
}

async function openTiff(input: RasterInput, limits: RasterLimits): Promise<RasterSource> {
  let tiff: GeoTIFF;
  let image: GeoTIFFImage;
  try {
    if (input.kind === 'file') tiff = await fromFile(input.path);
    else {
      const b = input.bytes;
      tiff = await fromArrayBuffer(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer);
    }
    image = await tiff.getImage(0);
  } catch (error) {
    throw tiffError(error, 'The TIFF header could not be read');
  }
  const width = image.getWidth();
  const height = image.getHeight();
  checkSize(width, height, limits, false);
  const bands = image.getSamplesPerPixel();
  const bits = Number(image.getBitsPerSample(0));
  const format = Number(image.getSampleFormat(0) ?? 1);
  const sampleType = sampleTypeOf(format, bits);
  if (!sampleType) throw new ImageDecodeError('UNSUPPORTED', `TIFF samples of ${bits} bits in sample format ${format} are not supported (8/16/32-bit integers, 32/64-bit floats)`);
  for (let b = 1; b < bands; b++) {
    if (Number(image.getBitsPerSample(b)) !== bits || Number(image.getSampleFormat(b) ?? 1) !== format) {
      throw new ImageDecodeError('UNSUPPORTED', 'TIFF bands of different sample types are not supported');
    }
  }
  const dir = image.getFileDirectory() as Record<string, unknown>;
  const blockBytes =
    (image.isTiled ? image.getTileWidth() * image.getTileHeight() : width * Math.min(height, Number(dir.RowsPerStrip ?? height))) *
    (image.planarConfiguration === 2 ? 1 : bands) *
    (bits / 8);
  if (blockBytes > limits.maxBlockBytes) {
    throw new ImageDecodeError(
      'TOO_LARGE',
      `The TIFF stores ${Math.round(blockBytes / 1024 / 1024)} MiB per ${image.isTiled ? 'tile' : 'strip'}; the limit is ${Math.round(limits.maxBlockBytes / 1024 / 1024)} MiB — rewrite it tiled (gdal_translate -co TILED=YES)`,
    );
  }
  const extra = numbers(dir.ExtraSamples) ?? [];
  const alphaIndex = extra.findIndex((v) => v === 1 || v === 2);
  const bandNames: (string | null)[] = [];
  for (let b = 0; b < bands; b++) {
    let name: string | null = null;
    try {
      const meta = image.getGDALMetadata(b) as Record<string, string> | null;
      name = meta?.DESCRIPTION?.trim() || null;
    } catch {
      name = null;
    }
    bandNames.push(name);
  }
  const noDataRaw = image.getGDALNoData();
  const info: RasterInfo = {
    format: 'tiff',
    width,
    height,
    bands,
    sampleType,
    bitsPerSample: bits,
    bandNames,
    alphaBand: alphaIndex >= 0 ? bands - extra.length + alphaIndex : null,
    georef: readGeoReference(geoTagsOf(dir)),
    noData: typeof noDataRaw === 'number' && !Number.isNaN(noDataRaw) ? noDataRaw : null,
  };
  let next = 0;
  return {
    info,
    async readRows(count: number): Promise<Float32Array> {
      if (next + count > height) throw new Error(`only ${height - next} rows left`);
      let raster: ArrayLike<number>;
      try {
        raster = (await image.readRasters({ window: [0, next, width, next + count], interleave: true })) as unknown as ArrayLike<number>;
      } catch (error) {
        throw tiffError(error, `The TIFF rows ${next}–${next + count} could not be decoded`);
      }
      next += count;
      return raster instanceof Float32Array ? raster : Float32Array.from(raster);
    },
    async close() {
      tiff.close?.();
    },
  };
}
