// The worker against the real model and a real broker (in-process, or RabbitMQ with TEST_AMQP_URL): every bad input
// becomes a per-pair failure that names the problem and is dead-lettered at once, transient failures are retried until
// the delivery limit, the worker stays up, and a promoted (or rolled-back) version is served without a restart.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker, type Subscription } from '../../lib/broker/broker.js';
import { geoTiff, pngHeaderOnly } from '../../lib/imaging/testing.js';
import { createObjectStore, type ObjectStore } from '../../lib/storage/index.js';
import { ensureTrainedModel, sharedData, type TrainedModel } from '../../lib/model/testing.js';
import { privateVhost } from '../../test/support/platform.js';
import { LOGGED_EVENT_TYPE, type LoggedEvent } from '../../lib/events/event-log.js';
import { stageEvent } from '../../subgraphs/models/model-events.js';
import { MODEL_RESOLUTION_QUEUE, type ModelResolutionReply, type ModelResolutionRequest } from '../../subgraphs/models/model-resolution.rpc.js';
import { createMetricsRegistry } from '../../lib/telemetry.js';
import { pino } from 'pino';
import { loadInferenceConfig } from './config.js';
import { InferenceWorker } from './consumer.js';
import {
  INFERENCE_QUEUES,
  JOBS_PAIR_RESULTS_QUEUE,
  MESSAGE_TYPES,
  detectReplySchema,
  type DetectReply,
  type DetectRequest,
  type PairReport,
  type PairRequest,
} from './contracts.js';
import { InferenceMetrics } from './metrics.js';

let model: TrainedModel;
let dir: string;
let broker: Broker;
let vhost: { url: string; drop(): Promise<void> } | null = null;
let store: ObjectStore;
let worker: InferenceWorker;
let modelsServer: Subscription | null = null;
let reportsSubscription: Subscription;
const reports: PairReport[] = [];
/** What the fake models subgraph answers: version id → artifact; and which version is Production. */
const versions = new Map<string, { key: string; sha256: string }>();
let production = '';
/** Tenants' own Production versions of lcd-demo (over the platform's). */
const tenantProduction = new Map<string, string>();

async function putModelVersion(bytes: Buffer): Promise<string> {
  const id = randomUUID();
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const key = `models/platform/lcd-demo/${sha256}-${id}.onnx`;
  await store.put(key, bytes);
  versions.set(id, { key, sha256 });
  return id;
}

async function serveModels(): Promise<void> {
  modelsServer = await broker.serveRpc<ModelResolutionRequest, ModelResolutionReply>(MODEL_RESOLUTION_QUEUE, async (d) => {
    const request = d.envelope.payload;
    const id = request.versionId ?? (request.modelName === 'lcd-demo' ? (tenantProduction.get(request.tenant) ?? production) : '');
    const found = versions.get(id);
    const reply: ModelResolutionReply = found
      ? { found: true, versionId: id, modelName: 'lcd-demo', owner: '*', version: 1, stage: 'PRODUCTION', artifactKey: found.key, sha256: found.sha256, byteSize: 1, contract: {} }
      : { found: false, reason: `no model version ${id || request.modelName}` };
    return createEnvelope('models.resolve.reply', reply, { tenant: request.tenant });
  });
}

beforeAll(async () => {
  model = await ensureTrainedModel();
  if (!model.ok) return;
  dir = await mkdtemp(join(tmpdir(), 'lcd-worker-'));
  // RabbitMQ (a virtual host of this file's own) when TEST_AMQP_URL is set, else the in-process broker.
  vhost = process.env.TEST_AMQP_URL ? await privateVhost(process.env.TEST_AMQP_URL) : null;
  const amqpUrl = vhost?.url ?? process.env.TEST_AMQP_URL;
  broker = amqpUrl ? await createBroker({ url: amqpUrl, service: 'inference-test' }) : await createBroker({ memoryServer: new MemoryBrokerServer() });
  store = createObjectStore({ url: undefined, localDir: join(dir, 'objects'), publicBaseUrl: 'http://127.0.0.1:1', signingSecret: randomBytes(32) });
  production = await putModelVersion(model.bytes);
  await serveModels();
  reportsSubscription = await broker.consume<PairReport>(JOBS_PAIR_RESULTS_QUEUE, async (d) => void reports.push(d.envelope.payload));
  const config = loadInferenceConfig({ INFERENCE_TMP_DIR: join(dir, 'tmp'), INFERENCE_RPC_TIMEOUT_MS: '500', INFERENCE_EXECUTION_PROVIDERS: 'cpu' });
  worker = new InferenceWorker({ broker, store, config, log: pino({ level: 'silent' }), metrics: new InferenceMetrics(createMetricsRegistry('test', false)) });
  await worker.start();
}, 20 * 60_000);

