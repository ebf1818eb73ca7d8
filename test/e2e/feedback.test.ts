// Model drift as a user meets it, through the gateway: run a real batch job with the demo model on real DSIFN pairs,
// label its results (labels that agree with the masks, the inverse of the masks, a real ground-truth label), see bad
// labels refused with errors that say what is wrong, read IoU and F1 per feedback batch beside the version's
// evaluation, and find the MODEL_DRIFT alerts the disagreeing batch raised.
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient } from 'graphql-ws';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { encodePngSync } from '../../lib/imaging/png-stream.js';
import { errorCodes, repoRoot, sharedData, startTestPlatform, uploadFile, type TestPlatform } from '../support/platform.js';

const BATCH_SIZE = 2;
const MARGIN = 0.1;
const dsifnDir = join(sharedData, 'dsifn-256');

let t: TestPlatform;
let names: string[];
let jobId: string;
let versionId: string;
/** The result masks of the job's pairs, as 0/255 samples. */
const masks: { width: number; height: number; on: Uint8Array }[] = [];

interface JobView {
  status: string;
  modelVersion: { id: string } | null;
  pairs: { edges: { node: { index: number; status: string; result: { maskUrl: string; width: number; height: number; modelVersion: { id: string } } | null } }[] };
}

const JOB = `query($id: ID!) { job(id: $id) { status modelVersion { id }
  pairs { edges { node { index status result { maskUrl width height modelVersion { id } } } } } } }`;
const SUBMIT_JOB = `mutation($input: SubmitChangeDetectionJobInput!) { submitChangeDetectionJob(input: $input) { id } }`;
const SUBMIT_FEEDBACK = `mutation($input: SubmitFeedbackInput!) { submitFeedback(input: $input) {
  id jobId pairIndex modelName modelVersion { id } labelUploadId truePositives falsePositives falseNegatives trueNegatives iou f1 createdBy createdAt } }`;
const PERFORMANCE = `query($modelName: String!) { modelPerformance(modelName: $modelName) {
  modelName modelVersion { id } version evaluationIou evaluationF1 feedbackCount batchSize margin
  batches { index partial pairCount windowStart windowEnd iou f1 truePositives falsePositives falseNegatives trueNegatives belowEvaluation } } }`;
const ALERTS = `query($modelName: String) { driftAlerts(modelName: $modelName) { edges { node {
  kind metric value threshold windowStart windowEnd status modelName modelVersion { id } } } } }`;

interface Feedback {
  id: string;
  pairIndex: number;
  modelVersion: { id: string };
  truePositives: number;
  falsePositives: number;
  falseNegatives: number;
  trueNegatives: number;
  iou: number;
  f1: number;
  createdBy: string;
}

interface AlertEvent {
  alertId: string;
  modelName: string;
  alert: { id: string; kind: string; metric: string; value: number; modelVersion: { id: string } | null };
}

/** Subscribes to the tenant's driftAlerts of lcd-demo from the start of its stream (no race with the alert being raised);
 * `modelDrift` resolves with the first MODEL_DRIFT event. */
function watchModelDrift(token: string) {
  const client = createClient({ url: t.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0 });
  const modelDrift = new Promise<AlertEvent>((resolve, reject) => {
    client.subscribe<{ driftAlerts: AlertEvent }>(
      { query: `subscription { driftAlerts(modelName: "lcd-demo", afterSequence: 0) { alertId modelName alert { id kind metric value modelVersion { id } } } }` },
      {
        next: (result) => {
          if (result.errors) reject(new Error(JSON.stringify(result.errors)));
          else if (result.data?.driftAlerts.alert.kind === 'MODEL_DRIFT') resolve(result.data.driftAlerts);
        },
        error: reject,
        complete: () => reject(new Error('the subscription ended without a MODEL_DRIFT event')),
      },
    );
  });
  return { client, modelDrift };
}

async function download(url: string): Promise<Buffer> {
  const res = await fetch(url);
  if (!res.ok) throw new Error(`GET ${url} answered ${res.status}`);
  return Buffer.from(await res.arrayBuffer());
}

const greyPng = (width: number, height: number, data: Uint8Array) => encodePngSync({ width, height, colorType: 0 }, data);
const labelUpload = (bytes: Buffer, name = 'label.png') => uploadFile(t, bytes, name);
const submitFeedback = (pairIndex: number, labelUploadId: string, token?: string) =>
  t.gql<{ submitFeedback: Feedback }>(SUBMIT_FEEDBACK, { input: { jobId, pairIndex, labelUploadId } }, token);

