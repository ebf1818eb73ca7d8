import { describe, expect, it } from 'vitest';
import type { LoggedEvent } from '../../lib/events/event-log.js';
import { EventChannel, type SlowConsumerError } from './event-channel.js';

const event = (sequence: number, payload: Record<string, unknown> = {}): LoggedEvent => ({
  stream: 'job:1',
  sequence,
  type: 'progress',
  tenant: 't',
  routingKey: 'job.1.progress',
  payload,
  occurredAt: new Date().toISOString(),
});

async function take(channel: EventChannel, n: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const next = await channel.next();
    if (next.done) break;
    out.push(next.value.sequence);
  }
  return out;
}

describe('event channel', () => {
  it('replays what was missed, then live events, without gaps or duplicates', async () => {
    const log = [1, 2, 3, 4, 5].map((s) => event(s));
    const channel = new EventChannel({
      afterSequence: 2,
      replay: async (after) => log.filter((e) => e.sequence > after),
      maxPending: 100,
      onOverflow: () => undefined,
      onError: (e) => {
        throw e;
      },
    });
    channel.push(event(4)); // arrives live while the replay runs: delivered once
    channel.push(event(6));
    log.push(event(6));
    expect(await take(channel, 4)).toEqual([3, 4, 5, 6]);
  });

  it('fills a gap in live events from the log', async () => {
    const log = [1, 2, 3, 4].map((s) => event(s));
    const channel = new EventChannel({ afterSequence: null, replay: async (after) => log.filter((e) => e.sequence > after), maxPending: 100, onOverflow: () => undefined, onError: () => undefined });
    channel.push(event(1));
    channel.push(event(4)); // 2 and 3 were lost on the way (e.g. broker restart)
    expect(await take(channel, 4)).toEqual([1, 2, 3, 4]);
  });

  it('ends after the final event', async () => {
    const channel = new EventChannel({
      afterSequence: null,
      replay: async () => [],
      maxPending: 100,
      isFinal: (e) => e.payload.status === 'SUCCEEDED',
      onOverflow: () => undefined,
      onError: () => undefined,
    });
    channel.push(event(1, { status: 'RUNNING' }));
    channel.push(event(2, { status: 'SUCCEEDED' }));
    channel.push(event(3, { status: 'RUNNING' }));
    expect(await take(channel, 5)).toEqual([1, 2]);
    expect((await channel.next()).done).toBe(true);
  });

  it('cuts off a subscriber that does not read instead of buffering without bound', async () => {
    let overflow: SlowConsumerError | null = null;
    const channel = new EventChannel({ afterSequence: null, replay: async () => [], maxPending: 10, onOverflow: (e) => (overflow = e), onError: () => undefined });
    for (let s = 1; s <= 50; s++) channel.push(event(s));
    await new Promise((r) => setTimeout(r, 20));
    expect(overflow).not.toBeNull();
    expect(channel.closed).toBe(true);
    expect((await channel.next()).done).toBe(true);
  });
});

describe('event channel with a sink', () => {
  it('hands live events over in order at once, and what was waiting first', async () => {
    const seen: [number, boolean][] = [];
    const channel = new EventChannel({
      afterSequence: null,
      replay: async () => [],
      maxPending: 100,
      isFinal: (e) => e.payload.status === 'SUCCEEDED',
      onOverflow: () => undefined,
      onError: () => undefined,
    });
    channel.push(event(1));
    channel.attach((e, final) => seen.push([e.sequence, final]));
    channel.push(event(2));
    expect(seen).toEqual([
      [1, false],
      [2, false],
    ]);
    channel.push(event(3, { status: 'SUCCEEDED' }));
    channel.push(event(4));
    expect(seen.at(-1)).toEqual([3, true]);
    expect(seen.length).toBe(3);
    expect(channel.closed).toBe(true);
  });

  it('tries a failed replay again and keeps live events behind it in order', async () => {
    const log = [1, 2, 3].map((s) => event(s));
    let failures = 1;
    const errors: unknown[] = [];
    const seen: number[] = [];
    const channel = new EventChannel({
      afterSequence: 0,
      replay: async (after) => {
        if (failures-- > 0) throw new Error('owner unreachable');
        return log.filter((e) => e.sequence > after);
      },
      maxPending: 100,
      retryMs: 10,
      onOverflow: () => undefined,
      onError: (e) => errors.push(e),
    });
    channel.attach((e) => seen.push(e.sequence));
    channel.push(event(4));
    log.push(event(4));
    for (let waited = 0; seen.length < 4 && waited < 2000; waited += 10) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([1, 2, 3, 4]);
    expect(errors.length).toBe(1);
    await channel.return();
  });
});
