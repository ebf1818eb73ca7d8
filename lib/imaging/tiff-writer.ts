// A (Geo)TIFF writer that takes rows as they come: strips are deflated and appended, the directory goes at the end
// and the header is patched to point at it, so a scene of any size is written without holding it. Georeferencing
// tags are written as given (GeoTiffTags), so outputs keep exactly the input's CRS and transform.
import { open, type FileHandle } from 'node:fs/promises';
import { promisify } from 'node:util';
import { deflate as deflateCallback } from 'node:zlib';
import type { GeoTiffTags } from './georef.js';

const deflate = promisify(deflateCallback);

export type TiffSampleType = 'uint8' | 'uint16' | 'float32';

const SAMPLE_BYTES: Record<TiffSampleType, number> = { uint8: 1, uint16: 2, float32: 4 };
const SAMPLE_FORMAT: Record<TiffSampleType, number> = { uint8: 1, uint16: 1, float32: 3 };

export interface TiffWriterOptions {
  width: number;
  height: number;
  bands: number;
  sampleType: TiffSampleType;
  geo?: GeoTiffTags | null;
  /** Per-band descriptions, written as GDAL_METADATA (GDAL shows them as band descriptions). */
  bandNames?: string[];
  noData?: number | null;
  compression?: 'deflate' | 'none';
  /** Strip height; default: about 256 KiB of uncompressed data per strip. */
  rowsPerStrip?: number;
}

/** Where the bytes go: appended in order, plus one patch of the header at the end. */
export interface TiffSink {
  append(data: Uint8Array): Promise<void>;
  patch(position: number, data: Uint8Array): Promise<void>;
}

export class FileTiffSink implements TiffSink {
  private constructor(private readonly handle: FileHandle) {}

  static async create(path: string): Promise<FileTiffSink> {
    return new FileTiffSink(await open(path, 'w'));
  }

  async append(data: Uint8Array): Promise<void> {
    await this.handle.write(data);
  }

