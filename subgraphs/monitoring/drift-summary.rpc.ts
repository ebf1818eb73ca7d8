// The monitoring subgraph answers "what is the latest drift report of this model?" over RabbitMQ
// (`monitoring.drift-summary`), so that the models subgraph can attach it as evidence to a promotion request without
// reading this subgraph's tables. A model with no report yet is a normal answer (`found: false`), not an error.
import { z } from 'zod';
import { createEnvelope, PermanentMessageError, type Broker, type Subscription } from '../../lib/broker/broker.js';

export const DRIFT_SUMMARY_QUEUE = 'monitoring.drift-summary';
export const DRIFT_SUMMARY_TYPES = { request: 'monitoring.drift-summary.request', reply: 'monitoring.drift-summary.reply' } as const;

export const driftSummaryRequestSchema = z.object({
  tenant: z.string().min(1).max(200),
  modelName: z.string().min(1).max(100),
});
export type DriftSummaryRequest = z.infer<typeof driftSummaryRequestSchema>;

const isoDate = z.string().datetime({ offset: true });

export const driftReportSummarySchema = z.object({
  id: z.string().min(1),
  /** The model version the inputs were compared against; null when the report is not tied to one. */
  modelVersionId: z.string().nullable(),
  windowStart: isoDate,
  windowEnd: isoDate,
  sampleCount: z.number().int().nonnegative(),
  drifted: z.boolean(),
  metrics: z.record(z.string(), z.unknown()),
  createdAt: isoDate,
});
export type DriftReportSummary = z.infer<typeof driftReportSummarySchema>;

export const driftSummaryReplySchema = z.discriminatedUnion('found', [
  z.object({ found: z.literal(false) }),
  z.object({ found: z.literal(true), report: driftReportSummarySchema }),
]);
export type DriftSummaryReply = z.infer<typeof driftSummaryReplySchema>;

/** A stored report as the lookup returns it (dates as Date or ISO strings). */
export interface DriftReportLike {
  id: string;
  modelVersionId: string | null;
  windowStart: Date | string;
  windowEnd: Date | string;
  sampleCount: number;
  drifted: boolean;
  metrics: Record<string, unknown>;
  createdAt: Date | string;
}

export type DriftReportLookup = (tenant: string, modelName: string) => Promise<DriftReportLike | null>;

const iso = (value: Date | string): string => (value instanceof Date ? value.toISOString() : new Date(value).toISOString());

export function toDriftReportSummary(report: DriftReportLike): DriftReportSummary {
  return {
    id: report.id,
    modelVersionId: report.modelVersionId ?? null,
    windowStart: iso(report.windowStart),
    windowEnd: iso(report.windowEnd),
    sampleCount: report.sampleCount,
    drifted: report.drifted,
    metrics: { ...report.metrics },
    createdAt: iso(report.createdAt),
  };
}

/** Serves `monitoring.drift-summary` until the subscription is closed (the monitoring subgraph's `background`). */
export async function serveDriftSummary(
  broker: Broker,
  lookup: DriftReportLookup,
  options: { queue?: string } = {},
): Promise<Subscription> {
  return broker.serveRpc<DriftSummaryRequest, DriftSummaryReply>(
    options.queue ?? DRIFT_SUMMARY_QUEUE,
    async (delivery) => {
      const request = delivery.envelope.payload;
      if (request.tenant !== delivery.envelope.tenant) throw new PermanentMessageError('the request names another tenant than its envelope');
      const report = await lookup(request.tenant, request.modelName);
      const reply: DriftSummaryReply = report ? { found: true, report: toDriftReportSummary(report) } : { found: false };
      return createEnvelope(DRIFT_SUMMARY_TYPES.reply, reply, { tenant: request.tenant });
    },
    { payloadSchema: driftSummaryRequestSchema, prefetch: 8 },
  );
}

/** Asks the monitoring subgraph; rejects with the broker's error when it does not answer in time. */
export async function requestLatestDriftReport(
  broker: Broker,
  request: DriftSummaryRequest,
  timeoutMs: number,
  options: { queue?: string } = {},
): Promise<DriftSummaryReply> {
  const envelope = createEnvelope(DRIFT_SUMMARY_TYPES.request, request, { tenant: request.tenant });
  const reply = await broker.rpc(options.queue ?? DRIFT_SUMMARY_QUEUE, envelope, { timeoutMs, replySchema: driftSummaryReplySchema });
  return reply.payload;
}
