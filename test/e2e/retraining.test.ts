// Retraining policies as a client meets them, through the gateway: a model trained on a synthetic dataset, a policy
// that retrains on a new version of that dataset, the new version starting a real (tiny) training run whose version
// passes the evaluation gate to STAGING and no further, a drift alert and a manual trigger inside the cooldown recorded
// as SKIPPED, and the refusals of bad policies. Training needs PyTorch: without it those tests are skipped.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventRelay } from '../../lib/events/event-log.js';
import type { RunningSubgraph } from '../../lib/graphql/run-subgraph.js';
import { findTrainerPython } from '../../lib/model/testing.js';
import { raiseAlert } from '../../subgraphs/monitoring/alerts.js';
import { errorCodes, ok, startTestPlatform, TINY_TRAINING, until, type TestPlatform } from '../support/platform.js';

const python = await findTrainerPython();
const withTorch = python ? it : it.skip;
if (!python) console.warn('no Python interpreter with torch (set LCD_PYTHON): retraining tests skipped');

const MODEL = 'e2e-retrain';

let t: TestPlatform;
let engineer: string;

beforeAll(async () => {
  t = await startTestPlatform({
    LCD_PYTHON: python ?? undefined,
    // Every tiny model passes the gate (to STAGING); the gate's own rules are tested in the models subgraph.
    GATE_MIN_F1: '0',
    GATE_MIN_IOU: '0',
    GATE_MAX_REGRESSION: '1',
    TRAINING_METRICS_FLUSH_MS: '200',
  });
  engineer = await t.token(['ml-engineer'], 'acme', 'engineer-1');
});
afterAll(async () => {
  await t?.close();
});

interface Decision {
  id: string;
  trigger: string;
  outcome: string;
  reason: string;
  skipReason: string | null;
  error: string | null;
  datasetVersionId: string | null;
  requestedBy: string;
  trainingRun: { id: string; status: string; requestedBy: string; datasetVersion: { id: string } | null; modelVersion: { id: string; stage: string } | null } | null;
}

const DECISIONS = `query($m: String!) { retrainingDecisions(modelName: $m) { id trigger outcome reason skipReason error datasetVersionId requestedBy
  trainingRun { id status requestedBy datasetVersion { id } modelVersion { id stage } } } }`;
const decisions = async (token = engineer) => ok(await t.gql<{ retrainingDecisions: Decision[] }>(DECISIONS, { m: MODEL }, token)).retrainingDecisions;

async function syntheticVersion(seed: number): Promise<string> {
  const res = await t.gql<{ createSyntheticDatasetVersion: { id: string } }>(
    `mutation($input: CreateSyntheticDatasetVersionInput!) { createSyntheticDatasetVersion(input: $input) { id } }`,
    { input: { name: 'retraining-e2e', pairs: 12, size: 64, seed } },
    engineer,
  );
  return ok(res).createSyntheticDatasetVersion.id;
}

const SET_POLICY = `mutation($input: SetRetrainingPolicyInput!) { setRetrainingPolicy(input: $input) {
  id modelName schedule onDrift onNewDatasetVersion cooldownMinutes maxRunsPerDay enabled nextScheduledAt } }`;
const policyInput = (overrides: Record<string, unknown> = {}) => ({ modelName: MODEL, schedule: null, onDrift: true, onNewDatasetVersion: true, cooldownMinutes: 120, ...overrides });

let firstVersionId = '';

