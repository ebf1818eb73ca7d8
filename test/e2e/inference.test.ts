// Change detection as a user meets it, through the gateway: upload a real pair (and a georeferenced GeoTIFF pair),
// run detectChanges and a batch job, download the mask and the polygons through the signed URLs and check that the
// changed pixels, regions and hectares agree with what the mask shows; bad input fails per pair with a named reason,
// a redelivered message has one effect, and a dead-lettered pair shows FAILED; a new Production version (promoted, or
// restored by a rollback) serves the next detectChanges and job within seconds, with no restart.
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope } from '../../lib/broker/broker.js';
import { openRaster } from '../../lib/imaging/raster-source.js';
import { geoTiff, pngHeaderOnly } from '../../lib/imaging/testing.js';
import { registryContract } from '../../lib/model/contract.js';
import { ensureTrainedModel, repoRoot, type TrainedModel } from '../../lib/model/testing.js';
import { checkModelFile } from '../../subgraphs/models/model-file.check.js';
import { ModelStage, ModelVersionSource, PLATFORM_TENANT } from '../../subgraphs/models/models.contracts.js';
import type { ModelsDeps } from '../../subgraphs/models/schema.js';
import { modelArtifactKey } from '../../subgraphs/models/training.contracts.js';
import { requestModelResolution } from '../../subgraphs/models/model-resolution.rpc.js';
import type { JobsDeps } from '../../subgraphs/jobs/schema.js';
import { INFERENCE_QUEUES, JOBS_PAIR_RESULTS_QUEUE, MESSAGE_TYPES, pairIdempotencyKey, type PairRequest } from '../../workers/inference/contracts.js';
import { errorCodes, sharedData, startTestPlatform, uploadFile, type TestPlatform } from '../support/platform.js';

const MIN_REGION_PIXELS = 4; // the worker's default (INFERENCE_MIN_REGION_PIXELS)

let model: TrainedModel;
let t: TestPlatform | undefined;
let productionVersionId: string;

beforeAll(async () => {
  model = await ensureTrainedModel();
  if (!model.ok) return;
  // On RabbitMQ the test platform has a virtual host of its own (test/support/platform.ts).
  // The models subgraph registers the test model as the platform's demo model (Production of lcd-demo) as it starts.
  t = await startTestPlatform({ DEMO_MODEL_DIR: dirname(model.path) });
  const resolved = await requestModelResolution(t.platform.runtime.broker, { tenant: 'acme', modelName: 'lcd-demo', stage: 'PRODUCTION' }, 10_000);
  if (!resolved.found) throw new Error(resolved.reason);
  productionVersionId = resolved.versionId;
}, 20 * 60_000);
afterAll(async () => {
  await t?.close();
});

/** Skips with the reason when the test model could not be trained (no torch). */
function platform(ctx: { skip: (note?: string) => void }): TestPlatform {
  if (!model.ok) ctx.skip(model.reason);
  return t!;
}

const levir = (dir: 'A' | 'B', name = 'test_7_0256_0512.png') => readFile(join(sharedData, 'levir-cd-256', dir, name));
const dsifn = async (dir: 'A' | 'B') => {
  const names = (await import('node:fs/promises')).readdir(join(sharedData, 'dsifn-256', dir));
  return readFile(join(sharedData, 'dsifn-256', dir, (await names).sort()[0]!));
};

async function download(url: string): Promise<Buffer> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

/** Changed pixels and 4-connected regions (of at least MIN_REGION_PIXELS) of a downloaded mask PNG. */
function readMask(bytes: Buffer) {
  const png = PNG.sync.read(bytes);
  const { width, height } = png;
  const on = new Uint8Array(width * height);
  let changed = 0;
  for (let i = 0; i < width * height; i++) {
    const v = png.data[i * 4]!;
    expect([0, 255]).toContain(v);
    if (v === 255) {
      on[i] = 1;
      changed += 1;
    }
  }
  const seen = new Uint8Array(width * height);
  let regions = 0;
  const stack: number[] = [];
  for (let start = 0; start < on.length; start++) {
    if (!on[start] || seen[start]) continue;
    let size = 0;
    stack.push(start);
    seen[start] = 1;
    while (stack.length) {
      const i = stack.pop()!;
      size += 1;
      const x = i % width;
      const y = (i - x) / width;
      for (const [nx, ny] of [[x + 1, y], [x - 1, y], [x, y + 1], [x, y - 1]] as const) {
        if (nx < 0 || ny < 0 || nx >= width || ny >= height) continue;
        const j = ny * width + nx;
        if (on[j] && !seen[j]) {
          seen[j] = 1;
          stack.push(j);
        }
      }
    }
    if (size >= MIN_REGION_PIXELS) regions += 1;
  }
  return { width, height, changed, regions, on };
}

