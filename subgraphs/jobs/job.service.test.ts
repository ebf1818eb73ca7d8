import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { JobKind, JobPairStatus, JobStatus } from './job.contracts.js';
import { EventLogEntity } from '../../lib/events/event-log.entity.js';
import { JobEntity } from './job.entity.js';
import { JobPairEntity } from './job-pair.entity.js';
import { JobRepository } from './job.repository.js';
import { JobService } from './job.service.js';
import { aJob, aPair, aResult, codeOf, openJobsDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;
const service = new JobService(new JobRepository(), { maxPairsPerJob: 50 });

beforeAll(async () => {
  ({ db, close } = await openJobsDatabase());
});
afterAll(async () => {
  await close();
});

const storedJob = (id: string) => db.fork().findOneOrFail(JobEntity, id);
const storedPairs = async (jobId: string) => {
  const pairs = await db.fork().find(JobPairEntity, { job: jobId }, { orderBy: { index: 'asc' } });
  return pairs.map((p) => p.status);
};
const ref = (job: { id: string; tenant: string }, index: number) => ({ tenant: job.tenant, jobId: job.id, index });

describe('createJob', () => {
  it('stores a queued job with one queued pair per input pair, in order', async () => {
    const input = aJob('acme', { datasetVersionId: 'a'.repeat(64) });
    const job = await service.createJob(db.fork(), input);
    expect(await storedJob(job.id)).toMatchObject({
      tenant: 'acme',
      kind: JobKind.BATCH,
      status: JobStatus.QUEUED,
      pairCount: 3,
      succeededCount: 0,
      failedCount: 0,
      modelName: 'snunet',
      threshold: 0.5,
      datasetVersionId: 'a'.repeat(64),
      modelVersionId: null,
      requestedBy: 'analyst@acme',
      startedAt: null,
      finishedAt: null,
    });
    const pairs = await db.fork().find(JobPairEntity, { job: job.id }, { orderBy: { index: 'asc' } });
    expect(pairs.map((p) => [p.index, p.beforeKey, p.status, p.attempts])).toEqual(
      input.pairs.map((p, index) => [index, p.beforeKey, JobPairStatus.QUEUED, 0]),
    );
  });

  it('returns the same job for the same idempotency key and input, and stores it once', async () => {
    const input = aJob('acme', { idempotencyKey: 'submit-1' });
    const first = await service.createJob(db.fork(), input);
    const again = await service.createJob(db.fork(), { ...input, requestedBy: 'someone-else@acme' });
    expect(again.id).toBe(first.id);
    expect(await db.fork().count(JobEntity, { tenant: 'acme', idempotencyKey: 'submit-1' })).toBe(1);
    expect(await db.fork().count(JobPairEntity, { job: first.id })).toBe(3);
  });

  it('refuses a reused idempotency key with other input (CONFLICT)', async () => {
    const input = aJob('acme', { idempotencyKey: 'submit-2' });
    await service.createJob(db.fork(), input);
    expect(await codeOf(service.createJob(db.fork(), { ...input, threshold: 0.7 }))).toBe('CONFLICT');
    expect(await codeOf(service.createJob(db.fork(), { ...input, pairs: input.pairs.slice(1) }))).toBe('CONFLICT');
    expect(await codeOf(service.createJob(db.fork(), { ...input, pairs: [...input.pairs].reverse() }))).toBe('CONFLICT');
  });

  it('scopes idempotency keys to the tenant', async () => {
    const mine = await service.createJob(db.fork(), aJob('acme', { idempotencyKey: 'shared-key' }));
    const theirs = await service.createJob(db.fork(), aJob('globex', { idempotencyKey: 'shared-key' }));
    expect(theirs.id).not.toBe(mine.id);
    expect(theirs.tenant).toBe('globex');
  });

  it('makes one job when requests with the same key race', async () => {
    const input = aJob('acme', { idempotencyKey: 'race-1' });
    const jobs = await Promise.all(Array.from({ length: 4 }, () => service.createJob(db.fork(), input)));
    expect(new Set(jobs.map((j) => j.id)).size).toBe(1);
    expect(await db.fork().count(JobEntity, { tenant: 'acme', idempotencyKey: 'race-1' })).toBe(1);
  });

  it('refuses invalid input with BAD_USER_INPUT naming the field', async () => {
    const cases: [Partial<Parameters<typeof aJob>[1]>, string][] = [
      [{ pairs: [] }, 'pairs'],
      [{ kind: JobKind.SYNC }, 'pairs'],
      [{ pairs: Array.from({ length: 51 }, () => aPair('acme')) }, 'pairs'],
      [{ threshold: 1.5 }, 'threshold'],
      [{ threshold: Number.NaN }, 'threshold'],
      [{ modelName: '' }, 'modelName'],
      [{ modelName: 'a/b' }, 'modelName'],
      [{ datasetVersionId: 'not-a-version' }, 'datasetVersionId'],
      [{ idempotencyKey: 'has space' }, 'idempotencyKey'],
      [{ pairs: [aPair('acme', { beforeKey: '../etc/passwd' })] }, 'pairs[0].beforeKey'],
      // Another tenant's object: a job reads only its own tenant's data.
      [{ pairs: [aPair('acme'), aPair('acme', { afterKey: 'uploads/globex/secret-image' })] }, 'pairs[1].afterKey'],
    ];
    for (const [overrides, field] of cases) {
      const error = await service.createJob(db.fork(), aJob('acme', overrides)).then(
        () => null,
        (e: unknown) => e as { extensions?: Record<string, unknown> },
      );
      expect(error?.extensions, JSON.stringify(overrides).slice(0, 80)).toMatchObject({ code: 'BAD_USER_INPUT', field });
    }
  });

  it('accepts a SYNC job of exactly one pair', async () => {
    const job = await service.createJob(db.fork(), aJob('acme', { kind: JobKind.SYNC, pairs: [aPair('acme')] }));
    expect(job).toMatchObject({ kind: JobKind.SYNC, pairCount: 1, status: JobStatus.QUEUED });
  });
});

describe('pair reports and the derived job status', () => {
  it('marks the job RUNNING at the first start and SUCCEEDED when every pair succeeded', async () => {
    const job = await service.createJob(db.fork(), aJob('acme'));
    const started = await service.markPairRunning(db.fork(), ref(job, 0));
    expect(started.changed).toBe(true);
    expect(started.pair).toMatchObject({ status: JobPairStatus.RUNNING, attempts: 1 });
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.RUNNING, finishedAt: null });
    expect((await storedJob(job.id)).startedAt).toBeInstanceOf(Date);

    for (const index of [0, 1, 2]) await service.markPairSucceeded(db.fork(), ref(job, index), aResult(job.id, index));
    const done = await storedJob(job.id);
    expect(done).toMatchObject({ status: JobStatus.SUCCEEDED, succeededCount: 3, failedCount: 0, error: null });
    expect(done.finishedAt).toBeInstanceOf(Date);
    expect(done.modelVersionId).toBe(aResult(job.id, 0).modelVersionId);
    const pair = await db.fork().findOneOrFail(JobPairEntity, { job: job.id, index: 1 });
    expect(pair).toMatchObject({
      status: JobPairStatus.SUCCEEDED,
      width: 32,
      height: 32,
      stats: aResult(job.id, 1).stats,
      resultKeys: aResult(job.id, 1).resultKeys,
    });
  });

  it('ends PARTIAL when some pairs failed for good', async () => {
    const job = await service.createJob(db.fork(), aJob('acme'));
    await service.markPairSucceeded(db.fork(), ref(job, 0), aResult(job.id, 0));
    await service.markPairFailed(db.fork(), ref(job, 1), 'image could not be decoded', { final: true });
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.RUNNING, succeededCount: 1, failedCount: 1, finishedAt: null });
    await service.markPairSucceeded(db.fork(), ref(job, 2), aResult(job.id, 2));
    const done = await storedJob(job.id);
    expect(done).toMatchObject({ status: JobStatus.PARTIAL, succeededCount: 2, failedCount: 1, error: '1 of 3 pairs failed' });
    expect(done.finishedAt).toBeInstanceOf(Date);
    expect(await storedPairs(job.id)).toEqual([JobPairStatus.SUCCEEDED, JobPairStatus.FAILED, JobPairStatus.SUCCEEDED]);
  });

  it('ends FAILED when every pair failed, with the error', async () => {
    const job = await service.createJob(db.fork(), aJob('acme', { kind: JobKind.SYNC, pairs: [aPair('acme')] }));
    await service.markPairRunning(db.fork(), ref(job, 0));
    await service.markPairFailed(db.fork(), ref(job, 0), 'model "snunet" has no Production version', { final: true });
    expect(await storedJob(job.id)).toMatchObject({
      status: JobStatus.FAILED,
      succeededCount: 0,
      failedCount: 1,
      error: 'model "snunet" has no Production version',
    });
  });

  it('keeps a redelivered success from counting twice', async () => {
    const job = await service.createJob(db.fork(), aJob('acme'));
    const first = await service.markPairSucceeded(db.fork(), ref(job, 0), aResult(job.id, 0));
    const again = await service.markPairSucceeded(db.fork(), ref(job, 0), aResult(job.id, 0));
    expect([first.changed, again.changed]).toEqual([true, false]);
    // A late start or failure of a finished pair changes nothing either.
    expect((await service.markPairRunning(db.fork(), ref(job, 0))).changed).toBe(false);
    expect((await service.markPairFailed(db.fork(), ref(job, 0), 'late', { final: true })).changed).toBe(false);
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.RUNNING, succeededCount: 1, failedCount: 0 });
    const pair = await db.fork().findOneOrFail(JobPairEntity, { job: job.id, index: 0 });
    expect(pair).toMatchObject({ status: JobPairStatus.SUCCEEDED, error: null });
  });

  it('counts every result once when results of one job arrive at the same time', async () => {
    const job = await service.createJob(db.fork(), aJob('acme', { pairs: Array.from({ length: 8 }, () => aPair('acme')) }));
    // Each pair reported twice, concurrently: the job's row lock applies them one at a time.
    await Promise.all(
      [...Array(8).keys(), ...Array(8).keys()].map((index) => service.markPairSucceeded(db.fork(), ref(job, index), aResult(job.id, index))),
    );
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.SUCCEEDED, succeededCount: 8, failedCount: 0 });
  });

  it('puts a pair back in the queue after a failure that will be retried', async () => {
    const job = await service.createJob(db.fork(), aJob('acme', { pairs: [aPair('acme')] }));
    await service.markPairRunning(db.fork(), ref(job, 0));
    const retry = await service.markPairFailed(db.fork(), ref(job, 0), 'worker lost', { final: false });
    expect(retry.pair).toMatchObject({ status: JobPairStatus.QUEUED, error: 'worker lost', attempts: 1 });
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.RUNNING, failedCount: 0 });
    await service.markPairRunning(db.fork(), ref(job, 0));
    const done = await service.markPairSucceeded(db.fork(), ref(job, 0), aResult(job.id, 0));
    expect(done.pair).toMatchObject({ status: JobPairStatus.SUCCEEDED, error: null, attempts: 2 });
    expect(done.job).toMatchObject({ status: JobStatus.SUCCEEDED, succeededCount: 1, failedCount: 0 });
  });

  it('lets a replayed success replace a final failure, moving the pair between counts', async () => {
    const job = await service.createJob(db.fork(), aJob('acme', { pairs: [aPair('acme'), aPair('acme')] }));
    await service.markPairSucceeded(db.fork(), ref(job, 0), aResult(job.id, 0));
    await service.markPairFailed(db.fork(), ref(job, 1), 'timeout', { final: true });
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.PARTIAL, succeededCount: 1, failedCount: 1 });
    await service.markPairSucceeded(db.fork(), ref(job, 1), aResult(job.id, 1));
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.SUCCEEDED, succeededCount: 2, failedCount: 0, error: null });
  });

  it("refuses reports on another tenant's job, an unknown pair or a malformed id (NOT_FOUND)", async () => {
    const job = await service.createJob(db.fork(), aJob('acme'));
    expect(await codeOf(service.markPairSucceeded(db.fork(), { ...ref(job, 0), tenant: 'globex' }, aResult(job.id, 0)))).toBe('NOT_FOUND');
    expect(await codeOf(service.markPairRunning(db.fork(), ref(job, 3)))).toBe('NOT_FOUND');
    expect(await codeOf(service.markPairRunning(db.fork(), { ...ref(job, 0), jobId: 'nope' }))).toBe('NOT_FOUND');
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.QUEUED, succeededCount: 0 });
  });
});

