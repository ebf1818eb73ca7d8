// Labelled feedback on a migrated monitoring database (PGlite, or PostgreSQL with TEST_DATABASE_URL) and a real broker
// (in-process, or RabbitMQ in a virtual host of its own with TEST_AMQP_URL). The jobs, datasets and models subgraphs
// are stood in for by responders on their real RPC queues and contracts, answering from the records a test sets up;
// masks and labels are real PNG and TIFF files in a local object store.
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GraphQLError } from 'graphql';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { encodePngSync } from '../../lib/imaging/png-stream.js';
import { encodeTiff } from '../../lib/imaging/tiff-writer.js';
import { createObjectStore, type ObjectStore } from '../../lib/storage/index.js';
import { privateVhost } from '../../test/support/platform.js';
import {
  UPLOAD_RESOLUTION_QUEUE,
  UPLOAD_RESOLUTION_TYPES,
  uploadResolutionRequestSchema,
  type ResolvedUpload,
  type UploadResolutionReply,
  type UploadResolutionRequest,
} from '../datasets/upload-resolution.rpc.js';
import {
  PAIR_RESOLUTION_QUEUE,
  PAIR_RESOLUTION_TYPES,
  pairResolutionRequestSchema,
  type PairResolutionReply,
  type PairResolutionRequest,
} from '../jobs/pair-resolution.rpc.js';
import {
  MODEL_RESOLUTION_QUEUE,
  MODEL_RESOLUTION_TYPES,
  modelResolutionRequestSchema,
  type ModelResolutionReply,
  type ModelResolutionRequest,
} from '../models/model-resolution.rpc.js';
import { DriftAlertEntity } from './drift-alert.entity.js';
import { FeedbackEntity } from './feedback.entity.js';
import { FeedbackRepository } from './feedback.repository.js';
import { FeedbackService } from './feedback.service.js';
import { DriftAlertKind } from './monitoring.contracts.js';
import { openMonitoringDatabase } from './testing.js';

const SIZE = 8;
const BATCH_SIZE = 2;
const VERSION_ID = randomUUID();
const EVALUATION = { f1: 0.9, iou: 0.8 };

let db: Database;
let closeDb: () => Promise<void>;
let broker: Broker;
let dropVhost: (() => Promise<void>) | undefined;
let dir: string;
let store: ObjectStore;
let service: FeedbackService;
const subscriptions: Subscription[] = [];

// What the stand-ins of the other subgraphs know, by `${tenant}/${id}`.
type Pair = Extract<PairResolutionReply, { found: true }>;
const pairs = new Map<string, Pair>();
const uploads = new Map<string, Extract<ResolvedUpload, { ok: true }>>();