const RESULT_FIELDS = `jobId pairIndex width height maskUrl probabilityUrl polygonsUrl maskGeoTiffUrl probabilityGeoTiffUrl statsUrl driftUrl
  urlsExpireAt georeferenced crs threshold stats { changedPixels changedFraction regions areaSquareMeters areaHectares } modelVersion { id }`;

interface Result {
  jobId: string;
  pairIndex: number;
  width: number;
  height: number;
  maskUrl: string;
  probabilityUrl: string;
  polygonsUrl: string;
  maskGeoTiffUrl: string | null;
  probabilityGeoTiffUrl: string | null;
  statsUrl: string;
  driftUrl: string | null;
  georeferenced: boolean;
  crs: string | null;
  threshold: number;
  stats: { changedPixels: number; changedFraction: number; regions: number; areaSquareMeters: number | null; areaHectares: number | null };
  modelVersion: { id: string };
}

const DETECT = `mutation($input: DetectChangesInput!) { detectChanges(input: $input) { ${RESULT_FIELDS} } }`;

async function detect(tp: TestPlatform, before: Buffer, after: Buffer, options: { contentType?: string; threshold?: number; token?: string } = {}) {
  const type = options.contentType ?? 'image/png';
  const ext = type === 'image/tiff' ? 'tif' : 'png';
  const beforeUploadId = await uploadFile(tp, before, `before.${ext}`, type, options.token);
  const afterUploadId = await uploadFile(tp, after, `after.${ext}`, type, options.token);
  return tp.gql<{ detectChanges: Result }>(DETECT, { input: { beforeUploadId, afterUploadId, threshold: options.threshold ?? null } }, options.token);
}

/** Checks that stats and polygons agree with the mask the user downloads; returns the decoded mask. */
async function checkAgainstMask(result: Result) {
  const mask = readMask(await download(result.maskUrl));
  expect([mask.width, mask.height]).toEqual([result.width, result.height]);
  expect(result.stats.changedPixels).toBe(mask.changed);
  expect(result.stats.changedFraction).toBeCloseTo(mask.changed / (mask.width * mask.height), 12);
  expect(result.stats.regions).toBe(mask.regions);
  const polygons = JSON.parse((await download(result.polygonsUrl)).toString('utf8')) as {
    type: string;
    crs?: { properties: { name: string } };
    lcd: { coordinates: string; regions: number };
    features: { properties: { pixels: number; areaSquareMeters: number | null }; geometry: { type: string; coordinates: number[][][] } }[];
  };
  expect(polygons.type).toBe('FeatureCollection');
  expect(polygons.features).toHaveLength(result.stats.regions);
  const regionPixels = polygons.features.reduce((sum, f) => sum + f.properties.pixels, 0);
  expect(regionPixels).toBeLessThanOrEqual(mask.changed);
  for (const feature of polygons.features) {
    expect(feature.geometry.type).toBe('Polygon');
    const ring = feature.geometry.coordinates[0]!;
    expect(ring[0]).toEqual(ring.at(-1));
  }
  const probability = PNG.sync.read(await download(result.probabilityUrl));
  expect([probability.width, probability.height]).toEqual([result.width, result.height]);
  const stats = JSON.parse((await download(result.statsUrl)).toString('utf8')) as { modelVersionId: string; stats: unknown };
  expect(stats.modelVersionId).toBe(result.modelVersion.id);
  expect(stats.stats).toEqual(result.stats);
  return { mask, polygons };
}

