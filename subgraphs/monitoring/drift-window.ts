// One drift window of a model version against its reference: the scores of every metric, which of them are past
// their alert threshold, and the report's metrics JSON. Pure: the monitor stores the report and raises the alerts.
import { ksAgainstHistogram, mmdTest, psi, rebin, wasserstein1, type KsResult, type MmdResult } from './drift-metrics.js';
import type { ReferenceStats } from './drift-reference.js';
import type { DriftSampleSummary } from './drift-samples.contract.js';

export interface DriftThresholds {
  /** Bins the 64-bin intensity histograms are merged into for PSI. */
  psiBins: number;
  psiWarn: number;
  psiAlert: number;
  wassersteinAlert: number;
  ksPValue: number;
  mmdPValue: number;
  mmdPermutations: number;
}

export interface BandScore {
  band: number;
  name: string;
  psi: number;
  wasserstein: number;
  level: 'ok' | 'warn' | 'alert';
}

/** A metric past its alert threshold: `value` crossed `threshold` (upwards for scores, downwards for p-values). */
export interface Breach {
  metric: string;
  value: number;
  threshold: number;
}

export interface WindowScores {
  sampleCount: number;
  bands: BandScore[];
  changeFraction: { mean: number; n: number; psi: number; ks: KsResult } | null;
  mmd: MmdResult | null;
  breaches: Breach[];
  /** The report's metrics JSON. */
  metrics: Record<string, unknown>;
}

const round = (v: number) => Number(v.toPrecision(6));

/** A pair's tiles are not independent: the tests take one tile per pair (the first sampled), all tiles for MMD. */
function changeFractionOf(sample: DriftSampleSummary): number {
  return sample.tiles[0]?.changedFraction ?? sample.prediction.changedFraction;
}

export function evaluateWindow(samples: readonly DriftSampleSummary[], reference: ReferenceStats, t: DriftThresholds, seed = 0x5eed): WindowScores {
  if (samples.length === 0) throw new Error('a drift window needs samples');
  const breaches: Breach[] = [];

  // Intensity histograms per band, before and after pooled like the reference's.
  const bands: BandScore[] = reference.bands.perBand.map((ref, b) => {
    const window = new Array<number>(ref.histogram.length).fill(0);
    for (const s of samples) {
      for (const side of [s.input.before, s.input.after]) {
        const h = side[b]!.histogram;
        for (let i = 0; i < window.length; i++) window[i]! += h[i]!;
      }
    }
    const merge = ref.histogram.length % t.psiBins === 0 ? t.psiBins : ref.histogram.length;
    const p = psi(rebin(ref.histogram, merge), rebin(window, merge));
    const w = wasserstein1(ref.histogram, window);
    const level = p >= t.psiAlert || w >= t.wassersteinAlert ? 'alert' : p >= t.psiWarn ? 'warn' : 'ok';
    if (p >= t.psiAlert) breaches.push({ metric: `psi.band${b}`, value: p, threshold: t.psiAlert });
    if (w >= t.wassersteinAlert) breaches.push({ metric: `wasserstein.band${b}`, value: w, threshold: t.wassersteinAlert });
    return { band: b, name: ref.name, psi: p, wasserstein: w, level };
  });

  // Change fractions of the window's pairs against the reference's per-tile distribution.
  const ref = reference.prediction.changedFraction;
  const fractions = samples.map(changeFractionOf);
  const ks = ksAgainstHistogram(fractions, ref.histogram, ref.binEdges, ref.count);
  const windowHist = new Array<number>(ref.histogram.length).fill(0);
  for (const f of fractions) {
    let bin = 0;
    while (bin < windowHist.length - 1 && f >= ref.binEdges[bin + 1]!) bin++;
    windowHist[bin]! += 1;
  }
  const cfPsi = psi(ref.histogram, windowHist);
  const changeFraction = { mean: fractions.reduce((a, b) => a + b, 0) / fractions.length, n: fractions.length, psi: cfPsi, ks };
  if (ks.pValue < t.ksPValue) breaches.push({ metric: 'ks.changeFraction.pValue', value: ks.pValue, threshold: t.ksPValue });
  // With a window of a few dozen pairs the PSI of a 20-bin distribution is mostly sampling noise: it alerts only when
  // the KS test also finds the difference significant.
  if (cfPsi >= t.psiAlert && ks.pValue < t.ksPValue) breaches.push({ metric: 'psi.changeFraction', value: cfPsi, threshold: t.psiAlert });

  // Tile embeddings against the reference's sample of training tiles.
  const points = samples.flatMap((s) => s.tiles.map((tile) => tile.embedding));
  let mmd: MmdResult | null = null;
  if (points.length >= 2) {
    mmd = mmdTest(points, reference.embedding.sample, { permutations: t.mmdPermutations, seed });
    if (mmd.pValue < t.mmdPValue) breaches.push({ metric: 'mmd.pValue', value: mmd.pValue, threshold: t.mmdPValue });
  }

  const metrics: Record<string, unknown> = {
    bands: bands.map((b) => ({ band: b.band, name: b.name, psi: round(b.psi), wasserstein: round(b.wasserstein), level: b.level })),
    changeFraction: round(changeFraction.mean),
    changeFractionKs: { statistic: round(ks.statistic), pValue: round(ks.pValue), n: ks.n, m: ks.m },
    changeFractionPsi: round(cfPsi),
    ...(mmd ? { mmd: round(mmd.mmd2), mmdPValue: round(mmd.pValue), mmdBandwidth: round(mmd.bandwidth), embeddingTiles: mmd.n, referenceTiles: mmd.m } : {}),
    thresholds: {
      psiBins: t.psiBins,
      psiWarn: t.psiWarn,
      psiAlert: t.psiAlert,
      wasserstein: t.wassersteinAlert,
      ksPValue: t.ksPValue,
      mmdPValue: t.mmdPValue,
    },
    alerts: breaches.map((b) => b.metric),
  };
  return { sampleCount: samples.length, bands, changeFraction, mmd, breaches, metrics };
}