describe('getJob', () => {
  it("reads a job of your tenant, and another tenant's job as NOT_FOUND", async () => {
    const job = await service.createJob(db.fork(), aJob('acme'));
    expect((await service.getJob(db.fork(), { tenant: 'acme', subject: 'a' }, job.id)).id).toBe(job.id);
    expect(await codeOf(service.getJob(db.fork(), { tenant: 'globex', subject: 'g' }, job.id))).toBe('NOT_FOUND');
    expect(await codeOf(service.getJob(db.fork(), { tenant: 'acme', subject: 'a' }, 'not-a-uuid'))).toBe('NOT_FOUND');
  });
});

describe('cancelJob', () => {
  const acme = { tenant: 'acme', subject: 'analyst@acme' };

  it('cancels the unfinished pairs and ignores results reported later', async () => {
    const job = await service.createJob(db.fork(), aJob('acme'));
    await service.markPairSucceeded(db.fork(), ref(job, 0), aResult(job.id, 0));
    await service.markPairRunning(db.fork(), ref(job, 1));
    const cancelled = await service.cancelJob(db.fork(), acme, job.id);
    expect(cancelled.status).toBe(JobStatus.CANCELLED);
    expect(await storedPairs(job.id)).toEqual([JobPairStatus.SUCCEEDED, JobPairStatus.CANCELLED, JobPairStatus.CANCELLED]);
    const late = await service.markPairSucceeded(db.fork(), ref(job, 1), aResult(job.id, 1));
    expect(late.changed).toBe(false);
    const stored = await storedJob(job.id);
    expect(stored).toMatchObject({ status: JobStatus.CANCELLED, succeededCount: 1, failedCount: 0 });
    expect(stored.finishedAt).toBeInstanceOf(Date);
    // Cancelling again is harmless.
    expect((await service.cancelJob(db.fork(), acme, job.id)).status).toBe(JobStatus.CANCELLED);
  });

  it('refuses to cancel a finished job (CONFLICT) or a job of another tenant (NOT_FOUND)', async () => {
    const job = await service.createJob(db.fork(), aJob('acme', { pairs: [aPair('acme')] }));
    expect(await codeOf(service.cancelJob(db.fork(), { tenant: 'globex', subject: 'g' }, job.id))).toBe('NOT_FOUND');
    await service.markPairSucceeded(db.fork(), ref(job, 0), aResult(job.id, 0));
    expect(await codeOf(service.cancelJob(db.fork(), acme, job.id))).toBe('CONFLICT');
    expect((await storedJob(job.id)).status).toBe(JobStatus.SUCCEEDED);
  });
});

