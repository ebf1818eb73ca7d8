import { describe, expect, it } from 'vitest';
import { metricsOf, parseTrainerLine } from './trainer-events.js';

describe('trainer events', () => {
  it('parses protocol lines and ignores anything else without throwing', () => {
    expect(parseTrainerLine('{"event":"step","epoch":1,"step":2,"globalStep":7,"loss":0.5,"extra":true}')).toMatchObject({ ok: true, event: { event: 'step', globalStep: 7, extra: true } });
    expect(parseTrainerLine('Warning: something')).toEqual({ ok: false, ignored: 'not JSON' });
    expect(parseTrainerLine('{"event":"step"}')).toEqual({ ok: false, ignored: 'unexpected step event' });
    expect(parseTrainerLine('[1,2]')).toEqual({ ok: false, ignored: 'no event field' });
  });

  it('turns steps, epochs and the final evaluation into metric values, leaving out non-finite ones', () => {
    const at = 1000;
    const step = parseTrainerLine('{"event":"step","epoch":1,"step":2,"globalStep":7,"loss":null,"bce":0.2,"lr":0.01,"pairsPerSecond":3}');
    expect(step.ok && metricsOf(step.event, at)).toEqual([
      { name: 'train/bce', step: 7, epoch: 1, value: 0.2, at },
      { name: 'train/lr', step: 7, epoch: 1, value: 0.01, at },
      { name: 'train/pairs_per_second', step: 7, epoch: 1, value: 3, at },
    ]);
    const epoch = parseTrainerLine('{"event":"epoch","epoch":3,"trainLoss":0.4,"val":{"precision":1,"recall":0.5,"f1":0.66,"iou":0.5},"seconds":2}');
    expect(epoch.ok && metricsOf(epoch.event, at).map((m) => [m.name, m.step])).toEqual([
      ['epoch/train_loss', 3],
      ['epoch/seconds', 3],
      ['val/precision', 3],
      ['val/recall', 3],
      ['val/f1', 3],
      ['val/iou', 3],
    ]);
    const done = parseTrainerLine('{"event":"done","bestEpoch":2,"evaluation":{"split":"test","precision":0.9,"recall":0.8,"f1":0.85,"iou":0.74,"kappa":0.8},"weightsSha256":"x"}');
    expect(done.ok && metricsOf(done.event, at).map((m) => m.name)).toEqual(['eval/precision', 'eval/recall', 'eval/f1', 'eval/iou', 'eval/kappa']);
  });
});
