// Rate limits per identity: one token bucket per caller that refills at a steady rate up to a burst. In Redis (one
// Lua script, so that read-refill-take is atomic and every gateway instance shares the budget) when a URL is given,
// in memory otherwise.
import { Redis } from 'ioredis';

export interface TokenBucketConfig {
  /** Tokens a full bucket holds: the most a caller can spend at once. */
  burst: number;
  /** Tokens added per second, up to `burst`. */
  refillPerSecond: number;
}

export interface RateLimitDecision {
  allowed: boolean;
  /** Tokens left after this request (whole tokens, rounded down). */
  remaining: number;
  /** When refused: seconds until the bucket holds enough for this cost (at least 1). 0 when allowed. */
  retryAfterSeconds: number;
}

export interface RateLimiter {
  readonly kind: 'redis' | 'memory';
  /** Takes `cost` tokens from the bucket of `key` if it holds them; a cost above the burst takes a full bucket. */
  take(key: string, cost: number): Promise<RateLimitDecision>;
  close(): Promise<void>;
}

function checkConfig(config: TokenBucketConfig): void {
  if (!(config.burst >= 1) || !(config.refillPerSecond > 0)) {
    throw new RangeError(`token bucket needs burst >= 1 and refillPerSecond > 0, got ${JSON.stringify(config)}`);
  }
}

function retryAfter(missing: number, refillPerSecond: number): number {
  return Math.max(1, Math.ceil(missing / refillPerSecond));
}

/** One process's buckets; the least recently used are dropped beyond `maxKeys` (a dropped bucket starts full). */
export class MemoryRateLimiter implements RateLimiter {
  readonly kind = 'memory';
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly config: TokenBucketConfig,
    private readonly options: { maxKeys?: number; now?: () => number } = {},
  ) {
    checkConfig(config);
  }

  async take(key: string, cost: number): Promise<RateLimitDecision> {
    const now = (this.options.now ?? Date.now)();
    const { burst, refillPerSecond } = this.config;
    const need = Math.min(Math.max(cost, 0), burst);
    const bucket = this.buckets.get(key) ?? { tokens: burst, at: now };
    const tokens = Math.min(burst, bucket.tokens + (Math.max(0, now - bucket.at) / 1000) * refillPerSecond);
    const allowed = tokens >= need;
    const left = allowed ? tokens - need : tokens;
    // Re-inserting keeps the map in least-recently-used order for the eviction below.
    this.buckets.delete(key);
    this.buckets.set(key, { tokens: left, at: now });
    const maxKeys = this.options.maxKeys ?? 100_000;
    for (const oldest of this.buckets.keys()) {
      if (this.buckets.size <= maxKeys) break;
      this.buckets.delete(oldest);
    }
    return { allowed, remaining: Math.floor(left), retryAfterSeconds: allowed ? 0 : retryAfter(need - tokens, refillPerSecond) };
  }

  async close(): Promise<void> {
    this.buckets.clear();
  }
}

// KEYS[1] bucket; ARGV: burst, refill per millisecond, cost. Redis's own clock, so that every instance agrees.
// Returns { allowed (0|1), tokens left (string: Lua numbers become integers in replies), ms until enough }.
const TAKE_SCRIPT = `
local burst = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  wait = math.ceil((cost - tokens) / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate) + 1000)
return { allowed, tostring(tokens), wait }
`;

type TakeCommand = (key: string, burst: number, ratePerMs: number, cost: number) => Promise<[number, string, number]>;

/** Buckets in Redis, shared by every gateway instance that uses the same URL and key prefix. */
export class RedisRateLimiter implements RateLimiter {
  readonly kind = 'redis';
  private readonly redis: Redis;

  constructor(
    url: string,
    private readonly config: TokenBucketConfig,
    private readonly keyPrefix = 'lcd:ratelimit:',
  ) {
    checkConfig(config);
    // Fail fast rather than queue: a request waits at most one short timeout for its decision.
    this.redis = new Redis(url, { maxRetriesPerRequest: 1, commandTimeout: 1000, connectTimeout: 2000, lazyConnect: false });
    this.redis.on('error', () => undefined); // reported by the failing command; ioredis reconnects by itself
    this.redis.defineCommand('lcdTakeTokens', { numberOfKeys: 1, lua: TAKE_SCRIPT });
  }

  async take(key: string, cost: number): Promise<RateLimitDecision> {
    const { burst, refillPerSecond } = this.config;
    const need = Math.min(Math.max(cost, 0), burst);
    const take = (this.redis as unknown as { lcdTakeTokens: TakeCommand }).lcdTakeTokens.bind(this.redis);
    const [allowed, tokens, waitMs] = await take(`${this.keyPrefix}${key}`, burst, refillPerSecond / 1000, need);
    return {
      allowed: allowed === 1,
      remaining: Math.floor(Number(tokens)),
      retryAfterSeconds: allowed === 1 ? 0 : Math.max(1, Math.ceil(Number(waitMs) / 1000)),
    };
  }

  async close(): Promise<void> {
    if (this.redis.status !== 'ready') {
      this.redis.disconnect();
      return;
    }
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

export function createRateLimiter(options: TokenBucketConfig & { redisUrl?: string; keyPrefix?: string }): RateLimiter {
  const config = { burst: options.burst, refillPerSecond: options.refillPerSecond };
  return options.redisUrl ? new RedisRateLimiter(options.redisUrl, config, options.keyPrefix) : new MemoryRateLimiter(config);
}

/** What one operation costs: 1, or the sum of the configured costs of its root fields when that is more. */
export function operationCost(rootFieldNames: readonly string[], costs: Readonly<Record<string, number>>): number {
  const weighted = rootFieldNames.reduce((sum, name) => sum + (costs[name] ?? 0), 0);
  return Math.max(1, weighted);
}

/** Parses `detectChanges=10,startTraining=20`; throws naming the bad entry. */
export function parseCosts(text: string): Record<string, number> {
  const costs: Record<string, number> = {};
  for (const entry of text.split(',').map((e) => e.trim()).filter(Boolean)) {
    const match = /^([_A-Za-z][_0-9A-Za-z]*)\s*=\s*(\d+(?:\.\d+)?)$/.exec(entry);
    if (!match) throw new RangeError(`"${entry}" is not field=cost`);
    costs[match[1]!] = Number(match[2]);
  }
  return costs;
}
