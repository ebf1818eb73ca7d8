// Appending to a subgraph's event log inside the caller's transaction, relaying new events to the broker's topic
// exchange, replaying a stream after a sequence, and retention. Delivery is at least once: consumers drop any
// (stream, sequence) they have already seen.
import type { EntityManager } from '@mikro-orm/core';
import { createEnvelope, type Broker } from '../broker/broker.js';
import { qualifiedTable } from '../db.js';
import { serviceLogger } from '../telemetry.js';
import { EventLogEntity, EventStreamEntity } from './event-log.entity.js';

export const EVENT_LOG_ENTITIES = [EventLogEntity, EventStreamEntity];

export interface LoggedEvent<T = Record<string, unknown>> {
  stream: string;
  sequence: number;
  type: string;
  tenant: string;
  routingKey: string;
  payload: T;
  occurredAt: string;
}

/** What travels on the topic exchange for a logged event. */
export const LOGGED_EVENT_TYPE = 'event.logged';

export interface AppendEvent {
  stream: string;
  type: string;
  tenant: string;
  /** Topic routing key, e.g. `job.<id>.progress`. */
  routingKey: string;
  payload: Record<string, unknown>;
}

/**
 * Appends events in the transaction of `em` (or, outside one, atomically on their own); returns their sequences, in
 * the order given. One statement whatever the number of events: each stream's head row is advanced by its count of
 * events and stays locked until commit, so concurrent appenders to one stream are serialised; heads are locked in
 * stream order, so appenders to several streams cannot deadlock each other.
 */
export async function appendEvents(em: EntityManager, events: AppendEvent[]): Promise<number[]> {
  if (events.length === 0) return [];
  const append = appendEventsSql(em, events);
  const rows = await em
    .getConnection()
    .execute<{ stream: string; first: number }[]>(
      `with ${append.ctes} select "stream", min("sequence") as "first" from appended group by "stream"`,
      append.params,
      'all',
      em.getTransactionContext(),
    );
  const first = new Map<string, number>(rows.map((r: { stream: string; first: number }) => [r.stream, Number(r.first)]));
  return append.ordinals.map((n, i) => first.get(events[i]!.stream)! + n - 1);
}

/**
 * The CTEs (`incoming`, `heads`, `appended`) that append `events`, to embed in a larger statement that writes the
 * change they report in the same statement; `appended` yields the new rows' ("stream", "sequence").
 */
export function appendEventsSql(em: EntityManager, events: AppendEvent[]): { ctes: string; params: unknown[]; ordinals: number[] } {
  const perStream = new Map<string, number>();
  const ordinals = events.map((e) => {
    const n = (perStream.get(e.stream) ?? 0) + 1;
    perStream.set(e.stream, n);
    return n;
  });
  const occurredAt = new Date().toISOString();
  const rows = events.map((e, i) => ({
    stream: e.stream,
    n: ordinals[i],
    count: perStream.get(e.stream),
    type: e.type,
    tenant: e.tenant,
    routing_key: e.routingKey,
    payload: e.payload,
    occurred_at: occurredAt,
  }));
  const streams = qualifiedTable(em, 'event_stream');
  const log = qualifiedTable(em, 'event_log');
  const ctes = `incoming as (
      select * from json_to_recordset(?::json) as e("stream" text, "n" int, "count" int, "type" text, "tenant" text, "routing_key" text, "payload" jsonb, "occurred_at" timestamptz)
    ), heads as (
      insert into ${streams} as h ("stream", "last_sequence")
      select "stream", max("count") from incoming group by "stream" order by "stream"
      on conflict ("stream") do update set "last_sequence" = h."last_sequence" + excluded."last_sequence"
      returning h."stream", h."last_sequence"
    ), appended as (
      insert into ${log} ("stream", "sequence", "type", "tenant", "routing_key", "payload", "occurred_at")
      select i."stream", h."last_sequence" - i."count" + i."n", i."type", i."tenant", i."routing_key", i."payload", i."occurred_at"
      from incoming i join heads h on h."stream" = i."stream"
      returning "stream", "sequence"
    )`;
  return { ctes, params: [JSON.stringify(rows)], ordinals };
}

/** A row of the event log as raw SQL reads it (EVENT_COLUMNS). */
interface EventRow {
  stream: string;
  sequence: number | string;
  type: string;
  tenant: string;
  routing_key: string;
  payload: Record<string, unknown> | string;
  occurred_at: Date | string;
}