beforeAll(async () => {
  ({ db, close: closeDb } = await openMonitoringDatabase());
  const vhost = process.env.TEST_AMQP_URL ? await privateVhost(process.env.TEST_AMQP_URL) : null;
  dropVhost = vhost?.drop;
  broker = await createBroker({ url: vhost?.url ?? process.env.TEST_AMQP_URL, memoryServer: new MemoryBrokerServer(), service: 'feedback-test' });
  dir = await mkdtemp(join(tmpdir(), 'lcd-feedback-'));
  store = createObjectStore({ url: undefined, localDir: dir, publicBaseUrl: 'http://127.0.0.1:1', signingSecret: randomBytes(32) });

  subscriptions.push(
    await broker.serveRpc<PairResolutionRequest, PairResolutionReply>(
      PAIR_RESOLUTION_QUEUE,
      async ({ envelope: { payload: r } }) => {
        const pair = pairs.get(`${r.tenant}/${r.jobId}`);
        const reply: PairResolutionReply = !pair
          ? { found: false, problem: 'JOB_NOT_FOUND', message: `job ${r.jobId} was not found` }
          : r.pairIndex !== pair.pairIndex
            ? { found: false, problem: 'PAIR_NOT_FOUND', message: `job ${r.jobId} has no pair ${r.pairIndex}` }
            : pair;
        return createEnvelope(PAIR_RESOLUTION_TYPES.reply, reply, { tenant: r.tenant });
      },
      { payloadSchema: pairResolutionRequestSchema },
    ),
    await broker.serveRpc<UploadResolutionRequest, UploadResolutionReply>(
      UPLOAD_RESOLUTION_QUEUE,
      async ({ envelope: { payload: r } }) => {
        const reply = {
          uploads: r.uploadIds.map(
            (id): ResolvedUpload => uploads.get(`${r.tenant}/${id}`) ?? { ok: false, id, problem: 'NOT_FOUND', message: `upload ${id} was not found` },
          ),
        };
        return createEnvelope(UPLOAD_RESOLUTION_TYPES.reply, reply, { tenant: r.tenant });
      },
      { payloadSchema: uploadResolutionRequestSchema },
    ),
    await broker.serveRpc<ModelResolutionRequest, ModelResolutionReply>(
      MODEL_RESOLUTION_QUEUE,
      async ({ envelope: { payload: r } }) => {
        const reply: ModelResolutionReply =
          r.versionId === VERSION_ID
            ? { found: true, versionId: VERSION_ID, modelName: 'snunet', owner: '*', version: 3, stage: 'PRODUCTION', artifactKey: 'k', sha256: 's', byteSize: 1, contract: {}, metrics: EVALUATION }
            : { found: false, reason: `model version ${r.versionId} does not exist` };
        return createEnvelope(MODEL_RESOLUTION_TYPES.reply, reply, { tenant: r.tenant });
      },
      { payloadSchema: modelResolutionRequestSchema as never },
    ),
  );
  service = new FeedbackService(
    new FeedbackRepository(),
    { batchSize: BATCH_SIZE, margin: 0.1, rpcTimeoutMs: 10_000 },
    { broker, store },
    () => ({ relay: null, metrics: null }),
    pino({ level: 'silent' }),
  );
}, 120_000);
afterAll(async () => {
  for (const s of subscriptions) await s.close();
  await broker?.close();
  await dropVhost?.();
  await closeDb?.();
  await rm(dir, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------------------------------
// Builders: a succeeded result with a real mask PNG, and label uploads holding real image files
// ---------------------------------------------------------------------------------------------------------------------
/** An SIZE×SIZE grid: `changed(x, y)` gives the change pixels. */
const grid = (changed: (x: number, y: number) => boolean, on = 255, size = SIZE) => {
  const out = new Uint8Array(size * size);
  for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) out[y * size + x] = changed(x, y) ? on : 0;
  return out;
};
const greyPng = (data: Uint8Array, size = SIZE) => encodePngSync({ width: size, height: size, colorType: 0 }, data);

/** The result's mask: the left half of the image changed (32 of 64 pixels). */
const LEFT_HALF = (x: number) => x < SIZE / 2;

async function aResult(tenant: string, overrides: Partial<Pair> = {}, modelName = 'snunet'): Promise<Pair> {
  const jobId = randomUUID();
  const maskKey = `jobs/${tenant}/${jobId}/0/mask.png`;
  await store.put(maskKey, greyPng(grid(LEFT_HALF)), { contentType: 'image/png' });
  const pair: Pair = {
    found: true,
    jobId,
    pairIndex: 0,
    jobStatus: 'SUCCEEDED' as Pair['jobStatus'],
    pairStatus: 'SUCCEEDED' as Pair['pairStatus'],
    modelName,
    modelVersionId: VERSION_ID,
    maskKey,
    width: SIZE,
    height: SIZE,
    ...overrides,
  };
  pairs.set(`${tenant}/${jobId}`, pair);
  return pair;
}

async function aLabel(tenant: string, bytes: Buffer, contentType = 'image/png'): Promise<string> {
  const id = randomUUID();
  const objectKey = `uploads/${tenant}/${id}`;
  await store.put(objectKey, bytes, { contentType });
  uploads.set(`${tenant}/${id}`, { ok: true, id, objectKey, byteSize: bytes.length, contentType, filename: 'label.png' });
  return id;
}

const actor = (tenant: string) => ({ tenant, subject: `analyst@${tenant}` });
const submit = (tenant: string, jobId: string, labelUploadId: string, pairIndex = 0) => service.submit(db.fork(), actor(tenant), { jobId, pairIndex, labelUploadId });

async function apiError(promise: Promise<unknown>): Promise<GraphQLError> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof GraphQLError) return error;
    throw error;
  }
  throw new Error('expected an API error');
}