beforeAll(async () => {
  // The committed demo model (training/demo-model) serves as lcd-demo, with its evaluation IoU and F1.
  t = await startTestPlatform({ FEEDBACK_BATCH_SIZE: String(BATCH_SIZE), FEEDBACK_ALERT_MARGIN: String(MARGIN) });
  names = (await readdir(join(dsifnDir, 'A'))).sort().slice(0, 5);
  const pairs = [];
  for (const name of names) {
    pairs.push({
      beforeUploadId: await uploadFile(t, await readFile(join(dsifnDir, 'A', name)), `before-${name}`),
      afterUploadId: await uploadFile(t, await readFile(join(dsifnDir, 'B', name)), `after-${name}`),
    });
  }
  const submitted = await t.gql<{ submitChangeDetectionJob: { id: string } }>(SUBMIT_JOB, { input: { pairs, modelName: 'lcd-demo' } });
  if (!submitted.data) throw new Error(`submitChangeDetectionJob failed: ${JSON.stringify(submitted.errors)}`);
  jobId = submitted.data.submitChangeDetectionJob.id;
  const until = Date.now() + 300_000;
  let job: JobView;
  for (;;) {
    job = (await t.gql<{ job: JobView }>(JOB, { id: jobId })).data!.job;
    if (['SUCCEEDED', 'PARTIAL', 'FAILED', 'CANCELLED'].includes(job.status)) break;
    if (Date.now() > until) throw new Error(`job ${jobId} still ${job.status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  if (job.status !== 'SUCCEEDED') throw new Error(`job ${jobId} ended ${job.status}`);
  versionId = job.modelVersion!.id;
  for (const { node } of job.pairs.edges) {
    const png = PNG.sync.read(await download(node.result!.maskUrl));
    const on = new Uint8Array(png.width * png.height);
    for (let i = 0; i < on.length; i++) on[i] = png.data[i * 4]! === 0 ? 0 : 255;
    masks[node.index] = { width: png.width, height: png.height, on };
  }
}, 10 * 60_000);
afterAll(async () => {
  await t?.close();
});

describe('submitFeedback', () => {
  it('refuses labels of the wrong size or not binary, pairs that do not exist, and other tenants, naming the problem', async () => {
    const { width, height, on } = masks[0]!;
    const small = await submitFeedback(0, await labelUpload(greyPng(64, 64, new Uint8Array(64 * 64))));
    expect(small.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'labelUploadId', problem: 'LABEL_SIZE_MISMATCH' });
    expect(small.errors![0]!.message).toContain(`the label is 64×64 pixels but the result of pair 0 of job ${jobId} is ${width}×${height}`);

    const blurred = Uint8Array.from(on, (v, i) => (i % 7 === 0 ? 128 : v));
    const grey = await submitFeedback(0, await labelUpload(greyPng(width, height, blurred)));
    expect(grey.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', field: 'labelUploadId', problem: 'LABEL_NOT_BINARY', values: [128] });
    expect(grey.errors![0]!.message).toContain('not binary');

    const notAnImage = await submitFeedback(0, await labelUpload(Buffer.from('this is not a mask'), 'label.txt'));
    expect(notAnImage.errors?.[0]?.extensions).toMatchObject({ code: 'BAD_USER_INPUT', problem: 'LABEL_NOT_AN_IMAGE' });

    const goodLabel = await labelUpload(greyPng(width, height, on));
    expect(errorCodes(await submitFeedback(names.length, goodLabel))).toEqual(['NOT_FOUND']);
    const otherTenant = await t.token(['analyst'], 'globex', 'gina');
    expect((await submitFeedback(0, goodLabel, otherTenant)).errors?.[0]?.extensions).toMatchObject({ code: 'NOT_FOUND', field: 'jobId' });
    expect(errorCodes(await submitFeedback(0, goodLabel, await t.token(['viewer'])))).toEqual(['FORBIDDEN']);

    // Nothing of it was stored: the model has no feedback yet.
    expect((await t.gql<{ modelPerformance: unknown[] }>(PERFORMANCE, { modelName: 'lcd-demo' })).data!.modelPerformance).toEqual([]);
  });

  it('scores labels per pair, shows IoU and F1 per batch beside the evaluation, and raises MODEL_DRIFT when labels disagree', async () => {
    const analyst = await t.token(['analyst'], 'acme', 'ana');
    const agree = async (index: number) => {
      const { width, height, on } = masks[index]!;
      return submitFeedback(index, await labelUpload(greyPng(width, height, on)), analyst);
    };
    const invert = async (index: number) => {
      const { width, height, on } = masks[index]!;
      return submitFeedback(index, await labelUpload(greyPng(width, height, Uint8Array.from(on, (v) => 255 - v))), analyst);
    };

    // Batch 0: labels that agree with the results.
    const first = await agree(0);
    expect(first.errors).toBeUndefined();
    const changed = masks[0]!.on.filter((v) => v === 255).length;
    expect(first.data!.submitFeedback).toMatchObject({
      pairIndex: 0,
      modelVersion: { id: versionId },
      truePositives: changed,
      falsePositives: 0,
      falseNegatives: 0,
      trueNegatives: masks[0]!.on.length - changed,
      iou: 1,
      f1: 1,
      createdBy: 'ana',
    });
    expect((await agree(1)).errors).toBeUndefined();
    // The same label upload again is the same feedback; another label for the pair is refused.
    const labelOfFirst = (first.data!.submitFeedback as Feedback & { labelUploadId: string }).labelUploadId;
    expect((await submitFeedback(0, labelOfFirst, analyst)).data!.submitFeedback.id).toBe(first.data!.submitFeedback.id);
    expect(errorCodes(await invert(0))).toEqual(['CONFLICT']);

    // No alert for a batch that agrees.
    type Alerts = { driftAlerts: { edges: { node: { kind: string; metric: string; value: number; threshold: number; windowStart: string; windowEnd: string; status: string; modelVersion: { id: string } } }[] } };
    const modelDrift = async () => (await t.gql<Alerts>(ALERTS, { modelName: 'lcd-demo' })).data!.driftAlerts.edges.map((e) => e.node).filter((a) => a.kind === 'MODEL_DRIFT');
    expect(await modelDrift()).toEqual([]);

    // Batch 1: the inverse of the results (nothing agrees on change: IoU and F1 0); batch 2: a real ground-truth label.
    const watcher = watchModelDrift(await t.token(['viewer']));
    const inverted = await invert(2);
    expect(inverted.data!.submitFeedback).toMatchObject({ truePositives: 0, iou: 0, f1: 0 });
    await invert(3);
    const truth = await submitFeedback(4, await labelUpload(await readFile(join(dsifnDir, 'label', names[4]!))), analyst);
    expect(truth.errors).toBeUndefined();
    const scored = truth.data!.submitFeedback;
    expect(scored.truePositives + scored.falsePositives + scored.falseNegatives + scored.trueNegatives).toBe(masks[4]!.on.length);

    type Performance = {
      modelPerformance: {
        modelVersion: { id: string };
        evaluationIou: number | null;
        evaluationF1: number | null;
        feedbackCount: number;
        batchSize: number;
        margin: number;
        batches: { index: number; partial: boolean; pairCount: number; windowStart: string; windowEnd: string; iou: number; f1: number; truePositives: number; belowEvaluation: boolean }[];
      }[];
    };
    const performance = await t.gql<Performance>(PERFORMANCE, { modelName: 'lcd-demo' }, await t.token(['viewer']));
    expect(performance.errors).toBeUndefined();
    const [version, ...others] = performance.data!.modelPerformance;
    expect(others).toEqual([]);
    const evaluation = JSON.parse(await readFile(join(repoRoot, 'training', 'demo-model', 'evaluation.json'), 'utf8')) as { iou: number; f1: number };
    expect(version).toMatchObject({ modelVersion: { id: versionId }, evaluationIou: evaluation.iou, evaluationF1: evaluation.f1, feedbackCount: 5, batchSize: BATCH_SIZE, margin: MARGIN });
    expect(version!.batches.map((b) => ({ index: b.index, partial: b.partial, pairCount: b.pairCount, iou: b.iou, f1: b.f1, below: b.belowEvaluation }))).toEqual([
      { index: 0, partial: false, pairCount: 2, iou: 1, f1: 1, below: false },
      { index: 1, partial: false, pairCount: 2, iou: 0, f1: 0, below: true },
      { index: 2, partial: true, pairCount: 1, iou: scored.iou, f1: scored.f1, below: false },
    ]);

    // The disagreeing batch raised one MODEL_DRIFT alert per metric, for the version, over the batch's time range.
    const alerts = (await modelDrift()).sort((a, b) => a.metric.localeCompare(b.metric));
    const batch = version!.batches[1]!;
    expect(alerts).toEqual([
      { kind: 'MODEL_DRIFT', metric: 'f1', value: 0, threshold: expect.closeTo(evaluation.f1 - MARGIN, 9), windowStart: batch.windowStart, windowEnd: batch.windowEnd, status: 'OPEN', modelName: 'lcd-demo', modelVersion: { id: versionId } },
      { kind: 'MODEL_DRIFT', metric: 'iou', value: 0, threshold: expect.closeTo(evaluation.iou - MARGIN, 9), windowStart: batch.windowStart, windowEnd: batch.windowEnd, status: 'OPEN', modelName: 'lcd-demo', modelVersion: { id: versionId } },
    ]);
    // The alert was pushed to the subscriber as it was raised.
    const pushed = await watcher.modelDrift;
    await watcher.client.dispose();
    expect(pushed).toMatchObject({ modelName: 'lcd-demo', alert: { kind: 'MODEL_DRIFT', value: 0, modelVersion: { id: versionId } } });
    expect(['f1', 'iou']).toContain(pushed.alert.metric);
    // Another tenant sees neither the feedback nor the alerts.
    const globex = await t.token(['viewer'], 'globex');
    expect((await t.gql<Performance>(PERFORMANCE, { modelName: 'lcd-demo' }, globex)).data!.modelPerformance).toEqual([]);
    expect((await t.gql<Alerts>(ALERTS, { modelName: 'lcd-demo' }, globex)).data!.driftAlerts.edges).toEqual([]);
  });
});
