// onnxruntime sessions for the services that run models (inference workers, automatic evaluation). Each session lives
// in a thread of its own: onnxruntime-node's run() blocks the thread that calls it for the whole inference (hundreds
// of milliseconds for a large tile batch), and in the embedded mode the gateway, the subgraphs and PGlite share the
// event loop with the worker. Off that loop, the rest of the platform keeps answering while a model runs. Inputs in
// shared memory (SharedArrayBuffer) cross the thread boundary without a copy on the caller's thread; others are
// copied. Outputs come back as copies.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { InferenceSession } from 'onnxruntime-node';

export type ExecutionProvider = 'cpu' | 'cuda';

export interface SessionSettings {
  /** In order of preference; `auto` tries CUDA (when its libraries are installed) and falls back to CPU. */
  providers: string[];
  cudaDeviceId: number;
  /** onnxruntime's intra-op threads (0: its default, one per core). */
  intraOpThreads: number;
  /** Whether onnxruntime's threads spin-wait between runs (its default) instead of sleeping; default false. */
  spinWait?: boolean;
}

export interface FloatTensor {
  data: Float32Array;
  dims: readonly number[];
}

export interface TimedOutputs {
  outputs: Record<string, FloatTensor>;
  /** onnxruntime's own time for the run, in its thread. */
  seconds: number;
}

/** Memory a session's thread reads inputs from without a copy on the caller's thread (see OrtSession.runTimed). */
export function sharedFloat32Array(length: number): Float32Array {
  return new Float32Array(new SharedArrayBuffer(length * Float32Array.BYTES_PER_ELEMENT));
}

/** onnxruntime could not create the session (bad model file, provider missing). */
export class SessionCreateError extends Error {
  constructor(
    message: string,
    /** The provider that failed to load it. */
    readonly provider: ExecutionProvider,
  ) {
    super(message);
    this.name = 'SessionCreateError';
  }
}

/**
 * Whether onnxruntime-node's CUDA provider libraries are installed next to its binding (its install script downloads
 * them when run with `--onnxruntime-node-install-cuda`; the npm package alone has CPU only). `auto` tries CUDA only
 * then, so that a CPU host does not log onnxruntime's failure to load them.
 */
