// The datasets subgraph answers "where is this dataset version's manifest, and what does it hold?" over RabbitMQ
// (`datasets.resolve-version`), so that the models subgraph can queue a training run without reading this subgraph's
// tables. A version of another tenant reads exactly like one that does not exist.
import { z } from 'zod';
import { createEnvelope, PermanentMessageError, type Broker } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { isSha256 } from '../../lib/ids.js';
import type { DatasetRepository } from './dataset.repository.js';

export const VERSION_RESOLUTION_QUEUE = 'datasets.resolve-version';
export const VERSION_RESOLUTION_TYPES = { request: 'datasets.resolve-version.request', reply: 'datasets.resolve-version.reply' } as const;

export const versionResolutionRequestSchema = z.object({
  tenant: z.string().min(1).max(200),
  versionId: z.string().min(1).max(200),
});
export type VersionResolutionRequest = z.infer<typeof versionResolutionRequestSchema>;

export const versionResolutionReplySchema = z.discriminatedUnion('found', [
  z.object({
    found: z.literal(true),
    versionId: z.string(),
    datasetId: z.string(),
    datasetName: z.string(),
    manifestKey: z.string(),
    itemCount: z.number().int().nonnegative(),
    labelledCount: z.number().int().nonnegative(),
    synthetic: z.record(z.string(), z.unknown()).nullable(),
  }),
  z.object({ found: z.literal(false), reason: z.string() }),
]);
export type VersionResolutionReply = z.infer<typeof versionResolutionReplySchema>;

export interface VersionResolutionDeps {
  repository: DatasetRepository;
}

export async function resolveVersion(deps: VersionResolutionDeps, db: Database, request: VersionResolutionRequest): Promise<VersionResolutionReply> {
  const version = isSha256(request.versionId) ? await deps.repository.findVersion(db.fork(), request.tenant, request.versionId) : null;
  if (!version) return { found: false, reason: `dataset version ${request.versionId} was not found` };
  return {
    found: true,
    versionId: version.id,
    datasetId: version.dataset.id,
    datasetName: version.dataset.name,
    manifestKey: version.manifestKey,
    itemCount: version.itemCount,
    labelledCount: version.labelledCount,
    synthetic: version.synthetic,
  };
}

/** Serves the queue until the returned function is called (part of the datasets subgraph's background work). */
export async function serveVersionResolution(
  deps: VersionResolutionDeps,
  ctx: { db: Database; runtime: { broker: Broker } },
  queue: string = VERSION_RESOLUTION_QUEUE,
): Promise<() => Promise<void>> {
  const subscription = await ctx.runtime.broker.serveRpc<VersionResolutionRequest, VersionResolutionReply>(
    queue,
    async (delivery) => {
      const request = delivery.envelope.payload;
      if (request.tenant !== delivery.envelope.tenant) throw new PermanentMessageError('the request names another tenant than its envelope');
      const reply = await resolveVersion(deps, ctx.db, request);
      return createEnvelope(VERSION_RESOLUTION_TYPES.reply, reply, { tenant: request.tenant });
    },
    { payloadSchema: versionResolutionRequestSchema, prefetch: 8 },
  );
  return () => subscription.close();
}

/** Asks the datasets subgraph; resolves to its reply (found or not), rejects on broker errors and timeouts. */
export async function requestVersionResolution(
  broker: Broker,
  request: VersionResolutionRequest,
  options: { timeoutMs: number; queue?: string },
): Promise<VersionResolutionReply> {
  const envelope = createEnvelope(VERSION_RESOLUTION_TYPES.request, request, { tenant: request.tenant });
  const reply = await broker.rpc(options.queue ?? VERSION_RESOLUTION_QUEUE, envelope, { timeoutMs: options.timeoutMs, replySchema: versionResolutionReplySchema });
  return reply.payload;
}
