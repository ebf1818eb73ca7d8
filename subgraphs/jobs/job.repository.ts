import { LockMode, type EntityManager, type FilterQuery } from '@mikro-orm/core';
import { entityRow, insertRowsSql } from '../../lib/db.js';
import { appendEventsSql, type AppendEvent } from '../../lib/events/event-log.js';
import { paginate } from '../../lib/graphql/connection.js';
import { JobKind, JobPairStatus, JobStatus } from './job.contracts.js';
import { JobEntity } from './job.entity.js';
import { JobPairEntity } from './job-pair.entity.js';

export interface JobListFilter {
  status?: JobStatus | null;
  kind?: JobKind | null;
  modelName?: string | null;
}

/** Every query of the jobs subgraph, always scoped to one tenant. */
export class JobRepository {
  /**
   * Inserts a job that has already ended, its pairs and the events that report it, in one statement (one round trip,
   * atomic without a transaction of its own): the hot path of detectChanges.
   */
  async insertFinishedJob(em: EntityManager, job: JobEntity, pairs: JobPairEntity[], events: AppendEvent[]): Promise<void> {
    const append = appendEventsSql(em, events);
    const params = [...append.params, JSON.stringify([entityRow(em, job)]), JSON.stringify(pairs.map((pair) => entityRow(em, pair)))];
    await em
      .getConnection()
      .execute(
        `with ${append.ctes}, job as (${insertRowsSql(em, 'job')}), pairs as (${insertRowsSql(em, 'job_pair')}) select count(*) from appended`,
        params,
        'all',
        em.getTransactionContext(),
      );
  }

  findJob(em: EntityManager, tenant: string, id: string) {
    return em.findOne(JobEntity, { id, tenant });
  }

  findByIdempotencyKey(em: EntityManager, tenant: string, idempotencyKey: string) {
    return em.findOne(JobEntity, { tenant, idempotencyKey });
  }

  pageJobs<N>(
    em: EntityManager,
    tenant: string,
    filter: JobListFilter,
    args: { first?: number | null; after?: string | null },
    map: (e: JobEntity) => N,
  ) {
    const where: FilterQuery<JobEntity> = { tenant };
    if (filter.status) where.status = filter.status;
    if (filter.kind) where.kind = filter.kind;
    if (filter.modelName) where.modelName = filter.modelName;
    return paginate(em, JobEntity, where, args, map);
  }

  /**
   * Locks the job row for the rest of the transaction and reloads it: every change to a job's pairs and counts is
   * made under this lock, so concurrent results of one job are applied one at a time.
   */
  lockJob(em: EntityManager, tenant: string, id: string) {
    return em.findOne(JobEntity, { id, tenant }, { lockMode: LockMode.PESSIMISTIC_WRITE, refresh: true });
  }

  /** Reloaded from the database: the caller decides on its current state. */
  findPair(em: EntityManager, tenant: string, jobId: string, index: number) {
    return em.findOne(JobPairEntity, { job: { id: jobId, tenant }, index }, { refresh: true });
  }

  /** Pairs in index order after `afterIndex` (-1 for the first page); one more than asked tells whether more follow. */
  async pagePairs(em: EntityManager, tenant: string, jobId: string, args: { first: number; afterIndex: number }) {
    const rows = await em.find(
      JobPairEntity,
      { job: { id: jobId, tenant }, index: { $gt: args.afterIndex } },
      { orderBy: { index: 'asc' }, limit: args.first + 1 },
    );
    return { pairs: rows.slice(0, args.first), hasNextPage: rows.length > args.first };
  }

  /** Updates a pair that is still RUNNING; returns how many rows changed (0 or 1). */
  updateRunningPair(em: EntityManager, jobId: string, index: number, changes: Partial<JobPairEntity>) {
    return em.nativeUpdate(JobPairEntity, { job: jobId, index, status: JobPairStatus.RUNNING }, changes);
  }

  /** Updates a job that is still RUNNING; returns how many rows changed (0 or 1). */
  updateRunningJob(em: EntityManager, tenant: string, id: string, changes: Partial<JobEntity>) {
    return em.nativeUpdate(JobEntity, { id, tenant, status: JobStatus.RUNNING }, { ...changes, updatedAt: new Date() });
  }

  markDispatched(em: EntityManager, tenant: string, id: string, at: Date) {
    return em.nativeUpdate(JobEntity, { id, tenant, dispatchedAt: null }, { dispatchedAt: at });
  }

  /** Batch jobs whose pair messages were not all sent (the process stopped half-way), created before `before`. */
  findUndispatched(em: EntityManager, before: Date, limit: number) {
    return em.find(
      JobEntity,
      { kind: JobKind.BATCH, dispatchedAt: null, status: { $in: [JobStatus.QUEUED, JobStatus.RUNNING] }, createdAt: { $lt: before } },
      { orderBy: { createdAt: 'asc' }, limit },
    );
  }

  /** Pairs still waiting for a worker, in index order. */
  findOpenPairs(em: EntityManager, tenant: string, jobId: string) {
    return em.find(
      JobPairEntity,
      { job: { id: jobId, tenant }, status: { $in: [JobPairStatus.QUEUED, JobPairStatus.RUNNING] } },
      { orderBy: { index: 'asc' } },
    );
  }

  /** Jobs by kind and status across tenants (for the job-state metric). */
  async countByState(em: EntityManager): Promise<{ kind: string; status: string; count: number }[]> {
    const rows = await em.getConnection().execute<{ kind: string; status: string; count: string | number }[]>(
      'select "kind", "status", count(*) as "count" from "jobs"."job" group by "kind", "status"',
    );
    return rows.map((r: { kind: string; status: string; count: string | number }) => ({ kind: r.kind, status: r.status, count: Number(r.count) }));
  }

  /** Cancels every pair not finished yet; call with the job locked. */
  cancelOpenPairs(em: EntityManager, jobId: string, at: Date) {
    return em.nativeUpdate(
      JobPairEntity,
      { job: jobId, status: { $in: [JobPairStatus.QUEUED, JobPairStatus.RUNNING] } },
      { status: JobPairStatus.CANCELLED, finishedAt: at },
    );
  }
}
