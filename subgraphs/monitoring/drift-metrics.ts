// Drift statistics, pure and deterministic: population stability index and Wasserstein-1 distance between
// histograms on the same bins, the two-sample Kolmogorov–Smirnov test (raw samples, or samples against a binned
// reference), and the kernel two-sample test (MMD², RBF kernel, median-heuristic bandwidth, permutation p-value).

/** Probability floor of a bin in PSI, so that an empty bin on one side gives a large but finite term. */
export const PSI_EPSILON = 1e-4;

function total(values: readonly number[]): number {
  let sum = 0;
  for (const v of values) sum += v;
  return sum;
}

function checkSameBins(a: readonly number[], b: readonly number[]): void {
  if (a.length !== b.length) throw new Error(`histograms have ${a.length} and ${b.length} bins`);
  if (a.length === 0) throw new Error('histograms have no bins');
}

/** Counts as probabilities, each at least `epsilon`, renormalised to sum to 1. An empty histogram is uniform. */
export function smoothedProbabilities(counts: readonly number[], epsilon = PSI_EPSILON): number[] {
  const sum = total(counts);
  const raw = counts.map((c) => (sum > 0 ? Math.max(c / sum, epsilon) : 1 / counts.length));
  const norm = total(raw);
  return raw.map((p) => p / norm);
}

/**
 * Population stability index Σ (aᵢ − eᵢ)·ln(aᵢ / eᵢ) of `actual` against `expected` (counts on the same bins,
 * epsilon-smoothed). Rules of thumb: < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 significant shift.
 */
export function psi(expected: readonly number[], actual: readonly number[], epsilon = PSI_EPSILON): number {
  checkSameBins(expected, actual);
  const e = smoothedProbabilities(expected, epsilon);
  const a = smoothedProbabilities(actual, epsilon);
  let sum = 0;
  for (let i = 0; i < e.length; i++) sum += (a[i]! - e[i]!) * Math.log(a[i]! / e[i]!);
  return sum;
}

/** Merges adjacent bins into `bins` bins (which must divide the count): 64 bins → 16 of four each. */
export function rebin(counts: readonly number[], bins: number): number[] {
  if (bins <= 0 || counts.length % bins !== 0) throw new Error(`cannot merge ${counts.length} bins into ${bins}`);
  const width = counts.length / bins;
  const out = new Array<number>(bins).fill(0);
  for (let i = 0; i < counts.length; i++) out[Math.floor(i / width)]! += counts[i]!;
  return out;
}

/**
 * Wasserstein-1 (earth mover's) distance between two histograms on the same equal-width bins, in units of the whole
 * value range: Σ |CDFₐ − CDFᵦ| / bins. 0.1 means the mass moved on average a tenth of the range.
 */
export function wasserstein1(expected: readonly number[], actual: readonly number[]): number {
  checkSameBins(expected, actual);
  const se = total(expected);
  const sa = total(actual);
  if (se <= 0 || sa <= 0) throw new Error('wasserstein1 of an empty histogram');
  let ce = 0;
  let ca = 0;
  let sum = 0;
  for (let i = 0; i < expected.length; i++) {
    ce += expected[i]! / se;
    ca += actual[i]! / sa;
    sum += Math.abs(ce - ca);
  }
  return sum / expected.length;
}

/**
 * Probability that the Kolmogorov–Smirnov statistic of two independent samples of sizes n and m from one
 * distribution is at least `d`: the asymptotic Kolmogorov distribution with Stephens' small-sample correction,
 * λ = (√nₑ + 0.12 + 0.11/√nₑ)·d with nₑ = nm/(n+m), Q(λ) = 2 Σⱼ (−1)^(j−1) e^(−2j²λ²).
 */
export function ksPValue(d: number, n: number, m: number): number {
  if (n <= 0 || m <= 0) return 1;
  const ne = (n * m) / (n + m);
  const root = Math.sqrt(ne);
  const lambda = (root + 0.12 + 0.11 / root) * d;
  if (lambda < 0.2) return 1;
  let sum = 0;
  let sign = 1;
  for (let j = 1; j <= 100; j++) {
    const term = Math.exp(-2 * j * j * lambda * lambda);
    sum += sign * term;
    if (term < 1e-12) break;
    sign = -sign;
  }
  return Math.min(1, Math.max(0, 2 * sum));
}

export interface KsResult {
  /** Largest distance between the two empirical CDFs. */
  statistic: number;
  pValue: number;
  n: number;
  m: number;
}

/** Two-sample Kolmogorov–Smirnov test on raw samples. */
export function ksTwoSample(x: readonly number[], y: readonly number[]): KsResult {
  if (x.length === 0 || y.length === 0) throw new Error('ksTwoSample needs two non-empty samples');
  const a = [...x].sort((p, q) => p - q);
  const b = [...y].sort((p, q) => p - q);
  let i = 0;
  let j = 0;
  let d = 0;
  while (i < a.length && j < b.length) {
    const v = Math.min(a[i]!, b[j]!);
    while (i < a.length && a[i]! <= v) i++;
    while (j < b.length && b[j]! <= v) j++;
    d = Math.max(d, Math.abs(i / a.length - j / b.length));
  }
  return { statistic: d, pValue: ksPValue(d, a.length, b.length), n: a.length, m: b.length };
}

/** Counts of `values` in the bins [edgesᵢ, edgesᵢ₊₁) (the last bin closed), values outside going to the edge bins. */
export function histogramOf(values: readonly number[], edges: readonly number[]): number[] {
  if (edges.length < 2) throw new Error('a histogram needs at least two edges');
  const counts = new Array<number>(edges.length - 1).fill(0);
  for (const v of values) {
    let bin = 0;
    while (bin < counts.length - 1 && v >= edges[bin + 1]!) bin++;
    counts[bin]! += 1;
  }
  return counts;
}

