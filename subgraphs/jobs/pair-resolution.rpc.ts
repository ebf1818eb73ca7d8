// The jobs subgraph answers "what did this pair of this job produce?" over RabbitMQ (`jobs.resolve-pair`), so that the
// monitoring subgraph can score labelled feedback against a result without reading this subgraph's tables. The job is
// looked up within the request's tenant: another tenant's job reads as not found.
import { z } from 'zod';
import { createEnvelope, PermanentMessageError, type Broker } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { isUuid } from '../../lib/ids.js';
import { JobPairStatus, JobStatus } from './job.contracts.js';
import type { JobRepository } from './job.repository.js';

export const PAIR_RESOLUTION_QUEUE = 'jobs.resolve-pair';
export const PAIR_RESOLUTION_TYPES = { request: 'jobs.resolve-pair.request', reply: 'jobs.resolve-pair.reply' } as const;

export const pairResolutionRequestSchema = z.object({
  tenant: z.string().min(1).max(200),
  jobId: z.string().min(1).max(200),
  pairIndex: z.number().int().min(0),
});
export type PairResolutionRequest = z.infer<typeof pairResolutionRequestSchema>;

export const pairResolutionReplySchema = z.discriminatedUnion('found', [
  z.object({
    found: z.literal(true),
    jobId: z.string(),
    pairIndex: z.number().int(),
    jobStatus: z.nativeEnum(JobStatus),
    pairStatus: z.nativeEnum(JobPairStatus),
    modelName: z.string(),
    /** The version that produced the pair's result (the job's pinned version until a worker reports). */
    modelVersionId: z.string().nullable(),
    /** Object key of the result's change mask (PNG, 0/255); null until the pair succeeded. */
    maskKey: z.string().nullable(),
    width: z.number().int().nullable(),
    height: z.number().int().nullable(),
  }),
  z.object({
    found: z.literal(false),
    /** JOB_NOT_FOUND: no such job of this tenant; PAIR_NOT_FOUND: the job has no pair with this index. */
    problem: z.enum(['JOB_NOT_FOUND', 'PAIR_NOT_FOUND']),
    message: z.string(),
  }),
]);
export type PairResolutionReply = z.infer<typeof pairResolutionReplySchema>;

export interface PairResolutionDeps {
  repository: JobRepository;
}

/** Answers one request from the jobs schema; never throws for an unknown job or pair (the reply says so). */
export async function resolvePair(deps: PairResolutionDeps, db: Database, request: PairResolutionRequest): Promise<PairResolutionReply> {
  const em = db.fork();
  const job = isUuid(request.jobId) ? await deps.repository.findJob(em, request.tenant, request.jobId) : null;
  if (!job) return { found: false, problem: 'JOB_NOT_FOUND', message: `job ${request.jobId} was not found` };
  const pair = await deps.repository.findPair(em, request.tenant, job.id, request.pairIndex);
  if (!pair) {
    return { found: false, problem: 'PAIR_NOT_FOUND', message: `job ${job.id} has no pair ${request.pairIndex} (it has ${job.pairCount} pairs, numbered from 0)` };
  }
  return {
    found: true,
    jobId: job.id,
    pairIndex: pair.index,
    jobStatus: job.status,
    pairStatus: pair.status,
    modelName: job.modelName,
    modelVersionId: pair.modelVersionId ?? job.modelVersionId,
    maskKey: pair.resultKeys?.mask ?? null,
    width: pair.width,
    height: pair.height,
  };
}

/** Serves `jobs.resolve-pair` until the returned function is called (a subgraph `background`). */
export async function servePairResolution(deps: PairResolutionDeps, ctx: { db: Database; runtime: { broker: Broker } }): Promise<() => Promise<void>> {
  const subscription = await ctx.runtime.broker.serveRpc<PairResolutionRequest, PairResolutionReply>(
    PAIR_RESOLUTION_QUEUE,
    async (delivery) => {
      const request = delivery.envelope.payload;
      if (request.tenant !== delivery.envelope.tenant) throw new PermanentMessageError('the request names another tenant than its envelope');
      const reply = await resolvePair(deps, ctx.db, request);
      return createEnvelope(PAIR_RESOLUTION_TYPES.reply, reply, { tenant: request.tenant });
    },
    { payloadSchema: pairResolutionRequestSchema, prefetch: 8 },
  );
  return () => subscription.close();
}

/** Asks the jobs subgraph; resolves to its reply (found or not), rejects on broker errors. */
export async function requestPairResolution(broker: Broker, request: PairResolutionRequest, timeoutMs: number): Promise<PairResolutionReply> {
  const reply = await broker.rpc(PAIR_RESOLUTION_QUEUE, createEnvelope(PAIR_RESOLUTION_TYPES.request, request, { tenant: request.tenant }), {
    timeoutMs,
    replySchema: pairResolutionReplySchema,
  });
  return reply.payload;
}
