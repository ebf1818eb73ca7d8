// One subscriber's ordered stream of logged events: what it missed (replayed from the owner's event log), then live
// events, with no gap and no duplicate. A bounded buffer protects the gateway from a subscriber that does not read.
import type { LoggedEvent } from '../../lib/events/event-log.js';

export type Replay = (afterSequence: number) => Promise<LoggedEvent[]>;

export class SlowConsumerError extends Error {
  constructor(readonly pending: number) {
    super(`Subscriber is too slow: ${pending} events waiting`);
  }
}

export interface EventChannelOptions {
  /** Sequence the subscriber saw last; null: live events only. */
  afterSequence: number | null;
  replay: Replay;
  /** Events allowed to wait for the subscriber before it is cut off. */
  maxPending: number;
  accept?: (event: LoggedEvent) => boolean;
  /** The stream ends after this event (e.g. a job that finished). */
  isFinal?: (event: LoggedEvent) => boolean;
  onOverflow: (error: SlowConsumerError) => void;
  onError: (error: unknown) => void;
}

export class EventChannel implements AsyncIterableIterator<LoggedEvent> {
  private last: number | null;
  private readonly pending: LoggedEvent[] = [];
  private readonly waiters: ((result: IteratorResult<LoggedEvent>) => void)[] = [];
  private chain: Promise<void> = Promise.resolve();
  private done = false;
  private finalSeen = false;

  constructor(private readonly options: EventChannelOptions) {
    this.last = options.afterSequence;
    if (options.afterSequence !== null) this.enqueue(() => this.catchUp());
  }

  /** A live event from the broker (may arrive twice, out of order, or after a gap). */
  push(event: LoggedEvent): void {
    this.enqueue(async () => {
      if (this.last !== null && event.sequence > this.last + 1) await this.catchUp();
      this.deliver(event);
    });
  }

  /** Fetches whatever was logged after the last delivered event (after a reconnect, or to fill a gap). */
  resync(): void {
    if (this.last !== null) this.enqueue(() => this.catchUp());
  }

  private enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(() => (this.done ? undefined : step())).catch((error: unknown) => this.options.onError(error));
  }

  private async catchUp(): Promise<void> {
    if (this.last === null) return;
    for (;;) {
      const missed = await this.options.replay(this.last);
      for (const event of missed) this.deliver(event);
      if (missed.length < 1000 || this.done) return;
    }
  }

  private deliver(event: LoggedEvent): void {
    if (this.done || this.finalSeen) return;
    if (this.last !== null && event.sequence <= this.last) return;
    this.last = event.sequence;
    if (this.options.accept && !this.options.accept(event)) return;
    if (this.options.isFinal?.(event)) this.finalSeen = true;
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
