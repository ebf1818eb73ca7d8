// PNG decoding and encoding one scanline at a time, so that a scene of any size passes through in bounded memory:
// the reader inflates IDAT data as rows are asked for (the compressed source is pulled as needed), the writer deflates
// rows as they come and emits IDAT chunks to a stream. Interlaced (Adam7) images cannot be read row by row.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { constants as zlibConstants, crc32, createDeflate, createInflate, deflate, deflateSync, type Deflate, type Inflate } from 'node:zlib';
import { decodePngInThread } from './decode-pool.js';
import { ImageDecodeError } from './probe.js';
import { unfilterRow as unfilter } from './png-unfilter.mjs';

const deflateAsync = promisify(deflate);

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
const VALID_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };
/** Larger chunks than any encoder writes are refused rather than buffered (a hostile length field). */
const MAX_CHUNK_BYTES = 64 * 1024 * 1024;

export interface PngHeader {
  width: number;
  height: number;
  bitDepth: number;
  /** 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA. */
  colorType: number;
  interlaced: boolean;
  /** Samples per pixel in the scanline (1 for palette indices). */
  channels: number;
  /** Bytes of one unfiltered scanline. */
  rowBytes: number;
}

interface Chunk {
  type: string;
  data: Buffer;
}

/** Pulls whole chunks out of a byte stream, checking lengths and CRCs. */
class ChunkReader {
  private buffer: Buffer = Buffer.alloc(0);
  private ended = false;

  constructor(private readonly source: AsyncIterator<Uint8Array>) {}

  private async fill(bytes: number): Promise<boolean> {
    while (this.buffer.length < bytes) {
      if (this.ended) return false;
      const next = await this.source.next();
      if (next.done) {
        this.ended = true;
        return false;
      }
      this.buffer = this.buffer.length === 0 ? Buffer.from(next.value) : Buffer.concat([this.buffer, next.value]);
    }
    return true;
  }

  async signature(): Promise<void> {
    if (!(await this.fill(8))) {
      if (this.buffer.length === 0) throw new ImageDecodeError('EMPTY_FILE', 'The file is empty');
      throw new ImageDecodeError('TRUNCATED', 'The PNG is shorter than its signature');
    }
    if (!this.buffer.subarray(0, 8).equals(SIGNATURE)) throw new ImageDecodeError('NOT_AN_IMAGE', 'The file is not a PNG image');
    this.buffer = this.buffer.subarray(8);
  }

  /** The next chunk, or null at the end of the stream. */
  async next(): Promise<Chunk | null> {
    if (!(await this.fill(8))) {
      if (this.buffer.length === 0) return null;
      throw new ImageDecodeError('TRUNCATED', 'The PNG ends inside a chunk header');
    }
    const length = this.buffer.readUInt32BE(0);
    const type = this.buffer.toString('latin1', 4, 8);
    if (!/^[A-Za-z]{4}$/.test(type)) throw new ImageDecodeError('CORRUPT', 'The PNG has an invalid chunk type');
    if (length > MAX_CHUNK_BYTES) throw new ImageDecodeError('CORRUPT', `The PNG has a ${type} chunk of ${length} bytes`);
    if (!(await this.fill(12 + length))) throw new ImageDecodeError('TRUNCATED', `The PNG ends inside its ${type} chunk`);
    const data = this.buffer.subarray(8, 8 + length);
    const expected = this.buffer.readUInt32BE(8 + length);
    if (crc32(this.buffer.subarray(4, 8 + length)) !== expected) throw new ImageDecodeError('CORRUPT', `The PNG's ${type} chunk fails its CRC check`);
    this.buffer = this.buffer.subarray(12 + length);
    return { type, data };
  }

  async close(): Promise<void> {
    await this.source.return?.();
  }
}

/** Reverses a scanline's filter in place; throws ImageDecodeError for an unknown filter type. */
export function unfilterRow(filter: number, row: Uint8Array, prior: Uint8Array, bpp: number): void {
  try {
    unfilter(filter, row, prior, bpp);
  } catch (error) {
    throw asDecodeError(error);
  }
}

