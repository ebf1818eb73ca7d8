// The whole life of a model, told through the gateway as its people live it: an engineer trains a model, the gate
// takes it to STAGING, the engineer asks for promotion and a second person approves; analysts run jobs on it; inputs
// with a strong seasonal shift raise a drift alert that arrives on the `driftAlerts` subscription; the retraining
// policy starts a run on that alert; the retrained version stops at STAGING until it is approved; once it serves, a
// rollback restores the first version, and the history shows every step. Needs PyTorch (the trainer and the synthetic
// generator): without it the test is skipped with the reason.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { findTrainerPython } from '../../lib/model/testing.js';
import { ok, repoRoot, startTestPlatform, TINY_TRAINING, until, uploadFile, type TestPlatform } from '../support/platform.js';

const python = await findTrainerPython();
const skipReason = python ? null : 'needs Python with torch (set LCD_PYTHON)';

const MODEL = 'story-snunet';
const WINDOW = 12;

let t: TestPlatform;
let dataDir = '';
const people: Record<'engineer' | 'approver' | 'analyst', string> = { engineer: '', approver: '', analyst: '' };

beforeAll(async () => {
  if (skipReason) return;
  dataDir = await mkdtemp(join(tmpdir(), 'lcd-story-'));
  t = await startTestPlatform({
    LCD_PYTHON: python!,
    // Tiny one-epoch models: the gate's thresholds are tested in the models subgraph; here every version passes it.
    GATE_MIN_F1: '0',
    GATE_MIN_IOU: '0',
    GATE_MAX_REGRESSION: '1',
    TRAINING_METRICS_FLUSH_MS: '200',
    DRIFT_WINDOW_SAMPLES: String(WINDOW),
    DRIFT_WINDOW_MINUTES: '600',
  });
  people.engineer = await t.token(['ml-engineer'], 'acme', 'engineer-ana');
  people.approver = await t.token(['approver'], 'acme', 'approver-bo');
  people.analyst = await t.token(['analyst'], 'acme', 'analyst-cy');
}, 300_000);

