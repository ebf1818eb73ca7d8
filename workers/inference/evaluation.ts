// Evaluates one model version on one frozen dataset version (`inference.evaluate`): loads that exact ONNX file (its
// bytes checked against the registry's sha256), runs it on every labelled item of the version (its test items when it
// has a test split) exactly as the batch path runs a pair — the same band selection, normalisation, tiling and
// blending from the model's contract, the model's own threshold — compares each thresholded mask with the label, sums
// the confusion counts and reports the metrics on the results queue the request names. Problems with the model or the
// items are reported as a failed evaluation naming the item; anything else is retried, and reported once the delivery
// limit is reached. The session is the evaluation's own: evaluations never take a place in the serving model cache.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { z } from 'zod';
import { createEnvelope, type Broker, type Delivery, type Subscription } from '../../lib/broker/broker.js';
import { decodeImage, isBinaryMask, type RasterImage } from '../../lib/imaging/decode.js';
import { ImageDecodeError } from '../../lib/imaging/probe.js';
import { openRaster, type RasterLimits, type RasterSource } from '../../lib/imaging/raster-source.js';
import { ModelContractError, validateModelContract, type ModelContract } from '../../lib/model/contract.js';
import { OrtSession } from '../../lib/model/ort-session.js';
import { ObjectNotFoundError, type ObjectStore } from '../../lib/storage/index.js';
import {
  EVALUATION_DELIVERY_LIMIT,
  EVALUATION_MESSAGE_TYPES,
  EVALUATION_QUEUES,
  evaluationIdempotencyKey,
  evaluationRequestSchema,
  summarizeConfusion,
  type ConfusionCounts,
  type EvaluationErrorCode,
  type EvaluationRequest,
  type EvaluationResult,
  type EvaluationSplit,
} from '../../subgraphs/models/model-evaluation.contracts.js';
import { sessionSettings, type InferenceConfig } from './config.js';
import { OrtModelRunner } from './model-cache.js';
import { PairInputError, pairErrorFromDecode, processPair, type ModelRunner, type RowSink, type Side } from './processor.js';

/** A problem with the model or the dataset: the evaluation fails with this code, and trying again would not help. */
export class EvaluationError extends Error {
  constructor(
    readonly code: EvaluationErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'EvaluationError';
  }
}

const fileSchema = z.object({ key: z.string().min(1) });
/** The part of a dataset version's manifest (subgraphs/datasets/dataset.service.ts DatasetManifest) read here. */
const manifestSchema = z.object({
  items: z.array(
    z.object({
      before: fileSchema,
      after: fileSchema,
      label: fileSchema.nullable(),
      split: z.enum(['train', 'val', 'test']).optional(),
    }),
  ),
});
type ManifestItem = z.infer<typeof manifestSchema>['items'][number];

export interface EvaluationOutcome {
  split: EvaluationSplit;
  items: number;
  threshold: number;
  confusion: ConfusionCounts;
}

/** The dataset version's test items if any item is in the test split, else all its labelled items. */
export function selectItems(items: ManifestItem[]): { split: EvaluationSplit; items: { index: number; item: ManifestItem }[] } {
  const labelled = items.map((item, index) => ({ index, item })).filter((x) => x.item.label !== null);
  const test = labelled.filter((x) => x.item.split === 'test');
  return test.length > 0 ? { split: 'test', items: test } : { split: 'all-labelled', items: labelled };
}

/** Counts a pair's thresholded mask against its label, row by row as the processor finishes them. */
export class ConfusionSink implements RowSink {
  readonly counts: ConfusionCounts = { tp: 0, fp: 0, fn: 0, tn: 0 };

  constructor(private readonly label: RasterImage) {}

  async writeRows(y: number, rows: number, mask: Uint8Array): Promise<void> {
    const { width, bands, data } = this.label;
    let { tp, fp, fn, tn } = this.counts;
    for (let r = 0; r < rows; r++) {
      const row = (y + r) * width;
      for (let x = 0; x < width; x++) {
        const predicted = mask[r * width + x] !== 0;
        const actual = data[(row + x) * bands] !== 0;
        if (predicted) {
          if (actual) tp += 1;
          else fp += 1;
        } else if (actual) fn += 1;
        else tn += 1;
      }
    }
    Object.assign(this.counts, { tp, fp, fn, tn });
  }

  /** Polygons are not needed to count pixels: dropped as they are traced. */
  async writePolygon(): Promise<void> {}
}

/** Failures of onnxruntime while running are the model's, not the pair's. */
class GuardedRunner implements ModelRunner {
  constructor(private readonly inner: ModelRunner) {}

  get contract() {
    return this.inner.contract;
  }

  async run(before: Float32Array, after: Float32Array, n: number, height: number, width: number) {
    try {
      return await this.inner.run(before, after, n, height, width);
    } catch (error) {
      throw new EvaluationError('MODEL_RUN_FAILED', `the model failed to run: ${String((error as Error).message ?? error).split('\n')[0]!.slice(0, 500)}`);
    }
  }
}