/** An error of png-unfilter.mjs as the ImageDecodeError it stands for. */
function asDecodeError(error: unknown): unknown {
  const problem = (error as { problem?: ImageDecodeError['problem'] } | null)?.problem;
  return problem ? new ImageDecodeError(problem, (error as Error).message) : error;
}

function parseHeader(data: Buffer): PngHeader {
  if (data.length !== 13) throw new ImageDecodeError('CORRUPT', 'The PNG header chunk has the wrong length');
  const width = data.readUInt32BE(0);
  const height = data.readUInt32BE(4);
  const bitDepth = data[8]!;
  const colorType = data[9]!;
  const channels = CHANNELS[colorType];
  if (channels === undefined || !VALID_DEPTHS[colorType]!.includes(bitDepth)) {
    throw new ImageDecodeError('CORRUPT', `The PNG has an invalid colour type ${colorType} / bit depth ${bitDepth}`);
  }
  if (data[10] !== 0 || data[11] !== 0 || data[12]! > 1) throw new ImageDecodeError('CORRUPT', 'The PNG uses an unknown compression, filter or interlace method');
  if (width < 1 || height < 1) throw new ImageDecodeError('CORRUPT', `The image has an invalid size ${width}×${height}`);
  return { width, height, bitDepth, colorType, interlaced: data[12] === 1, channels, rowBytes: Math.ceil((width * channels * bitDepth) / 8) };
}

/** Resolves when the stream can take more, or has gone away. */
function drained(stream: Inflate | Deflate): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off('drain', done);
      stream.off('close', done);
      resolve();
    };
    stream.on('drain', done);
    stream.on('close', done);
  });
}

/**
 * A PNG read scanline by scanline. `open` reads up to the first image data, so the header (and with it a decompression
 * bomb's absurd size) is known before any pixel is inflated.
 */
export class PngRowReader {
  private constructor(
    readonly header: PngHeader,
    /** RGB entries of a palette image. */
    readonly palette: Uint8Array | null,
    private readonly chunks: ChunkReader,
    private readonly firstData: Buffer | null,
  ) {}

  static async open(source: AsyncIterable<Uint8Array>): Promise<PngRowReader> {
    const chunks = new ChunkReader(source[Symbol.asyncIterator]());
    try {
      await chunks.signature();
      const first = await chunks.next();
      if (!first || first.type !== 'IHDR') throw new ImageDecodeError(first ? 'CORRUPT' : 'TRUNCATED', 'The PNG does not start with its header chunk');
      const header = parseHeader(first.data);
      let palette: Uint8Array | null = null;
      for (;;) {
        const chunk = await chunks.next();
        if (!chunk) throw new ImageDecodeError('TRUNCATED', 'The PNG ends before its image data');
        if (chunk.type === 'PLTE') palette = new Uint8Array(chunk.data);
        else if (chunk.type === 'IDAT') {
          if (header.colorType === 3 && !palette) throw new ImageDecodeError('CORRUPT', 'The palette PNG has no palette');
          return new PngRowReader(header, palette, chunks, chunk.data);
        } else if (chunk.type === 'IEND') throw new ImageDecodeError('CORRUPT', 'The PNG has no image data');
      }
    } catch (error) {
      await chunks.close().catch(() => undefined);
      throw error;
    }
  }

