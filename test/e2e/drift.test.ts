// Data drift as an operator meets it, through the gateway: batch jobs on pairs from the synthetic generator (run
// through its Python CLI) feed the workers' drift samples to the monitoring subgraph. A window of pairs like the demo
// model's training data raises nothing; a window with a strong seasonal shift raises a DATA_DRIFT alert that arrives
// on the `driftAlerts` subscription (graphql-ws) and can be acknowledged, once, by an analyst of the tenant.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { findTrainerPython } from '../../lib/model/testing.js';
import { errorCodes, repoRoot, startTestPlatform, uploadFile, type TestPlatform } from '../support/platform.js';

const WINDOW = 20;
const MODEL = 'lcd-demo';
const demoModel = join(repoRoot, 'training', 'demo-model', 'model.onnx');
const python = await findTrainerPython();
const skipReason = !existsSync(demoModel) ? 'needs training/demo-model/model.onnx' : !python ? 'needs Python with numpy (set LCD_PYTHON)' : null;

let t: TestPlatform;
let dataDir: string;

/** Writes `pairs` synthetic pairs of 128 px (the demo model's tile) under dataDir/name; returns their file names. */
async function generate(name: string, seasonShift: number): Promise<string[]> {
  const out = join(dataDir, name);
  await promisify(execFile)(
    python!,
    ['-m', 'lcd_training.synthetic', '--out', out, '--pairs', String(WINDOW), '--size', '128', '--seed', '2', '--season-shift', String(seasonShift)],
    { cwd: join(repoRoot, 'training'), timeout: 300_000 },
  );
  const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { items: { before: string; after: string }[] };
  return manifest.items.map((i) => join(out, i.before) + '\n' + join(out, i.after));
}

