// The JSON envelope every queue message and event travels in, and its validation on receipt.
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { outgoingTraceparent } from '../telemetry.js';

export interface Envelope<T = unknown> {
  /** Message type, e.g. `job.pair.detect`. */
  type: string;
  /** Version of the payload's schema for this type; consumers refuse versions they do not know. */
  schemaVersion: number;
  /** Unique per message (UUID); redeliveries keep it. */
  messageId: string;
  tenant: string;
  /** W3C trace context of the code that created the message. */
  traceparent?: string;
  /** Set by producers whose effect must happen once however often the message is sent or delivered. */
  idempotencyKey?: string;
  /** ISO 8601 time the message was created. */
  occurredAt: string;
  payload: T;
}

export const envelopeSchema = z.object({
  type: z.string().min(1).max(200),
  schemaVersion: z.number().int().positive(),
  messageId: z.uuid(),
  tenant: z.string().min(1).max(200),
  traceparent: z.string().max(100).optional(),
  idempotencyKey: z.string().min(1).max(300).optional(),
  occurredAt: z.iso.datetime({ offset: true }),
  payload: z.unknown(),
});

export interface CreateEnvelopeOptions {
  tenant: string;
  idempotencyKey?: string;
  /** Defaults to 1. */
  schemaVersion?: number;
}

/** A new envelope with a fresh message id, the current time and the current trace context. */
export function createEnvelope<T>(type: string, payload: T, opts: CreateEnvelopeOptions): Envelope<T> {
  const envelope: Envelope<T> = {
    type,
    schemaVersion: opts.schemaVersion ?? 1,
    messageId: randomUUID(),
    tenant: opts.tenant,
    traceparent: outgoingTraceparent(),
    occurredAt: new Date().toISOString(),
    payload,
  };
  if (opts.idempotencyKey !== undefined) envelope.idempotencyKey = opts.idempotencyKey;
  return envelope;
}

export type DecodeResult<T> = { ok: true; envelope: Envelope<T> } | { ok: false; error: string };

function describeIssues(error: z.ZodError): string {
  return error.issues.map((issue) => `${issue.path.length ? issue.path.join('.') : '(root)'}: ${issue.message}`).join('; ');
}

/**
 * Decodes a message body as it comes off the wire (a Buffer or string of JSON, or JSON the client already parsed)
 * into a validated envelope; with `payloadSchema` the payload is validated too. Never throws: the error says what is
 * wrong, and becomes the dead-letter reason.
 */
export function decodeEnvelope<T>(body: unknown, payloadSchema?: z.ZodType<T>): DecodeResult<T> {
  let value: unknown = body;
  if (Buffer.isBuffer(value)) value = value.toString('utf8');
  if (typeof value === 'string') {
    try {
      value = JSON.parse(value);
    } catch (err) {
      return { ok: false, error: `invalid envelope: body is not JSON (${(err as Error).message})` };
    }
  }
  const parsed = envelopeSchema.safeParse(value);
  if (!parsed.success) return { ok: false, error: `invalid envelope: ${describeIssues(parsed.error)}` };
  const envelope = parsed.data as Envelope<unknown>;
  if (!payloadSchema) return { ok: true, envelope: envelope as Envelope<T> };
  const payload = payloadSchema.safeParse(envelope.payload);
  if (!payload.success) {
    return { ok: false, error: `invalid payload for ${envelope.type} v${envelope.schemaVersion}: ${describeIssues(payload.error)}` };
  }
  return { ok: true, envelope: { ...envelope, payload: payload.data } };
}

/** The body as text, for dead letters whose body is not a valid envelope. */
export function bodyToText(body: unknown): string {
  if (Buffer.isBuffer(body)) return body.toString('utf8');
  if (typeof body === 'string') return body;
  try {
    return JSON.stringify(body) ?? String(body);
  } catch {
    return String(body);
  }
}