  /**
   * Yields the unfiltered scanlines top to bottom. The yielded array is reused for the row after next: copy what you
   * keep. Throws ImageDecodeError (TRUNCATED, CORRUPT) when the data ends early or does not inflate.
   */
  async *rows(): AsyncGenerator<Uint8Array> {
    const { header } = this;
    if (header.interlaced) throw new ImageDecodeError('UNSUPPORTED', 'Interlaced PNGs cannot be read row by row');
    const bpp = bytesPerPixel(header);
    const inflate = createInflate({ chunkSize: 256 * 1024 });
    let feedError: unknown = null;
    const feed = async () => {
      try {
        if (this.firstData && !inflate.write(this.firstData)) await drained(inflate);
        while (!inflate.destroyed) {
          const chunk = await this.chunks.next();
          if (!chunk) throw new ImageDecodeError('TRUNCATED', 'The PNG ends before its IEND chunk (truncated file?)');
          if (chunk.type === 'IEND') break;
          if (chunk.type === 'IDAT' && !inflate.write(chunk.data)) await drained(inflate);
        }
        if (!inflate.destroyed) inflate.end();
      } catch (error) {
        feedError = error;
        inflate.destroy(error as Error);
      }
    };
    const feeding = feed();
    let current = new Uint8Array(header.rowBytes);
    let prior = new Uint8Array(header.rowBytes);
    let filter = -1;
    let filled = 0;
    let produced = 0;
    try {
      for await (const piece of inflate as AsyncIterable<Buffer>) {
        let offset = 0;
        while (offset < piece.length && produced < header.height) {
          if (filter < 0) {
            filter = piece[offset++]!;
            continue;
          }
          const take = Math.min(header.rowBytes - filled, piece.length - offset);
          current.set(piece.subarray(offset, offset + take), filled);
          filled += take;
          offset += take;
          if (filled === header.rowBytes) {
            unfilterRow(filter, current, prior, bpp);
            produced += 1;
            yield current;
            [current, prior] = [prior, current];
            filter = -1;
            filled = 0;
          }
        }
        if (produced === header.height) break;
      }
    } catch (error) {
      if (error instanceof ImageDecodeError) throw error;
      if (feedError instanceof ImageDecodeError) throw feedError;
      const message = (error as Error).message ?? String(error);
      throw new ImageDecodeError(/unexpected end/i.test(message) ? 'TRUNCATED' : 'CORRUPT', `The PNG image data does not inflate: ${message}`);
    } finally {
      inflate.destroy();
      await feeding;
      await this.chunks.close().catch(() => undefined);
    }
    if (feedError instanceof ImageDecodeError && produced < header.height) throw feedError;
    if (produced < header.height) {
      throw new ImageDecodeError('TRUNCATED', `The PNG image data ends after ${produced} of ${header.height} rows (truncated file?)`);
    }
  }

  async close(): Promise<void> {
    await this.chunks.close().catch(() => undefined);
  }
}

/**
 * Decodes a PNG held in memory in one go: chunks parsed here, then all image data inflated (bounded by the size the
 * header declares) and unfiltered in a decode thread. Faster than the streaming reader for small images; the caller
 * checks the header (`header`) against its limits before calling `decode`. Same errors as PngRowReader.
 */
export class PngBufferReader {
  private constructor(
    readonly header: PngHeader,
    readonly palette: Uint8Array | null,
    private readonly data: Buffer[],
  ) {}

