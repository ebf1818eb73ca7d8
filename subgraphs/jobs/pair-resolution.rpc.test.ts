import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createBroker, createEnvelope, MemoryBrokerServer, type Broker } from '../../lib/broker/broker.js';
import { BrokerRpcError } from '../../lib/broker/errors.js';
import type { Database } from '../../lib/db.js';
import { JobRepository } from './job.repository.js';
import { JobService } from './job.service.js';
import { PAIR_RESOLUTION_QUEUE, PAIR_RESOLUTION_TYPES, requestPairResolution, resolvePair, servePairResolution } from './pair-resolution.rpc.js';
import { aJob, aResult, openJobsDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;
let broker: Broker;
let stop: () => Promise<void>;
const repository = new JobRepository();
const service = new JobService(repository, { maxPairsPerJob: 50 });

beforeAll(async () => {
  ({ db, close } = await openJobsDatabase());
  broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
  stop = await servePairResolution({ repository }, { db, runtime: { broker } });
});
afterAll(async () => {
  await stop?.();
  await broker?.close();
  await close();
});

const ref = (job: { id: string; tenant: string }, index: number) => ({ tenant: job.tenant, jobId: job.id, index });

describe('jobs.resolve-pair', () => {
  it("answers with a succeeded pair's mask, size and model version, and with the state of a pair still queued", async () => {
    const job = await service.createJob(db.fork(), aJob('acme'));
    await service.markPairSucceeded(db.fork(), ref(job, 1), aResult(job.id, 1));
    const done = await requestPairResolution(broker, { tenant: 'acme', jobId: job.id, pairIndex: 1 }, 10_000);
    expect(done).toEqual({
      found: true,
      jobId: job.id,
      pairIndex: 1,
      jobStatus: 'RUNNING',
      pairStatus: 'SUCCEEDED',
      modelName: 'snunet',
      modelVersionId: aResult(job.id, 1).modelVersionId,
      maskKey: aResult(job.id, 1).resultKeys.mask,
      width: 32,
      height: 32,
    });
    expect(await resolvePair({ repository }, db, { tenant: 'acme', jobId: job.id, pairIndex: 0 })).toMatchObject({
      found: true,
      pairStatus: 'QUEUED',
      maskKey: null,
      width: null,
    });
  });

  it("never shows another tenant's job, and names a missing job or pair", async () => {
    const job = await service.createJob(db.fork(), aJob('acme'));
    expect(await resolvePair({ repository }, db, { tenant: 'globex', jobId: job.id, pairIndex: 0 })).toMatchObject({ found: false, problem: 'JOB_NOT_FOUND' });
    expect(await resolvePair({ repository }, db, { tenant: 'acme', jobId: 'not-a-uuid', pairIndex: 0 })).toMatchObject({ found: false, problem: 'JOB_NOT_FOUND' });
    expect(await resolvePair({ repository }, db, { tenant: 'acme', jobId: job.id, pairIndex: 3 })).toEqual({
      found: false,
      problem: 'PAIR_NOT_FOUND',
      message: `job ${job.id} has no pair 3 (it has 3 pairs, numbered from 0)`,
    });
  });

  it('refuses a request whose tenant differs from its envelope', async () => {
    const envelope = createEnvelope(PAIR_RESOLUTION_TYPES.request, { tenant: 'acme', jobId: 'x', pairIndex: 0 }, { tenant: 'globex' });
    await expect(broker.rpc(PAIR_RESOLUTION_QUEUE, envelope, { timeoutMs: 10_000 })).rejects.toBeInstanceOf(BrokerRpcError);
  });
});