  async patch(position: number, data: Uint8Array): Promise<void> {
    await this.handle.write(data, 0, data.length, position);
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

export class MemoryTiffSink implements TiffSink {
  readonly parts: Buffer[] = [];

  async append(data: Uint8Array): Promise<void> {
    this.parts.push(Buffer.from(data));
  }

  async patch(position: number, data: Uint8Array): Promise<void> {
    // Only the header (first part) is ever patched.
    this.parts[0]!.set(data, position);
  }

  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

type TagValue = { type: 3 | 4 | 12 | 2; values: number[] | string };

const TYPE_BYTES: Record<number, number> = { 2: 1, 3: 2, 4: 4, 12: 8 };

function encodeValues(tag: TagValue): Buffer {
  if (tag.type === 2) return Buffer.from(`${tag.values as string}\0`, 'latin1');
  const values = tag.values as number[];
  const out = Buffer.alloc(values.length * TYPE_BYTES[tag.type]!);
  values.forEach((v, i) => {
    if (tag.type === 3) out.writeUInt16LE(v, i * 2);
    else if (tag.type === 4) out.writeUInt32LE(v, i * 4);
    else out.writeDoubleLE(v, i * 8);
  });
  return out;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Writes rows top to bottom; `finish` writes the directory. */
export class TiffRowWriter {
  private readonly rowBytes: number;
  readonly rowsPerStrip: number;
  private pending: Buffer;
  private pendingRows = 0;
  private rowsWritten = 0;
  private position = 8;
  private readonly stripOffsets: number[] = [];
  private readonly stripByteCounts: number[] = [];

  private constructor(
    private readonly options: TiffWriterOptions,
    private readonly sink: TiffSink,
  ) {
    this.rowBytes = options.width * options.bands * SAMPLE_BYTES[options.sampleType];
    this.rowsPerStrip = Math.min(options.height, options.rowsPerStrip ?? Math.max(1, Math.floor((256 * 1024) / this.rowBytes)));
    this.pending = Buffer.alloc(this.rowsPerStrip * this.rowBytes);
  }

  static async create(options: TiffWriterOptions, sink: TiffSink): Promise<TiffRowWriter> {
    const writer = new TiffRowWriter(options, sink);
    const header = Buffer.alloc(8);
    header.write('II', 0, 'latin1');
    header.writeUInt16LE(42, 2);
    await sink.append(header); // directory offset patched by finish()
    return writer;
  }

  /** `rows` rows of interleaved samples (`width × bands` per row) in the writer's sample type. */
  async writeRows(data: Uint8Array | Uint16Array | Float32Array, rows: number): Promise<void> {
    const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.length !== rows * this.rowBytes) throw new Error(`expected ${rows} rows of ${this.rowBytes} bytes`);
    if (this.rowsWritten + this.pendingRows + rows > this.options.height) throw new Error('more rows than the image has');
    let offset = 0;
    while (offset < bytes.length) {
      const room = (this.rowsPerStrip - this.pendingRows) * this.rowBytes;
      const take = Math.min(room, bytes.length - offset);
      bytes.copy(this.pending, this.pendingRows * this.rowBytes, offset, offset + take);
      this.pendingRows += take / this.rowBytes;
      offset += take;
      if (this.pendingRows === this.rowsPerStrip) await this.flushStrip();
    }
  }

  private async flushStrip(): Promise<void> {
    if (this.pendingRows === 0) return;
    const raw = this.pending.subarray(0, this.pendingRows * this.rowBytes);
    const data = this.options.compression === 'none' ? Buffer.from(raw) : await deflate(raw, { level: 6 });
    this.stripOffsets.push(this.position);
    this.stripByteCounts.push(data.length);
    await this.append(data);
    this.rowsWritten += this.pendingRows;
    this.pendingRows = 0;
  }

  private async append(data: Buffer): Promise<void> {
    await this.sink.append(data);
    this.position += data.length;
  }

  private async align(): Promise<void> {
    if (this.position % 2 === 1) await this.append(Buffer.alloc(1));
  }

  async finish(): Promise<void> {
    await this.flushStrip();
    const o = this.options;
    if (this.rowsWritten !== o.height) throw new Error(`wrote ${this.rowsWritten} of ${o.height} rows`);
    const bits = SAMPLE_BYTES[o.sampleType] * 8;
    const rgb = o.bands === 3 && o.sampleType === 'uint8';
    const tags = new Map<number, TagValue>([
      [256, { type: 4, values: [o.width] }],
      [257, { type: 4, values: [o.height] }],
      [258, { type: 3, values: Array(o.bands).fill(bits) }],
      [259, { type: 3, values: [o.compression === 'none' ? 1 : 8] }],
      [262, { type: 3, values: [rgb ? 2 : 1] }],
      [273, { type: 4, values: this.stripOffsets }],
      [277, { type: 3, values: [o.bands] }],
      [278, { type: 4, values: [this.rowsPerStrip] }],
      [279, { type: 4, values: this.stripByteCounts }],
      [284, { type: 3, values: [1] }],
      [339, { type: 3, values: Array(o.bands).fill(SAMPLE_FORMAT[o.sampleType]) }],
    ]);
    const extra = o.bands - (rgb ? 3 : 1);
    if (extra > 0) tags.set(338, { type: 3, values: Array(extra).fill(0) });
    const geo = o.geo;
    if (geo) {
      if (geo.modelPixelScale) tags.set(33550, { type: 12, values: geo.modelPixelScale });
      if (geo.modelTiepoint) tags.set(33922, { type: 12, values: geo.modelTiepoint });
      if (geo.modelTransformation) tags.set(34264, { type: 12, values: geo.modelTransformation });
      tags.set(34735, { type: 3, values: geo.geoKeyDirectory });
      if (geo.geoDoubleParams?.length) tags.set(34736, { type: 12, values: geo.geoDoubleParams });
      if (geo.geoAsciiParams) tags.set(34737, { type: 2, values: geo.geoAsciiParams });
    }
    if (o.bandNames?.length) {
      const items = o.bandNames.map((name, i) => `<Item name="DESCRIPTION" sample="${i}" role="description">${escapeXml(name)}</Item>`);
      tags.set(42112, { type: 2, values: `<GDALMetadata>${items.join('')}</GDALMetadata>` });
    }
    if (o.noData !== undefined && o.noData !== null) tags.set(42113, { type: 2, values: String(o.noData) });

    // Values longer than 4 bytes go before the directory; the entries point at them.
    const entries: Buffer[] = [];
    for (const id of [...tags.keys()].sort((a, b) => a - b)) {
      const tag = tags.get(id)!;
      const encoded = encodeValues(tag);
      const entry = Buffer.alloc(12);
      entry.writeUInt16LE(id, 0);
      entry.writeUInt16LE(tag.type, 2);
      entry.writeUInt32LE(tag.type === 2 ? encoded.length : (tag.values as number[]).length, 4);
      if (encoded.length <= 4) encoded.copy(entry, 8);
      else {
        await this.align();
        entry.writeUInt32LE(this.position, 8);
        await this.append(encoded);
      }
      entries.push(entry);
    }
    await this.align();
    const ifdOffset = this.position;
    const count = Buffer.alloc(2);
    count.writeUInt16LE(entries.length, 0);
    await this.append(Buffer.concat([count, ...entries, Buffer.alloc(4)]));
    if (this.position > 0xffff_ffff) throw new Error('the TIFF would exceed 4 GiB (BigTIFF is not supported)');
    const pointer = Buffer.alloc(4);
    pointer.writeUInt32LE(ifdOffset, 0);
    await this.sink.patch(4, pointer);
  }
}

/** A whole raster as (Geo)TIFF bytes (small images: tests and tools). */
export async function encodeTiff(options: TiffWriterOptions, data: Uint8Array | Uint16Array | Float32Array): Promise<Buffer> {
  const sink = new MemoryTiffSink();
  const writer = await TiffRowWriter.create(options, sink);
  await writer.writeRows(data, options.height);
  await writer.finish();
  return sink.bytes();
}