  static open(bytes: Uint8Array): PngBufferReader {
    const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    if (b.length === 0) throw new ImageDecodeError('EMPTY_FILE', 'The file is empty');
    if (b.length < 8) throw new ImageDecodeError('TRUNCATED', 'The PNG is shorter than its signature');
    if (!b.subarray(0, 8).equals(SIGNATURE)) throw new ImageDecodeError('NOT_AN_IMAGE', 'The file is not a PNG image');
    let offset = 8;
    let header: PngHeader | null = null;
    let palette: Uint8Array | null = null;
    const data: Buffer[] = [];
    for (;;) {
      if (offset === b.length) throw new ImageDecodeError('TRUNCATED', header ? 'The PNG ends before its IEND chunk (truncated file?)' : 'The PNG ends before its image data');
      if (offset + 8 > b.length) throw new ImageDecodeError('TRUNCATED', 'The PNG ends inside a chunk header');
      const length = b.readUInt32BE(offset);
      const type = b.toString('latin1', offset + 4, offset + 8);
      if (!/^[A-Za-z]{4}$/.test(type)) throw new ImageDecodeError('CORRUPT', 'The PNG has an invalid chunk type');
      if (length > MAX_CHUNK_BYTES) throw new ImageDecodeError('CORRUPT', `The PNG has a ${type} chunk of ${length} bytes`);
      if (offset + 12 + length > b.length) throw new ImageDecodeError('TRUNCATED', `The PNG ends inside its ${type} chunk`);
      if (crc32(b.subarray(offset + 4, offset + 8 + length)) !== b.readUInt32BE(offset + 8 + length)) {
        throw new ImageDecodeError('CORRUPT', `The PNG's ${type} chunk fails its CRC check`);
      }
      const body = b.subarray(offset + 8, offset + 8 + length);
      offset += 12 + length;
      if (!header) {
        if (type !== 'IHDR') throw new ImageDecodeError('CORRUPT', 'The PNG does not start with its header chunk');
        header = parseHeader(body);
      } else if (type === 'PLTE') palette = new Uint8Array(body);
      else if (type === 'IDAT') data.push(body);
      else if (type === 'IEND') break;
    }
    if (data.length === 0) throw new ImageDecodeError('CORRUPT', 'The PNG has no image data');
    if (header.colorType === 3 && !palette) throw new ImageDecodeError('CORRUPT', 'The palette PNG has no palette');
    return new PngBufferReader(header, palette, data);
  }

  private decoded: { pixels: Uint8Array; rows: number } | null = null;

  /**
   * Inflates and unfilters the whole image, in a decode thread (decode-pool.ts): the images of a pair decode in
   * parallel, off this thread. Throws ImageDecodeError (UNSUPPORTED, TRUNCATED, CORRUPT).
   */
  async decode(): Promise<void> {
    const h = this.header;
    if (h.interlaced) throw new ImageDecodeError('UNSUPPORTED', 'Interlaced PNGs cannot be read row by row');
    this.decoded ??= await decodePngInThread(Buffer.concat(this.data), { height: h.height, rowBytes: h.rowBytes, bpp: bytesPerPixel(h) });
  }

  /** The decoded scanlines top to bottom, as views (after decode()); TRUNCATED where the data ended early. */
  *rows(): Generator<Uint8Array> {
    const h = this.header;
    if (!this.decoded) throw new Error('PngBufferReader.rows() before decode()');
    const { pixels, rows } = this.decoded;
    for (let y = 0; y < rows; y++) yield pixels.subarray(y * h.rowBytes, (y + 1) * h.rowBytes);
    if (rows < h.height) throw new ImageDecodeError('TRUNCATED', `The PNG image data ends after ${rows} of ${h.height} rows (truncated file?)`);
  }
}

/** Bytes per complete pixel (at least 1): how far back the filters look. */
function bytesPerPixel(h: PngHeader): number {
  return Math.max(1, Math.ceil((h.channels * h.bitDepth) / 8));
}

// ---------------------------------------------------------------------------------------------------------------------
// Writer
// ---------------------------------------------------------------------------------------------------------------------
function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** Wraps deflated bytes into IDAT chunks of at least `size` bytes; the signature and header go first, IEND last. */
class IdatChunker extends Transform {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(
    private readonly head: Buffer,
    private readonly size = 256 * 1024,
  ) {
    super();
    this.push(head);
  }

  override _transform(data: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pending.push(data);
    this.pendingBytes += data.length;
    if (this.pendingBytes >= this.size) this.flushPending();
    callback();
  }

  override _flush(callback: TransformCallback): void {
    this.flushPending();
    this.push(chunk('IEND', Buffer.alloc(0)));
    callback();
  }

  private flushPending(): void {
    if (this.pendingBytes === 0) return;
    this.push(chunk('IDAT', Buffer.concat(this.pending, this.pendingBytes)));
    this.pending = [];
    this.pendingBytes = 0;
  }
}