/**
 * Two-sample KS test of `values` against a reference known only as a histogram of `referenceCount` values. Both
 * CDFs are compared at the reference's bin edges only (the reference says nothing finer), which keeps ties (e.g.
 * many tiles with no change at all) from counting as a difference.
 */
export function ksAgainstHistogram(values: readonly number[], reference: readonly number[], edges: readonly number[], referenceCount?: number): KsResult {
  if (reference.length !== edges.length - 1) throw new Error(`a histogram of ${reference.length} bins needs ${reference.length + 1} edges`);
  if (values.length === 0) throw new Error('ksAgainstHistogram needs values');
  const window = histogramOf(values, edges);
  const sr = total(reference);
  if (sr <= 0) throw new Error('the reference histogram is empty');
  let cr = 0;
  let cw = 0;
  let d = 0;
  for (let i = 0; i < reference.length; i++) {
    cr += reference[i]! / sr;
    cw += window[i]! / values.length;
    d = Math.max(d, Math.abs(cr - cw));
  }
  const m = referenceCount ?? sr;
  return { statistic: d, pValue: ksPValue(d, values.length, m), n: values.length, m };
}

// ---------------------------------------------------------------------------------------------------------------------
// Kernel two-sample test
// ---------------------------------------------------------------------------------------------------------------------

/** A small seeded generator (mulberry32): permutation p-values are reproducible. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function squaredDistances(points: readonly (readonly number[])[]): Float64Array {
  const n = points.length;
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    const a = points[i]!;
    for (let j = i + 1; j < n; j++) {
      const b = points[j]!;
      let s = 0;
      for (let k = 0; k < a.length; k++) {
        const diff = a[k]! - b[k]!;
        s += diff * diff;
      }
      out[i * n + j] = s;
      out[j * n + i] = s;
    }
  }
  return out;
}

function median(values: number[]): number {
  if (values.length === 0) return 0;
  const sorted = values.sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** Median Euclidean distance between distinct points of the pooled sample (the RBF bandwidth σ). */
export function medianHeuristic(points: readonly (readonly number[])[]): number {
  const n = points.length;
  const d2 = squaredDistances(points);
  const distances: number[] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) distances.push(Math.sqrt(d2[i * n + j]!));
  return median(distances);
}

/** Unbiased MMD² of the first `m` points against the rest, given the pooled kernel matrix and an order of the points. */
function mmd2FromKernel(kernel: Float64Array, n: number, order: Int32Array, m: number): number {
  const k = n - m;
  let xx = 0;
  let yy = 0;
  let xy = 0;
  for (let a = 0; a < n; a++) {
    const i = order[a]!;
    const row = i * n;
    for (let b = a + 1; b < n; b++) {
      const v = kernel[row + order[b]!]!;
      if (b < m) xx += v;
      else if (a >= m) yy += v;
      else xy += v;
    }
  }
  return (2 * xx) / (m * (m - 1)) + (2 * yy) / (k * (k - 1)) - (2 * xy) / (m * k);
}

export interface MmdResult {
  /** Unbiased estimate of MMD² with the RBF kernel exp(−‖a−b‖² / 2σ²). */
  mmd2: number;
  bandwidth: number;
  pValue: number;
  permutations: number;
  n: number;
  m: number;
}

/** Unbiased MMD² of two samples with an RBF kernel of bandwidth σ. */
export function mmd2Rbf(x: readonly (readonly number[])[], y: readonly (readonly number[])[], bandwidth: number): number {
  if (x.length < 2 || y.length < 2) throw new Error('MMD² needs at least two points on each side');
  const points = [...x, ...y];
  const n = points.length;
  const d2 = squaredDistances(points);
  const kernel = d2.map((v) => Math.exp(-v / (2 * bandwidth * bandwidth)));
  return mmd2FromKernel(kernel, n, Int32Array.from({ length: n }, (_, i) => i), x.length);
}

/**
 * Kernel two-sample test: MMD² of `x` against `y` (median-heuristic bandwidth over the pooled points), with the
 * p-value of a permutation test, (1 + #{permuted MMD² ≥ observed}) / (1 + permutations). Seeded: reproducible.
 */
export function mmdTest(x: readonly (readonly number[])[], y: readonly (readonly number[])[], options: { permutations?: number; seed?: number } = {}): MmdResult {
  if (x.length < 2 || y.length < 2) throw new Error('MMD² needs at least two points on each side');
  const dim = x[0]!.length;
  for (const p of [...x, ...y]) if (p.length !== dim) throw new Error(`points of ${p.length} and ${dim} dimensions`);
  const points = [...x, ...y];
  const n = points.length;
  const d2 = squaredDistances(points);
  const distances: number[] = [];
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) distances.push(Math.sqrt(d2[i * n + j]!));
  const bandwidth = median(distances) || 1;
  const kernel = d2.map((v) => Math.exp(-v / (2 * bandwidth * bandwidth)));
  const order = Int32Array.from({ length: n }, (_, i) => i);
  const observed = mmd2FromKernel(kernel, n, order, x.length);
  const permutations = options.permutations ?? 200;
  const random = seededRandom(options.seed ?? 0x5eed);
  let atLeast = 0;
  for (let p = 0; p < permutations; p++) {
    for (let i = n - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      const t = order[i]!;
      order[i] = order[j]!;
      order[j] = t;
    }
    if (mmd2FromKernel(kernel, n, order, x.length) >= observed) atLeast++;
  }
  return { mmd2: observed, bandwidth, pValue: (1 + atLeast) / (1 + permutations), permutations, n: x.length, m: y.length };
}
