// The datasets subgraph answers "which objects hold these uploads?" over RabbitMQ (`datasets.resolve-uploads`), so
// that the jobs subgraph reads uploads without reading this subgraph's tables: each id is checked for the tenant,
// for existence and for bytes of the declared size.
import { z } from 'zod';
import { createEnvelope, PermanentMessageError, type Broker } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { isUuid } from '../../lib/ids.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import type { DatasetRepository } from './dataset.repository.js';

export const UPLOAD_RESOLUTION_QUEUE = 'datasets.resolve-uploads';
export const UPLOAD_RESOLUTION_TYPES = { request: 'datasets.resolve-uploads.request', reply: 'datasets.resolve-uploads.reply' } as const;
export const MAX_UPLOADS_PER_REQUEST = 1000;

export const uploadResolutionRequestSchema = z.object({
  tenant: z.string().min(1).max(200),
  uploadIds: z.array(z.string().min(1).max(200)).min(1).max(MAX_UPLOADS_PER_REQUEST),
});
export type UploadResolutionRequest = z.infer<typeof uploadResolutionRequestSchema>;

export const resolvedUploadSchema = z.discriminatedUnion('ok', [
  z.object({
    ok: z.literal(true),
    id: z.string(),
    objectKey: z.string(),
    byteSize: z.number().int().nonnegative(),
    contentType: z.string(),
    filename: z.string(),
  }),
  z.object({
    ok: z.literal(false),
    id: z.string(),
    /** NOT_FOUND: no such upload of this tenant; NOT_UPLOADED: no bytes yet; SIZE_MISMATCH: other bytes than declared. */
    problem: z.enum(['NOT_FOUND', 'NOT_UPLOADED', 'SIZE_MISMATCH']),
    message: z.string(),
  }),
]);
export type ResolvedUpload = z.infer<typeof resolvedUploadSchema>;

export const uploadResolutionReplySchema = z.object({ uploads: z.array(resolvedUploadSchema) });
export type UploadResolutionReply = z.infer<typeof uploadResolutionReplySchema>;

export interface UploadResolutionDeps {
  repository: DatasetRepository;
}

/** One entry per requested id, in the request's order. */
export async function resolveUploads(deps: UploadResolutionDeps, db: Database, store: ObjectStore, request: UploadResolutionRequest): Promise<UploadResolutionReply> {
  const ids = [...new Set(request.uploadIds.filter(isUuid))];
  const rows = ids.length > 0 ? await deps.repository.findUploads(db.fork(), request.tenant, ids) : [];
  const byId = new Map(rows.map((row) => [row.id, row]));
  const uploads = await Promise.all(
    request.uploadIds.map(async (id): Promise<ResolvedUpload> => {
      const upload = byId.get(id);
      if (!upload) return { ok: false, id, problem: 'NOT_FOUND', message: `upload ${id} was not found` };
      const head = await store.head(upload.objectKey);
      if (!head) return { ok: false, id, problem: 'NOT_UPLOADED', message: `upload ${id} has no bytes yet; PUT the file to its signed URL first` };
      if (head.size !== upload.byteSize) {
        return { ok: false, id, problem: 'SIZE_MISMATCH', message: `upload ${id} holds ${head.size} bytes, not the declared ${upload.byteSize}` };
      }
      return { ok: true, id, objectKey: upload.objectKey, byteSize: upload.byteSize, contentType: upload.contentType, filename: upload.filename };
    }),
  );
  return { uploads };
}

/** Serves `datasets.resolve-uploads` until the returned function is called (a subgraph `background`). */
export async function serveUploadResolution(
  deps: UploadResolutionDeps,
  ctx: { db: Database; runtime: { broker: Broker; store: ObjectStore } },
): Promise<() => Promise<void>> {
  const subscription = await ctx.runtime.broker.serveRpc<UploadResolutionRequest, UploadResolutionReply>(
    UPLOAD_RESOLUTION_QUEUE,
    async (delivery) => {
      const request = delivery.envelope.payload;
      if (request.tenant !== delivery.envelope.tenant) throw new PermanentMessageError('the request names another tenant than its envelope');
      const reply = await resolveUploads(deps, ctx.db, ctx.runtime.store, request);
      return createEnvelope(UPLOAD_RESOLUTION_TYPES.reply, reply, { tenant: request.tenant });
    },
    { payloadSchema: uploadResolutionRequestSchema, prefetch: 8 },
  );
  return () => subscription.close();
}

/** Asks the datasets subgraph; rejects on broker errors. */
export async function requestUploadResolution(broker: Broker, request: UploadResolutionRequest, timeoutMs: number): Promise<UploadResolutionReply> {
  const reply = await broker.rpc(UPLOAD_RESOLUTION_QUEUE, createEnvelope(UPLOAD_RESOLUTION_TYPES.request, request, { tenant: request.tenant }), {
    timeoutMs,
    replySchema: uploadResolutionReplySchema,
  });
  return reply.payload;
}