describe('detectChanges', () => {
  it('finds changes in a real pair; the mask, polygons and stats agree, and the model version is recorded', async (ctx) => {
    const tp = platform(ctx);
    const res = await detect(tp, await levir('A'), await levir('B'), { threshold: 0.3 });
    expect(res.errors).toBeUndefined();
    const result = res.data!.detectChanges;
    expect(result).toMatchObject({ width: 256, height: 256, georeferenced: false, crs: null, maskGeoTiffUrl: null, threshold: 0.3 });
    expect(result.stats.areaSquareMeters).toBeNull();
    expect(result.modelVersion.id).toBe(productionVersionId);
    const { polygons } = await checkAgainstMask(result);
    expect(polygons.lcd.coordinates).toBe('pixel');
    expect(polygons.crs).toBeUndefined();
    const drift = JSON.parse((await download(result.driftUrl!)).toString('utf8')) as {
      input: { before: { name: string; mean: number; histogram: number[] }[] };
      embedding: { dim: number; tiles: number; mean: number[] };
    };
    expect(drift.input.before.map((b) => b.name)).toEqual(['red', 'green', 'blue']);
    expect(drift.input.before[0]!.histogram.reduce((a, b) => a + b, 0)).toBe(256 * 256);
    expect(drift.embedding.dim).toBe(32);
    expect(drift.embedding.tiles).toBeGreaterThan(1);
    // Recorded as a SYNC job, for the history.
    const job = await tp.gql<{ job: { kind: string; status: string; modelVersion: { id: string } } }>(`query($id: ID!) { job(id: $id) { kind status modelVersion { id } } }`, {
      id: result.jobId,
    });
    expect(job.data!.job).toEqual({ kind: 'SYNC', status: 'SUCCEEDED', modelVersion: { id: productionVersionId } });
  });

  it('answers a georeferenced GeoTIFF pair in map coordinates, with the area in m² and hectares', async (ctx) => {
    const tp = platform(ctx);
    const toTiff = async (png: Buffer) => {
      const image = PNG.sync.read(png);
      const rgb = new Uint8Array(image.width * image.height * 3);
      for (let i = 0; i < image.width * image.height; i++) rgb.set(image.data.subarray(i * 4, i * 4 + 3), i * 3);
      // UTM zone 33N, 0.5 m pixels, north up.
      return geoTiff({ width: image.width, height: image.height, bands: 3, epsg: 32633, transform: [500_000, 0.5, 0, 5_000_000, 0, -0.5], rowsPerStrip: 16 }, rgb);
    };
    const res = await detect(tp, await toTiff(await levir('A')), await toTiff(await levir('B')), { contentType: 'image/tiff', threshold: 0.3 });
    expect(res.errors).toBeUndefined();
    const result = res.data!.detectChanges;
    expect(result).toMatchObject({ georeferenced: true, crs: 'EPSG:32633', width: 256, height: 256 });
    const { mask, polygons } = await checkAgainstMask(result);
    expect(result.stats.areaSquareMeters).toBeCloseTo(mask.changed * 0.25, 6);
    expect(result.stats.areaHectares).toBeCloseTo((mask.changed * 0.25) / 10_000, 10);
    expect(polygons.lcd.coordinates).toBe('map');
    expect(polygons.crs?.properties.name).toBe('urn:ogc:def:crs:EPSG::32633');
    for (const feature of polygons.features) {
      for (const [x, y] of feature.geometry.coordinates[0]!) {
        expect(x).toBeGreaterThanOrEqual(500_000);
        expect(x).toBeLessThanOrEqual(500_128);
        expect(y).toBeGreaterThanOrEqual(4_999_872);
        expect(y).toBeLessThanOrEqual(5_000_000);
      }
      expect(feature.properties.areaSquareMeters).toBeCloseTo(feature.properties.pixels * 0.25, 9);
    }
    // The GeoTIFF mask keeps the input's grid and says the same as the PNG.
    const tiff = await openRaster({ kind: 'bytes', bytes: await download(result.maskGeoTiffUrl!) });
    expect(tiff.info.georef?.crs.epsg).toBe(32633);
    expect(tiff.info.georef?.transform).toEqual([500_000, 0.5, 0, 5_000_000, 0, -0.5]);
    const rows = await tiff.readRows(256);
    let same = 0;
    for (let i = 0; i < rows.length; i++) if ((rows[i] === 255) === (mask.on[i] === 1)) same += 1;
    expect(same).toBe(256 * 256);
    const probability = await openRaster({ kind: 'bytes', bytes: await download(result.probabilityGeoTiffUrl!) });
    expect(probability.info.sampleType).toBe('float32');
  });

  it('names each bad input with BAD_USER_INPUT and its problem, and keeps working', async (ctx) => {
    const tp = platform(ctx);
    const good = await levir('A');
    const small = PNG.sync.write(Object.assign(new PNG({ width: 64, height: 64 }), {}));
    const cases: [Buffer, Buffer, string][] = [
      [good, small, 'SIZE_MISMATCH'],
      [Buffer.from('this is not an image at all'), good, 'BEFORE_NOT_AN_IMAGE'],
      [good, good.subarray(0, good.length - 5000), 'AFTER_TRUNCATED'],
      [good, pngHeaderOnly(5000, 5000), 'TOO_LARGE_FOR_SYNC'],
    ];
    for (const [before, after, problem] of cases) {
      const res = await detect(tp, before, after);
      expect(errorCodes(res), problem).toEqual(['BAD_USER_INPUT']);
      expect(res.errors![0]!.extensions!.problem).toBe(problem);
    }
    const tooLarge = await detect(tp, good, pngHeaderOnly(5000, 5000));
    expect(tooLarge.errors![0]!.message).toContain('submitChangeDetectionJob');
    // Still serving.
    expect((await detect(tp, good, await levir('B'))).errors).toBeUndefined();
  });

  it('refuses a viewer (FORBIDDEN) and an upload of another tenant (NOT_FOUND)', async (ctx) => {
    const tp = platform(ctx);
    const viewer = await tp.token(['viewer']);
    const res = await tp.gql(DETECT, { input: { beforeUploadId: '00000000-0000-4000-8000-000000000000', afterUploadId: '00000000-0000-4000-8000-000000000000' } }, viewer);
    expect(errorCodes(res)).toEqual(['FORBIDDEN']);
    const other = await tp.token(['analyst'], 'globex');
    const theirs = await uploadFile(tp, await levir('A'), 'a.png', 'image/png', other);
    const mine = await uploadFile(tp, await levir('B'), 'b.png');
    const cross = await tp.gql(DETECT, { input: { beforeUploadId: theirs, afterUploadId: mine } });
    expect(errorCodes(cross)).toEqual(['NOT_FOUND']);
  });
});

