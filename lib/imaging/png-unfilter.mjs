// PNG scanline unfiltering and whole-image decoding, in plain JavaScript: png-stream.ts unfilters streamed rows with
// it on the caller's thread, and png-decode.worker.mjs decodes whole images with it in the decode threads (a worker
// thread loads it as it is: from the source tree in tests, from dist/ in a build). Errors carry the ImageDecodeError
// problem they stand for (`problem`).
import { inflateSync } from 'node:zlib';

function decodeError(problem, message) {
  return Object.assign(new Error(message), { problem });
}

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Reverses a scanline's filter in place (`row` holds the filtered bytes without the filter-type byte). */
export function unfilterRow(filter, row, prior, bpp) {
  const n = row.length;
  switch (filter) {
    case 0:
      return;
    case 1:
      for (let i = bpp; i < n; i++) row[i] = (row[i] + row[i - bpp]) & 0xff;
      return;
    case 2:
      for (let i = 0; i < n; i++) row[i] = (row[i] + prior[i]) & 0xff;
      return;
    case 3:
      for (let i = 0; i < bpp; i++) row[i] = (row[i] + (prior[i] >> 1)) & 0xff;
      for (let i = bpp; i < n; i++) row[i] = (row[i] + ((row[i - bpp] + prior[i]) >> 1)) & 0xff;
      return;
    case 4:
      for (let i = 0; i < bpp; i++) row[i] = (row[i] + prior[i]) & 0xff;
      for (let i = bpp; i < n; i++) row[i] = (row[i] + paeth(row[i - bpp], prior[i], prior[i - bpp])) & 0xff;
      return;
    default:
      throw decodeError('CORRUPT', `The PNG has a scanline with an invalid filter type ${filter}`);
  }
}

/** Inflates the image data (bounded by the size the header declares). */
function inflateImageData(data, height, rowBytes) {
  try {
    return inflateSync(data, { maxOutputLength: height * (rowBytes + 1) + 1 });
  } catch (error) {
    const message = error?.message ?? String(error);
    throw decodeError(/unexpected end/i.test(message) ? 'TRUNCATED' : 'CORRUPT', `The PNG image data does not inflate: ${message}`);
  }
}

/**
 * Inflates and unfilters a whole non-interlaced image: `pixels` holds its rows back to back (rowBytes each, filter
 * bytes dropped); `rows` says how many the data held (fewer than `height` when it ends early).
 */
export function decodeImageData(data, height, rowBytes, bpp) {
  const raw = inflateImageData(data, height, rowBytes);
  const stride = rowBytes + 1;
  const rows = Math.min(height, Math.floor(raw.length / stride));
  const pixels = new Uint8Array(rows * rowBytes);
  let prior = new Uint8Array(rowBytes);
  for (let y = 0; y < rows; y++) {
    const row = pixels.subarray(y * rowBytes, (y + 1) * rowBytes);
    row.set(raw.subarray(y * stride + 1, (y + 1) * stride));
    unfilterRow(raw[y * stride], row, prior, bpp);
    prior = row;
  }
  return { pixels, rows };
}
