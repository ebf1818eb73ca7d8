// What the inference worker reports to Prometheus: latency, tiles, in-flight work, queue depths, loaded model
// versions, outcomes, and GPU utilisation and memory when it runs on CUDA (sampled with nvidia-smi).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { Broker } from '../../lib/broker/broker.js';

const run = promisify(execFile);

export type WorkKind = 'sync' | 'batch';

export class InferenceMetrics {
  readonly pairDuration: Histogram<'kind' | 'outcome'>;
  readonly runDuration: Histogram<'execution_provider'>;
  readonly tiles: Counter<'kind'>;
  readonly tilesPerSecond: Gauge<'kind'>;
  readonly inFlight: Gauge<'kind'>;
  readonly pairs: Counter<'kind' | 'outcome'>;
  readonly queueDepth: Gauge<'queue'>;
  readonly modelInfo: Gauge<'model_name' | 'version_id' | 'execution_provider' | 'production'>;
  readonly modelLoadDuration: Histogram;
  readonly gpuUtilization: Gauge<'gpu'>;
  readonly gpuMemoryUsed: Gauge<'gpu'>;
  readonly gpuMemoryTotal: Gauge<'gpu'>;

  constructor(readonly registry: Registry) {
    const registers = [registry];
    this.pairDuration = new Histogram({
      name: 'lcd_inference_pair_duration_seconds',
      help: 'Time to process one pair end to end (fetch, decode, tile, run, stitch, encode, store)',
      labelNames: ['kind', 'outcome'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800],
      registers,
    });
    this.runDuration = new Histogram({
      name: 'lcd_inference_model_run_duration_seconds',
      help: 'Time of one onnxruntime call (a batch of tiles)',
      labelNames: ['execution_provider'] as const,
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
    this.tiles = new Counter({ name: 'lcd_inference_tiles_total', help: 'Tiles run through the model', labelNames: ['kind'] as const, registers });
    this.tilesPerSecond = new Gauge({
      name: 'lcd_inference_tiles_per_second',
      help: 'Tiles per second of the last finished pair (rate(lcd_inference_tiles_total) over time)',
      labelNames: ['kind'] as const,
      registers,
    });
    this.inFlight = new Gauge({ name: 'lcd_inference_in_flight', help: 'Pairs being processed now', labelNames: ['kind'] as const, registers });
    this.pairs = new Counter({
      name: 'lcd_inference_pairs_total',
      help: 'Pairs by outcome: succeeded, failed (bad input, final), retried (transient), skipped (cancelled job)',
      labelNames: ['kind', 'outcome'] as const,
      registers,
    });
    this.queueDepth = new Gauge({ name: 'lcd_queue_depth', help: 'Messages ready in a queue', labelNames: ['queue'] as const, registers });
    this.modelInfo = new Gauge({
      name: 'lcd_inference_model_info',
      help: 'Model versions loaded by this worker (1); production=true for the version serving new requests',
      labelNames: ['model_name', 'version_id', 'execution_provider', 'production'] as const,
      registers,
    });
    this.modelLoadDuration = new Histogram({
      name: 'lcd_inference_model_load_duration_seconds',
      help: 'Time to fetch, verify, load and warm up a model version',
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    });
    this.gpuUtilization = new Gauge({ name: 'lcd_gpu_utilization_ratio', help: 'GPU utilisation, 0–1', labelNames: ['gpu'] as const, registers });
    this.gpuMemoryUsed = new Gauge({ name: 'lcd_gpu_memory_used_bytes', help: 'GPU memory in use', labelNames: ['gpu'] as const, registers });
    this.gpuMemoryTotal = new Gauge({ name: 'lcd_gpu_memory_total_bytes', help: 'GPU memory in all', labelNames: ['gpu'] as const, registers });
  }

  /** Samples queue depths every `seconds` until the returned function is called. */
  watchQueues(broker: Broker, queues: string[], seconds: number): () => void {
    const sample = async () => {
      for (const queue of queues) {
        try {
          this.queueDepth.set({ queue }, (await broker.queueDepth(queue)).ready);
        } catch {
          // Not declared yet, or the broker is reconnecting: keep the last value.
        }
      }
    };
    void sample();
    const timer = setInterval(() => void sample(), seconds * 1000);
    timer.unref();
    return () => clearInterval(timer);
  }

  /** Samples GPU utilisation and memory with nvidia-smi every `seconds`; stops quietly when it is not there. */
  watchGpu(deviceId: number, seconds: number): () => void {
    let stopped = false;
    const sample = async () => {
      try {
        const { stdout } = await run(
          'nvidia-smi',
          [`--id=${deviceId}`, '--query-gpu=index,utilization.gpu,memory.used,memory.total', '--format=csv,noheader,nounits'],
          { timeout: 5000 },
        );
        for (const line of stdout.trim().split('\n')) {
          const [index, util, used, total] = line.split(',').map((v) => Number(v.trim()));
          const gpu = String(index);
          if (Number.isFinite(util)) this.gpuUtilization.set({ gpu }, util! / 100);
          if (Number.isFinite(used)) this.gpuMemoryUsed.set({ gpu }, used! * 1024 * 1024);
          if (Number.isFinite(total)) this.gpuMemoryTotal.set({ gpu }, total! * 1024 * 1024);
        }
      } catch {
        stopped = true;
        clearInterval(timer);
      }
    };
    const timer = setInterval(() => {
      if (!stopped) void sample();
    }, seconds * 1000);
    timer.unref();
    void sample();
    return () => {
      stopped = true;
      clearInterval(timer);
    };
  }
}