describe('change detection bookkeeping', () => {
  const repository = new JobRepository();

  it('lets an analyst cancel only their own job, an admin any', async () => {
    const job = await service.createJob(db.fork(), aJob('acme', { pairs: [aPair('acme')] }));
    expect(await codeOf(service.cancelJob(db.fork(), { tenant: 'acme', subject: 'someone-else' }, job.id))).toBe('FORBIDDEN');
    expect((await storedJob(job.id)).status).toBe(JobStatus.QUEUED);
    const cancelled = await service.cancelJob(db.fork(), { tenant: 'acme', subject: 'admin-1', mayCancelOthers: true }, job.id);
    expect(cancelled.status).toBe(JobStatus.CANCELLED);
  });

  it('records the error code of a failure, clears it on success, and counts every change in the event sequence', async () => {
    const job = await service.createJob(db.fork(), aJob('acme', { pairs: [aPair('acme'), aPair('acme')] }));
    await service.markPairRunning(db.fork(), ref(job, 0));
    await service.markPairFailed(db.fork(), ref(job, 0), 'before image: not an image', { final: true, code: 'BEFORE_NOT_AN_IMAGE' });
    // A redelivered report changes nothing, and does not count.
    const repeat = await service.markPairFailed(db.fork(), ref(job, 0), 'before image: not an image', { final: true, code: 'BEFORE_NOT_AN_IMAGE' });
    expect(repeat.changed).toBe(false);
    const details = { georeferenced: true, crs: { epsg: 32633, kind: 'projected', name: 'EPSG:32633' }, threshold: 0.5, tiles: 4, timings: { total: 1 } };
    await service.markPairSucceeded(db.fork(), ref(job, 1), { ...aResult(job.id, 1), details });
    const pairs = await db.fork().find(JobPairEntity, { job: job.id }, { orderBy: { index: 'asc' } });
    expect(pairs.map((p) => [p.status, p.errorCode])).toEqual([
      [JobPairStatus.FAILED, 'BEFORE_NOT_AN_IMAGE'],
      [JobPairStatus.SUCCEEDED, null],
    ]);
    expect(pairs[1]!.details).toEqual(details);
    expect(await storedJob(job.id)).toMatchObject({ status: JobStatus.PARTIAL, eventSequence: 3 });
  });

  it('pins the model version at creation, and tracks which batch jobs still need their messages sent', async () => {
    const pinned = '7d0f7a5e-0c1b-4c39-9a59-5f6f2f2d1a10';
    const job = await service.createJob(db.fork(), aJob('acme', { modelVersionId: pinned }));
    expect((await storedJob(job.id)).modelVersionId).toBe(pinned);
    const later = new Date(Date.now() + 60_000);
    expect((await repository.findUndispatched(db.fork(), later, 1000)).map((j) => j.id)).toContain(job.id);
    await service.markDispatched(db.fork(), 'acme', job.id);
    expect((await storedJob(job.id)).dispatchedAt).toBeInstanceOf(Date);
    expect((await repository.findUndispatched(db.fork(), later, 1000)).map((j) => j.id)).not.toContain(job.id);
    expect((await repository.findOpenPairs(db.fork(), 'acme', job.id)).map((p) => p.index)).toEqual([0, 1, 2]);
    expect(await codeOf(service.createJob(db.fork(), aJob('acme', { modelVersionId: 'latest' })))).toBe('BAD_USER_INPUT');
  });

  it('records a synchronous job once it has ended, with its events, all or nothing', async () => {
    const startedAt = new Date(Date.now() - 250);
    const input = (id: string) => ({ ...aJob('acme', { kind: JobKind.SYNC, pairs: [aPair('acme')] }), id, startedAt });
    const events = (job: JobEntity) => [
      { stream: `job:${job.id}`, type: 'progress', tenant: job.tenant, routingKey: `job.${job.id}.progress`, payload: { status: job.status } },
      { stream: 'jobs:acme', type: 'progress', tenant: job.tenant, routingKey: 'jobs.acme.progress', payload: { jobId: job.id } },
    ];
    const ok = await service.recordSyncJob(db.fork(), input(randomUUID()), { result: aResult('x', 0) }, events);
    expect(await storedJob(ok.id)).toMatchObject({ kind: JobKind.SYNC, status: JobStatus.SUCCEEDED, succeededCount: 1, failedCount: 0, eventSequence: 1, startedAt });
    const pair = await db.fork().findOneOrFail(JobPairEntity, { job: ok.id });
    expect(pair).toMatchObject({ index: 0, status: JobPairStatus.SUCCEEDED, attempts: 1, ...aResult('x', 0), startedAt });
    expect(pair.finishedAt).toBeInstanceOf(Date);
    const logged = await db.fork().find(EventLogEntity, { stream: [`job:${ok.id}`, 'jobs:acme'] }, { orderBy: { stream: 'asc', sequence: 'asc' } });
    expect(logged.find((e) => e.stream === `job:${ok.id}`)).toMatchObject({ sequence: 1, payload: { status: JobStatus.SUCCEEDED }, publishedAt: null });
    const feed = logged.filter((e) => e.stream === 'jobs:acme');
    expect(feed.at(-1)).toMatchObject({ payload: { jobId: ok.id } });

    const failed = await service.recordSyncJob(db.fork(), input(randomUUID()), { error: 'before image: not an image', code: 'BEFORE_NOT_AN_IMAGE' }, events);
    expect(await storedJob(failed.id)).toMatchObject({ status: JobStatus.FAILED, failedCount: 1, error: 'before image: not an image' });
    expect((await db.fork().findOneOrFail(JobPairEntity, { job: failed.id })).errorCode).toBe('BEFORE_NOT_AN_IMAGE');
    // The tenant's feed took the next sequence after the first job's event.
    expect((await db.fork().findOneOrFail(EventLogEntity, { stream: 'jobs:acme', payload: { jobId: failed.id } })).sequence).toBe(feed.at(-1)!.sequence + 1);

    // An event the database refuses (no tenant) fails the whole record: no job, pair or event is left behind.
    const id = randomUUID();
    const refused = (job: JobEntity) => [...events(job), { stream: `job:${job.id}`, type: 'progress', tenant: null as unknown as string, routingKey: 'x', payload: {} }];
    await expect(service.recordSyncJob(db.fork(), input(id), { result: aResult(id, 0) }, refused)).rejects.toThrow(/null value/);
    expect(await db.fork().findOne(JobEntity, id)).toBeNull();
    expect(await db.fork().count(JobPairEntity, { job: id })).toBe(0);
    expect(await db.fork().count(EventLogEntity, { stream: `job:${id}` })).toBe(0);
    expect(await codeOf(service.recordSyncJob(db.fork(), { ...input(randomUUID()), pairs: [aPair('acme'), aPair('acme')] }, { result: aResult('x', 0) }))).toBe('BAD_USER_INPUT');
  });
});
