// Gathers items that arrive one delivery at a time into batches handled together: a consumer of many small messages
// (drift samples, one per pair) then writes one statement and one transaction per batch instead of one per message.
// Each delivery's handler awaits its item's own outcome, so acknowledgement stays per message: an item the batch
// rejects fails (and is retried or dead-lettered) alone, and a batch that fails as a whole fails each of its items.
// A batch is handled when it is full or when its oldest item has waited `maxWaitMs`; the consumer's prefetch must be
// at least `maxItems` for batches to fill.

export interface BatcherOptions {
  maxItems: number;
  maxWaitMs: number;
}

interface Waiting<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (error: unknown) => void;
}

export class Batcher<T, R> {
  private waiting: Waiting<T, R>[] = [];
  private timer: NodeJS.Timeout | null = null;

  /**
   * @param handle handles one batch; returns one outcome per item, in order: a result, or the Error that item fails
   *   with. Throwing fails every item of the batch with that error.
   */
  constructor(
    private readonly handle: (items: T[]) => Promise<(R | Error)[]>,
    private readonly options: BatcherOptions,
  ) {
    if (options.maxItems < 1) throw new RangeError('maxItems must be at least 1');
  }

  add(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.waiting.push({ item, resolve, reject });
      if (this.waiting.length >= this.options.maxItems) this.flush();
      else this.timer ??= setTimeout(() => this.flush(), this.options.maxWaitMs);
    });
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.waiting.length === 0) return;
    const batch = this.waiting;
    this.waiting = [];
    void this.run(batch);
  }

  private async run(batch: Waiting<T, R>[]): Promise<void> {
    let outcomes: (R | Error)[];
    try {
      outcomes = await this.handle(batch.map((w) => w.item));
      if (outcomes.length !== batch.length) throw new Error(`the batch handler returned ${outcomes.length} outcomes for ${batch.length} items`);
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    batch.forEach((w, i) => {
      const outcome = outcomes[i]!;
      if (outcome instanceof Error) w.reject(outcome);
      else w.resolve(outcome);
    });
  }
}
