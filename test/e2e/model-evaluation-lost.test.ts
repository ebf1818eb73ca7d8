// Evaluations whose request or result is lost, as a client meets them through the gateway, on a platform whose
// evaluation requests go to a queue no inference worker reads: this test takes them and loses them (or answers late),
// as a purged queue or a dropped result would. The models subgraph sends a PENDING evaluation again after
// MODEL_EVALUATION_TIMEOUT_MINUTES (here 3 s), three times in all, then fails it as timed out; a result for an
// evaluation that was sent again applies once, however many copies arrive. A file of its own: two platforms in one
// process would share the in-process broker's queues. The version is the committed demo model, brought by a tenant;
// nothing is trained.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEnvelope, type Subscription } from '../../lib/broker/broker.js';
import {
  EVALUATION_DELIVERY_LIMIT,
  EVALUATION_MESSAGE_TYPES,
  summarizeConfusion,
  type EvaluationRequest,
  type EvaluationResult,
} from '../../subgraphs/models/model-evaluation.contracts.js';
import { ok, startTestPlatform, until, uploadFile, type TestPlatform } from '../support/platform.js';

const suffix = randomBytes(4).toString('hex');

interface Version {
  id: string;
  stage: string;
  metrics: Record<string, number>;
  gate: { passed: boolean; reasons: string[] } | null;
  evaluation: {
    status: string;
    items: number | null;
    confusion: { tp: number; fp: number; fn: number; tn: number } | null;
    metrics: Record<string, number> | null;
    errorCode: string | null;
    error: string | null;
    evaluatedAt: string | null;
  } | null;
}
const VERSION_FIELDS = `id stage metrics gate { passed reasons } evaluation { status items confusion { tp fp fn tn } metrics errorCode error evaluatedAt }`;

