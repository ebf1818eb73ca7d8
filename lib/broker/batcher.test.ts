import { describe, expect, it } from 'vitest';
import { Batcher } from './batcher.js';

describe('Batcher', () => {
  it('handles a full batch at once, and what is left when the oldest item has waited long enough', async () => {
    const batches: number[][] = [];
    const batcher = new Batcher<number, number>(async (items) => {
      batches.push(items);
      return items.map((i) => i * 10);
    }, { maxItems: 3, maxWaitMs: 50 });
    const results = await Promise.all([1, 2, 3, 4].map((i) => batcher.add(i)));
    expect(results).toEqual([10, 20, 30, 40]);
    expect(batches).toEqual([[1, 2, 3], [4]]);
  });

  it('fails only the item the handler rejects, and every item when the handler throws', async () => {
    let failWhole = false;
    const batcher = new Batcher<string, string>(async (items) => {
      if (failWhole) throw new Error('database down');
      return items.map((s) => (s === 'bad' ? new Error(`cannot use ${s}`) : s.toUpperCase()));
    }, { maxItems: 2, maxWaitMs: 10 });
    const [good, bad] = await Promise.allSettled([batcher.add('good'), batcher.add('bad')]);
    expect(good).toEqual({ status: 'fulfilled', value: 'GOOD' });
    expect(bad).toMatchObject({ status: 'rejected', reason: { message: 'cannot use bad' } });
    failWhole = true;
    const both = await Promise.allSettled([batcher.add('a'), batcher.add('b')]);
    expect(both.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((both[0] as PromiseRejectedResult).reason.message).toBe('database down');
  });
});