beforeAll(async () => {
  if (skipReason) return;
  dataDir = await mkdtemp(join(tmpdir(), 'lcd-drift-'));
  // The committed demo model is registered by the models subgraph with its reference_stats.json.
  t = await startTestPlatform({ DRIFT_WINDOW_SAMPLES: String(WINDOW), DRIFT_WINDOW_MINUTES: '600' });
}, 300_000);
afterAll(async () => {
  await t?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

async function runJob(token: string, pairs: string[]): Promise<void> {
  const input = [];
  for (const [i, pair] of pairs.entries()) {
    const [before, after] = pair.split('\n') as [string, string];
    input.push({
      beforeUploadId: await uploadFile(t, await readFile(before), `a${i}.png`, 'image/png', token),
      afterUploadId: await uploadFile(t, await readFile(after), `b${i}.png`, 'image/png', token),
    });
  }
  const submitted = await t.gql<{ submitChangeDetectionJob: { id: string } }>(
    `mutation($input: SubmitChangeDetectionJobInput!) { submitChangeDetectionJob(input: $input) { id } }`,
    { input: { pairs: input, modelName: MODEL } },
    token,
  );
  expect(submitted.errors).toBeUndefined();
  const id = submitted.data!.submitChangeDetectionJob.id;
  await expect
    .poll(async () => (await t.gql<{ job: { status: string } }>(`query($id: ID!) { job(id: $id) { status } }`, { id }, token)).data?.job.status, {
      timeout: 240_000,
      interval: 500,
    })
    .toBe('SUCCEEDED');
}

interface Report {
  id: string;
  sampleCount: number;
  drifted: boolean;
  metrics: { alerts: string[]; bands: { psi: number; wasserstein: number }[]; mmdPValue: number; changeFractionKs: { pValue: number } };
}

async function reports(token: string): Promise<Report[]> {
  const res = await t.gql<{ driftReports: { edges: { node: Report }[] } }>(
    `query($m: String!) { driftReports(modelName: $m) { edges { node { id sampleCount drifted metrics } } } }`,
    { m: MODEL },
    token,
  );
  expect(res.errors).toBeUndefined();
  return res.data!.driftReports.edges.map((e) => e.node);
}

interface AlertEvent {
  sequence: number;
  alertId: string;
  modelName: string;
  alert: { id: string; kind: string; metric: string; value: number; threshold: number; status: string; modelVersion: { id: string } | null };
}

/** Subscribes to driftAlerts; `first` resolves with the first event. */
function subscribe(token: string): { client: Client; first: Promise<AlertEvent> } {
  const client = createClient({
    url: t.url.replace(/^http/, 'ws'),
    webSocketImpl: WebSocket,
    connectionParams: { authorization: `Bearer ${token}` },
    retryAttempts: 0,
    lazy: true,
  });
  const first = new Promise<AlertEvent>((resolve, reject) => {
    client.subscribe<{ driftAlerts: AlertEvent }>(
      {
        query: `subscription($m: String) { driftAlerts(modelName: $m) { sequence alertId modelName alert { id kind metric value threshold status modelVersion { id } } } }`,
        variables: { m: MODEL },
      },
      {
        next: (result) => {
          if (result.errors) reject(new Error(JSON.stringify(result.errors)));
          else if (result.data) resolve(result.data.driftAlerts);
        },
        error: reject,
        complete: () => reject(new Error('the subscription ended without an event')),
      },
    );
  });
  return { client, first };
}

describe.skipIf(skipReason !== null)(`data drift through the gateway${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('raises nothing for in-distribution pairs, and a DATA_DRIFT alert on the subscription for a strong seasonal shift', async () => {
    const analyst = await t.token(['analyst']);
    const [normal, shifted] = await Promise.all([generate('normal', 0.5), generate('shifted', 6)]);

    const { client, first } = subscribe(analyst);
    const firstEvent = first.then((e) => ({ e, at: 'event' as const }));

    await runJob(analyst, normal);
    await expect.poll(async () => (await reports(analyst)).length, { timeout: 60_000, interval: 500 }).toBe(1);
    const [calm] = await reports(analyst);
    expect(calm).toMatchObject({ sampleCount: WINDOW, drifted: false });
    expect(calm!.metrics.alerts).toEqual([]);
    const none = await t.gql<{ driftAlerts: { edges: unknown[] } }>(`query($m: String) { driftAlerts(modelName: $m) { edges { node { id } } } }`, { m: MODEL }, analyst);
    expect(none.data!.driftAlerts.edges).toEqual([]);

    await runJob(analyst, shifted);
    await expect.poll(async () => (await reports(analyst)).length, { timeout: 60_000, interval: 500 }).toBe(2);
    const [drifted] = await reports(analyst); // newest first
    expect(drifted).toMatchObject({ sampleCount: WINDOW, drifted: true });
    expect(drifted!.metrics.alerts.length).toBeGreaterThan(0);

    const { e: event } = await Promise.race([firstEvent, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no drift alert event within 30 s')), 30_000))]);
    await client.dispose();
    expect(event.modelName).toBe(MODEL);
    expect(event.alert).toMatchObject({ id: event.alertId, kind: 'DATA_DRIFT', status: 'OPEN', modelVersion: { id: expect.any(String) } });
    expect(drifted!.metrics.alerts).toContain(event.alert.metric);

    // A viewer may not acknowledge; another tenant does not see the alert; an analyst acknowledges it, once.
    const ACK = `mutation($id: ID!) { acknowledgeDriftAlert(id: $id) { id status acknowledgedBy acknowledgedAt } }`;
    expect(errorCodes(await t.gql(ACK, { id: event.alertId }, await t.token(['viewer'])))).toEqual(['FORBIDDEN']);
    expect(errorCodes(await t.gql(ACK, { id: event.alertId }, await t.token(['analyst'], 'other-tenant')))).toEqual(['NOT_FOUND']);
    const acked = await t.gql<{ acknowledgeDriftAlert: { status: string; acknowledgedBy: string; acknowledgedAt: string } }>(ACK, { id: event.alertId }, analyst);
    expect(acked.errors).toBeUndefined();
    expect(acked.data!.acknowledgeDriftAlert).toMatchObject({ status: 'ACKNOWLEDGED', acknowledgedBy: 'user-analyst' });
    const again = await t.gql<{ acknowledgeDriftAlert: { acknowledgedBy: string; acknowledgedAt: string } }>(ACK, { id: event.alertId }, await t.token(['admin']));
    expect(again.data!.acknowledgeDriftAlert).toEqual({ ...acked.data!.acknowledgeDriftAlert, id: event.alertId });
  }, 900_000);
});
