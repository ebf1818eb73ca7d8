// A decode thread (see decode-pool.ts): inflates and unfilters whole PNG images sent to it, one at a time.
import { parentPort } from 'node:worker_threads';
import { decodeImageData } from './png-unfilter.mjs';

parentPort.on('message', ({ id, data, height, rowBytes, bpp }) => {
  try {
    const { pixels, rows } = decodeImageData(data, height, rowBytes, bpp);
    parentPort.postMessage({ id, pixels, rows }, [pixels.buffer]);
  } catch (error) {
    parentPort.postMessage({ id, error: { problem: error?.problem ?? 'CORRUPT', message: String(error?.message ?? error) } });
  }
});