export class ModelEvaluator {
  constructor(
    private readonly store: ObjectStore,
    private readonly config: InferenceConfig,
  ) {}

  async evaluate(request: EvaluationRequest): Promise<EvaluationOutcome> {
    const manifest = await this.manifest(request);
    const { split, items } = selectItems(manifest.items);
    if (items.length === 0) throw new EvaluationError('NO_LABELLED_ITEMS', `dataset version ${request.datasetVersionId} has no labelled items`);
    const { runner, session } = await this.loadModel(request);
    try {
      const confusion: ConfusionCounts = { tp: 0, fp: 0, fn: 0, tn: 0 };
      for (const { index, item } of items) {
        const counts = await this.evaluateItem(runner, index, item);
        confusion.tp += counts.tp;
        confusion.fp += counts.fp;
        confusion.fn += counts.fn;
        confusion.tn += counts.tn;
      }
      return { split, items: items.length, threshold: runner.contract.threshold, confusion };
    } finally {
      await session.release().catch(() => undefined);
    }
  }

  private async manifest(request: EvaluationRequest) {
    const bytes = await this.read(request.manifestKey, () => new EvaluationError('DATASET_NOT_FOUND', `the manifest of dataset version ${request.datasetVersionId} is missing`));
    let parsed: unknown;
    try {
      parsed = JSON.parse(Buffer.from(bytes).toString('utf8'));
    } catch {
      throw new EvaluationError('DATASET_NOT_FOUND', `the manifest of dataset version ${request.datasetVersionId} is not JSON`);
    }
    const manifest = manifestSchema.safeParse(parsed);
    if (!manifest.success) throw new EvaluationError('DATASET_NOT_FOUND', `the manifest of dataset version ${request.datasetVersionId} is not a dataset manifest`);
    return manifest.data;
  }

  /** The exact file the registry names: its bytes must hash to the registered sha256. */
  private async loadModel(request: EvaluationRequest): Promise<{ runner: ModelRunner; session: OrtSession }> {
    const what = `model version ${request.modelVersionId}`;
    const bytes = await this.read(request.artifactKey, () => new EvaluationError('MODEL_INVALID', `the artifact of ${what} (${request.artifactKey}) is missing`));
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    if (sha256 !== request.sha256) throw new EvaluationError('MODEL_INVALID', `the artifact of ${what} has sha256 ${sha256}, the registry says ${request.sha256}`);
    let contract: ModelContract;
    try {
      contract = validateModelContract(bytes);
    } catch (error) {
      if (error instanceof ModelContractError) throw new EvaluationError('MODEL_INVALID', `${what}: ${error.message}`);
      throw error;
    }
    let session: OrtSession;
    try {
      session = await OrtSession.open(bytes, sessionSettings(this.config));
    } catch (error) {
      throw new EvaluationError('MODEL_INVALID', `onnxruntime cannot load ${what}: ${String((error as Error).message ?? error).split('\n')[0]!.slice(0, 500)}`);
    }
    return { runner: new GuardedRunner(new OrtModelRunner(contract, session)), session };
  }

  private async evaluateItem(runner: ModelRunner, index: number, item: ManifestItem): Promise<ConfusionCounts> {
    const where = `item ${index}`;
    const missing = (role: string, key: string) => () => new EvaluationError('ITEM_INVALID', `${where}: the ${role} file is missing (${key})`);
    const [beforeBytes, afterBytes, labelBytes] = await Promise.all([
      this.read(item.before.key, missing('before', item.before.key)),
      this.read(item.after.key, missing('after', item.after.key)),
      this.read(item.label!.key, missing('label', item.label!.key)),
    ]);
    const sources: RasterSource[] = [];
    try {
      const open = async (bytes: Uint8Array, side: Side) => {
        try {
          const source = await openRaster({ kind: 'bytes', bytes }, this.limits());
          sources.push(source);
          return source;
        } catch (error) {
          if (error instanceof ImageDecodeError) throw itemError(where, pairErrorFromDecode(side, error));
          throw error;
        }
      };
      const before = await open(beforeBytes, 'before');
      const after = await open(afterBytes, 'after');
      let label: RasterImage;
      try {
        label = decodeImage(labelBytes, { maxPixels: this.config.INFERENCE_MAX_PIXELS, maxSide: this.config.INFERENCE_MAX_SIDE });
      } catch (error) {
        if (error instanceof ImageDecodeError) throw new EvaluationError('LABEL_UNREADABLE', `${where}: the label cannot be read: ${error.message}`);
        throw error;
      }
      const { width, height } = before.info;
      if (label.width !== width || label.height !== height) {
        throw new EvaluationError('LABEL_SIZE', `${where}: the label is ${label.width}×${label.height} but the pair is ${width}×${height}`);
      }
      if (!isBinaryMask(label)) throw new EvaluationError('LABEL_NOT_BINARY', `${where}: the label is not binary; every pixel must be 0 (no change) or 255 (change)`);
      const sink = new ConfusionSink(label);
      try {
        await processPair(before, after, runner, sink, {
          threshold: runner.contract.threshold,
          overlap: this.config.INFERENCE_TILE_OVERLAP,
          batchSize: this.config.INFERENCE_BATCH_SIZE,
          minRegionPixels: this.config.INFERENCE_MIN_REGION_PIXELS,
          simplifyTolerance: this.config.INFERENCE_SIMPLIFY_TOLERANCE,
          maxPolygonVertices: this.config.INFERENCE_MAX_POLYGON_VERTICES,
        });
      } catch (error) {
        if (error instanceof PairInputError) throw itemError(where, error);
        throw error;
      }
      return sink.counts;
    } finally {
      await Promise.allSettled(sources.map((s) => s.close()));
    }
  }

