// Builders of test images: PNGs of any colour type and bit depth written chunk by chunk (pngjs cannot write palette
// or low-bit images), and GeoTIFFs from pixel data. Imported by tests and benchmarks only.
import { crc32, deflateSync } from 'node:zlib';
import { geoTiffTagsForEpsg, type GeoTransform } from './georef.js';
import { encodeTiff, type TiffSampleType } from './tiff-writer.js';

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

export interface RawPngOptions {
  width: number;
  height: number;
  bitDepth: 1 | 2 | 4 | 8 | 16;
  colorType: 0 | 2 | 3 | 4 | 6;
  /** Packed scanlines without filter bytes (height × rowBytes). */
  scanlines: Buffer;
  palette?: Buffer;
  /** Filter type for every row (the data is stored unfiltered regardless: only type 0 is honoured). */
  interlaced?: boolean;
  /** Split the compressed data over this many IDAT chunks. */
  idatChunks?: number;
  /** Broken images: the filter-type byte of each row (default 0), fewer rows of data than the header declares, or
   * image data that is not zlib at all. */
  filterBytes?: number[];
  dataRows?: number;
  imageData?: Buffer;
}

/** A PNG from raw scanlines (filter type 0 on every row). */
export function rawPng(o: RawPngOptions): Buffer {
  const channels = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[o.colorType];
  const rowBytes = Math.ceil((o.width * channels * o.bitDepth) / 8);
  const rows = o.dataRows ?? o.height;
  const filtered = Buffer.alloc(rows * (rowBytes + 1));
  for (let y = 0; y < rows; y++) {
    filtered[y * (rowBytes + 1)] = o.filterBytes?.[y] ?? 0;
    o.scanlines.copy(filtered, y * (rowBytes + 1) + 1, y * rowBytes, (y + 1) * rowBytes);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(o.width, 0);
  ihdr.writeUInt32BE(o.height, 4);
  ihdr[8] = o.bitDepth;
  ihdr[9] = o.colorType;
  ihdr[12] = o.interlaced ? 1 : 0;
  const data = o.imageData ?? deflateSync(filtered);
  const n = Math.max(1, o.idatChunks ?? 1);
  const step = Math.ceil(data.length / n);
  const idats: Buffer[] = [];
  for (let i = 0; i < data.length; i += step) idats.push(chunk('IDAT', data.subarray(i, i + step)));
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    ...(o.palette ? [chunk('PLTE', o.palette)] : []),
    ...idats,
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Just a PNG header claiming `width × height` and a few bytes of data: what a decompression bomb looks like up front. */
export function pngHeaderOnly(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

export interface GeoTiffOptions {
  width: number;
  height: number;
  bands: number;
  sampleType?: TiffSampleType;
  /** EPSG code of a projected CRS in metres (default 32633, WGS 84 / UTM 33N) or of a geographic CRS. */
  epsg?: number;
  geographic?: boolean;
  transform?: GeoTransform;
  bandNames?: string[];
  rowsPerStrip?: number;
}

/** A GeoTIFF of `data` (interleaved), north-up with 0.5 m pixels in UTM 33N unless told otherwise. */
export function geoTiff(o: GeoTiffOptions, data: Uint8Array | Uint16Array | Float32Array): Promise<Buffer> {
  const transform = o.transform ?? [500_000, 0.5, 0, 5_000_000, 0, -0.5];
  return encodeTiff(
    {
      width: o.width,
      height: o.height,
      bands: o.bands,
      sampleType: o.sampleType ?? 'uint8',
      geo: geoTiffTagsForEpsg(o.epsg ?? (o.geographic ? 4326 : 32633), o.geographic ? 'geographic' : 'projected', transform),
      bandNames: o.bandNames,
      rowsPerStrip: o.rowsPerStrip,
    },
    data,
  );
}
