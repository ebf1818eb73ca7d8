import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { MemoryRateLimiter, operationCost, parseCosts, RedisRateLimiter, type RateLimiter } from './rate-limit.js';

describe('MemoryRateLimiter', () => {
  it('allows a burst, refuses beyond it with the time until enough tokens, and refills at the configured rate', async () => {
    let now = 1_000_000;
    const limiter = new MemoryRateLimiter({ burst: 5, refillPerSecond: 2 }, { now: () => now });
    const results = [];
    for (let i = 0; i < 6; i++) results.push(await limiter.take('alice', 1));
    expect(results.map((r) => r.allowed)).toEqual([true, true, true, true, true, false]);
    expect(results[4]).toEqual({ allowed: true, remaining: 0, retryAfterSeconds: 0 });
    expect(results[5]).toEqual({ allowed: false, remaining: 0, retryAfterSeconds: 1 });
    expect((await limiter.take('bob', 1)).allowed).toBe(true); // buckets are per key

    now += 1000; // two tokens back
    expect((await limiter.take('alice', 3)).retryAfterSeconds).toBe(1); // 3 needed, 2 there: half a second more
    expect((await limiter.take('alice', 2)).allowed).toBe(true);
    now += 60_000;
    expect((await limiter.take('alice', 1)).remaining).toBe(4); // never more than the burst
  });

  it('charges a cost above the burst as a full bucket, and forgets the least recently used keys beyond its bound', async () => {
    const limiter = new MemoryRateLimiter({ burst: 3, refillPerSecond: 1 }, { maxKeys: 2 });
    expect(await limiter.take('a', 10)).toMatchObject({ allowed: true, remaining: 0 });
    expect(await limiter.take('a', 1)).toMatchObject({ allowed: false });
    await limiter.take('b', 1);
    await limiter.take('c', 1); // evicts "a"
    expect(await limiter.take('a', 1)).toMatchObject({ allowed: true, remaining: 2 });
  });
});

describe('operationCost and parseCosts', () => {
  it('costs 1 per operation, or the configured costs of its root fields when more', () => {
    const costs = parseCosts(' detectChanges=10, startTraining = 20 ');
    expect(costs).toEqual({ detectChanges: 10, startTraining: 20 });
    expect(operationCost([], costs)).toBe(1);
    expect(operationCost(['datasets', 'jobs'], costs)).toBe(1);
    expect(operationCost(['detectChanges'], costs)).toBe(10);
    expect(operationCost(['detectChanges', 'startTraining', 'jobs'], costs)).toBe(30);
    expect(parseCosts('')).toEqual({});
    expect(() => parseCosts('detectChanges:10')).toThrow(/field=cost/);
    expect(() => parseCosts('a=-1')).toThrow(/field=cost/);
  });
});

const redisUrl = process.env.TEST_REDIS_URL;

describe.skipIf(!redisUrl)('RedisRateLimiter (TEST_REDIS_URL)', () => {
  const prefix = `lcd:test:${randomUUID()}:`;
  const limiters: RateLimiter[] = [];
  const make = (burst: number, refillPerSecond: number) => {
    const limiter = new RedisRateLimiter(redisUrl!, { burst, refillPerSecond }, prefix);
    limiters.push(limiter);
    return limiter;
  };
  afterAll(async () => {
    for (const l of limiters) await l.close();
  });

  it('shares one bucket between instances and decides atomically under concurrency', async () => {
    const [one, two] = [make(10, 0.01), make(10, 0.01)];
    const decisions = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? one : two).take('shared', 1)));
    expect(decisions.filter((d) => d.allowed)).toHaveLength(10);
    const refused = decisions.find((d) => !d.allowed)!;
    expect(refused.retryAfterSeconds).toBeGreaterThanOrEqual(90); // one token every 100 s
    expect(refused.retryAfterSeconds).toBeLessThanOrEqual(100);
  });

  it('refills at the configured rate and charges heavier costs', async () => {
    const limiter = make(4, 20); // a token every 50 ms
    expect(await limiter.take('heavy', 4)).toMatchObject({ allowed: true, remaining: 0 });
    expect(await limiter.take('heavy', 2)).toMatchObject({ allowed: false, retryAfterSeconds: 1 });
    await new Promise((r) => setTimeout(r, 250));
    expect(await limiter.take('heavy', 2)).toMatchObject({ allowed: true });
  });

  it('fails (for the caller to decide) rather than hang when Redis is unreachable', async () => {
    const limiter = new RedisRateLimiter('redis://127.0.0.1:1', { burst: 5, refillPerSecond: 1 }, prefix);
    limiters.push(limiter);
    const started = Date.now();
    await expect(limiter.take('x', 1)).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