afterAll(async () => {
  await t?.close();
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

interface Run {
  status: string;
  error: string | null;
  modelVersion: { id: string; version: number; stage: string } | null;
}

const runOf = async (id: string) =>
  ok(
    await t.gql<{ trainingRun: Run }>(`query($id: ID!) { trainingRun(id: $id) { status error modelVersion { id version stage } } }`, { id }, people.engineer),
  ).trainingRun;

/** Waits for a run to end and its version to be registered and gated. */
const finished = (id: string) =>
  until(() => runOf(id), (r) => !['QUEUED', 'RUNNING'].includes(r.status) && (r.status !== 'SUCCEEDED' || r.modelVersion !== null), `training run ${id}`);

async function promote(versionId: string, reason: string): Promise<void> {
  const request = ok(
    await t.gql<{ requestPromotion: { id: string; status: string } }>(
      `mutation($input: RequestPromotionInput!) { requestPromotion(input: $input) { id status } }`,
      { input: { modelVersionId: versionId, reason } },
      people.engineer,
    ),
  ).requestPromotion;
  expect(request.status).toBe('PENDING');
  const approved = ok(
    await t.gql<{ approvePromotion: { status: string; decidedBy: string; modelVersion: { stage: string } } }>(
      `mutation($id: ID!) { approvePromotion(requestId: $id) { status decidedBy modelVersion { stage } } }`,
      { id: request.id },
      people.approver,
    ),
  ).approvePromotion;
  expect(approved).toEqual({ status: 'APPROVED', decidedBy: 'approver-bo', modelVersion: { stage: 'PRODUCTION' } });
}

const productionVersion = async () =>
  ok(await t.gql<{ registeredModel: { productionVersion: { id: string } | null } }>(`query($m: String!) { registeredModel(name: $m) { productionVersion { id } } }`, { m: MODEL }, people.analyst))
    .registeredModel.productionVersion?.id ?? null;

/** Synthetic pairs from the generator's CLI, `seasonShift` setting how far the seasons move between the dates. */
async function generatePairs(name: string, seasonShift: number): Promise<{ before: string; after: string }[]> {
  const out = join(dataDir, name);
  await promisify(execFile)(
    python!,
    ['-m', 'lcd_training.synthetic', '--out', out, '--pairs', String(WINDOW), '--size', '64', '--seed', '11', '--season-shift', String(seasonShift)],
    { cwd: join(repoRoot, 'training'), timeout: 300_000 },
  );
  const manifest = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { items: { before: string; after: string }[] };
  return manifest.items.map((item) => ({ before: join(out, item.before), after: join(out, item.after) }));
}

async function runJob(pairs: { before: string; after: string }[]): Promise<{ modelVersion: { id: string } }> {
  const input = [];
  for (const [i, pair] of pairs.entries()) {
    input.push({
      beforeUploadId: await uploadFile(t, await readFile(pair.before), `before-${i}.png`, 'image/png', people.analyst),
      afterUploadId: await uploadFile(t, await readFile(pair.after), `after-${i}.png`, 'image/png', people.analyst),
    });
  }
  const { id } = ok(
    await t.gql<{ submitChangeDetectionJob: { id: string } }>(
      `mutation($input: SubmitChangeDetectionJobInput!) { submitChangeDetectionJob(input: $input) { id } }`,
      { input: { pairs: input, modelName: MODEL } },
      people.analyst,
    ),
  ).submitChangeDetectionJob;
  const job = await until(
    async () => ok(await t.gql<{ job: { status: string; modelVersion: { id: string } } }>(`query($id: ID!) { job(id: $id) { status modelVersion { id } } }`, { id }, people.analyst)).job,
    (j) => !['QUEUED', 'RUNNING'].includes(j.status),
    `job ${id}`,
  );
  expect(job.status).toBe('SUCCEEDED');
  return job;
}

interface AlertEvent {
  alertId: string;
  modelName: string;
  alert: { id: string; kind: string; metric: string; value: number; threshold: number; modelVersion: { id: string } | null };
}

function subscribeToDrift(token: string): { client: Client; first: Promise<AlertEvent> } {
  const client = createClient({ url: t.url.replace(/^http/, 'ws'), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0 });
  const first = new Promise<AlertEvent>((resolve, reject) => {
    client.subscribe<{ driftAlerts: AlertEvent }>(
      {
        query: `subscription($m: String) { driftAlerts(modelName: $m) { alertId modelName alert { id kind metric value threshold modelVersion { id } } } }`,
        variables: { m: MODEL },
      },
      {
        next: (result) => (result.errors ? reject(new Error(JSON.stringify(result.errors))) : result.data && resolve(result.data.driftAlerts)),
        error: reject,
        complete: () => reject(new Error('the driftAlerts subscription ended without an event')),
      },
    );
  });
  return { client, first };
}

describe.skipIf(skipReason !== null)(`a model's life through the gateway${skipReason ? ` (${skipReason})` : ''}`, () => {
  it('train, gate, approve, serve, drift, retrain by policy, wait for approval, promote, roll back: every step in the history', async () => {
    // 1. Train on a synthetic dataset; the evaluation gate moves the version to STAGING, not further.
    const dataset = ok(
      await t.gql<{ createSyntheticDatasetVersion: { id: string } }>(
        `mutation($input: CreateSyntheticDatasetVersionInput!) { createSyntheticDatasetVersion(input: $input) { id } }`,
        { input: { name: 'story', pairs: 16, size: 64, seed: 1 } },
        people.engineer,
      ),
    ).createSyntheticDatasetVersion;
    const firstRun = ok(
      await t.gql<{ startTraining: { id: string } }>(
        `mutation($input: StartTrainingInput!) { startTraining(input: $input) { id } }`,
        { input: { datasetVersionId: dataset.id, modelName: MODEL, config: TINY_TRAINING } },
        people.engineer,
      ),
    ).startTraining;
    const trained = await finished(firstRun.id);
    expect(trained.error).toBeNull();
    expect(trained.modelVersion).toMatchObject({ version: 1, stage: 'STAGING' });
    const v1 = trained.modelVersion!.id;

    // 2. A request with its evidence, approved by a second person: v1 serves.
    await promote(v1, 'first release');
    expect(await productionVersion()).toBe(v1);

    // 3. The engineer asks for retraining whenever the inputs drift.
    ok(
      await t.gql(
        `mutation($input: SetRetrainingPolicyInput!) { setRetrainingPolicy(input: $input) { id } }`,
        { input: { modelName: MODEL, schedule: null, onDrift: true, onNewDatasetVersion: false, cooldownMinutes: 60 } },
        people.engineer,
      ),
    );

    // 4. Serve a window of pairs whose seasons moved far from the training data; the alert arrives on the subscription.
    const { client, first } = subscribeToDrift(people.analyst);
    try {
      const shifted = await generatePairs('shifted', 6);
      const job = await runJob(shifted);
      expect(job.modelVersion.id).toBe(v1);
      const event = await Promise.race([
        first,
        new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no drift alert on the subscription within 120 s')), 120_000)),
      ]);
      expect(event).toMatchObject({ modelName: MODEL, alert: { kind: 'DATA_DRIFT', modelVersion: { id: v1 } } });
      expect(event.alert.value).toBeGreaterThan(event.alert.threshold);
    } finally {
      await client.dispose();
    }

    // 5. The policy started a retraining run on the alert (further alerts of the same window fall in the cooldown).
    interface Decision {
      trigger: string;
      outcome: string;
      skipReason: string | null;
      trainingRun: { id: string } | null;
    }
    const decisions = await until(
      async () =>
        ok(
          await t.gql<{ retrainingDecisions: Decision[] }>(
            `query($m: String!) { retrainingDecisions(modelName: $m) { trigger outcome skipReason trainingRun { id } } }`,
            { m: MODEL },
            people.engineer,
          ),
        ).retrainingDecisions,
      (list) => list.some((d) => d.outcome === 'STARTED'),
      'a STARTED retraining decision',
    );
    const started = decisions.filter((d) => d.outcome === 'STARTED');
    expect(started).toHaveLength(1);
    expect(started[0]!.trigger).toBe('DRIFT_ALERT');
    for (const other of decisions.filter((d) => d.outcome !== 'STARTED')) expect(other).toMatchObject({ trigger: 'DRIFT_ALERT', outcome: 'SKIPPED' });

    // 6. The retrained version passes the same gate and waits in STAGING: v1 still serves.
    const retrained = await finished(started[0]!.trainingRun!.id);
    expect(retrained.error).toBeNull();
    expect(retrained.modelVersion).toMatchObject({ version: 2, stage: 'STAGING' });
    const v2 = retrained.modelVersion!.id;
    expect(await productionVersion()).toBe(v1);

    // 7. Approved, v2 serves; then a rollback restores v1.
    await promote(v2, 'retrained after the seasonal drift');
    expect(await productionVersion()).toBe(v2);
    const servedByV2 = new Date().toISOString();
    const restored = ok(
      await t.gql<{ rollbackModel: { id: string; stage: string } }>(
        `mutation($m: String!) { rollbackModel(modelName: $m, reason: "v2 misreads snow") { id stage } }`,
        { m: MODEL },
        people.approver,
      ),
    ).rollbackModel;
    expect(restored).toEqual({ id: v1, stage: 'PRODUCTION' });
    expect(await productionVersion()).toBe(v1);

    // 8. The history, oldest first: who moved which version where, and which version served when.
    const history = ok(
      await t.gql<{ stageHistory: { kind: string; modelVersion: { id: string }; fromStage: string; toStage: string; actor: string; reason: string }[] }>(
        `query($m: String!) { stageHistory(modelName: $m) { kind modelVersion { id } fromStage toStage actor reason } }`,
        { m: MODEL },
        people.engineer,
      ),
    ).stageHistory.filter((c) => c.kind === 'STAGE');
    const name = (id: string) => (id === v1 ? 'v1' : id === v2 ? 'v2' : id);
    expect(history.map((c) => [name(c.modelVersion.id), c.fromStage, c.toStage, c.actor])).toEqual([
      ['v1', 'NONE', 'STAGING', 'evaluation-gate'],
      ['v1', 'STAGING', 'PRODUCTION', 'approver-bo'],
      ['v2', 'NONE', 'STAGING', 'evaluation-gate'],
      ['v1', 'PRODUCTION', 'ARCHIVED', 'approver-bo'],
      ['v2', 'STAGING', 'PRODUCTION', 'approver-bo'],
      ['v2', 'PRODUCTION', 'ARCHIVED', 'approver-bo'],
      ['v1', 'ARCHIVED', 'PRODUCTION', 'approver-bo'],
    ]);
    expect(history.at(-1)!.reason).toMatch(/rollback from version 2 to version 1: v2 misreads snow/);
    const at = async (moment: string) =>
      ok(
        await t.gql<{ modelVersionAt: { id: string } | null }>(
          `query($m: String!, $at: DateTimeISO!) { modelVersionAt(modelName: $m, stage: PRODUCTION, at: $at) { id } }`,
          { m: MODEL, at: moment },
          people.analyst,
        ),
      ).modelVersionAt?.id ?? null;
    expect(await at(servedByV2)).toBe(v2);
    expect(await at(new Date().toISOString())).toBe(v1);
  }, 1_500_000);
});
