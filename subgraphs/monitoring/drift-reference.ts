// A model version's reference statistics (reference_stats.json, written by the trainer over its training split):
// read from the object store, checked, cached by key; and the check that a worker's sample has the same band layout.
import { z } from 'zod';
import { ObjectNotFoundError, type ObjectStore } from '../../lib/storage/index.js';
import type { DriftSampleSummary } from './drift-samples.contract.js';

const count = z.number().finite().min(0);

const binnedSchema = z.object({
  histogram: z.array(count).min(1),
  binEdges: z.array(z.number().finite()).min(2),
  count: z.number().int().min(0),
});

export const referenceStatsSchema = z
  .object({
    version: z.number().int(),
    bands: z.object({
      names: z.array(z.string()).min(1),
      scale: z.number().positive(),
      histogramBins: z.number().int().min(2),
      histogramRange: z.tuple([z.number(), z.number()]),
      perBand: z.array(z.object({ name: z.string(), histogram: z.array(count) })).min(1),
    }),
    prediction: z.object({ changedFraction: binnedSchema }),
    embedding: z.object({ dim: z.number().int().min(1), sample: z.array(z.array(z.number().finite())).min(2) }),
  })
  .superRefine((r, ctx) => {
    if (r.bands.perBand.length !== r.bands.names.length) ctx.addIssue({ code: 'custom', message: 'bands.perBand and bands.names differ in length' });
    for (const b of r.bands.perBand) {
      if (b.histogram.length !== r.bands.histogramBins) ctx.addIssue({ code: 'custom', message: `band ${b.name} has ${b.histogram.length} bins, not ${r.bands.histogramBins}` });
    }
    const cf = r.prediction.changedFraction;
    if (cf.binEdges.length !== cf.histogram.length + 1) ctx.addIssue({ code: 'custom', message: 'prediction.changedFraction needs one more edge than bins' });
    for (const e of r.embedding.sample) if (e.length !== r.embedding.dim) ctx.addIssue({ code: 'custom', message: `an embedding sample has ${e.length} values, not ${r.embedding.dim}` });
  });
export type ReferenceStats = z.infer<typeof referenceStatsSchema>;

/** The reference cannot be used (missing object, invalid JSON or content): samples against it are rejected. */
export class ReferenceStatsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ReferenceStatsError';
  }
}

/** Reads references by object-store key; keeps the last few (they never change under one key). */
export class ReferenceStatsCache {
  private readonly cache = new Map<string, Promise<ReferenceStats>>();

  constructor(
    private readonly store: ObjectStore,
    private readonly capacity = 32,
  ) {}

  get(key: string): Promise<ReferenceStats> {
    let pending = this.cache.get(key);
    if (!pending) {
      pending = this.load(key);
      this.cache.set(key, pending);
      // A failure is not remembered: the next sample tries again (the object may have been written since).
      pending.catch(() => this.cache.delete(key));
      if (this.cache.size > this.capacity) this.cache.delete(this.cache.keys().next().value!);
    }
    return pending;
  }

  private async load(key: string): Promise<ReferenceStats> {
    let bytes: Buffer;
    try {
      bytes = await this.store.get(key);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) throw new ReferenceStatsError(`reference statistics ${key} do not exist`);
      throw error;
    }
    let json: unknown;
    try {
      json = JSON.parse(bytes.toString('utf8'));
    } catch {
      throw new ReferenceStatsError(`reference statistics ${key} are not valid JSON`);
    }
    const parsed = referenceStatsSchema.safeParse(json);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new ReferenceStatsError(`reference statistics ${key} are invalid: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
    }
    return parsed.data;
  }
}

/**
 * Why a sample cannot be compared with the reference (its band names, band count, histogram bins or embedding size
 * differ), or null when it can. Band names are compared case-insensitively, in order.
 */
export function layoutMismatch(sample: DriftSampleSummary, reference: ReferenceStats): string | null {
  const expected = reference.bands.names.map((n) => n.toLowerCase());
  for (const side of ['before', 'after'] as const) {
    const bands = sample.input[side];
    if (bands.length !== expected.length) {
      return `the sample has ${bands.length} ${side} bands, the reference ${expected.length} (${reference.bands.names.join(', ')})`;
    }
    const names = bands.map((b) => b.name.toLowerCase());
    if (names.some((n, i) => n !== expected[i])) {
      return `the sample's ${side} bands are ${bands.map((b) => b.name).join(', ')}, the reference's ${reference.bands.names.join(', ')}`;
    }
    const wrong = bands.find((b) => b.histogram.length !== reference.bands.histogramBins);
    if (wrong) return `the sample's ${side} band ${wrong.name} has ${wrong.histogram.length} histogram bins, the reference ${reference.bands.histogramBins}`;
  }
  if (sample.input.bins !== reference.bands.histogramBins) return `the sample has ${sample.input.bins} histogram bins, the reference ${reference.bands.histogramBins}`;
  const tile = sample.tiles.find((t) => t.embedding.length !== reference.embedding.dim);
  if (tile) return `the sample's tile embeddings have ${tile.embedding.length} values, the reference's ${reference.embedding.dim}`;
  return null;
}