describe('evaluations whose request or result is lost', () => {
  let lost: TestPlatform;
  let taker: Subscription | undefined;
  const lostQueues = {
    MODEL_EVALUATION_REQUESTS_QUEUE: `inference.evaluate.lost-${suffix}`,
    MODEL_EVALUATION_RESULTS_QUEUE: `models.evaluation-results.lost-${suffix}`,
    DATASET_VERSION_RESOLUTION_QUEUE: `datasets.resolve-version.lost-${suffix}`,
  };
  /** Every request the "workers" were sent, in order. */
  const taken: EvaluationRequest[] = [];
  /** Versions whose second attempt is answered, twice (a worker that did answer, then a redelivery). */
  const answerSecond = new Set<string>();
  let lostEngineer: string;

  beforeAll(async () => {
    lost = await startTestPlatform({ ...lostQueues, MODEL_EVALUATION_TIMEOUT_MINUTES: '0.05', MODEL_EVALUATION_MAX_ATTEMPTS: '3' });
    lostEngineer = await lost.token(['ml-engineer'], 'acme', 'engineer-1');
    const broker = lost.platform.runtime.broker;
    taker = await broker.consume<EvaluationRequest>(
      lostQueues.MODEL_EVALUATION_REQUESTS_QUEUE,
      async (delivery) => {
        const request = delivery.envelope.payload;
        taken.push(request);
        const attempt = taken.filter((r) => r.modelVersionId === request.modelVersionId).length;
        if (attempt !== 2 || !answerSecond.has(request.modelVersionId)) return;
        const confusion = { tp: 900, fp: 100, fn: 100, tn: 8900 };
        const result: EvaluationResult = {
          ok: true,
          requestId: request.requestId,
          modelVersionId: request.modelVersionId,
          datasetVersionId: request.datasetVersionId,
          split: 'all-labelled',
          items: 4,
          threshold: 0.5,
          metrics: summarizeConfusion(confusion),
          confusion,
        };
        for (let i = 0; i < 2; i++) {
          await broker.send(request.resultsQueue, createEnvelope(EVALUATION_MESSAGE_TYPES.result, result, { tenant: delivery.envelope.tenant }));
        }
      },
      { deliveryLimit: EVALUATION_DELIVERY_LIMIT },
    );
  }, 10 * 60_000);
  afterAll(async () => {
    await taker?.close();
    if (process.env.TEST_AMQP_URL && lost) for (const q of Object.values(lostQueues)) await lost.platform.runtime.broker.deleteQueue(q).catch(() => undefined);
    await lost?.close();
  });

  async function registerOn(modelName: string): Promise<Version> {
    const demo = ok(await lost.gql<{ registeredModel: { productionVersion: { artifactKey: string } } }>(`{ registeredModel(name: "lcd-demo") { productionVersion { artifactKey } } }`, {}, lostEngineer));
    const bytes = await lost.platform.runtime.store.get(demo.registeredModel.productionVersion.artifactKey);
    const upload = await uploadFile(lost, bytes, 'demo.onnx', 'application/octet-stream', lostEngineer);
    return ok(
      await lost.gql<{ registerModelVersion: Version }>(`mutation($input: RegisterModelVersionInput!) { registerModelVersion(input: $input) { ${VERSION_FIELDS} } }`, { input: { modelName, uploadId: upload } }, lostEngineer),
    ).registerModelVersion;
  }

  const versionOn = async (id: string) =>
    ok(await lost.gql<{ modelVersion: Version }>(`query($id: ID!) { modelVersion(id: $id) { ${VERSION_FIELDS} } }`, { id }, lostEngineer)).modelVersion;

  async function withDataset(modelName: string): Promise<void> {
    const made = ok(
      await lost.gql<{ createSyntheticDatasetVersion: { id: string } }>(
        `mutation($input: CreateSyntheticDatasetVersionInput!) { createSyntheticDatasetVersion(input: $input) { id } }`,
        { input: { name: `lost-${modelName}`, pairs: 4, size: 64, seed: 3 } },
        lostEngineer,
      ),
    ).createSyntheticDatasetVersion;
    ok(await lost.gql(`mutation($m: String!, $d: String) { setEvaluationDataset(modelName: $m, datasetVersionId: $d) { name } }`, { m: modelName, d: made.id }, lostEngineer));
  }

  it('sends it again, then fails it saying it timed out after 3 attempts', async () => {
    await withDataset('never-answered');
    const registered = await registerOn('never-answered');
    expect(registered.evaluation).toMatchObject({ status: 'PENDING' });
    const failed = await until(() => versionOn(registered.id), (v) => v.evaluation?.status !== 'PENDING', 'the lost evaluation', 120_000);
    expect(failed).toMatchObject({ stage: 'NONE', metrics: {}, evaluation: { status: 'FAILED', errorCode: 'TIMED_OUT', metrics: null } });
    expect(failed.evaluation!.error).toMatch(/^the evaluation timed out after 3 attempts: no result came within 0.05 minutes of any of them; ask again with evaluateModelVersion$/);
    expect(failed.gate).toEqual({ passed: false, reasons: [`not evaluated: ${failed.evaluation!.error}`] });
    const sent = taken.filter((r) => r.modelVersionId === registered.id);
    expect(sent).toHaveLength(3);
    expect(new Set(sent.map((r) => r.requestId)).size).toBe(1);
  });

  it('applies the result of an evaluation sent again once, however many copies arrive', async () => {
    await withDataset('answered-late');
    const registered = await registerOn('answered-late');
    answerSecond.add(registered.id);
    const done = await until(() => versionOn(registered.id), (v) => v.evaluation?.status !== 'PENDING', 'the evaluation answered on its second attempt', 120_000);
    expect(done).toMatchObject({ stage: 'STAGING', gate: { passed: true }, evaluation: { status: 'SUCCEEDED', items: 4, confusion: { tp: 900, fp: 100, fn: 100, tn: 8900 } } });
    const history = ok(
      await lost.gql<{ registeredModel: { stageHistory: { versionId: string; toStage: string }[] } }>(`{ registeredModel(name: "answered-late") { stageHistory { versionId toStage } } }`, {}, lostEngineer),
    ).registeredModel.stageHistory;
    expect(history).toEqual([{ versionId: registered.id, toStage: 'STAGING' }]);
    // Answered: never sent again, and the record stays as the first copy of the result left it.
    const evaluatedAt = done.evaluation!.evaluatedAt;
    await new Promise((r) => setTimeout(r, 4000));
    expect(taken.filter((r) => r.modelVersionId === registered.id)).toHaveLength(2);
    expect((await versionOn(registered.id)).evaluation).toMatchObject({ status: 'SUCCEEDED', evaluatedAt });
  });
});
