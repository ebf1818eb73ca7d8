// What the inference benchmarks share: scenes of any size made by tiling a real LEVIR-CD pair (written as PNG row
// by row, so that even 16k scenes are made in bounded memory), a worker on the in-process broker with a local object
// store and a stand-in for the models subgraph, and small statistics helpers.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { pino } from 'pino';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker } from '../lib/broker/broker.js';
import { PngRowWriter } from '../lib/imaging/png-stream.js';
import { sharedData } from '../lib/model/testing.js';
import { createObjectStore, type ObjectStore } from '../lib/storage/index.js';
import { createMetricsRegistry } from '../lib/telemetry.js';
import { MODEL_RESOLUTION_QUEUE, type ModelResolutionReply, type ModelResolutionRequest } from '../subgraphs/models/model-resolution.rpc.js';
import { loadInferenceConfig } from '../workers/inference/config.js';
import { InferenceWorker } from '../workers/inference/consumer.js';
import {
  detectReplySchema,
  INFERENCE_QUEUES,
  JOBS_PAIR_RESULTS_QUEUE,
  MESSAGE_TYPES,
  type ChangeResultPayload,
  type DetectRequest,
  type PairReport,
  type PairRequest,
} from '../workers/inference/contracts.js';
import { InferenceMetrics } from '../workers/inference/metrics.js';

export const levirPair = async (): Promise<[PNG, PNG]> => {
  const read = async (dir: string) => PNG.sync.read(await readFile(join(sharedData, 'levir-cd-256', dir, 'test_7_0256_0512.png')));
  return [await read('A'), await read('B')];
};

/** Writes `size × size` before/after PNGs that repeat the 256×256 LEVIR pair (mirrored on alternate tiles). */
export async function writeScene(dir: string, size: number): Promise<{ before: string; after: string }> {
  await mkdir(dir, { recursive: true });
  const [a, b] = await levirPair();
  const paths = { before: join(dir, `before-${size}.png`), after: join(dir, `after-${size}.png`) };
  for (const [image, path] of [
    [a, paths.before],
    [b, paths.after],
  ] as const) {
    const sink = createWriteStream(path);
    const writer = new PngRowWriter({ width: size, height: size, colorType: 2, level: 1 }, sink);
    const rows = 64;
    const buffer = new Uint8Array(rows * size * 3);
    for (let y0 = 0; y0 < size; y0 += rows) {
      const n = Math.min(rows, size - y0);
      for (let r = 0; r < n; r++) {
        const y = y0 + r;
        const ty = Math.floor(y / 256);
        const sy = ty % 2 === 0 ? y % 256 : 255 - (y % 256);
        for (let x = 0; x < size; x++) {
          const tx = Math.floor(x / 256);
          const sx = tx % 2 === 0 ? x % 256 : 255 - (x % 256);
          const s = (sy * 256 + sx) * 4;
          const d = (r * size + x) * 3;
          buffer[d] = image.data[s]!;
          buffer[d + 1] = image.data[s + 1]!;
          buffer[d + 2] = image.data[s + 2]!;
        }
      }
      await writer.writeRows(buffer.subarray(0, n * size * 3), n);
    }
    await writer.finish();
  }
  return paths;
}

export interface WorkerHarness {
  broker: Broker;
  store: ObjectStore;
  worker: InferenceWorker;
  versionId: string;
  put(key: string, bytes: Buffer | NodeJS.ReadableStream): Promise<void>;
  detect(beforeKey: string, afterKey: string): Promise<ChangeResultPayload>;
  batch(beforeKey: string, afterKey: string): Promise<ChangeResultPayload>;
  close(): Promise<void>;
}

/** A worker as in production (its own session, the real processor and writer), on an in-process broker. */
export async function startWorkerHarness(dir: string, modelBytes: Buffer, env: Record<string, string> = {}): Promise<WorkerHarness> {
  const broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
  const store = createObjectStore({ url: undefined, localDir: join(dir, 'objects'), publicBaseUrl: 'http://127.0.0.1:1', signingSecret: randomBytes(32) });
  const versionId = randomUUID();
  const artifactKey = `models/bench/${versionId}.onnx`;
  await store.put(artifactKey, modelBytes);
  const sha256 = createHash('sha256').update(modelBytes).digest('hex');
  const models = await broker.serveRpc<ModelResolutionRequest, ModelResolutionReply>(MODEL_RESOLUTION_QUEUE, async (d) =>
    createEnvelope(
      'models.resolve.reply',
      { found: true, versionId, modelName: 'lcd-demo', owner: '*', version: 1, stage: 'PRODUCTION', artifactKey, sha256, byteSize: modelBytes.length, contract: {} },
      { tenant: d.envelope.tenant },
    ),
  );
  const waiting = new Map<string, (report: PairReport) => void>();
  const reports = await broker.consume<PairReport>(JOBS_PAIR_RESULTS_QUEUE, async (d) => {
    const report = d.envelope.payload;
    if (report.kind === 'started') return;
    waiting.get(report.jobId)?.(report);
  });
  const config = loadInferenceConfig({ INFERENCE_TMP_DIR: join(dir, 'tmp'), INFERENCE_EXECUTION_PROVIDERS: 'cpu', ...env });
  const worker = new InferenceWorker({ broker, store, config, log: pino({ level: 'warn' }), metrics: new InferenceMetrics(createMetricsRegistry('bench', false)) });
  await worker.start();
  return {
    broker,
    store,
    worker,
    versionId,
    async put(key, bytes) {
      await store.put(key, bytes);
    },
    async detect(beforeKey, afterKey) {
      const request: DetectRequest = { jobId: randomUUID(), beforeKey, afterKey, modelName: 'lcd-demo', threshold: null, maxPixels: 2 ** 31, deadline: Date.now() + 3_600_000 };
      const reply = await broker.rpc(INFERENCE_QUEUES.detect, createEnvelope(MESSAGE_TYPES.detectRequest, request, { tenant: 'bench' }), {
        timeoutMs: 3_600_000,
        replySchema: detectReplySchema,
      });
      if (!reply.payload.ok) throw new Error(`${reply.payload.error.code}: ${reply.payload.error.message}`);
      return reply.payload.result;
    },
    async batch(beforeKey, afterKey) {
      const payload: PairRequest = { jobId: randomUUID(), pairIndex: 0, beforeKey, afterKey, modelName: 'lcd-demo', modelVersionId: versionId, threshold: null };
      const done = new Promise<PairReport>((resolve) => waiting.set(payload.jobId, resolve));
      await broker.send(INFERENCE_QUEUES.pairs, createEnvelope(MESSAGE_TYPES.pairRequest, payload, { tenant: 'bench' }));
      const report = await done;
      if (report.kind !== 'succeeded') throw new Error(`pair failed: ${JSON.stringify(report)}`);
      return report.result;
    },
    async close() {
      await worker.stop();
      await reports.close();
      await models.close();
      await broker.close();
    },
  };
}

export function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

export const median = (values: number[]) => percentile(values, 50);

export function argValue(name: string, fallback: string): string {
  const index = process.argv.indexOf(`--${name}`);
  return index >= 0 && process.argv[index + 1] ? process.argv[index + 1]! : fallback;
}