const EVENT_COLUMNS = `"stream", "sequence", "type", "tenant", "routing_key", "payload", "occurred_at"`;

function toLoggedEvent(row: EventRow): LoggedEvent {
  return {
    stream: row.stream,
    sequence: Number(row.sequence),
    type: row.type,
    tenant: row.tenant,
    routingKey: row.routing_key,
    payload: typeof row.payload === 'string' ? (JSON.parse(row.payload) as Record<string, unknown>) : row.payload,
    occurredAt: new Date(row.occurred_at).toISOString(),
  };
}

/** Events of a stream after a sequence, oldest first. */
export async function replayEvents(em: EntityManager, stream: string, afterSequence: number, limit = 500): Promise<LoggedEvent[]> {
  const rows: EventRow[] = await em
    .getConnection()
    .execute(
      `select ${EVENT_COLUMNS} from ${qualifiedTable(em, 'event_log')} where "stream" = ? and "sequence" > ? order by "sequence" limit ?`,
      [stream, afterSequence, limit],
      'all',
    );
  return rows.map(toLoggedEvent);
}

export interface EventRelayOptions {
  fork: () => EntityManager;
  broker: Broker;
  /** How often unpublished events are looked for (they are also flushed right after each append via `kick`). */
  intervalMs?: number;
  /** Events older than this are deleted (the stream heads stay, so sequences never restart). */
  retentionDays?: number;
}

/** Publishes logged events to the topic exchange in stream order, marks them published, and applies retention. */
export class EventRelay {
  private timer: NodeJS.Timeout | undefined;
  private delayed: NodeJS.Timeout | undefined;
  private running: Promise<void> | null = null;
  private again = false;
  private lastRetention = 0;
  private readonly log = serviceLogger('event-relay');

  constructor(private readonly options: EventRelayOptions) {}

  start(): void {
    this.timer = setInterval(() => this.kick(), this.options.intervalMs ?? 1000);
    this.timer.unref();
    this.kick();
  }

  /**
   * Publishes whatever is pending now, or after `delayMs` (events no one can be waiting for yet, such as those of a
   * job that ended before its caller had its id, wait until the caller has the answer); concurrent kicks coalesce
   * into one more pass.
   */
  kick(delayMs = 0): void {
    if (delayMs > 0) {
      this.delayed ??= setTimeout(() => {
        this.delayed = undefined;
        this.kick();
      }, delayMs);
      return;
    }
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.pass()
      .catch((error: unknown) => this.log.warn({ err: error }, 'event relay pass failed; will retry'))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.kick();
        }
      });
  }

  async flush(): Promise<void> {
    while (this.running) await this.running;
    await this.pass();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    if (this.delayed) clearTimeout(this.delayed);
    while (this.running) await this.running;
  }

  private async pass(): Promise<void> {
    const em = this.options.fork();
    for (;;) {
      // Raw: the relay of every subgraph looks every second, and mostly finds nothing.
      const pending: EventRow[] = await em.getConnection().execute(
        `select ${EVENT_COLUMNS} from ${qualifiedTable(em, 'event_log')}
         where "published_at" is null order by "occurred_at", "stream", "sequence" limit 200`,
        [],
        'all',
      );
      if (pending.length === 0) break;
      for (const row of pending) {
        const event = toLoggedEvent(row);
        await this.options.broker.publish(event.routingKey, createEnvelope(LOGGED_EVENT_TYPE, event, { tenant: event.tenant, idempotencyKey: `${event.stream}#${event.sequence}` }));
      }
      // One statement marks the pass's events published (a crash before it republishes them: delivery is at least once).
      await em
        .getConnection()
        .execute(
          `update ${qualifiedTable(em, 'event_log')} set "published_at" = now() where ("stream", "sequence") in (${pending.map(() => '(?, ?)').join(', ')})`,
          pending.flatMap((row) => [row.stream, row.sequence]),
          'run',
        );
      if (pending.length < 200) break;
    }
    const retentionDays = this.options.retentionDays ?? 7;
    if (Date.now() - this.lastRetention > 3600_000) {
      this.lastRetention = Date.now();
      const cutoff = new Date(Date.now() - retentionDays * 86_400_000);
      await em.nativeDelete(EventLogEntity, { occurredAt: { $lt: cutoff }, publishedAt: { $ne: null } });
    }
  }
}