export function cudaProviderInstalled(): boolean {
  try {
    const root = dirname(dirname(createRequire(import.meta.url).resolve('onnxruntime-node')));
    return existsSync(join(root, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'));
  } catch {
    return false;
  }
}

type FromThread =
  | { type: 'ready'; inputNames: string[]; outputNames: string[] }
  | { type: 'failed'; message: string }
  | { type: 'result'; id: number; outputs: Record<string, { type: string; data: Float32Array; dims: number[] }>; seconds: number }
  | { type: 'error'; id: number; message: string }
  | { type: 'released' };

const WORKER_URL = new URL('./ort-session.worker.mjs', import.meta.url);

/** One onnxruntime session, in its own thread. Runs may overlap; the thread takes them in turn. */
export class OrtSession {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (result: TimedOutputs) => void; reject: (error: Error) => void }>();
  private exited: Error | null = null;
  private released: Promise<void> | null = null;

  private constructor(
    private readonly worker: Worker,
    readonly provider: ExecutionProvider,
  ) {
    // Idle, the thread does not keep the process alive; a run in flight does.
    worker.unref();
    worker.on('message', (message: FromThread) => {
      if (message.type === 'released') void worker.terminate();
      if (message.type !== 'result' && message.type !== 'error') return;
      const waiter = this.pending.get(message.id);
      if (!waiter) return;
      this.pending.delete(message.id);
      if (this.pending.size === 0) worker.unref();
      if (message.type === 'result') waiter.resolve({ outputs: message.outputs, seconds: message.seconds });
      else waiter.reject(new Error(message.message));
    });
    const fail = (error: Error) => {
      this.exited ??= error;
      for (const waiter of this.pending.values()) waiter.reject(this.exited);
      this.pending.clear();
    };
    worker.on('error', (error) => fail(new Error(`the onnxruntime session thread failed: ${error.message}`)));
    worker.on('exit', (code) => fail(new Error(`the onnxruntime session thread exited (code ${code})`)));
  }

  /**
   * Opens a session on the first provider of `settings` that loads (CUDA falls back to CPU where the settings allow
   * it). Throws SessionCreateError with onnxruntime's reason when none does.
   */
  static async open(bytes: Uint8Array, settings: SessionSettings, onFallback?: (reason: string) => void): Promise<OrtSession> {
    const { providers, cudaDeviceId, intraOpThreads, spinWait = false } = settings;
    const base: InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
      interOpNumThreads: 1,
      ...(intraOpThreads > 0 && { intraOpNumThreads: intraOpThreads }),
      // Spinning keeps both cores of a small machine busy for a while after each run, just when the service's own
      // thread has the pair's outputs to write and the answer to send (README: INFERENCE_ORT_SPIN_WAIT).
      ...(!spinWait && { extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } } }),
    };
    const auto = providers[0] === 'auto';
    const tryCuda = auto ? !cudaUnavailable && cudaProviderInstalled() : providers[0] === 'cuda';
    const cpuAllowed = auto || providers.includes('cpu');
    if (tryCuda) {
      try {
        return await OrtSession.start(bytes, { ...base, executionProviders: [{ name: 'cuda', deviceId: cudaDeviceId }, ...(cpuAllowed ? ['cpu'] : [])] }, 'cuda');
      } catch (error) {
        if (!cpuAllowed) throw new SessionCreateError(`the CUDA execution provider could not be loaded: ${(error as Error).message}`, 'cuda');
        // Known for the life of the process: later sessions go straight to CPU.
        if (!cudaUnavailable) onFallback?.((error as Error).message);
        cudaUnavailable = true;
      }
    }
    return OrtSession.start(bytes, { ...base, executionProviders: ['cpu'] }, 'cpu');
  }

  private static start(bytes: Uint8Array, options: InferenceSession.SessionOptions, provider: ExecutionProvider): Promise<OrtSession> {
    const worker = new Worker(WORKER_URL, { workerData: { bytes, options } });
    return new Promise<OrtSession>((resolve, reject) => {
      const onExit = (code: number) => reject(new SessionCreateError(`the onnxruntime session thread exited (code ${code}) before the session opened`, provider));
      worker.once('exit', onExit);
      worker.once('error', (error) => reject(new SessionCreateError(error.message, provider)));
      worker.once('message', (message: FromThread) => {
        worker.off('exit', onExit);
        if (message.type === 'ready') resolve(new OrtSession(worker, provider));
        else {
          void worker.terminate();
          reject(new SessionCreateError(message.type === 'failed' ? message.message : `unexpected first message ${message.type}`, provider));
        }
      });
    });
  }

  run(feeds: Record<string, FloatTensor>): Promise<Record<string, FloatTensor>> {
    return this.runTimed(feeds).then((r) => r.outputs);
  }

  /**
   * Runs the model; also says how long onnxruntime itself took (in its thread, without the trip there and back).
   * Inputs in shared memory are read by the thread while the run is in flight: do not change them before it settles.
   */
  runTimed(feeds: Record<string, FloatTensor>): Promise<TimedOutputs> {
    if (this.exited) return Promise.reject(this.exited);
    if (this.released) return Promise.reject(new Error('the onnxruntime session was released'));
    const id = this.nextId++;
    const transfer: ArrayBuffer[] = [];
    const sent = Object.entries(feeds).map(([name, t]) => {
      if (t.data.buffer instanceof SharedArrayBuffer) return [name, { type: 'float32', data: t.data, dims: [...t.dims] }] as const;
      // A fresh copy: cloning a view would copy its whole backing buffer, and the caller reuses its buffers.
      const data = new Float32Array(t.data);
      transfer.push(data.buffer);
      return [name, { type: 'float32', data, dims: [...t.dims] }] as const;
    });
    const message = { type: 'run', id, feeds: Object.fromEntries(sent) };
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage(message, transfer);
    });
  }

  /** Frees the session once the runs already sent have finished; the thread ends. */
  release(): Promise<void> {
    this.released ??= this.exited
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          this.worker.once('exit', () => resolve());
          this.worker.postMessage({ type: 'release' });
        });
    return this.released;
  }
}

/** Set once CUDA failed to load in this process, so that `auto` stops trying it. */
let cudaUnavailable = false;
