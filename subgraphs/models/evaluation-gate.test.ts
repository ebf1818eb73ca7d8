import { describe, expect, it } from 'vitest';
import { evaluateGate, type GateConfig } from './evaluation-gate.js';

const config: GateConfig = { minimums: { f1: 0.7, iou: 0.5 }, maxRegression: 0.02 };
const production = { versionId: '00000000-0000-4000-8000-000000000001', version: 3, metrics: { f1: 0.9, iou: 0.82 } };

describe('evaluation gate', () => {
  it('passes a version that reaches the minimums when there is no Production version', () => {
    const decision = evaluateGate({ f1: 0.75, iou: 0.6 }, null, config);
    expect(decision.passed).toBe(true);
    expect(decision.comparedWith).toBeNull();
    expect(decision.reasons).toContain('no Production version to compare with');
  });

  it('fails a version below a minimum, naming the metric and both values', () => {
    const decision = evaluateGate({ f1: 0.65, iou: 0.6 }, null, config);
    expect(decision.passed).toBe(false);
    expect(decision.reasons).toContain('f1 0.6500 < minimum 0.7000');
  });

  it('fails a version that lacks a gated metric', () => {
    expect(evaluateGate({ f1: 0.9 }, null, config).reasons).toContain('iou missing (needs ≥ 0.5000)');
  });

  it('never passes metrics measured on the training split', () => {
    const decision = evaluateGate({ f1: 0.99, iou: 0.98 }, null, config, new Date(), 'train');
    expect(decision.passed).toBe(false);
    expect(decision.reasons[0]).toMatch(/evaluated on the training split/);
  });

  it('allows a small regression against Production and refuses a larger one', () => {
    expect(evaluateGate({ f1: 0.885, iou: 0.81 }, production, config).passed).toBe(true);
    const worse = evaluateGate({ f1: 0.87, iou: 0.85 }, production, config);
    expect(worse.passed).toBe(false);
    expect(worse.reasons.some((r) => r.startsWith('f1 0.8700 is worse than Production v3'))).toBe(true);
    expect(worse.comparedWith).toEqual(production);
  });
});
