// The drift summary contract between the monitoring subgraph (server) and the models subgraph (client), over the
// in-process broker or RabbitMQ (TEST_AMQP_URL): the latest report of a tenant's model, none yet, and a request whose
// envelope names another tenant than its payload.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BrokerError, createBroker, createEnvelope, MemoryBrokerServer, type Broker, type Subscription } from '../../lib/broker/broker.js';
import { DRIFT_SUMMARY_TYPES, requestLatestDriftReport, serveDriftSummary, type DriftReportLike } from './drift-summary.rpc.js';

let broker: Broker;
let server: Subscription;
const queue = `monitoring.drift-summary.test-${randomBytes(4).toString('hex')}`;
const asked: string[] = [];

const report: DriftReportLike = {
  id: '3b9e1d2c-4f5a-4b6c-8d7e-9f0a1b2c3d4e',
  modelVersionId: '7c6b5a49-3827-4165-9a0b-1c2d3e4f5a6b',
  windowStart: new Date('2026-03-01T00:00:00Z'),
  windowEnd: new Date('2026-03-01T06:00:00Z'),
  sampleCount: 640,
  drifted: true,
  metrics: { bands: [{ band: 2, psi: 0.31, wasserstein: 0.12 }], mmd: 0.04 },
  createdAt: new Date('2026-03-01T06:00:02Z'),
};

beforeAll(async () => {
  broker = process.env.TEST_AMQP_URL
    ? await createBroker({ url: process.env.TEST_AMQP_URL, service: 'drift-summary-test' })
    : await createBroker({ memoryServer: new MemoryBrokerServer() });
  server = await serveDriftSummary(
    broker,
    async (tenant, modelName) => {
      asked.push(`${tenant}/${modelName}`);
      return tenant === 'acme' && modelName === 'snunet' ? report : null;
    },
    { queue },
  );
});
afterAll(async () => {
  await server?.close();
  if (process.env.TEST_AMQP_URL) await broker.deleteQueue(queue).catch(() => undefined);
  await broker?.close();
});

describe('monitoring.drift-summary', () => {
  it("answers with the tenant's latest report, dates as ISO strings", async () => {
    expect(await requestLatestDriftReport(broker, { tenant: 'acme', modelName: 'snunet' }, 5000, { queue })).toEqual({
      found: true,
      report: {
        ...report,
        windowStart: '2026-03-01T00:00:00.000Z',
        windowEnd: '2026-03-01T06:00:00.000Z',
        createdAt: '2026-03-01T06:00:02.000Z',
      },
    });
  });

  it('answers found: false for a model without reports, and for another tenant', async () => {
    expect(await requestLatestDriftReport(broker, { tenant: 'acme', modelName: 'other' }, 5000, { queue })).toEqual({ found: false });
    expect(await requestLatestDriftReport(broker, { tenant: 'globex', modelName: 'snunet' }, 5000, { queue })).toEqual({ found: false });
  });

  it('refuses a request whose payload names another tenant than its envelope, without looking anything up', async () => {
    const before = asked.length;
    const forged = createEnvelope(DRIFT_SUMMARY_TYPES.request, { tenant: 'acme', modelName: 'snunet' }, { tenant: 'globex' });
    await expect(broker.rpc(queue, forged, { timeoutMs: 5000 })).rejects.toBeInstanceOf(BrokerError);
    expect(asked.length).toBe(before);
  });
});