export interface PngWriterOptions {
  width: number;
  height: number;
  /** 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA (8-bit samples). */
  colorType: 0 | 2 | 4 | 6;
  /** zlib level 0-9 (default 3: nearly the size of 6 at a fraction of the time for masks and maps). */
  level?: number;
}

/** Encodes 8-bit rows into a PNG stream without holding the image. */
export class PngRowWriter {
  private readonly deflate: Deflate;
  private readonly done: Promise<void>;
  private rowsWritten = 0;
  readonly rowBytes: number;

  constructor(
    private readonly options: PngWriterOptions,
    sink: Writable,
  ) {
    this.rowBytes = options.width * CHANNELS[options.colorType]!;
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(options.width, 0);
    ihdr.writeUInt32BE(options.height, 4);
    ihdr[8] = 8;
    ihdr[9] = options.colorType;
    this.deflate = createDeflate({ level: options.level ?? 3, strategy: zlibConstants.Z_DEFAULT_STRATEGY, chunkSize: 256 * 1024 });
    this.done = pipeline(this.deflate, new IdatChunker(Buffer.concat([SIGNATURE, chunk('IHDR', ihdr)])), sink);
    // Surfaced by finish(); without a listener a failure before then would be an unhandled rejection.
    this.done.catch(() => undefined);
  }

  /** Appends `rows` whole rows of `width × channels` bytes each (filter: none). */
  async writeRows(data: Uint8Array, rows: number): Promise<void> {
    if (data.length !== rows * this.rowBytes) throw new Error(`expected ${rows} rows of ${this.rowBytes} bytes`);
    if (this.rowsWritten + rows > this.options.height) throw new Error('more rows than the image has');
    const out = Buffer.alloc(rows * (this.rowBytes + 1));
    for (let r = 0; r < rows; r++) out.set(data.subarray(r * this.rowBytes, (r + 1) * this.rowBytes), r * (this.rowBytes + 1) + 1);
    this.rowsWritten += rows;
    if (!this.deflate.write(out)) await Promise.race([once(this.deflate, 'drain'), this.done]);
  }

  async finish(): Promise<void> {
    if (this.rowsWritten !== this.options.height) throw new Error(`wrote ${this.rowsWritten} of ${this.options.height} rows`);
    this.deflate.end();
    await this.done;
  }

  abort(): void {
    this.deflate.destroy(new Error('aborted'));
  }
}

/** Scanlines with their filter byte (none) in front, and the framing around the deflated data. */
function pngParts(options: PngWriterOptions, data: Uint8Array): { filtered: Buffer; frame: (idat: Buffer) => Buffer } {
  const rowBytes = options.width * CHANNELS[options.colorType]!;
  if (data.length !== rowBytes * options.height) throw new Error(`expected ${options.height} rows of ${rowBytes} bytes`);
  const filtered = Buffer.alloc(options.height * (rowBytes + 1));
  for (let y = 0; y < options.height; y++) filtered.set(data.subarray(y * rowBytes, (y + 1) * rowBytes), y * (rowBytes + 1) + 1);
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(options.width, 0);
  ihdr.writeUInt32BE(options.height, 4);
  ihdr[8] = 8;
  ihdr[9] = options.colorType;
  return { filtered, frame: (idat) => Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', idat), chunk('IEND', Buffer.alloc(0))]) };
}

/**
 * A whole 8-bit image held in memory as PNG bytes, compressed on libuv's thread pool: several images encode in
 * parallel, and the event loop stays free meanwhile.
 */
export async function encodePng(options: PngWriterOptions, data: Uint8Array): Promise<Buffer> {
  const { filtered, frame } = pngParts(options, data);
  return frame(await deflateAsync(filtered, { level: options.level ?? 3 }));
}

/** A whole 8-bit image as PNG bytes, synchronously (small images: one deflate call, no streams). */
export function encodePngSync(options: PngWriterOptions, data: Uint8Array): Buffer {
  const { filtered, frame } = pngParts(options, data);
  return frame(deflateSync(filtered, { level: options.level ?? 3 }));
}
