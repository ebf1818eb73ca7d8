// The `monitoring.drift-samples` message: what an inference worker saw of one successful pair (input histograms per
// band, prediction, tile embeddings), sent durably to the monitoring subgraph, which compares windows of them with
// the model version's reference statistics. Shared by the sender (workers/inference) and the consumer.
import { z } from 'zod';
import type { QueueOptions } from '../../lib/broker/broker.js';

export const DRIFT_SAMPLES_QUEUE = 'monitoring.drift-samples';
export const DRIFT_SAMPLE_TYPE = 'monitoring.drift-sample';
export const DRIFT_SAMPLES_QUEUE_OPTIONS: QueueOptions = { deliveryLimit: 5 };
/** Tiles per pair whose embedding (and change fraction) travel with the sample. */
export const DRIFT_SAMPLE_TILES = 8;

const finite = z.number().finite();
const count = z.number().finite().min(0);

const bandStatsSchema = z.object({
  name: z.string().min(1).max(100),
  mean: finite,
  std: finite,
  min: finite,
  max: finite,
  histogram: z.array(count).min(2).max(1024),
});

/** One sampled tile: its embedding and what the model predicted on it. */
const tileSampleSchema = z.object({
  embedding: z.array(finite).min(1).max(4096),
  /** Fraction of the tile's pixels over the threshold. */
  changedFraction: z.number().min(0).max(1),
  meanProbability: z.number().min(0).max(1),
});

export const driftSummarySchema = z.object({
  input: z.object({
    scale: z.number().positive(),
    bins: z.number().int().min(2).max(1024),
    before: z.array(bandStatsSchema).min(1).max(64),
    after: z.array(bandStatsSchema).min(1).max(64),
  }),
  prediction: z.object({ changedFraction: z.number().min(0).max(1), meanProbability: z.number().min(0).max(1) }),
  embedding: z.object({ dim: z.number().int().min(1).max(4096), tiles: z.number().int().min(0), mean: z.array(finite), variance: z.array(finite) }),
  tiles: z.array(tileSampleSchema).max(64).default([]),
});
export type DriftSampleSummary = z.infer<typeof driftSummarySchema>;

export const driftSamplePayloadSchema = z.object({
  tenant: z.string().min(1).max(200),
  modelName: z.string().min(1).max(100),
  modelVersionId: z.string().min(1).max(100),
  /** Object-store key of the version's reference_stats.json; null when the version has none (nothing to compare). */
  referenceStatsKey: z.string().min(1).max(1024).nullable(),
  jobId: z.string().min(1).max(100),
  pairIndex: z.number().int().min(0),
  /** ISO time the pair finished. */
  at: z.string().datetime({ offset: true }),
  summary: driftSummarySchema,
});
export type DriftSamplePayload = z.infer<typeof driftSamplePayloadSchema>;
export type DriftSamplePayloadInput = z.input<typeof driftSamplePayloadSchema>;
