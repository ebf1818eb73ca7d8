import { LockMode, type EntityManager, type FilterQuery } from '@mikro-orm/core';
import { paginate } from '../../lib/graphql/connection.js';
import { JobPairStatus, type JobKind, type JobStatus } from './job.contracts.js';
import { JobEntity } from './job.entity.js';
import { JobPairEntity } from './job-pair.entity.js';

export interface JobListFilter {
  status?: JobStatus | null;
  kind?: JobKind | null;
  modelName?: string | null;
}

/** Every query of the jobs subgraph, always scoped to one tenant. */
export class JobRepository {
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

  /** Cancels every pair not finished yet; call with the job locked. */
  cancelOpenPairs(em: EntityManager, jobId: string, at: Date) {
    return em.nativeUpdate(
      JobPairEntity,
      { job: jobId, status: { $in: [JobPairStatus.QUEUED, JobPairStatus.RUNNING] } },
      { status: JobPairStatus.CANCELLED, finishedAt: at },
    );
  }
}
