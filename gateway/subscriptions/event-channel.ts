// One subscriber's ordered stream of logged events: what it missed (replayed from the owner's event log), then live
// events, with no gap and no duplicate. A bounded buffer protects the gateway from a subscriber that does not read.
//
// Live events that follow the last delivered one are delivered synchronously (no promise per subscriber and event:
// one event fans out to a thousand channels in one loop); only a replay, or a gap to fill from the log, goes through
// the channel's ordered chain of asynchronous steps, and live events that arrive meanwhile wait their turn behind it.
import type { LoggedEvent } from '../../lib/events/event-log.js';

export type Replay = (afterSequence: number) => Promise<LoggedEvent[]>;

export class SlowConsumerError extends Error {
  constructor(readonly pending: number) {
    super(`Subscriber is too slow: ${pending} events waiting`);
  }
}

/** Receives each delivered event in order; `final` marks the last one of the stream. */
export type EventSink = (event: LoggedEvent, final: boolean) => void;

export interface EventChannelOptions {
  /** Sequence the subscriber saw last; null: live events only. */
  afterSequence: number | null;
  replay: Replay;
  /** Events allowed to wait for the subscriber before it is cut off (iterator mode; a sink bounds its own queue). */
  maxPending: number;
  accept?: (event: LoggedEvent) => boolean;
  /** The stream ends after this event (e.g. a job that finished). */
  isFinal?: (event: LoggedEvent) => boolean;
  onOverflow: (error: SlowConsumerError) => void;
  onError: (error: unknown) => void;
  /** First wait before a failed replay is tried again (doubling up to 10 s); default 500 ms. */
  retryMs?: number;
}

const MAX_RETRY_MS = 10_000;
const REPLAY_PAGE = 1000;

export class EventChannel implements AsyncIterableIterator<LoggedEvent> {
  private last: number | null;
  private readonly pending: LoggedEvent[] = [];
  private readonly waiters: ((result: IteratorResult<LoggedEvent>) => void)[] = [];
  private chain: Promise<void> = Promise.resolve();
  /** Asynchronous steps queued or running: while there are any, live events queue behind them to keep the order. */
  private busy = 0;
  private done = false;
  private finalSeen = false;
  private sink: EventSink | null = null;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs: number;

  constructor(private readonly options: EventChannelOptions) {
    this.last = options.afterSequence;
    this.retryMs = options.retryMs ?? 500;
    if (options.afterSequence !== null) this.enqueue(() => this.catchUp());
  }

  /** A live event from the broker (may arrive twice, out of order, or after a gap). */
  push(event: LoggedEvent): void {
    if (this.done) return;
    if (this.busy === 0 && (this.last === null || event.sequence <= this.last + 1)) {
      this.deliver(event);
      return;
    }
    this.enqueue(async () => {
      if (this.last !== null && event.sequence > this.last + 1) await this.catchUp();
      this.deliver(event);
    });
  }

  /** Fetches whatever was logged after the last delivered event (after a reconnect, or to fill a gap). */
  resync(): void {
    if (this.last !== null && !this.done) this.enqueue(() => this.catchUp());
  }

  /**
   * From now on, events go to `sink` as they are delivered (synchronously, in order) instead of waiting for `next()`;
   * the ones already waiting go first.
   */
  attach(sink: EventSink): void {
    this.sink = sink;
    const waiting = this.pending.splice(0);
    waiting.forEach((event, i) => sink(event, this.finalSeen && i === waiting.length - 1));
    if (this.finalSeen) this.finish();
  }

  private enqueue(step: () => Promise<void>): void {
    this.busy += 1;
    this.chain = this.chain
      .then(() => (this.done ? undefined : step()))
      .catch((error: unknown) => {
        this.options.onError(error);
        this.scheduleRetry();
      })
      .finally(() => {
        this.busy -= 1;
      });
  }

  /** A replay failed (the owner or the broker is unreachable): try again later; live events keep their order. */
  private scheduleRetry(): void {
    if (this.done || this.retryTimer) return;
    const wait = this.retryMs;
    this.retryMs = Math.min(this.retryMs * 2, MAX_RETRY_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.resync();
    }, wait);
    this.retryTimer.unref();
  }

  private async catchUp(): Promise<void> {
    if (this.last === null) return;
    for (;;) {
      const missed = await this.options.replay(this.last);
      this.retryMs = this.options.retryMs ?? 500;
      for (const event of missed) this.deliver(event);
      if (missed.length < REPLAY_PAGE || this.done) return;
    }
  }

  private deliver(event: LoggedEvent): void {
    if (this.done || this.finalSeen) return;
    if (this.last !== null && event.sequence <= this.last) return;
    this.last = event.sequence;
    if (this.options.accept && !this.options.accept(event)) return;
    if (this.options.isFinal?.(event)) this.finalSeen = true;
    if (this.sink) {
      this.sink(event, this.finalSeen);
      if (this.finalSeen) this.finish();
      return;
    }
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter({ value: event, done: false });
    } else {
      this.pending.push(event);
      if (this.pending.length > this.options.maxPending) {
        const error = new SlowConsumerError(this.pending.length);
        void this.return();
        this.options.onOverflow(error);
        return;
      }
    }
    if (this.finalSeen && this.pending.length === 0) this.finish();
  }

  private finish(): void {
    this.done = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    for (const waiter of this.waiters.splice(0)) waiter({ value: undefined, done: true });
  }

  next(): Promise<IteratorResult<LoggedEvent>> {
    const event = this.pending.shift();
    if (event) {
      if (this.finalSeen && this.pending.length === 0) this.done = true;
      return Promise.resolve({ value: event, done: false });
    }
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  return(): Promise<IteratorResult<LoggedEvent>> {
    this.pending.length = 0;
    this.finish();
    return Promise.resolve({ value: undefined, done: true });
  }

  throw(error?: unknown): Promise<IteratorResult<LoggedEvent>> {
    void this.return();
    return Promise.reject(error);
  }

  [Symbol.asyncIterator](): AsyncIterableIterator<LoggedEvent> {
    return this;
  }

  get closed(): boolean {
    return this.done;
  }
}