describe('submitFeedback', () => {
  it('scores a 0/255 label against the mask of the result and stores the confusion counts, IoU and F1', async () => {
    const result = await aResult('score');
    // The label marks the top half changed: 16 pixels agree on change, 16 on no change, 16 each way disagree.
    const label = await aLabel('score', greyPng(grid((_x, y) => y < SIZE / 2)));
    const { feedback, created } = await submit('score', result.jobId, label);
    expect(created).toBe(true);
    expect(feedback).toMatchObject({ tenant: 'score', jobId: result.jobId, pairIndex: 0, modelName: 'snunet', modelVersionId: VERSION_ID });
    expect(feedback).toMatchObject({ tp: 16, fp: 16, fn: 16, tn: 16, labelUploadId: label, createdBy: 'analyst@score' });
    expect(feedback.iou).toBeCloseTo(16 / 48, 10);
    expect(feedback.f1).toBeCloseTo(32 / 64, 10);
    const stored = await db.fork().findOneOrFail(FeedbackEntity, { id: feedback.id });
    expect(stored).toMatchObject({ tp: 16, fp: 16, fn: 16, tn: 16, labelKey: `uploads/score/${label}` });
  });

  it('reads labels of 0/1 as PNG and as TIFF', async () => {
    const png = await aResult('formats');
    const ones = await submit('formats', png.jobId, await aLabel('formats', greyPng(grid(LEFT_HALF, 1))));
    expect(ones.feedback).toMatchObject({ tp: 32, fp: 0, fn: 0, tn: 32, iou: 1, f1: 1 });

    const tiff = await aResult('formats');
    const bytes = await encodeTiff({ width: SIZE, height: SIZE, bands: 1, sampleType: 'uint8' }, grid((x) => x < 2, 1));
    const fromTiff = await submit('formats', tiff.jobId, await aLabel('formats', bytes, 'image/tiff'));
    // 16 labelled pixels, all inside the 32 the mask marks.
    expect(fromTiff.feedback).toMatchObject({ tp: 16, fp: 16, fn: 0, tn: 32 });
    expect(fromTiff.feedback.iou).toBeCloseTo(0.5, 10);
  });

  it('refuses a label of another size than the result, naming both sizes, and stores nothing', async () => {
    const result = await aResult('sizes');
    const label = await aLabel('sizes', greyPng(grid(() => false, 255, 4), 4));
    const error = await apiError(submit('sizes', result.jobId, label));
    expect(error.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'labelUploadId', problem: 'LABEL_SIZE_MISMATCH' });
    expect(error.message).toContain('the label is 4×4 pixels');
    expect(error.message).toContain(`is ${SIZE}×${SIZE}`);
    expect(await db.fork().count(FeedbackEntity, { tenant: 'sizes' })).toBe(0);
  });

  it('refuses a label that is not binary, naming the values it holds', async () => {
    const result = await aResult('binary');
    const grey = grid((x) => x === 0, 128);
    grey[SIZE - 1] = 17;
    const error = await apiError(submit('binary', result.jobId, await aLabel('binary', greyPng(grey))));
    expect(error.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'labelUploadId', problem: 'LABEL_NOT_BINARY', values: [17, 128] });
    expect(error.message).toContain('17, 128');

    const notAnImage = await apiError(submit('binary', result.jobId, await aLabel('binary', Buffer.from('not an image at all'))));
    expect(notAnImage.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'labelUploadId', problem: 'LABEL_NOT_AN_IMAGE' });
    expect(await db.fork().count(FeedbackEntity, { tenant: 'binary' })).toBe(0);
  });

  it('refuses a pair that did not succeed', async () => {
    const failed = await aResult('states', { pairStatus: 'FAILED' as Pair['pairStatus'], jobStatus: 'PARTIAL' as Pair['jobStatus'], maskKey: null });
    const error = await apiError(submit('states', failed.jobId, await aLabel('states', greyPng(grid(LEFT_HALF)))));
    expect(error.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'pairIndex', problem: 'PAIR_NOT_SUCCEEDED', pairStatus: 'FAILED' });
  });

  it("answers NOT_FOUND for an unknown job, pair or upload, and for another tenant's", async () => {
    const result = await aResult('mine');
    const label = await aLabel('mine', greyPng(grid(LEFT_HALF)));
    expect((await apiError(submit('mine', randomUUID(), label))).extensions).toMatchObject({ code: 'NOT_FOUND', field: 'jobId' });
    expect((await apiError(submit('mine', result.jobId, label, 5))).extensions).toMatchObject({ code: 'NOT_FOUND', field: 'pairIndex' });
    expect((await apiError(submit('mine', result.jobId, randomUUID()))).extensions).toMatchObject({ code: 'NOT_FOUND', field: 'labelUploadId' });
    // Their job, and their upload for my job: neither is seen.
    const theirs = await aResult('theirs');
    const theirLabel = await aLabel('theirs', greyPng(grid(LEFT_HALF)));
    expect((await apiError(submit('mine', theirs.jobId, label))).extensions).toMatchObject({ code: 'NOT_FOUND', field: 'jobId' });
    expect((await apiError(submit('mine', result.jobId, theirLabel))).extensions).toMatchObject({ code: 'NOT_FOUND', field: 'labelUploadId' });
    expect((await apiError(submit('mine', result.jobId, label, -1))).extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'pairIndex' });
    expect(await db.fork().count(FeedbackEntity, { tenant: 'mine' })).toBe(0);
  });

  it('returns the stored feedback for the same label again, and refuses another label for the pair with CONFLICT', async () => {
    const result = await aResult('twice');
    const label = await aLabel('twice', greyPng(grid(LEFT_HALF)));
    const first = await submit('twice', result.jobId, label);
    const again = await submit('twice', result.jobId, label);
    expect(again).toMatchObject({ created: false });
    expect(again.feedback.id).toBe(first.feedback.id);
    const other = await apiError(submit('twice', result.jobId, await aLabel('twice', greyPng(grid(() => true)))));
    expect(other.extensions).toMatchObject({ code: 'CONFLICT', feedbackId: first.feedback.id });
    // Racing submissions of one label: one row, one id.
    const racer = await aResult('twice');
    const racingLabel = await aLabel('twice', greyPng(grid(LEFT_HALF)));
    const raced = await Promise.all([submit('twice', racer.jobId, racingLabel), submit('twice', racer.jobId, racingLabel)]);
    expect(new Set(raced.map((r) => r.feedback.id)).size).toBe(1);
    expect(await db.fork().count(FeedbackEntity, { tenant: 'twice' })).toBe(2);
  });
});

