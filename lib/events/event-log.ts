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
 * Appends events in the transaction of `em` (call it inside `em.transactional`); returns their sequences. The
 * stream's head row is locked until commit, so concurrent appenders to one stream are serialised.
 */
export async function appendEvents(em: EntityManager, events: AppendEvent[]): Promise<number[]> {
  const sequences: number[] = [];
  const connection = em.getConnection();
  const streamTable = qualifiedTable(em, 'event_stream');
  for (const event of events) {
    const rows = await connection.execute<{ last_sequence: number }[]>(
      `insert into ${streamTable} ("stream", "last_sequence") values (?, 1)
       on conflict ("stream") do update set "last_sequence" = ${streamTable}."last_sequence" + 1
       returning "last_sequence"`,
      [event.stream],
      'all',
      em.getTransactionContext(),
    );
    const sequence = Number(rows[0]!.last_sequence);
    em.create(EventLogEntity, { ...event, sequence });
    sequences.push(sequence);
  }
  await em.flush();
  return sequences;
}

export function toLoggedEvent(row: EventLogEntity): LoggedEvent {
  return {
    stream: row.stream,
    sequence: row.sequence,
    type: row.type,
    tenant: row.tenant,
    routingKey: row.routingKey,
    payload: row.payload,
    occurredAt: row.occurredAt.toISOString(),
  };
}

/** Events of a stream after a sequence, oldest first. */
export async function replayEvents(em: EntityManager, stream: string, afterSequence: number, limit = 500): Promise<LoggedEvent[]> {
  const rows = await em.find(EventLogEntity, { stream, sequence: { $gt: afterSequence } }, { orderBy: { sequence: 'asc' }, limit });
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

  /** Publishes whatever is pending now; concurrent kicks coalesce into one more pass. */
  kick(): void {
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
    while (this.running) await this.running;
  }

  private async pass(): Promise<void> {
    const em = this.options.fork();
    for (;;) {
      const pending = await em.find(EventLogEntity, { publishedAt: null }, { orderBy: { occurredAt: 'asc', stream: 'asc', sequence: 'asc' }, limit: 200 });
      if (pending.length === 0) break;
      for (const row of pending) {
        const event = toLoggedEvent(row);
        await this.options.broker.publish(row.routingKey, createEnvelope(LOGGED_EVENT_TYPE, event, { tenant: row.tenant, idempotencyKey: `${row.stream}#${row.sequence}` }));
        row.publishedAt = new Date();
      }
      await em.flush();
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
