// Threads that inflate and unfilter PNG images held in memory (png-decode.worker.mjs). A pair's two images then
// decode at the same time, each on a core of its own, while the caller's thread (in the embedded mode, the thread of
// every service) stays free. Threads start on first use and do not keep the process alive while idle; one that dies
// fails only the images it held, and the next image starts a fresh one.
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { ImageDecodeError } from './probe.js';

type ImageProblem = ImageDecodeError['problem'];

const WORKER_URL = new URL('./png-decode.worker.mjs', import.meta.url);

interface Waiter {
  resolve: (decoded: { pixels: Uint8Array; rows: number }) => void;
  reject: (error: Error) => void;
}

type FromThread = { id: number; pixels: Uint8Array; rows: number } | { id: number; error: { problem: ImageProblem; message: string } };

class DecodeThread {
  readonly pending = new Map<number, Waiter>();
  private readonly worker = new Worker(WORKER_URL);

  constructor(onGone: (thread: DecodeThread) => void) {
    this.worker.unref();
    this.worker.on('message', (message: FromThread) => {
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) this.worker.unref();
      if ('error' in message) waiter.reject(new ImageDecodeError(message.error.problem, message.error.message));
      else waiter.resolve({ pixels: message.pixels, rows: message.rows });
    });
    const fail = (error: Error) => {
      onGone(this);
      for (const waiter of this.pending.values()) waiter.reject(error);
      this.pending.clear();
    };
    this.worker.on('error', (error) => fail(new Error(`a PNG decode thread failed: ${error.message}`)));
    this.worker.on('exit', (code) => fail(new Error(`a PNG decode thread exited (code ${code})`)));
  }

  decode(id: number, data: Uint8Array, geometry: PngGeometry): Promise<{ pixels: Uint8Array; rows: number }> {
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      // Handed over rather than copied when the bytes have a buffer of their own (decodePngInThread's contract).
      const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength && data.buffer instanceof ArrayBuffer;
      this.worker.postMessage({ id, data, ...geometry }, own ? [data.buffer as ArrayBuffer] : []);
    });
  }
}

export interface PngGeometry {
  height: number;
  rowBytes: number;
  /** Bytes per complete pixel (at least 1), the distance the filters look back. */
  bpp: number;
}

const SIZE = Math.max(1, Math.min(2, availableParallelism()));
const threads: DecodeThread[] = [];
let nextId = 0;

/**
 * Inflates and unfilters one non-interlaced PNG's image data (its IDAT chunks, concatenated) in a decode thread:
 * its rows back to back, without filter bytes, and how many the data held. Throws ImageDecodeError as the
 * caller-thread decoder does. `data` is handed to the thread when it fills a buffer of its own: do not use it after.
 */
export function decodePngInThread(data: Uint8Array, geometry: PngGeometry): Promise<{ pixels: Uint8Array; rows: number }> {
  let thread = threads.find((t) => t.pending.size === 0);
  if (!thread && threads.length < SIZE) {
    thread = new DecodeThread((gone) => {
      const i = threads.indexOf(gone);
      if (i >= 0) threads.splice(i, 1);
    });
    threads.push(thread);
  }
  thread ??= threads.reduce((a, b) => (b.pending.size < a.pending.size ? b : a));
  return thread.decode(nextId++, data, geometry);
}