interface JobView {
  id: string;
  status: string;
  progress: number;
  succeededCount: number;
  failedCount: number;
  pairs: { edges: { node: { index: number; status: string; error: string | null; errorCode: string | null; attempts: number; result: Result | null } }[] };
}

const JOB = `query($id: ID!) { job(id: $id) { id status progress succeededCount failedCount
  pairs { edges { node { index status error errorCode attempts result { ${RESULT_FIELDS} } } } } } }`;

async function waitForJob(tp: TestPlatform, id: string, done = (job: JobView) => ['SUCCEEDED', 'PARTIAL', 'FAILED', 'CANCELLED'].includes(job.status)): Promise<JobView> {
  const until = Date.now() + 120_000;
  for (;;) {
    const res = await tp.gql<{ job: JobView }>(JOB, { id });
    expect(res.errors).toBeUndefined();
    if (done(res.data!.job)) return res.data!.job;
    if (Date.now() > until) throw new Error(`job ${id} still ${res.data!.job.status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

const SUBMIT = `mutation($input: SubmitChangeDetectionJobInput!) { submitChangeDetectionJob(input: $input) { id status kind pairCount modelVersion { id } } }`;

describe('batch jobs', () => {
  let partialJob: JobView;

  it('runs a batch with a bad pair: PARTIAL, the bad pair FAILED with its reason, the others with results', async (ctx) => {
    const tp = platform(ctx);
    const pairs = [
      { beforeUploadId: await uploadFile(tp, await levir('A'), 'a.png'), afterUploadId: await uploadFile(tp, await levir('B'), 'b.png') },
      { beforeUploadId: await uploadFile(tp, Buffer.from('GIF89a not what you think'), 'x.png'), afterUploadId: await uploadFile(tp, await levir('B'), 'b.png') },
      { beforeUploadId: await uploadFile(tp, await dsifn('A'), 'c.png'), afterUploadId: await uploadFile(tp, await dsifn('B'), 'd.png') },
    ];
    const submitted = await tp.gql<{ submitChangeDetectionJob: { id: string; status: string; kind: string; pairCount: number; modelVersion: { id: string } } }>(SUBMIT, {
      input: { pairs, idempotencyKey: `batch-${randomBytes(4).toString('hex')}` },
    });
    expect(submitted.errors).toBeUndefined();
    expect(submitted.data!.submitChangeDetectionJob).toMatchObject({ kind: 'BATCH', pairCount: 3, modelVersion: { id: productionVersionId } });
    const job = await waitForJob(tp, submitted.data!.submitChangeDetectionJob.id);
    expect(job).toMatchObject({ status: 'PARTIAL', progress: 1, succeededCount: 2, failedCount: 1 });
    const [first, bad, third] = job.pairs.edges.map((e) => e.node);
    expect(bad).toMatchObject({ index: 1, status: 'FAILED', errorCode: 'BEFORE_NOT_AN_IMAGE', result: null });
    expect(bad!.error).toContain('before image');
    for (const pair of [first!, third!]) {
      expect(pair.status).toBe('SUCCEEDED');
      expect(pair.result!.modelVersion.id).toBe(productionVersionId);
      await checkAgainstMask(pair.result!);
    }
    // Bad input is dead-lettered at once (no retries), with the reason.
    const letters = await tp.platform.runtime.broker.deadLetters(INFERENCE_QUEUES.pairs, 1000);
    const letter = letters.find((l) => (l.envelope?.payload as PairRequest | undefined)?.jobId === job.id);
    expect(letter?.reason).toMatch(/^BEFORE_NOT_AN_IMAGE: /);
    expect(letter?.deliveryCount).toBe(1);
    partialJob = job;
  });

  it('has one effect when a pair message arrives again: same keys, same counts', async (ctx) => {
    const tp = platform(ctx);
    if (!partialJob) return ctx.skip('needs the batch job of the previous test');
    const deps = tp.platform.subgraphs.jobs.deps as JobsDeps;
    const em = tp.platform.subgraphs.jobs.db.fork();
    const stored = await deps.repository.findJob(em, 'acme', partialJob.id);
    const pair = await deps.repository.findPair(em, 'acme', partialJob.id, 0);
    const prefix = `results/acme/${partialJob.id}/0/`;
    const keysBefore: string[] = [];
    for await (const object of tp.platform.runtime.store.list(prefix)) keysBefore.push(object.key);
    const metrics = tp.platform.inference!.metrics;
    const succeeded = async () => (await metrics.pairs.get()).values.find((v) => v.labels.kind === 'batch' && v.labels.outcome === 'succeeded')?.value ?? 0;
    const count = await succeeded();
    const payload: PairRequest = {
      jobId: partialJob.id,
      pairIndex: 0,
      beforeKey: pair!.beforeKey,
      afterKey: pair!.afterKey,
      modelName: stored!.modelName,
      modelVersionId: stored!.modelVersionId!,
      threshold: null,
    };
    const envelope = createEnvelope(MESSAGE_TYPES.pairRequest, payload, { tenant: 'acme', idempotencyKey: pairIdempotencyKey(partialJob.id, 0) });
    await tp.platform.runtime.broker.send(INFERENCE_QUEUES.pairs, envelope);
    await tp.platform.runtime.broker.send(INFERENCE_QUEUES.pairs, envelope);
    const until = Date.now() + 60_000;
    while ((await succeeded()) < count + 2) {
      if (Date.now() > until) throw new Error('the redelivered messages were not processed');
      await new Promise((r) => setTimeout(r, 200));
    }
    // Let the jobs subgraph apply the reports.
    while ((await tp.platform.runtime.broker.queueDepth(JOBS_PAIR_RESULTS_QUEUE)).ready > 0) await new Promise((r) => setTimeout(r, 100));
    await new Promise((r) => setTimeout(r, 500));
    const after = await waitForJob(tp, partialJob.id);
    expect(after).toMatchObject({ status: 'PARTIAL', succeededCount: 2, failedCount: 1 });
    expect(after.pairs.edges[0]!.node.attempts).toBe(partialJob.pairs.edges[0]!.node.attempts);
    const keysAfter: string[] = [];
    for await (const object of tp.platform.runtime.store.list(prefix)) keysAfter.push(object.key);
    expect(keysAfter).toEqual(keysBefore);
    await checkAgainstMask(after.pairs.edges[0]!.node.result!);
  });

  it('shows a pair whose message was dead-lettered as FAILED, with the reason', async (ctx) => {
    const tp = platform(ctx);
    const pairs = [{ beforeUploadId: await uploadFile(tp, await levir('A'), 'a.png'), afterUploadId: await uploadFile(tp, pngHeaderOnly(3, 3), 'b.png') }];
    const submitted = await tp.gql<{ submitChangeDetectionJob: { id: string } }>(SUBMIT, { input: { pairs } });
    const job = await waitForJob(tp, submitted.data!.submitChangeDetectionJob.id);
    expect(job).toMatchObject({ status: 'FAILED', failedCount: 1 });
    expect(job.pairs.edges[0]!.node.errorCode).toMatch(/^AFTER_|SIZE_MISMATCH/);
    const letters = await tp.platform.runtime.broker.deadLetters(INFERENCE_QUEUES.pairs, 1000);
    expect(letters.some((l) => (l.envelope?.payload as PairRequest | undefined)?.jobId === job.id)).toBe(true);
  });

  it('returns the same job for a repeated idempotency key, and refuses unknown uploads and models by name', async (ctx) => {
    const tp = platform(ctx);
    const pairs = [{ beforeUploadId: await uploadFile(tp, await levir('A'), 'a.png'), afterUploadId: await uploadFile(tp, await levir('B'), 'b.png') }];
    const key = `same-${randomBytes(4).toString('hex')}`;
    const first = await tp.gql<{ submitChangeDetectionJob: { id: string } }>(SUBMIT, { input: { pairs, idempotencyKey: key } });
    const second = await tp.gql<{ submitChangeDetectionJob: { id: string } }>(SUBMIT, { input: { pairs, idempotencyKey: key } });
    expect(second.data!.submitChangeDetectionJob.id).toBe(first.data!.submitChangeDetectionJob.id);
    const missing = await tp.gql(SUBMIT, { input: { pairs: [{ ...pairs[0], afterUploadId: '00000000-0000-4000-8000-000000000000' }] } });
    expect(errorCodes(missing)).toEqual(['NOT_FOUND']);
    expect(missing.errors![0]!.extensions!.field).toBe('pairs[0].afterUploadId');
    const unknownModel = await tp.gql(SUBMIT, { input: { pairs, modelName: 'no-such-model' } });
    expect(errorCodes(unknownModel)).toEqual(['BAD_USER_INPUT']);
    expect(unknownModel.errors![0]!.extensions!.field).toBe('modelName');
    await waitForJob(tp, first.data!.submitChangeDetectionJob.id);
  });

  it('cancels: an analyst their own job, not somebody else’s; an admin any', async (ctx) => {
    const tp = platform(ctx);
    const owner = await tp.token(['analyst'], 'acme', 'analyst-owner');
    const other = await tp.token(['analyst'], 'acme', 'analyst-other');
    const pairs = [{ beforeUploadId: await uploadFile(tp, await levir('A'), 'a.png', 'image/png', owner), afterUploadId: await uploadFile(tp, await levir('B'), 'b.png', 'image/png', owner) }];
    const submitted = await tp.gql<{ submitChangeDetectionJob: { id: string } }>(SUBMIT, { input: { pairs } }, owner);
    const id = submitted.data!.submitChangeDetectionJob.id;
    const cancel = `mutation($id: ID!) { cancelJob(id: $id) { id status } }`;
    const refused = await tp.gql(cancel, { id }, other);
    // The job may have finished already: then CONFLICT; otherwise FORBIDDEN for someone else's job.
    expect(['FORBIDDEN', 'CONFLICT']).toContain(errorCodes(refused)[0]);
    const byOwner = await tp.gql<{ cancelJob: { status: string } }>(cancel, { id }, owner);
    if (byOwner.errors) expect(errorCodes(byOwner)).toEqual(['CONFLICT']);
    else expect(byOwner.data!.cancelJob.status).toBe('CANCELLED');
  });
});

describe('the inference worker', () => {
  it('is ready with the Production model loaded, and exports its metrics', async (ctx) => {
    const tp = platform(ctx);
    const base = tp.platform.inference!.url;
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.json()).toMatchObject({ checks: { broker: true, model: true, storage: true } });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const name of [
      'lcd_inference_pair_duration_seconds',
      'lcd_inference_model_run_duration_seconds',
      'lcd_inference_tiles_total',
      'lcd_inference_tiles_per_second',
      'lcd_inference_in_flight',
      'lcd_queue_depth',
      'lcd_inference_model_info',
    ]) {
      expect(metrics).toContain(name);
    }
    expect(metrics).toContain(`version_id="${productionVersionId}"`);
    const jobsMetrics = await (await fetch(tp.platform.subgraphs.jobs.url.replace(/\/graphql$/, '/metrics'))).text();
    expect(jobsMetrics).toMatch(/lcd_jobs\{[^}]*status="SUCCEEDED"/);
  });
});

/** A version of `modelName` for `tenant` registered through the models service itself (stage NONE); returns its id. */
async function registerVersion(tp: TestPlatform, tenant: string, modelName: string, bytes: Buffer): Promise<string> {
  const models = tp.platform.subgraphs.models;
  const deps = models.deps as ModelsDeps;
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  const artifactKey = modelArtifactKey(tenant, modelName, sha256);
  await tp.platform.runtime.store.put(artifactKey, bytes, { contentType: 'application/octet-stream' });
  const contract = registryContract(await checkModelFile(bytes));
  const version = await deps.service.registerVersion(models.db.fork(), {
    tenant,
    modelName,
    artifactKey,
    sha256,
    byteSize: bytes.length,
    metrics: {},
    contract,
    source: ModelVersionSource.UPLOADED,
    createdBy: 'e2e-test',
  });
  return version.id;
}

/** Puts a version in Production through the models service (the approval flow is the models subgraph's to test). */
async function promote(tp: TestPlatform, tenant: string, versionId: string): Promise<void> {
  const models = tp.platform.subgraphs.models;
  await (models.deps as ModelsDeps).service.setStage(models.db.fork(), tenant, versionId, ModelStage.PRODUCTION, { changedBy: 'e2e-test', reason: 'test promotion' });
}

describe('a new Production version', () => {
  // The worker trusts a resolved Production version for INFERENCE_RESOLUTION_TTL_SECONDS (60 s): switching within
  // this bound is the `model.<name>.stage` event at work, with no restart.
  const SWITCH_MS = 15_000;

  async function detectWith(tp: TestPlatform, modelName: string | null, token?: string): Promise<string> {
    const beforeUploadId = await uploadFile(tp, await levir('A'), 'before.png', 'image/png', token);
    const afterUploadId = await uploadFile(tp, await levir('B'), 'after.png', 'image/png', token);
    const res = await tp.gql<{ detectChanges: Result }>(DETECT, { input: { beforeUploadId, afterUploadId, ...(modelName && { modelName }) } }, token);
    expect(res.errors).toBeUndefined();
    return res.data!.detectChanges.modelVersion.id;
  }

  async function eventually(what: string, check: () => Promise<boolean>): Promise<void> {
    const until = Date.now() + SWITCH_MS;
    while (!(await check())) {
      if (Date.now() > until) throw new Error(`${what} within ${SWITCH_MS} ms`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function jobVersion(tp: TestPlatform, modelName: string): Promise<{ submitted: string; ran: string }> {
    const pairs = [{ beforeUploadId: await uploadFile(tp, await levir('A'), 'a.png'), afterUploadId: await uploadFile(tp, await levir('B'), 'b.png') }];
    const submitted = await tp.gql<{ submitChangeDetectionJob: { id: string; modelVersion: { id: string } } }>(SUBMIT, { input: { pairs, modelName } });
    expect(submitted.errors).toBeUndefined();
    const job = await waitForJob(tp, submitted.data!.submitChangeDetectionJob.id);
    expect(job.status).toBe('SUCCEEDED');
    return { submitted: submitted.data!.submitChangeDetectionJob.modelVersion.id, ran: job.pairs.edges[0]!.node.result!.modelVersion.id };
  }

  it("is served to a tenant's next detectChanges and job within seconds, and a rollback by an approver too", async (ctx) => {
    const tp = platform(ctx);
    const name = `acme-cd-${randomBytes(3).toString('hex')}`;
    // Two different ONNX files: the committed demo model and the test model.
    const first = await registerVersion(tp, 'acme', name, await readFile(join(repoRoot, 'training', 'demo-model', 'model.onnx')));
    const second = await registerVersion(tp, 'acme', name, model.ok ? model.bytes : Buffer.alloc(0));
    await promote(tp, 'acme', first);
    await eventually('the first version was not served', async () => (await detectWith(tp, name)) === first);
    expect(await jobVersion(tp, name)).toEqual({ submitted: first, ran: first });

    await promote(tp, 'acme', second);
    await eventually('the promoted version was not served', async () => (await detectWith(tp, name)) === second);
    expect(await jobVersion(tp, name)).toEqual({ submitted: second, ran: second });

    const approver = await tp.token(['approver'], 'acme', 'approver-1');
    const rolledBack = await tp.gql<{ rollbackModel: { id: string; stage: string } }>(
      `mutation($name: String!) { rollbackModel(modelName: $name, reason: "e2e: back to the first version") { id stage } }`,
      { name },
      approver,
    );
    expect(rolledBack.errors).toBeUndefined();
    expect(rolledBack.data!.rollbackModel).toEqual({ id: first, stage: 'PRODUCTION' });
    await eventually('the rolled-back version was not served', async () => (await detectWith(tp, name)) === first);
    expect(await jobVersion(tp, name)).toEqual({ submitted: first, ran: first });
    // Another tenant never sees acme's model.
    const globex = await tp.token(['analyst'], 'globex', 'globex-analyst');
    const beforeUploadId = await uploadFile(tp, await levir('A'), 'a.png', 'image/png', globex);
    const afterUploadId = await uploadFile(tp, await levir('B'), 'b.png', 'image/png', globex);
    const theirs = await tp.gql(DETECT, { input: { beforeUploadId, afterUploadId, modelName: name } }, globex);
    expect(theirs.data).toBeNull();
    expect(theirs.errors).toBeDefined();
  });

  it('of the platform model switches every tenant, and switching back restores it', async (ctx) => {
    const tp = platform(ctx);
    const globex = await tp.token(['analyst'], 'globex', 'globex-analyst');
    expect([await detectWith(tp, null), await detectWith(tp, null, globex)]).toEqual([productionVersionId, productionVersionId]);
    const next = await registerVersion(tp, PLATFORM_TENANT, 'lcd-demo', await readFile(join(repoRoot, 'training', 'demo-model', 'model.onnx')));
    try {
      await promote(tp, PLATFORM_TENANT, next);
      await eventually('acme did not get the new platform version', async () => (await detectWith(tp, null)) === next);
      await eventually('globex did not get the new platform version', async () => (await detectWith(tp, null, globex)) === next);
    } finally {
      await promote(tp, PLATFORM_TENANT, productionVersionId);
    }
    await eventually('the platform version was not restored', async () => (await detectWith(tp, null)) === productionVersionId && (await detectWith(tp, null, globex)) === productionVersionId);
  });
});
