import { describe, expect, it } from 'vitest';
import {
  histogramOf,
  ksAgainstHistogram,
  ksPValue,
  ksTwoSample,
  medianHeuristic,
  mmd2Rbf,
  mmdTest,
  psi,
  rebin,
  smoothedProbabilities,
  wasserstein1,
} from './drift-metrics.js';

describe('psi', () => {
  it('is 0 for the same distribution, whatever the counts', () => {
    expect(psi([10, 20, 30], [1, 2, 3])).toBeCloseTo(0, 12);
  });

  it('matches the hand-computed value: 0.3·ln(1.6) + 0.3·ln(2.5) for 50/50 against 80/20', () => {
    expect(psi([50, 50], [80, 20])).toBeCloseTo(0.3 * Math.log(1.6) + 0.3 * Math.log(2.5), 10);
    expect(psi([50, 50], [80, 20])).toBeCloseTo(0.4158883, 6);
  });

  it('stays finite when a bin is empty on one side (epsilon-smoothed)', () => {
    // expected [1, 0] smoothed to [1, 1e-4] / 1.0001; actual [0.5, 0.5]
    const e = [1 / 1.0001, 1e-4 / 1.0001];
    const byHand = (0.5 - e[0]!) * Math.log(0.5 / e[0]!) + (0.5 - e[1]!) * Math.log(0.5 / e[1]!);
    expect(psi([100, 0], [50, 50])).toBeCloseTo(byHand, 10);
    expect(psi([100, 0], [50, 50])).toBeCloseTo(4.6042492, 6);
  });

  it('smooths to probabilities summing to 1', () => {
    const p = smoothedProbabilities([0, 0, 10]);
    expect(p.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
    expect(p[0]).toBeGreaterThan(0);
  });

  it('refuses histograms of different bins', () => {
    expect(() => psi([1, 2], [1, 2, 3])).toThrow(/2 and 3 bins/);
  });

  it('merges adjacent bins', () => {
    expect(rebin([1, 2, 3, 4, 5, 6, 7, 8], 2)).toEqual([10, 26]);
    expect(() => rebin([1, 2, 3], 2)).toThrow();
  });
});

describe('wasserstein1', () => {
  it('is the distance the mass moved, as a fraction of the range', () => {
    // all mass from the first to the last of 4 bins: 3 bin widths = 3/4 of the range
    expect(wasserstein1([1, 0, 0, 0], [0, 0, 0, 1])).toBeCloseTo(0.75, 12);
    // everything one bin to the right: a quarter of the range
    expect(wasserstein1([1, 1, 0, 0], [0, 1, 1, 0])).toBeCloseTo(0.25, 12);
    expect(wasserstein1([3, 1], [30, 10])).toBeCloseTo(0, 12);
  });

  it('is symmetric', () => {
    expect(wasserstein1([5, 1, 0, 2], [0, 1, 4, 1])).toBeCloseTo(wasserstein1([0, 1, 4, 1], [5, 1, 0, 2]), 12);
  });
});

describe('Kolmogorov–Smirnov', () => {
  it('separates two disjoint samples with the hand-computed p-value', () => {
    // D = 1, nₑ = 2, λ = (√2 + 0.12 + 0.11/√2)·1 ≈ 1.61199, Q = 2(e^(−2λ²) − e^(−8λ²) + …) ≈ 0.0110656
    const r = ksTwoSample([1, 2, 3, 4], [5, 6, 7, 8]);
    expect(r.statistic).toBe(1);
    expect(r.pValue).toBeCloseTo(0.0110656, 6);
  });

  it('finds no difference between equal samples', () => {
    const r = ksTwoSample([1, 2, 3], [3, 2, 1]);
    expect(r.statistic).toBe(0);
    expect(r.pValue).toBe(1);
  });

  it('computes D on interleaved samples', () => {
    expect(ksTwoSample([1, 3, 5, 7], [2, 4, 6, 8]).statistic).toBeCloseTo(0.25, 12);
  });

  it('has p-values that fall as D or the sample sizes grow', () => {
    expect(ksPValue(0.3, 20, 400)).toBeGreaterThan(ksPValue(0.5, 20, 400));
    expect(ksPValue(0.3, 20, 400)).toBeGreaterThan(ksPValue(0.3, 200, 400));
  });

  it('bins values like the reference histogram', () => {
    expect(histogramOf([0, 0.1, 0.5, 0.99, 1, 7], [0, 0.5, 1])).toEqual([2, 4]);
  });

  it('compares a sample with a binned reference at the bin edges only', () => {
    // window [2, 0, 2, 0] vs reference [1, 0, 0, 1]: CDFs .5 .5 1 1 and .5 .5 .5 1, D = 0.5, n = 4, m = 2
    const r = ksAgainstHistogram([0.1, 0.1, 0.6, 0.6], [1, 0, 0, 1], [0, 0.25, 0.5, 0.75, 1]);
    expect(r.statistic).toBeCloseTo(0.5, 12);
    expect(r.pValue).toBeCloseTo(0.7360694, 6);
    // Ties inside a bin are no difference: all zeros against a reference whose mass is all in the first bin.
    expect(ksAgainstHistogram([0, 0, 0], [10, 0], [0, 0.5, 1]).statistic).toBe(0);
  });
});

describe('MMD', () => {
  it('matches the hand-computed unbiased MMD² of two point masses: 2 − 2e^(−1/2)', () => {
    expect(mmd2Rbf([[0], [0]], [[1], [1]], 1)).toBeCloseTo(2 - 2 * Math.exp(-0.5), 12);
  });

  it('takes the median pairwise distance as the bandwidth', () => {
    expect(medianHeuristic([[0], [1], [3]])).toBe(2);
    expect(medianHeuristic([[0, 0], [3, 4]])).toBe(5);
  });

  const cloud = (n: number, centre: number, seed: number) => {
    let s = seed;
    const next = () => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648) - 0.5;
    return Array.from({ length: n }, () => [centre + next(), centre + next(), centre + next()]);
  };

  it('rejects samples from far-apart distributions with the smallest permutation p-value', () => {
    const r = mmdTest(cloud(20, 0, 1), cloud(30, 3, 2), { permutations: 99 });
    expect(r.mmd2).toBeGreaterThan(0.5);
    expect(r.pValue).toBeCloseTo(1 / 100, 12);
  });

  it('does not reject samples of one distribution, and is reproducible', () => {
    const a = mmdTest(cloud(20, 0, 3), cloud(30, 0, 4), { permutations: 99, seed: 7 });
    const b = mmdTest(cloud(20, 0, 3), cloud(30, 0, 4), { permutations: 99, seed: 7 });
    expect(a.pValue).toBeGreaterThan(0.05);
    expect(b).toEqual(a);
  });
});
