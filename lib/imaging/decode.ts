// Decodes PNG and JPEG into planar-agnostic interleaved pixel buffers, after the header checks of probe.ts.
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { assertWithinLimits, ImageDecodeError, probeImage, type ImageHeader, type ImageLimits } from './probe.js';

export interface RasterImage {
  width: number;
  height: number;
  bands: number;
  /** Interleaved samples, row-major: (y * width + x) * bands + band. */
  data: Uint8Array | Uint16Array | Float32Array;
  header: ImageHeader;
}

export const DEFAULT_LIMITS: ImageLimits = { maxPixels: 16_384 * 16_384, maxSide: 65_536 };

export function decodeImage(bytes: Uint8Array, limits: ImageLimits = DEFAULT_LIMITS): RasterImage {
  const header = probeImage(bytes);
  assertWithinLimits(header, limits);
  const buffer = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (header.format) {
    case 'png':
      return decodePng(buffer, header);
    case 'jpeg':
      return decodeJpeg(buffer, header, limits);
    case 'tiff':
      throw new ImageDecodeError('UNSUPPORTED', 'TIFF images are decoded by the inference worker only');
  }
}

function decodePng(buffer: Buffer, header: ImageHeader): RasterImage {
  let png: PNG;
  try {
    // skipRescale keeps 16-bit samples; pngjs expands everything to RGBA, which is reduced back to the real bands below.
    png = PNG.sync.read(buffer, { skipRescale: true } as never);
  } catch (error) {
    const message = (error as Error).message ?? '';
    const truncated = /unexpected end|Unexpected end|ended|truncat/i.test(message);
    throw new ImageDecodeError(truncated ? 'TRUNCATED' : 'CORRUPT', `The PNG could not be decoded: ${message}`);
  }
  const bands = header.bands === 2 ? 2 : header.bands === 1 ? 1 : header.bands; // grey, grey+alpha, RGB, RGBA
  const pixels = png.width * png.height;
  const sixteen = header.bitsPerSample === 16;
  const source = png.data as unknown as Uint8Array | Uint16Array;
  const out = sixteen ? new Uint16Array(pixels * bands) : new Uint8Array(pixels * bands);
  const pick = bands === 1 ? [0] : bands === 2 ? [0, 3] : bands === 3 ? [0, 1, 2] : [0, 1, 2, 3];
  for (let p = 0; p < pixels; p++) {
    for (let c = 0; c < bands; c++) out[p * bands + c] = source[p * 4 + pick[c]!]!;
  }
  return { width: png.width, height: png.height, bands, data: out, header };
}

function decodeJpeg(buffer: Buffer, header: ImageHeader, limits: ImageLimits): RasterImage {
  try {
    const maxMegapixels = limits.maxPixels / 1_000_000;
    const decoded = jpeg.decode(buffer, { useTArray: true, formatAsRGBA: false, maxResolutionInMP: maxMegapixels, maxMemoryUsageInMB: 2048 });
    const bands = decoded.data.length / (decoded.width * decoded.height);
    return { width: decoded.width, height: decoded.height, bands, data: decoded.data, header: { ...header, bands } };
  } catch (error) {
    throw new ImageDecodeError('CORRUPT', `The JPEG could not be decoded: ${(error as Error).message}`);
  }
}

/** True when every sample is 0 or the band's "on" value (1 or 255): what a change label must be. */
export function isBinaryMask(image: RasterImage): boolean {
  const { data } = image;
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v !== 0 && v !== 1 && v !== 255) return false;
  }
  return true;
}
