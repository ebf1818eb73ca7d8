// Reads an image's format and dimensions from its header alone, so that absurd sizes (decompression bombs) are
// refused before a single pixel is decoded.

export type ImageFormat = 'png' | 'jpeg' | 'tiff';

export interface ImageHeader {
  format: ImageFormat;
  width: number;
  height: number;
  bands: number;
  bitsPerSample: number;
}

export class ImageDecodeError extends Error {
  constructor(
    readonly problem: 'NOT_AN_IMAGE' | 'EMPTY_FILE' | 'TRUNCATED' | 'CORRUPT' | 'TOO_LARGE' | 'UNSUPPORTED',
    message: string,
  ) {
    super(message);
    this.name = 'ImageDecodeError';
  }
}

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const PNG_CHANNELS: Record<number, number> = { 0: 1, 2: 3, 3: 3, 4: 2, 6: 4 };

export function sniffFormat(bytes: Uint8Array): ImageFormat | null {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (b.length >= 8 && b.subarray(0, 8).equals(PNG_SIGNATURE)) return 'png';
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  // Classic TIFF (42) and BigTIFF (43), little- or big-endian.
  if (b.length >= 4 && ((b[0] === 0x49 && b[1] === 0x49 && (b[2] === 42 || b[2] === 43) && b[3] === 0) || (b[0] === 0x4d && b[1] === 0x4d && b[2] === 0 && (b[3] === 42 || b[3] === 43)))) {
    return 'tiff';
  }
  return null;
}

export function probeImage(bytes: Uint8Array): ImageHeader {
  if (bytes.byteLength === 0) throw new ImageDecodeError('EMPTY_FILE', 'The file is empty');
  const format = sniffFormat(bytes);
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (format) {
    case 'png':
      return probePng(b);
    case 'jpeg':
      return probeJpeg(b);
    case 'tiff':
      return probeTiff(b);
    case null:
      throw new ImageDecodeError('NOT_AN_IMAGE', 'The file is not a PNG, JPEG or TIFF image');
  }
}

function probePng(b: Buffer): ImageHeader {
  if (b.length < 33 || b.toString('latin1', 12, 16) !== 'IHDR') throw new ImageDecodeError('TRUNCATED', 'The PNG header is truncated');
  const colorType = b[25]!;
  const bands = PNG_CHANNELS[colorType];
  if (!bands) throw new ImageDecodeError('CORRUPT', `The PNG has an invalid colour type ${colorType}`);
  return { format: 'png', width: b.readUInt32BE(16), height: b.readUInt32BE(20), bands, bitsPerSample: b[24]! };
}

function probeJpeg(b: Buffer): ImageHeader {
  let offset = 2;
  while (offset + 4 <= b.length) {
    if (b[offset] !== 0xff) throw new ImageDecodeError('CORRUPT', 'The JPEG marker stream is corrupt');
    const marker = b[offset + 1]!;
    if (marker === 0xff) {
      offset += 1;
      continue;
    }
    const length = b.readUInt16BE(offset + 2);
    // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC) carry the frame size.
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (offset + 10 > b.length) break;
      return {
        format: 'jpeg',
        bitsPerSample: b[offset + 4]!,
        height: b.readUInt16BE(offset + 5),
        width: b.readUInt16BE(offset + 7),
        bands: b[offset + 9]!,
      };
    }
    offset += 2 + length;
  }
  throw new ImageDecodeError('TRUNCATED', 'The JPEG ends before its frame header');
}

function probeTiff(b: Buffer): ImageHeader {
  const le = b[0] === 0x49;
  if (b.length < 8) throw new ImageDecodeError('TRUNCATED', 'The TIFF header is truncated');
  const u16 = (o: number) => (le ? b.readUInt16LE(o) : b.readUInt16BE(o));
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const u64 = (o: number) => Number(le ? b.readBigUInt64LE(o) : b.readBigUInt64BE(o));
  const big = u16(2) === 43;
  if (big && b.length < 16) throw new ImageDecodeError('TRUNCATED', 'The BigTIFF header is truncated');
  const ifd = big ? u64(8) : u32(4);
  const countBytes = big ? 8 : 2;
  const entryBytes = big ? 20 : 12;
  if (ifd + countBytes > b.length) throw new ImageDecodeError('TRUNCATED', 'The TIFF directory lies past the end of the file');
  const count = big ? u64(ifd) : u16(ifd);
  const tags = new Map<number, { type: number; valueOffset: number }>();
  for (let i = 0; i < count; i++) {
    const e = ifd + countBytes + i * entryBytes;
    if (e + entryBytes > b.length) throw new ImageDecodeError('TRUNCATED', 'The TIFF directory is truncated');
    tags.set(u16(e), { type: u16(e + 2), valueOffset: e + (big ? 12 : 8) });
  }
  const value = (tag: number, fallback?: number): number => {
    const t = tags.get(tag);
    if (!t) {
      if (fallback === undefined) throw new ImageDecodeError('CORRUPT', `The TIFF lacks required tag ${tag}`);
      return fallback;
    }
    return t.type === 3 ? u16(t.valueOffset) : t.type === 16 ? u64(t.valueOffset) : u32(t.valueOffset);
  };
  return { format: 'tiff', width: value(256), height: value(257), bands: value(277, 1), bitsPerSample: value(258, 1) };
}

export interface ImageLimits {
  maxPixels: number;
  maxSide: number;
}

export function assertWithinLimits(header: ImageHeader, limits: ImageLimits): void {
  if (header.width < 1 || header.height < 1) {
    throw new ImageDecodeError('CORRUPT', `The image has an invalid size ${header.width}×${header.height}`);
  }
  if (header.width > limits.maxSide || header.height > limits.maxSide || header.width * header.height > limits.maxPixels) {
    throw new ImageDecodeError(
      'TOO_LARGE',
      `The image is ${header.width}×${header.height} pixels; the limit is ${limits.maxSide} px a side and ${limits.maxPixels} pixels`,
    );
  }
}
