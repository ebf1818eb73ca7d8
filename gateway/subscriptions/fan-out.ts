// Delivering one event to many subscribers cheaply. Subscribers whose results must be equal (same document, operation,
// variables and access level) form a group; an event is executed once per group and serialised once, and each
// subscriber's socket gets that same JSON inside its own `next` message. Each subscriber still sends in its own
// stream order, and one that stops reading is cut off once its socket buffers more than a bounded amount.
import type { ExecutionResult } from 'graphql';
import type { WebSocket } from 'ws';
import type { LoggedEvent } from '../../lib/events/event-log.js';
import type { EventChannel } from './event-channel.js';

/** One event's result for one group: executed once, serialised once, shared by every subscriber of the group. */
export class SharedResult {
  /** The `payload` of a graphql-ws `next` message, as JSON; set once settled without error. */
  json = '';
  error: unknown = null;
  settled = false;
  /** Milliseconds since the epoch at which the event was logged. */
  readonly loggedAt: number;
  private waiters: (() => void)[] = [];

  constructor(
    event: LoggedEvent,
    readonly at: number,
  ) {
    this.loggedAt = Date.parse(event.occurredAt);
  }

  /** Calls `waiter` once settled (at once when it already is). */
  whenSettled(waiter: () => void): void {
    if (this.settled) waiter();
    else this.waiters.push(waiter);
  }

  settle(result: ExecutionResult | null, error: unknown): void {
    if (result) {
      const { errors, ...rest } = result;
      // The payload graphql-ws itself would send: errors in their JSON form, absent when there are none.
      this.json = JSON.stringify(errors ? { ...rest, errors: errors.map((e) => e.toJSON()) } : rest);
    }
    this.error = error;
    this.settled = true;
    const waiters = this.waiters;
    this.waiters = [];
    for (const waiter of waiters) waiter();
  }
}

/** Results by event and group, kept for a short while so that subscribers catching up on the same events share them. */
export class SharedResults {
  private readonly entries = new Map<string, Map<string, SharedResult>>();
  private readonly timer: NodeJS.Timeout;
  /** Executions started (one per event and group), for tests and the benchmark. */
  executions = 0;

  constructor(private readonly ttlMs = 10_000) {
    this.timer = setInterval(() => this.evict(Date.now()), Math.max(1000, ttlMs / 2));
    this.timer.unref();
  }

  get(event: LoggedEvent, group: string, execute: (event: LoggedEvent) => ExecutionResult | Promise<ExecutionResult>): SharedResult {
    const eventKey = `${event.stream}#${event.sequence}`;
    let byGroup = this.entries.get(eventKey);
    if (!byGroup) this.entries.set(eventKey, (byGroup = new Map()));
    const hit = byGroup.get(group);
    if (hit) return hit;
    const shared = new SharedResult(event, Date.now());
    byGroup.set(group, shared);
    this.executions += 1;
    try {
      const result = execute(event);
      if (result instanceof Promise) {
        result.then(
          (value) => shared.settle(value, null),
          (error: unknown) => shared.settle(null, error),
        );
      } else {
        shared.settle(result, null);
      }
    } catch (error) {
      shared.settle(null, error);
    }
    return shared;
  }

  private evict(now: number): void {
    for (const [eventKey, byGroup] of this.entries) {
      for (const [group, shared] of byGroup) if (shared.settled && now - shared.at > this.ttlMs) byGroup.delete(group);
      if (byGroup.size === 0) this.entries.delete(eventKey);
    }
  }

  close(): void {
    clearInterval(this.timer);
    this.entries.clear();
  }
}

export interface SubscriberOptions {
  socket: WebSocket;
  /** The graphql-ws subscription id the client chose. */
  id: string;
  channel: EventChannel;
  results: SharedResults;
  /** Equal for subscribers whose results are equal (document, operation, variables, access level). */
  group: string;
  execute: (event: LoggedEvent) => ExecutionResult | Promise<ExecutionResult>;
  /** Results waiting to be sent before the subscriber is cut off. */
  maxPending: number;
  /** Bytes the socket may hold unsent before the subscriber is cut off. */
  maxBufferedBytes: number;
  onSent: (loggedAt: number) => void;
  onSlow: () => void;
}

interface Queued {
  result: SharedResult;
  final: boolean;
}

/**
 * One subscription as graphql-ws sees it: an async iterator that yields nothing and ends when the stream does (then
 * graphql-ws sends `complete`); the events themselves are written straight to the socket, in order, as soon as their
 * shared result is ready. Nothing is written before graphql-ws has taken the subscription (its first `next()`).
 */
export class Subscriber implements AsyncIterableIterator<ExecutionResult> {
  private readonly queue: Queued[] = [];
  private readonly prefix: string;
  private started = false;
  private finished = false;
  private endResolve: ((result: IteratorResult<ExecutionResult>) => void) | null = null;
  private endReject: ((error: unknown) => void) | null = null;
  private ended: { error: unknown } | null = null;
  private readonly pumpNow = () => this.pump();

  constructor(private readonly o: SubscriberOptions) {
    this.prefix = `{"id":${JSON.stringify(o.id)},"type":"next","payload":`;
  }

  /** The channel's sink: the next event of this subscriber's stream. */
  readonly offer = (event: LoggedEvent, final: boolean): void => {
    if (this.finished) return;
    const result = this.o.results.get(event, this.o.group, this.o.execute);
    this.queue.push({ result, final });
    if (this.queue.length > this.o.maxPending) {
      this.slow();
      return;
    }
    if (this.queue.length === 1) result.whenSettled(this.pumpNow);
    else if (!result.settled) result.whenSettled(this.pumpNow);
  };

  private pump(): void {
    if (!this.started || this.finished) return;
    const { socket } = this.o;
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      if (!head.result.settled) return; // pumped again when it settles
      this.queue.shift();
      if (head.result.error) {
        this.end({ error: head.result.error });
        return;
      }
      if (socket.readyState !== socket.OPEN) {
        this.end(null);
        return;
      }
      socket.send(`${this.prefix}${head.result.json}}`);
      this.o.onSent(head.result.loggedAt);
      if (head.final) {
        this.end(null);
        return;
      }
    }
    if (socket.bufferedAmount > this.o.maxBufferedBytes) this.slow();
  }

  private slow(): void {
    if (this.finished) return;
    this.end(null);
    this.o.onSlow();
  }

  private end(ended: { error: unknown } | null): void {
    if (this.finished) return;
    this.finished = true;
    this.queue.length = 0;
    void this.o.channel.return();
    this.ended = ended ?? { error: null };
    this.settleEnd();
  }

  private settleEnd(): void {
    if (!this.ended || !this.endResolve) return;
    const { error } = this.ended;
    const [resolve, reject] = [this.endResolve, this.endReject!];
    this.endResolve = this.endReject = null;
    if (error) reject(error);
    else resolve({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<ExecutionResult>> {
    return new Promise((resolve, reject) => {
      this.endResolve = resolve;
      this.endReject = reject;
      if (!this.started) {
        this.started = true;
        this.pump();
      }
      this.settleEnd();
    });
  }

  return(): Promise<IteratorResult<ExecutionResult>> {
    this.end(null);
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(error?: unknown): Promise<IteratorResult<ExecutionResult>> {
    this.end(null);
    return Promise.reject(error);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<ExecutionResult> {
    return this;
  }
}