describe('model performance and MODEL_DRIFT alerts', () => {
  it('cuts feedback into batches, scores each from the summed counts, and alerts when a complete batch falls below the evaluation', async () => {
    const tenant = 'drift';
    const give = async (changed: (x: number, y: number) => boolean) => {
      const result = await aResult(tenant, {}, 'drifty');
      return submit(tenant, result.jobId, await aLabel(tenant, greyPng(grid(changed))));
    };
    // Batch 0: labels that agree with the results (IoU and F1 1): no alert.
    expect((await give(LEFT_HALF)).alerts).toEqual([]);
    expect((await give(LEFT_HALF)).alerts).toEqual([]);
    // Batch 1: one agrees, one is the inverse (IoU 32/96, F1 64/128 summed): more than 0.1 below both evaluations.
    expect((await give(LEFT_HALF)).alerts).toEqual([]);
    const completing = await give((x) => !LEFT_HALF(x));
    expect(completing.alerts.map((a) => a.metric).sort()).toEqual(['f1', 'iou']);
    // Batch 2: partial.
    await give(LEFT_HALF);

    const alerts = await db.fork().find(DriftAlertEntity, { tenant, kind: DriftAlertKind.MODEL_DRIFT }, { orderBy: { metric: 'asc' } });
    expect(alerts.map((a) => ({ metric: a.metric, modelName: a.modelName, modelVersionId: a.modelVersionId, status: a.status }))).toEqual([
      { metric: 'f1', modelName: 'drifty', modelVersionId: VERSION_ID, status: 'OPEN' },
      { metric: 'iou', modelName: 'drifty', modelVersionId: VERSION_ID, status: 'OPEN' },
    ]);
    const [f1, iou] = alerts;
    expect(f1!.value).toBeCloseTo(0.5, 10);
    expect(f1!.threshold).toBeCloseTo(0.8, 10);
    expect(iou!.value).toBeCloseTo(1 / 3, 10);
    expect(iou!.threshold).toBeCloseTo(0.7, 10);
    expect(f1!.windowEnd.getTime()).toBe(completing.feedback.createdAt.getTime());

    const [version, ...others] = await service.performance(db.fork(), actor(tenant), 'drifty');
    expect(others).toEqual([]);
    expect(version).toMatchObject({ modelVersionId: VERSION_ID, evaluation: { version: 3, ...EVALUATION }, feedbackCount: 5, batchSize: 2 });
    expect(version!.batches.map((b) => ({ index: b.index, partial: b.partial, pairCount: b.pairCount, below: b.belowEvaluation }))).toEqual([
      { index: 0, partial: false, pairCount: 2, below: false },
      { index: 1, partial: false, pairCount: 2, below: true },
      { index: 2, partial: true, pairCount: 1, below: false },
    ]);
    expect(version!.batches[0]).toMatchObject({ iou: 1, f1: 1, tp: 64, fp: 0, fn: 0, tn: 64 });
    expect(version!.batches[1]).toMatchObject({ tp: 32, fp: 32, fn: 32, tn: 32 });
    expect(version!.batches[1]!.windowStart.getTime()).toBeLessThanOrEqual(version!.batches[1]!.windowEnd.getTime());

    // Another tenant sees none of it; a model without feedback has no versions to show.
    expect(await service.performance(db.fork(), actor('someone-else'), 'drifty')).toEqual([]);
    expect(await service.performance(db.fork(), actor(tenant), 'no-feedback')).toEqual([]);
  });
});
