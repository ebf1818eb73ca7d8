import type { EntityManager } from '@mikro-orm/core';
import { FeedbackEntity } from './feedback.entity.js';

/** One batch of a model version's feedback, oldest first: confusion counts summed over its pairs. */
export interface FeedbackBatchRow {
  modelVersionId: string;
  /** 0 for a version's first `batchSize` pairs, and so on. */
  index: number;
  pairCount: number;
  tp: number;
  fp: number;
  fn: number;
  tn: number;
  windowStart: Date;
  windowEnd: Date;
}

interface RawBatchRow {
  model_version_id: string;
  batch_index: number | string;
  pair_count: number | string;
  tp: number | string;
  fp: number | string;
  fn: number | string;
  tn: number | string;
  window_start: Date | string;
  window_end: Date | string;
}

// Feedback is cut into batches in (created_at, id) order per model version, by the database.
const BATCHES_SQL = `
  select model_version_id, batch_index, count(*)::int as pair_count,
         sum(tp)::float8 as tp, sum(fp)::float8 as fp, sum(fn)::float8 as fn, sum(tn)::float8 as tn,
         min(created_at) as window_start, max(created_at) as window_end
  from (
    select f.*, ((row_number() over (partition by model_version_id order by created_at, id)) - 1) / ?::int as batch_index
    from "monitoring"."feedback" f
    where tenant = ? and model_name = ? and (?::text is null or model_version_id = ?::text)
  ) numbered
  group by model_version_id, batch_index
  order by min(created_at), model_version_id, batch_index`;

/** Every query of labelled feedback, always scoped to one tenant. */
export class FeedbackRepository {
  findForPair(em: EntityManager, tenant: string, jobId: string, pairIndex: number) {
    return em.findOne(FeedbackEntity, { tenant, jobId, pairIndex });
  }

  /** How many of the version's feedback rows come before `feedback` in batch order. */
  countBefore(em: EntityManager, feedback: FeedbackEntity) {
    return em.count(FeedbackEntity, {
      tenant: feedback.tenant,
      modelName: feedback.modelName,
      modelVersionId: feedback.modelVersionId,
      $or: [{ createdAt: { $lt: feedback.createdAt } }, { createdAt: feedback.createdAt, id: { $lt: feedback.id } }],
    });
  }

  /** A model's feedback batches (one version's when `modelVersionId` is given), in the order of their first pair. */
  async batches(em: EntityManager, tenant: string, modelName: string, batchSize: number, modelVersionId: string | null = null): Promise<FeedbackBatchRow[]> {
    const rows = await em.getConnection().execute<RawBatchRow[]>(BATCHES_SQL, [batchSize, tenant, modelName, modelVersionId, modelVersionId]);
    return (rows as RawBatchRow[]).map((r: RawBatchRow) => ({
      modelVersionId: r.model_version_id,
      index: Number(r.batch_index),
      pairCount: Number(r.pair_count),
      tp: Number(r.tp),
      fp: Number(r.fp),
      fn: Number(r.fn),
      tn: Number(r.tn),
      windowStart: new Date(r.window_start),
      windowEnd: new Date(r.window_end),
    }));
  }
}
