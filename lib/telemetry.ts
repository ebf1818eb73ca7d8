// Logs, trace context and metrics every service shares: pino JSON logs that carry the W3C trace id of the request or
// message being handled, and a prom-client registry per service.
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomFillSync } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';

export interface TraceContext {
  traceId: string;
  spanId: string;
}

const traceStorage = new AsyncLocalStorage<TraceContext>();

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

/** Parses a W3C `traceparent` header; null when absent or malformed (then a new trace starts). */
export function parseTraceparent(header: string | undefined | null): TraceContext | null {
  if (!header) return null;
  const match = TRACEPARENT.exec(header.trim());
  if (!match || /^0+$/.test(match[1]!)) return null;
  return { traceId: match[1]!, spanId: match[2]! };
}

// Ids come from a pool of random bytes refilled 4 KiB at a time: a request starts several spans, and a call to the
// system's random source for each 8 bytes costs more than the rest of making a span.
const randomPool = Buffer.alloc(4096);
let randomOffset = randomPool.length;

function randomHex(bytes: number): string {
  if (randomOffset + bytes > randomPool.length) {
    randomFillSync(randomPool);
    randomOffset = 0;
  }
  randomOffset += bytes;
  return randomPool.toString('hex', randomOffset - bytes, randomOffset);
}

export function newTrace(parent?: TraceContext | null): TraceContext {
  return { traceId: parent?.traceId ?? randomHex(16), spanId: randomHex(8) };
}

export function formatTraceparent(ctx: TraceContext): string {
  return `00-${ctx.traceId}-${ctx.spanId}-01`;
}

/** Runs `fn` inside a trace: every log line written under it carries the trace id. */
export function withTrace<T>(ctx: TraceContext, fn: () => T): T {
  return traceStorage.run(ctx, fn);
}

export function currentTrace(): TraceContext | undefined {
  return traceStorage.getStore();
}

/** The traceparent to put on an outgoing call or message: the current trace with a fresh span id. */
export function outgoingTraceparent(): string {
  return formatTraceparent(newTrace(currentTrace()));
}

const level = process.env.LOG_LEVEL ?? (process.env.VITEST ? 'silent' : 'info'); // read once here: loggers exist before config
export const logger: Logger = pino({
  level,
  base: undefined,
  timestamp: pino.stdTimeFunctions.isoTime,
  formatters: { level: (label) => ({ level: label }) },
  mixin() {
    const trace = traceStorage.getStore();
    return trace ? { traceId: trace.traceId, spanId: trace.spanId } : {};
  },
  redact: { paths: ['*.authorization', '*.password', '*.token', '*.secret', 'headers.authorization'], censor: '[redacted]' },
});

export function serviceLogger(service: string): Logger {
  return logger.child({ service });
}

/** A registry per service, so that an embedded run (all services in one process) still reports each on its own. */
export function createMetricsRegistry(service: string, withDefaults = true): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  if (withDefaults) collectDefaultMetrics({ register: registry, prefix: 'lcd_' });
  return registry;
}