afterAll(async () => {
  await worker?.stop();
  await reportsSubscription?.close();
  await broker?.close();
  await vhost?.drop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function requireModel(ctx: { skip: (note?: string) => void }) {
  if (!model.ok) ctx.skip(model.reason);
}

/** A 64×64 crop of a real LEVIR pair (one tile of the test model). */
async function crop(which: 'A' | 'B', size = 64, channels: 1 | 3 | 4 = 3): Promise<Buffer> {
  const source = PNG.sync.read(await readFile(join(sharedData, 'levir-cd-256', which, 'test_7_0256_0512.png')));
  const out = new PNG({ width: size, height: size, colorType: channels === 1 ? 0 : channels === 3 ? 2 : 6, inputColorType: 6 } as never);
  for (let y = 0; y < size; y++) out.data.set(source.data.subarray((y * 256) * 4, (y * 256 + size) * 4), y * size * 4);
  return PNG.sync.write(out, { colorType: channels === 1 ? 0 : channels === 3 ? 2 : 6 } as never);
}

async function put(bytes: Buffer | Uint8Array): Promise<string> {
  const key = `uploads/acme/${randomUUID()}`;
  await store.put(key, bytes);
  return key;
}

async function reportsFor(jobId: string, until: (r: PairReport[]) => boolean): Promise<PairReport[]> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const mine = reports.filter((r) => r.jobId === jobId);
    if (until(mine)) return mine;
    if (Date.now() > deadline) throw new Error(`reports for ${jobId}: ${JSON.stringify(mine)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function sendPair(beforeKey: string, afterKey: string, overrides: Partial<PairRequest> = {}): Promise<string> {
  const payload: PairRequest = { jobId: randomUUID(), pairIndex: 0, beforeKey, afterKey, modelName: 'lcd-demo', modelVersionId: production, threshold: null, ...overrides };
  await broker.send(INFERENCE_QUEUES.pairs, createEnvelope(MESSAGE_TYPES.pairRequest, payload, { tenant: 'acme' }));
  return payload.jobId;
}

const finished = (r: PairReport[]) => r.some((x) => x.kind === 'succeeded' || (x.kind === 'failed' && x.final));

describe('bad input, pair by pair', () => {
  it('names each problem, dead-letters the message at once, and the worker goes on', async (ctx) => {
    requireModel(ctx);
    const good = await crop('A');
    const goodAfter = await crop('B');
    const corrupt = Buffer.from(good);
    corrupt[Math.floor(corrupt.length / 2)] ^= 0xff;
    const nan = new Float32Array(64 * 64 * 3).fill(100);
    nan[5000] = Number.NaN;
    const nanTiff = await geoTiff({ width: 64, height: 64, bands: 3, sampleType: 'float32' }, nan);
    const utm33 = await geoTiff({ width: 64, height: 64, bands: 3, epsg: 32633 }, new Uint8Array(64 * 64 * 3));
    const utm34 = await geoTiff({ width: 64, height: 64, bands: 3, epsg: 32634 }, new Uint8Array(64 * 64 * 3));
    const cases: [Promise<string>, Promise<string>, string, Partial<PairRequest>?][] = [
      [put(good.subarray(0, good.length - 200)), put(goodAfter), 'BEFORE_TRUNCATED'],
      [put(corrupt), put(goodAfter), 'BEFORE_CORRUPT'],
      [put(Buffer.from('%PDF-1.7 definitely not an image')), put(goodAfter), 'BEFORE_NOT_AN_IMAGE'],
      [put(Buffer.alloc(0)), put(goodAfter), 'BEFORE_EMPTY_FILE'],
      [Promise.resolve('uploads/acme/missing'), put(goodAfter), 'BEFORE_NOT_FOUND'],
      [put(good), put(await crop('B', 48)), 'SIZE_MISMATCH'],
      [put(await crop('A', 64, 1)), put(await crop('B', 64, 1)), 'BAND_COUNT'],
      [put(good), put(pngHeaderOnly(1_000_000, 1_000_000)), 'AFTER_TOO_LARGE'],
      [put(nanTiff), put(await geoTiff({ width: 64, height: 64, bands: 3, sampleType: 'float32' }, new Float32Array(64 * 64 * 3))), 'NAN_IN_INPUT'],
      [put(utm33), put(utm34), 'CRS_MISMATCH'],
      [put(good), put(utm33), 'GEOREFERENCE_MISMATCH'],
      [put(good), put(goodAfter), 'MODEL_NOT_FOUND', { modelVersionId: randomUUID() }],
    ];
    const jobs: [string, string][] = [];
    for (const [before, after, code, overrides] of cases) jobs.push([await sendPair(await before, await after, overrides), code]);
    for (const [jobId, code] of jobs) {
      const mine = await reportsFor(jobId, finished);
      const failure = mine.find((r) => r.kind === 'failed');
      expect(failure, code).toMatchObject({ kind: 'failed', final: true, error: { code } });
      expect(mine.filter((r) => r.kind === 'failed')).toHaveLength(1); // no retries for bad input
    }
    const letters = await broker.deadLetters(INFERENCE_QUEUES.pairs, 1000);
    for (const [jobId, code] of jobs) {
      const letter = letters.find((l) => (l.envelope?.payload as PairRequest).jobId === jobId);
      expect(letter?.reason.startsWith(`${code}: `), code).toBe(true);
      expect(letter?.deliveryCount).toBe(1);
    }
    // Still up: a good pair succeeds, with the version it ran on.
    const ok = await reportsFor(await sendPair(await put(good), await put(goodAfter)), finished);
    expect(ok.find((r) => r.kind === 'succeeded')).toMatchObject({ result: { modelVersionId: production, width: 64, height: 64 } });
    expect(ok[0]).toMatchObject({ kind: 'started', attempt: 1 });
  });

  it('retries what may pass later, and gives up at the delivery limit', async (ctx) => {
    requireModel(ctx);
    await modelsServer!.close();
    modelsServer = null;
    try {
      const jobId = await sendPair(await put(await crop('A')), await put(await crop('B')), { modelVersionId: randomUUID() });
      const mine = await reportsFor(jobId, finished);
      const failures = mine.filter((r): r is Extract<PairReport, { kind: 'failed' }> => r.kind === 'failed');
      expect(failures.map((f) => f.final)).toEqual([false, false, false, false, true]);
      expect(failures[0]!.error.code).toBe('MODEL_UNAVAILABLE');
      expect(mine.filter((r) => r.kind === 'started').map((r) => (r as { attempt: number }).attempt)).toEqual([1, 2, 3, 4, 5]);
    } finally {
      await serveModels();
    }
  });
});

describe('synchronous requests', () => {
  const detect = async (request: Partial<DetectRequest>): Promise<DetectReply> => {
    const payload: DetectRequest = {
      jobId: randomUUID(),
      beforeKey: await put(await crop('A')),
      afterKey: await put(await crop('B')),
      modelName: 'lcd-demo',
      threshold: null,
      maxPixels: 4096 * 4096,
      deadline: Date.now() + 30_000,
      ...request,
    };
    const reply = await broker.rpc(INFERENCE_QUEUES.detect, createEnvelope(MESSAGE_TYPES.detectRequest, payload, { tenant: 'acme' }), { timeoutMs: 30_000, replySchema: detectReplySchema });
    return reply.payload;
  };

  it('answers with the result, refuses what is too large for a synchronous answer, and stops at the deadline', async (ctx) => {
    requireModel(ctx);
    const ok = await detect({});
    expect(ok).toMatchObject({ ok: true, result: { modelVersionId: production, georeferenced: false } });
    const large = await detect({ maxPixels: 1000 });
    expect(large).toMatchObject({ ok: false, error: { code: 'TOO_LARGE_FOR_SYNC' } });
    expect(!large.ok && large.error.message).toContain('submitChangeDetectionJob');
    const late = await detect({ deadline: Date.now() - 1 });
    expect(late).toMatchObject({ ok: false, error: { code: 'DEADLINE_EXCEEDED' } });
    const unknown = await detect({ modelName: 'nope' });
    expect(unknown).toMatchObject({ ok: false, error: { code: 'MODEL_NOT_FOUND' } });
  });

  it('refuses a model artifact whose sha256 does not match the registry', async (ctx) => {
    requireModel(ctx);
    const id = randomUUID();
    versions.set(id, { key: versions.get(production)!.key, sha256: 'f'.repeat(64) });
    const jobId = await sendPair(await put(await crop('A')), await put(await crop('B')), { modelVersionId: id });
    const failure = (await reportsFor(jobId, finished)).find((r) => r.kind === 'failed');
    expect(failure).toMatchObject({ final: true, error: { code: 'MODEL_INVALID' } });
  });
});

/** A stage change as the models subgraph logs it and the event relay publishes it (`event.logged`, sequence n). */
let sequence = 0;
async function publishStageChange(tenant: string, modelName: string, versionId: string): Promise<void> {
  const appended = stageEvent({ modelName, versionId, stage: 'PRODUCTION', tenant, previousStage: 'STAGING', version: 2, changedBy: 'test', reason: '' });
  const event: LoggedEvent = { ...appended, sequence: ++sequence, occurredAt: new Date().toISOString() };
  await broker.publish(appended.routingKey, createEnvelope(LOGGED_EVENT_TYPE, event, { tenant, idempotencyKey: `${event.stream}#${event.sequence}` }));
  // And its copy on the tenant's stream, which the worker must not act on a second time.
  await broker.publish(`models.${tenant}.stage`, createEnvelope(LOGGED_EVENT_TYPE, { ...event, stream: `models:${tenant}`, routingKey: `models.${tenant}.stage` }, { tenant }));
}

describe('model versions', () => {
  const detectAs = async (tenant: string) => {
    const reply = await broker.rpc(
      INFERENCE_QUEUES.detect,
      createEnvelope(
        MESSAGE_TYPES.detectRequest,
        { jobId: randomUUID(), beforeKey: await put(await crop('A')), afterKey: await put(await crop('B')), modelName: 'lcd-demo', threshold: null, maxPixels: 1e8, deadline: Date.now() + 30_000 },
        { tenant },
      ),
      { timeoutMs: 30_000, replySchema: detectReplySchema },
    );
    if (!reply.payload.ok) throw new Error(JSON.stringify(reply.payload.error));
    return reply.payload.result.modelVersionId;
  };
  const until = async (what: string, check: () => boolean | Promise<boolean>) => {
    const deadline = Date.now() + 30_000;
    while (!(await check())) {
      if (Date.now() > deadline) throw new Error(what);
      await new Promise((r) => setTimeout(r, 50));
    }
  };

  it('is ready once the Production version is loaded, and serves a promoted version without a restart', async (ctx) => {
    requireModel(ctx);
    expect(worker.isReady()).toBe(true);
    const before = production;
    expect(await detectAs('acme')).toBe(before);
    const promoted = await putModelVersion(Buffer.concat([model.ok ? model.bytes : Buffer.alloc(0)]));
    production = promoted;
    // Resolutions are trusted for a minute (INFERENCE_RESOLUTION_TTL_SECONDS): only the event makes the switch now.
    await publishStageChange('*', 'lcd-demo', promoted);
    await until('the promoted version was not loaded', () => worker.loadedVersions().some((v) => v.versionId === promoted));
    expect(worker.isReady()).toBe(true);
    expect(await detectAs('acme')).toBe(promoted);
    // Rolled back: the earlier version serves again, for every tenant.
    production = before;
    await publishStageChange('*', 'lcd-demo', before);
    await until('the rollback was not served', async () => (await detectAs('globex')) === before);
    expect(await detectAs('acme')).toBe(before);
  });

  it('switches a tenant to its own Production version on its own stage change, and no other tenant', async (ctx) => {
    requireModel(ctx);
    const platformVersion = production;
    expect([await detectAs('acme'), await detectAs('globex')]).toEqual([platformVersion, platformVersion]);
    const own = await putModelVersion(Buffer.concat([model.ok ? model.bytes : Buffer.alloc(0)]));
    tenantProduction.set('acme', own);
    try {
      await publishStageChange('acme', 'lcd-demo', own);
      await until('acme did not switch to its own version', async () => (await detectAs('acme')) === own);
      expect(await detectAs('globex')).toBe(platformVersion);
    } finally {
      tenantProduction.delete('acme');
    }
  });
});