describe('retraining policies', () => {
  withTorch(
    'a new version of the dataset starts a real training run whose version stops at STAGING; triggers inside the cooldown are SKIPPED',
    async () => {
      firstVersionId = await syntheticVersion(1);
      const start = await t.gql<{ startTraining: { id: string } }>(
        `mutation($input: StartTrainingInput!) { startTraining(input: $input) { id } }`,
        { input: { datasetVersionId: firstVersionId, modelName: MODEL, config: TINY_TRAINING } },
        engineer,
      );
      const firstRunId = ok(start).startTraining.id;
      const runStatus = async (id: string) =>
        ok(await t.gql<{ trainingRun: { status: string; error: string | null } }>(`query($id: ID!) { trainingRun(id: $id) { status error } }`, { id }, engineer)).trainingRun;
      expect((await until(() => runStatus(firstRunId), (r) => r.status !== 'QUEUED' && r.status !== 'RUNNING', 'first run')).status).toBe('SUCCEEDED');

      const policy = ok(await t.gql<{ setRetrainingPolicy: Record<string, unknown> }>(SET_POLICY, { input: policyInput() }, engineer)).setRetrainingPolicy;
      expect(policy).toMatchObject({ modelName: MODEL, schedule: null, onNewDatasetVersion: true, cooldownMinutes: 120, enabled: true, nextScheduledAt: null });
      expect(ok(await t.gql<{ retrainingPolicy: { id: string } }>(`query($m: String!) { retrainingPolicy(modelName: $m) { id } }`, { m: MODEL })).retrainingPolicy.id).toBe(policy.id);

      // A new version of the same dataset (the platform publishes dataset.version.created after commit).
      const secondVersionId = await syntheticVersion(2);
      const [started] = await until(decisions, (d) => d.length > 0 && d[0]!.outcome !== 'PENDING', 'new-version decision');
      expect(started).toMatchObject({ trigger: 'NEW_DATASET_VERSION', outcome: 'STARTED', datasetVersionId: secondVersionId, requestedBy: 'dataset-version' });
      expect(started!.reason).toContain('retraining-e2e');
      expect(started!.trainingRun).toMatchObject({ requestedBy: 'retraining-policy', datasetVersion: { id: secondVersionId } });

      // The retrained version passes the same gate as any trained version: STAGING, never PRODUCTION.
      const run = await until(
        async () => (await decisions())[0]!.trainingRun!,
        (r) => !['QUEUED', 'RUNNING'].includes(r.status) && (r.status !== 'SUCCEEDED' || r.modelVersion !== null),
        'retraining run',
      );
      expect(run.status).toBe('SUCCEEDED');
      expect(run.modelVersion!.stage).toBe('STAGING');

      // A drift alert inside the cooldown, raised and relayed as the monitoring subgraph does: recorded as SKIPPED.
      const monitoring = t.platform.subgraphs.monitoring as RunningSubgraph<unknown>;
      await raiseAlert(monitoring.db.fork(), { relay: null, metrics: null }, {
        tenant: 'acme',
        modelName: MODEL,
        modelVersionId: run.modelVersion!.id,
        kind: 'DATA_DRIFT',
        metric: 'psi.band0',
        value: 0.4,
        threshold: 0.25,
        windowStart: new Date(Date.now() - 3600_000),
        windowEnd: new Date(),
      });
      await new EventRelay({ fork: monitoring.db.fork, broker: t.platform.runtime.broker }).flush();
      const afterDrift = await until(decisions, (d) => d.length >= 2, 'drift decision', 30_000);
      expect(afterDrift[0]).toMatchObject({ trigger: 'DRIFT_ALERT', outcome: 'SKIPPED', requestedBy: 'drift-alert', trainingRun: null });
      expect(afterDrift[0]!.skipReason).toMatch(/^cooldown until \d{4}-\d\d-\d\dT/);
      expect(afterDrift[0]!.reason).toContain('psi.band0');

      // A manual trigger goes through the same rules.
      const manual = ok(
        await t.gql<{ triggerRetraining: Decision }>(`mutation($m: String!, $r: String!) { triggerRetraining(modelName: $m, reason: $r) { trigger outcome skipReason requestedBy } }`, { m: MODEL, r: 'labels fixed' }, engineer),
      ).triggerRetraining;
      expect(manual).toMatchObject({ trigger: 'MANUAL', outcome: 'SKIPPED', requestedBy: 'engineer-1', skipReason: expect.stringContaining('cooldown until') });
      expect((await decisions()).map((d) => [d.trigger, d.outcome])).toEqual([
        ['MANUAL', 'SKIPPED'],
        ['DRIFT_ALERT', 'SKIPPED'],
        ['NEW_DATASET_VERSION', 'STARTED'],
      ]);
      // Nothing reached Production: the retrained version waits for a promotion request and an approval.
      const model = ok(
        await t.gql<{ registeredModel: { versions: { edges: { node: { stage: string } }[] } } }>(
          `query($m: String!) { registeredModel(name: $m) { versions { edges { node { stage } } } } }`,
          { m: MODEL },
          engineer,
        ),
      ).registeredModel;
      expect(model.versions.edges.map((e) => e.node.stage).sort()).toEqual(['STAGING', 'STAGING']);
    },
    600_000,
  );

  it('refuses bad policies with errors that name the problem, and hides other tenants', async () => {
    const cron = await t.gql(SET_POLICY, { input: policyInput({ schedule: '*/5 * * 13 *' }) }, engineer);
    expect(errorCodes(cron)).toEqual(['BAD_USER_INPUT']);
    expect(cron.errors![0]!.message).toContain('"*/5 * * 13 *"');
    expect(cron.errors![0]!.message).toContain('month field');
    expect(cron.errors![0]!.extensions).toMatchObject({ field: 'schedule', cronField: 'month' });

    const cooldown = await t.gql(SET_POLICY, { input: policyInput({ cooldownMinutes: -5 }) }, engineer);
    expect(errorCodes(cooldown)).toEqual(['BAD_USER_INPUT']);
    expect(cooldown.errors![0]!.extensions).toMatchObject({ field: 'cooldownMinutes' });

    expect(errorCodes(await t.gql(SET_POLICY, { input: policyInput({ modelName: `unknown-${randomUUID().slice(0, 8)}` }) }, engineer))).toEqual(['NOT_FOUND']);
    const other = await t.token(['ml-engineer'], 'globex', 'engineer-globex');
    // Another tenant's model, policy and decisions read exactly like ones that do not exist.
    expect(errorCodes(await t.gql(SET_POLICY, { input: policyInput() }, other))).toEqual(['NOT_FOUND']);
    expect(errorCodes(await t.gql(`mutation { triggerRetraining(modelName: "${MODEL}", reason: "x") { id } }`, {}, other))).toEqual(['NOT_FOUND']);
    expect(ok(await t.gql<{ retrainingPolicy: unknown }>(`query($m: String!) { retrainingPolicy(modelName: $m) { id } }`, { m: MODEL }, other)).retrainingPolicy).toBeNull();
    expect(await decisions(other)).toEqual([]);
    // Viewers read policies but may not set them.
    expect(errorCodes(await t.gql(SET_POLICY, { input: policyInput() }, await t.token(['viewer'])))).toEqual(['FORBIDDEN']);
  });
});