  private limits(): RasterLimits {
    const c = this.config;
    return { maxPixels: c.INFERENCE_MAX_PIXELS, maxSide: c.INFERENCE_MAX_SIDE, maxFullDecodePixels: c.INFERENCE_MAX_FULL_DECODE_PIXELS, maxBlockBytes: c.INFERENCE_MAX_TIFF_BLOCK_BYTES };
  }

  /** A missing object is the dataset's or the model's problem; any other storage error is worth a retry. */
  private async read(key: string, whenMissing: () => EvaluationError): Promise<Buffer> {
    try {
      return await this.store.get(key);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) throw whenMissing();
      throw error;
    }
  }
}

function itemError(where: string, error: PairInputError): EvaluationError {
  return new EvaluationError(error.code, `${where}: ${error.message}`);
}

export interface EvaluationConsumerDeps {
  broker: Broker;
  store: ObjectStore;
  config: InferenceConfig;
  log: Logger;
}

/**
 * Consumes evaluation requests one at a time and reports each on its results queue. Acknowledged once the report is
 * confirmed; a report that cannot be sent leaves the request to be delivered again.
 */
export async function consumeEvaluations(deps: EvaluationConsumerDeps, queue: string = EVALUATION_QUEUES.requests): Promise<Subscription> {
  const evaluator = new ModelEvaluator(deps.store, deps.config);
  return deps.broker.consume<EvaluationRequest>(queue, (delivery) => handleEvaluation(deps, evaluator, delivery), {
    payloadSchema: evaluationRequestSchema,
    prefetch: 1,
    deliveryLimit: EVALUATION_DELIVERY_LIMIT,
  });
}

async function handleEvaluation(deps: EvaluationConsumerDeps, evaluator: ModelEvaluator, delivery: Delivery<EvaluationRequest>): Promise<void> {
  const request = delivery.envelope.payload;
  const ids = { requestId: request.requestId, modelVersionId: request.modelVersionId, datasetVersionId: request.datasetVersionId };
  const context = { versionId: request.modelVersionId, datasetVersionId: request.datasetVersionId, attempt: delivery.deliveryCount };
  let result: EvaluationResult;
  try {
    const started = performance.now();
    const outcome = await evaluator.evaluate(request);
    result = { ...ids, ok: true, split: outcome.split, items: outcome.items, threshold: outcome.threshold, metrics: summarizeConfusion(outcome.confusion), confusion: outcome.confusion };
    deps.log.info({ ...context, items: outcome.items, split: outcome.split, metrics: result.metrics, seconds: (performance.now() - started) / 1000 }, 'model version evaluated');
  } catch (error) {
    if (error instanceof EvaluationError) {
      result = { ...ids, ok: false, code: error.code, message: error.message.slice(0, 2000) };
      deps.log.info({ ...context, code: error.code, err: error }, 'model version evaluation failed');
    } else if (delivery.deliveryCount < EVALUATION_DELIVERY_LIMIT) {
      deps.log.warn({ ...context, err: error }, 'model version evaluation interrupted; it will be retried');
      throw error;
    } else {
      const message = error instanceof Error ? error.message : String(error);
      result = { ...ids, ok: false, code: 'INTERNAL', message: `the evaluation failed ${delivery.deliveryCount} times; the last error: ${message}`.slice(0, 2000) };
      deps.log.error({ ...context, err: error }, 'model version evaluation failed for good');
    }
  }
  await deps.broker.assertQueue(request.resultsQueue);
  const envelope = createEnvelope(EVALUATION_MESSAGE_TYPES.result, result, {
    tenant: delivery.envelope.tenant,
    idempotencyKey: `${evaluationIdempotencyKey(request.modelVersionId, request.datasetVersionId)}:${request.requestId}`,
  });
  await deps.broker.send(request.resultsQueue, envelope);
}
