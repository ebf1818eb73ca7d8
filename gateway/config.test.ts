import { describe, expect, it } from 'vitest';
import { ConfigError } from '../lib/config.js';
import { loadGatewayConfig } from './config.js';

describe('gateway configuration', () => {
  it('has the documented defaults for limits and rate limits', () => {
    expect(loadGatewayConfig({})).toMatchObject({
      MAX_REQUEST_BYTES: 1024 * 1024,
      MAX_QUERY_TOKENS: 3000,
      MAX_QUERY_DEPTH: 12,
      MAX_QUERY_ALIASES: 30,
      MAX_ROOT_FIELDS: 10,
      MAX_QUERY_COST: 25_000,
      RATE_LIMIT_ENABLED: true,
      RATE_LIMIT_BURST: 100,
      RATE_LIMIT_REFILL_PER_SECOND: 10,
      RATE_LIMIT_COSTS: { detectChanges: 10, startTraining: 20 },
      RATE_LIMIT_KEY_PREFIX: 'lcd:ratelimit:',
      AUDIT_QUEUE: 'monitoring.audit',
    });
    expect(loadGatewayConfig({ RATE_LIMIT_ENABLED: 'false', RATE_LIMIT_REFILL_PER_SECOND: '0.5' })).toMatchObject({
      RATE_LIMIT_ENABLED: false,
      RATE_LIMIT_REFILL_PER_SECOND: 0.5,
    });
  });

  it('stops with a message naming each bad variable', () => {
    const issues = (env: Record<string, string>) => {
      try {
        loadGatewayConfig(env);
      } catch (error) {
        if (error instanceof ConfigError) return error.issues.join('\n');
        throw error;
      }
      return '';
    };
    expect(issues({ RATE_LIMIT_COSTS: 'detectChanges:10' })).toMatch(/^RATE_LIMIT_COSTS: .*field=cost/);
    expect(issues({ RATE_LIMIT_BURST: '15' })).toMatch(/RATE_LIMIT_COSTS: startTraining costs 20, more than RATE_LIMIT_BURST \(15\)/);
    expect(issues({ MAX_QUERY_DEPTH: '0' })).toMatch(/^MAX_QUERY_DEPTH/);
    expect(issues({ RATE_LIMIT_REFILL_PER_SECOND: '-1' })).toMatch(/^RATE_LIMIT_REFILL_PER_SECOND/);
    expect(issues({ RATE_LIMIT_ENABLED: 'yes' })).toMatch(/^RATE_LIMIT_ENABLED/);
  });
});
