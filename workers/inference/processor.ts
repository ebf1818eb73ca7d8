// The pure part of inference: checks a before/after pair against the model, cuts it into overlapping tiles strip by
// strip, runs the tiles through the model in batches, blends the tile outputs back into rows and hands finished rows
// to a sink, then traces the change polygons and computes the statistics. Memory is bounded by one strip of tiles
// (plus a 1-bit mask for the polygons), whatever the scene size. No I/O of its own: rasters, the model and the sink
// are given.
import { changedAreaSquareMeters, compareGeoReferences, type GeoReference } from '../../lib/imaging/georef.js';
import { ImageDecodeError } from '../../lib/imaging/probe.js';
import type { RasterInfo, RasterSource, SampleType } from '../../lib/imaging/raster-source.js';
import type { ModelContract } from '../../lib/model/contract.js';
import { sharedFloat32Array } from '../../lib/model/ort-session.js';
import type { ChangeStatsPayload, PairErrorCode } from './contracts.js';
import { BitMask, tracePolygons, type PixelPolygon, type TraceResult, type TraceSummary } from './polygons.js';

/** A problem with the pair itself: permanent, reported to the user with its code. */
export class PairInputError extends Error {
  constructor(
    readonly code: PairErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PairInputError';
  }
}

export type Side = 'before' | 'after';

/** Turns an image decoding error into the pair's error, naming the side. */
export function pairErrorFromDecode(side: Side, error: ImageDecodeError): PairInputError {
  const code = `${side.toUpperCase()}_${error.problem}` as PairErrorCode;
  return new PairInputError(code, `${side} image: ${error.message}`);
}

export interface ModelRunner {
  readonly contract: ModelContract;
  /**
   * `n` tiles of C×height×width each (planar, normalised), in shared memory that stays unchanged until the run
   * settles. Returns change logits (n×height×width), embeddings (n×D) and, when the runner knows it, the model's own
   * time for the run (without getting the tiles to it and the outputs back).
   */
  run(
    before: Float32Array,
    after: Float32Array,
    n: number,
    height: number,
    width: number,
  ): Promise<{ logits: Float32Array; embedding: Float32Array; seconds?: number }>;
}

/** Receives finished rows top to bottom: mask 0/255 and change probability 0..1, `rows × width` each. */
export interface RowSink {
  writeRows(y: number, rows: number, mask: Uint8Array, probability: Float32Array): Promise<void>;
  /** Receives each change polygon as soon as it is traced (streamed); without it, the outcome lists them. */
  writePolygon?(polygon: PixelPolygon): Promise<void>;
}

export interface ProcessOptions {
  /** Probability above which a pixel is changed. */
  threshold: number;
  /** Tile overlap in pixels (clamped to half a tile); default an eighth of the tile. */
  overlap?: number;
  batchSize: number;
  minRegionPixels: number;
  simplifyTolerance: number;
  maxPolygonVertices?: number;
  /** Epoch ms after which processing stops with DEADLINE_EXCEEDED. */
  deadline?: number;
  /** Aborts between batches (a cancelled job); the reason is thrown. */
  signal?: AbortSignal;
}

export interface BandStats {
  name: string;
  mean: number;
  std: number;
  min: number;
  max: number;
  /**
   * Counts of values in `bins` equal bins over [0, scale + 1) for an integer scale (255: bin i holds [4i, 4i + 4), as
   * in the trainer's reference_stats.json), else over [0, scale]; values outside fall in the edge bins.
   */
  histogram: number[];
}

/** One tile of a pair as drift monitoring samples it: its embedding and the model's output on it. */
export interface TileSample {
  embedding: number[];
  /** Fraction of the tile's pixels over the model's own threshold (as in the reference statistics). */
  changedFraction: number;
  meanProbability: number;
}

/** Tiles per pair kept for drift monitoring (MMD compares tile embeddings with the reference's). */
export const DRIFT_TILE_SAMPLES = 8;

/** Up to `k` of `total` tile indices, spread evenly and always the same for the same tiling. */
export function sampledTileIndices(total: number, k = DRIFT_TILE_SAMPLES): number[] {
  const n = Math.min(k, total);
  return Array.from({ length: n }, (_, i) => Math.floor(((i + 0.5) * total) / n));
}

export interface DriftSummary {
  /** Statistics of the raw values after bit-depth scaling to the model's units, per model band and date. */
  input: { scale: number; bins: number; before: BandStats[]; after: BandStats[] };
  prediction: { changedFraction: number; meanProbability: number };
  embedding: { dim: number; tiles: number; mean: number[]; variance: number[] };
  /** A deterministic sample of the pair's tiles (see sampledTileIndices), in tile order. */
  tiles: TileSample[];
}

export interface PairOutcome {
  width: number;
  height: number;
  georef: GeoReference | null;
  tiles: number;
  stats: ChangeStatsPayload;
  trace: TraceResult;
  drift: DriftSummary;
  /** Seconds per stage. */
  /** Seconds: `inference` is the model's own time, `modelCall` the same runs as this thread waited for them. */
  timings: { decode: number; inference: number; modelCall: number; stitch: number; output: number; polygons: number };
}

// ---------------------------------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------------------------------
export interface PairPlan {
  width: number;
  height: number;
  georef: GeoReference | null;
  /** For each model band, the index of the image band that feeds it. */
  bands: Record<Side, number[]>;
  /** Multiplier taking raw sample values to the model's units (bit-depth scaling). */
  unitScale: Record<Side, number>;
  floatInput: Record<Side, boolean>;
}

const FLOAT_TYPES: SampleType[] = ['float32', 'float64'];

/** The model's units are `scale` (255: 8-bit). 16-bit images fed to an 8-bit model are rescaled from their full range. */
function unitScaleFor(sampleType: SampleType, contract: ModelContract): number {
  return sampleType === 'uint16' && contract.normalization.scale <= 255 ? contract.normalization.scale / 65535 : 1;
}

function selectBands(info: RasterInfo, contract: ModelContract, side: Side): number[] {
  const usable = Array.from({ length: info.bands }, (_, i) => i).filter((i) => i !== info.alphaBand);
  const names = usable.map((i) => info.bandNames[i]?.toLowerCase() ?? null);
  // By name when the file names its bands (GeoTIFF band descriptions) and has every band the model takes.
  if (names.every((n) => n !== null)) {
    const picked = contract.bandNames.map((wanted) => usable[names.indexOf(wanted.toLowerCase())]);
    if (picked.every((i) => i !== undefined)) return picked as number[];
  }
  if (usable.length === contract.bands) return usable;
  const described = info.bandNames.some((n) => n !== null) ? ` (${info.bandNames.map((n, i) => n ?? `band ${i + 1}`).join(', ')})` : '';
  throw new PairInputError(
    'BAND_COUNT',
    `${side} image has ${usable.length} band(s)${info.alphaBand !== null ? ' besides alpha' : ''}${described}; the model takes ${contract.bands} (${contract.bandNames.join(', ')})`,
  );
}

/** Checks that the pair can go through the model together; throws PairInputError naming the problem. */
export function planPair(before: RasterInfo, after: RasterInfo, contract: ModelContract): PairPlan {
  if (before.width !== after.width || before.height !== after.height) {
    throw new PairInputError('SIZE_MISMATCH', `before is ${before.width}×${before.height} but after is ${after.width}×${after.height}; the images must match in size`);
  }
  if ((before.georef === null) !== (after.georef === null)) {
    const [yes, no] = before.georef ? ['before', 'after'] : ['after', 'before'];
    throw new PairInputError('GEOREFERENCE_MISMATCH', `${yes} is georeferenced but ${no} is not; give both as GeoTIFFs in the same grid, or neither`);
  }
  if (before.georef && after.georef) {
    const difference = compareGeoReferences(before.georef, after.georef);
    if (difference) {
      const what = difference.problem === 'CRS_MISMATCH' ? 'different coordinate reference systems' : 'different pixel grids';
      throw new PairInputError(difference.problem, `before and after are in ${what}: ${difference.detail}; reproject one onto the other's grid`);
    }
  }
  return {
    width: before.width,
    height: before.height,
    georef: before.georef,
    bands: { before: selectBands(before, contract, 'before'), after: selectBands(after, contract, 'after') },
    unitScale: { before: unitScaleFor(before.sampleType, contract), after: unitScaleFor(after.sampleType, contract) },
    floatInput: { before: FLOAT_TYPES.includes(before.sampleType), after: FLOAT_TYPES.includes(after.sampleType) },
  };
}

// ---------------------------------------------------------------------------------------------------------------------
// Tiling and blending
// ---------------------------------------------------------------------------------------------------------------------
/** Tile starts along an axis: every `stride`, the last one aligned to the far border. */
export function tilePositions(length: number, tile: number, stride: number): number[] {
  if (length <= tile) return [0];
  const positions: number[] = [];
  for (let p = 0; p + tile < length; p += stride) positions.push(p);
  positions.push(length - tile);
  return positions;
}

/**
 * Blending weights along one tile axis: a linear ramp over the overlap at both ends, 1 in between, so that
 * overlapping tiles fade into each other and tile borders (where the model sees less context) count less.
 */
export function blendWeights(length: number, overlap: number): Float32Array {
  const w = new Float32Array(length);
  for (let i = 0; i < length; i++) w[i] = overlap > 0 ? Math.min(1, (i + 0.5) / overlap, (length - i - 0.5) / overlap) : 1;
  return w;
}

/** Reflection padding index (`d c b | a b c d | c b a`), as the trainer pads; clamps for images smaller than the pad. */
export function reflectIndex(i: number, n: number): number {
  if (n === 1) return 0;
  let j = i;
  const period = 2 * (n - 1);
  j = ((j % period) + period) % period;
  return j < n ? j : period - j;
}

const roundUp = (v: number, m: number) => Math.ceil(v / m) * m;

export interface TilingPlan {
  tileWidth: number;
  tileHeight: number;
  xs: number[];
  ys: number[];
  weightX: Float32Array;
  weightY: Float32Array;
}

export function planTiling(width: number, height: number, contract: ModelContract, requestedOverlap?: number): TilingPlan {
  const tile = contract.tileSize;
  const m = contract.sizeMultiple;
  const overlap = Math.min(Math.floor(tile / 2), requestedOverlap ?? Math.round(tile / 8));
  const axis = (length: number) => {
    // A side shorter than a tile is one (padded) tile; otherwise full tiles every (tile − overlap).
    if (length <= tile) return { size: roundUp(length, m), positions: [0], weights: blendWeights(length, 0) };
    return { size: tile, positions: tilePositions(length, tile, tile - overlap), weights: blendWeights(tile, overlap) };
  };
  const x = axis(width);
  const y = axis(height);
  return { tileWidth: x.size, tileHeight: y.size, xs: x.positions, ys: y.positions, weightX: x.weights, weightY: y.weights };
}

// ---------------------------------------------------------------------------------------------------------------------
// Reading rows into a normalised window, with input statistics on the way
// ---------------------------------------------------------------------------------------------------------------------
const HISTOGRAM_BINS = 64;

/** Histogram bins per unit: integer units (8-bit: 0..255) are binned like the trainer's reference statistics, over [0, scale + 1). */
function histogramBinScale(scale: number): number {
  return HISTOGRAM_BINS / (Number.isInteger(scale) ? scale + 1 : scale);
}
const READ_CHUNK_ROWS = 64;

class BandAccumulator {
  count = 0;
  sum = 0;
  sumSq = 0;
  min = Infinity;
  max = -Infinity;
  readonly histogram = new Float64Array(HISTOGRAM_BINS);

  summary(name: string): BandStats {
    const mean = this.count > 0 ? this.sum / this.count : 0;
    const variance = this.count > 0 ? Math.max(0, this.sumSq / this.count - mean * mean) : 0;
    return {
      name,
      mean,
      std: Math.sqrt(variance),
      min: this.count > 0 ? this.min : 0,
      max: this.count > 0 ? this.max : 0,
      histogram: Array.from(this.histogram),
    };
  }

  /** Adds `counts[v]` samples of each level v (0–255) of an 8-bit band, whose values are v × unit. */
  addLevels(counts: Uint32Array, unit: number, binScale: number): void {
    for (let v = 0; v < 256; v++) {
      const n = counts[v]!;
      if (n === 0) continue;
      const x = v * unit;
      this.count += n;
      this.sum += n * x;
      this.sumSq += n * x * x;
      if (x < this.min) this.min = x;
      if (x > this.max) this.max = x;
      this.histogram[Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor(x * binScale)))]! += n;
    }
  }
}

/**
 * Rows [start, start + count) of one image, normalised and reduced to the model's bands, planar as the model takes
 * them: band c's row r (counted from `start`) at c × plane + r × width, so that tiles are copied out a row at a time.
 */
class RowWindow {
  readonly data: Float32Array;
  /** Values per band: capacity × width. */
  readonly plane: number;
  start = 0;
  count = 0;
  readonly stats: BandAccumulator[];
  decodeSeconds = 0;

  constructor(
    private readonly source: RasterSource,
    private readonly side: Side,
    private readonly width: number,
    private readonly capacity: number,
    private readonly contract: ModelContract,
    private readonly bands: number[],
    private readonly unitScale: number,
    private readonly checkFinite: boolean,
  ) {
    // Every row is written before it is read: no need to zero it.
    this.plane = capacity * width;
    this.data = scratch.take(this.plane * contract.bands, false);
    this.stats = contract.bandNames.map(() => new BandAccumulator());
    if (source.info.sampleType === 'uint8' && source.readRowBytes) {
      // 8-bit samples: each band normalised through a table of its 256 levels, its statistics from their counts.
      const { mean, std, scale } = contract.normalization;
      const C = contract.bands;
      this.levels = { tables: new Float32Array(C * 256), counts: new Uint32Array(C * 256), bands: Int32Array.from(bands) };
      for (let c = 0; c < C; c++) for (let v = 0; v < 256; v++) this.levels.tables[c * 256 + v] = (v * unitScale) / (scale * std[c]!) - mean[c]! / std[c]!;
    }
  }

  /** Per band (c × 256 + level): normalised value and count of each 8-bit level; null unless rows come as bytes. */
  private readonly levels: { tables: Float32Array; counts: Uint32Array; bands: Int32Array } | null = null;

  /** Holds rows [from, to) afterwards; rows before `from` are dropped, rows are read once, in order. */
  async ensure(from: number, to: number): Promise<void> {
    const C = this.contract.bands;
    const W = this.width;
    if (from > this.start) {
      const drop = Math.min(from - this.start, this.count);
      for (let c = 0; c < C; c++) this.data.copyWithin(c * this.plane, c * this.plane + drop * W, c * this.plane + this.count * W);
      this.start += drop;
      this.count -= drop;
    }
    // Rows between the window and `from` are read and dropped (strips overlap, so this does not happen in a pass).
    while (this.start + this.count < from) {
      const skip = Math.min(READ_CHUNK_ROWS, from - (this.start + this.count));
      try {
        await this.source.readRows(skip);
      } catch (error) {
        if (error instanceof ImageDecodeError) throw pairErrorFromDecode(this.side, error);
        throw error;
      }
      this.start += skip;
    }
    while (this.start + this.count < to) {
      const rows = Math.min(READ_CHUNK_ROWS, to - (this.start + this.count));
      const y = this.start + this.count;
      const t0 = performance.now();
      try {
        if (this.levels) this.prepareLevels(await this.source.readRowBytes!(rows), rows, this.count * W);
        else this.prepare(await this.source.readRows(rows), rows, y, this.count * W);
      } catch (error) {
        if (error instanceof ImageDecodeError) throw pairErrorFromDecode(this.side, error);
        throw error;
      }
      this.count += rows;
      this.decodeSeconds += (performance.now() - t0) / 1000;
    }
  }

  /** prepare() for 8-bit rows: each sample normalised through its band's table, and counted by level. */
  private prepareLevels(raw: Uint8Array, rows: number, offset: number): void {
    const C = this.contract.bands;
    const B = this.source.info.bands;
    const pixels = rows * this.width;
    const { tables, counts, bands } = this.levels!;
    const data = this.data;
    counts.fill(0);
    for (let c = 0; c < C; c++) {
      const band = bands[c]!;
      const level = c * 256;
      const to = c * this.plane + offset;
      for (let p = 0; p < pixels; p++) {
        const v = level + raw[p * B + band]!;
        counts[v]! += 1;
        data[to + p] = tables[v]!;
      }
    }
    const binScale = histogramBinScale(this.contract.normalization.scale);
    for (let c = 0; c < C; c++) this.stats[c]!.addLevels(counts.subarray(c * 256, (c + 1) * 256), this.unitScale, binScale);
  }

  private prepare(raw: Float32Array, rows: number, y: number, offset: number): void {
    const { mean, std, scale } = this.contract.normalization;
    const C = this.contract.bands;
    const B = this.source.info.bands;
    const pixels = rows * this.width;
    const binScale = histogramBinScale(scale);
    for (let c = 0; c < C; c++) {
      const band = this.bands[c]!;
      const acc = this.stats[c]!;
      const m = mean[c]!;
      const inv = 1 / (scale * std[c]!);
      const shift = m / std[c]!;
      const unit = this.unitScale;
      let sum = 0;
      let sumSq = 0;
      let min = acc.min;
      let max = acc.max;
      const hist = acc.histogram;
      for (let p = 0; p < pixels; p++) {
        const v = raw[p * B + band]! * unit;
        if (this.checkFinite && !Number.isFinite(v)) {
          const row = y + Math.floor(p / this.width);
          throw new PairInputError(
            'NAN_IN_INPUT',
            `${this.side} image has ${Number.isNaN(v) ? 'NaN' : 'an infinite value'} in band ${band + 1} (${this.contract.bandNames[c]}) at row ${row}, column ${p % this.width}`,
          );
        }
        sum += v;
        sumSq += v * v;
        if (v < min) min = v;
        if (v > max) max = v;
        let bin = Math.floor(v * binScale);
        if (bin < 0) bin = 0;
        else if (bin >= HISTOGRAM_BINS) bin = HISTOGRAM_BINS - 1;
        hist[bin]! += 1;
        this.data[c * this.plane + offset + p] = v * inv - shift;
      }
      acc.count += pixels;
      acc.sum += sum;
      acc.sumSq += sumSq;
      acc.min = min;
      acc.max = max;
    }
  }

  /** Offset in band 0's plane of row y (which must be held); band c's is c × plane more. */
  rowOffset(y: number): number {
    return (y - this.start) * this.width;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// The pass over the scene
// ---------------------------------------------------------------------------------------------------------------------
function checkStop(options: ProcessOptions): void {
  if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new Error(String(options.signal.reason));
  if (options.deadline !== undefined && Date.now() > options.deadline) {
    throw new PairInputError('DEADLINE_EXCEEDED', 'The pair took longer than the synchronous time limit; submit it with submitChangeDetectionJob');
  }
}

/** Copies one tile (reflect-padded to tileW × tileH where the image is smaller) into a planar C×H×W slot. */
function extractTile(window: RowWindow, x0: number, y0: number, w: number, h: number, tileW: number, tileH: number, C: number, out: Float32Array, offset: number): void {
  const src = window.data;
  const plane = tileW * tileH;
  for (let ty = 0; ty < tileH; ty++) {
    const rowBase = window.rowOffset(y0 + reflectIndex(ty, h));
    for (let c = 0; c < C; c++) {
      const dst = offset + c * plane + ty * tileW;
      const s = c * window.plane + rowBase + x0;
      if (tileW === w) out.set(src.subarray(s, s + tileW), dst);
      else for (let tx = 0; tx < tileW; tx++) out[dst + tx] = src[s + reflectIndex(tx, w)]!;
    }
  }
}

/**
 * Scratch arrays kept from one pair to the next: fresh ones (megabytes of zeroed memory a pair, touched page by page
 * and then left to the collector) cost more than the bookkeeping of a small pair. A few of each size are kept; the
 * tile inputs are shared memory (the model's thread reads them, lib/model/ort-session.ts).
 */
const scratch = {
  free: [] as Float32Array[],
  take(length: number, shared: boolean): Float32Array {
    const i = this.free.findIndex((b) => b.length === length && b.buffer instanceof SharedArrayBuffer === shared);
    if (i >= 0) return this.free.splice(i, 1)[0]!;
    return shared ? sharedFloat32Array(length) : new Float32Array(length);
  },
  /** A zeroed array. */
  takeZeroed(length: number): Float32Array {
    return this.take(length, false).fill(0);
  },
  give(...buffers: Float32Array[]): void {
    for (const b of buffers) if (this.free.length < 16) this.free.push(b);
  },
};

/** Change probabilities of `count` model outputs from `offset`: a sigmoid of logits, or probabilities clamped to 0–1. */
function activate(outputs: Float32Array, offset: number, out: Float32Array, count: number, sigmoid: boolean): void {
  if (sigmoid) for (let i = 0; i < count; i++) out[i] = 1 / (1 + Math.exp(-outputs[offset + i]!));
  else for (let i = 0; i < count; i++) out[i] = Math.min(1, Math.max(0, outputs[offset + i]!));
}

/**
 * Runs the model over the pair and streams the result rows to `sink`. Throws PairInputError for problems with the
 * input (found as the rows are read: NaN, truncation), and whatever the model or the sink throw.
 */
export async function processPair(
  before: RasterSource,
  after: RasterSource,
  model: ModelRunner,
  sink: RowSink,
  options: ProcessOptions,
): Promise<PairOutcome> {
  const contract = model.contract;
  const plan = planPair(before.info, after.info, contract);
  const { width: W, height: H } = plan;
  const C = contract.bands;
  const tiling = planTiling(W, H, contract, options.overlap);
  const { tileWidth: TW, tileHeight: TH, xs, ys, weightX, weightY } = tiling;
  const tileW = Math.min(TW, W);
  const tileH = Math.min(TH, H);
  const capacity = tileH;
  const windows = {
    before: new RowWindow(before, 'before', W, capacity, contract, plan.bands.before, plan.unitScale.before, plan.floatInput.before),
    after: new RowWindow(after, 'after', W, capacity, contract, plan.bands.after, plan.unitScale.after, plan.floatInput.after),
  };
  const batch = Math.max(1, options.batchSize);
  const slot = C * TW * TH;
  // Shared memory: a session's thread reads the tiles where they are (lib/model/ort-session.ts).
  const inputs = { before: scratch.take(batch * slot, true), after: scratch.take(batch * slot, true) };
  // Blending accumulators for the rows not finished yet (at most one strip of them).
  const acc = scratch.takeZeroed(capacity * W);
  const weight = scratch.takeZeroed(capacity * W);
  let accStart = 0;
  const mask = new BitMask(W, H);
  const changedPerRow = new Uint32Array(H);
  let probabilitySum = 0;
  const D = contract.embeddingDim;
  const embeddingMean = new Float64Array(D);
  const embeddingM2 = new Float64Array(D);
  let embeddingCount = 0;
  const sampled = new Set(sampledTileIndices(xs.length * ys.length));
  const tileSamples: TileSample[] = [];
  const contractThreshold = contract.threshold;
  const timings = { decode: 0, inference: 0, modelCall: 0, stitch: 0, output: 0, polygons: 0 };
  const sigmoidOutput = contract.outputActivation === 'sigmoid';
  // One tile's change probabilities, computed once from its logits for blending and for the drift sample.
  const tileProbability = scratch.take(TW * TH, false);
  let tiles = 0;

  const finishRows = async (upTo: number) => {
    const rows = upTo - accStart;
    if (rows <= 0) return;
    const t0 = performance.now();
    const maskRows = new Uint8Array(rows * W);
    const probRows = new Float32Array(rows * W);
    for (let r = 0; r < rows; r++) {
      const y = accStart + r;
      let changed = 0;
      for (let x = 0; x < W; x++) {
        const i = r * W + x;
        const p = weight[i]! > 0 ? acc[i]! / weight[i]! : 0;
        probRows[i] = p;
        probabilitySum += p;
        if (p > options.threshold) {
          maskRows[i] = 255;
          mask.set(x, y);
          changed += 1;
        }
      }
      changedPerRow[y] = changed;
    }
    // Shift the rows still open to the front.
    acc.copyWithin(0, rows * W);
    weight.copyWithin(0, rows * W);
    acc.fill(0, (capacity - rows) * W);
    weight.fill(0, (capacity - rows) * W);
    accStart = upTo;
    timings.stitch += (performance.now() - t0) / 1000;
    const t1 = performance.now();
    await sink.writeRows(upTo - rows, rows, maskRows, probRows);
    timings.output += (performance.now() - t1) / 1000;
  };

  try {
    for (let s = 0; s < ys.length; s++) {
      const y0 = ys[s]!;
      await windows.before.ensure(y0, y0 + tileH);
      await windows.after.ensure(y0, y0 + tileH);
      for (let first = 0; first < xs.length; first += batch) {
        checkStop(options);
        const n = Math.min(batch, xs.length - first);
        for (let k = 0; k < n; k++) {
          const x0 = xs[first + k]!;
          extractTile(windows.before, x0, y0, tileW, tileH, TW, TH, C, inputs.before, k * slot);
          extractTile(windows.after, x0, y0, tileW, tileH, TW, TH, C, inputs.after, k * slot);
        }
        const t0 = performance.now();
        const { logits, embedding, seconds } = await model.run(inputs.before.subarray(0, n * slot), inputs.after.subarray(0, n * slot), n, TH, TW);
        const called = (performance.now() - t0) / 1000;
        timings.inference += seconds ?? called;
        timings.modelCall += called;
        const t1 = performance.now();
        for (let k = 0; k < n; k++) {
          const x0 = xs[first + k]!;
          activate(logits, k * TW * TH, tileProbability, TW * TH, sigmoidOutput);
          for (let ty = 0; ty < tileH; ty++) {
            const wy = weightY[ty]!;
            const row = (y0 + ty - accStart) * W + x0;
            const src = ty * TW;
            for (let tx = 0; tx < tileW; tx++) {
              const w = wy * weightX[tx]!;
              acc[row + tx]! += tileProbability[src + tx]! * w;
              weight[row + tx]! += w;
            }
          }
          if (sampled.has(s * xs.length + first + k)) {
            let over = 0;
            let sum = 0;
            for (let ty = 0; ty < tileH; ty++) {
              for (let tx = 0; tx < tileW; tx++) {
                const p = tileProbability[ty * TW + tx]!;
                sum += p;
                if (p > contractThreshold) over += 1;
              }
            }
            tileSamples.push({
              embedding: Array.from(embedding.subarray(k * D, (k + 1) * D)),
              changedFraction: over / (tileW * tileH),
              meanProbability: Math.min(1, Math.max(0, sum / (tileW * tileH))),
            });
          }
          // Running mean and variance of the tile embeddings (Welford).
          embeddingCount += 1;
          for (let d = 0; d < D; d++) {
            const v = embedding[k * D + d]!;
            const delta = v - embeddingMean[d]!;
            embeddingMean[d]! += delta / embeddingCount;
            embeddingM2[d]! += delta * (v - embeddingMean[d]!);
          }
        }
        tiles += n;
        timings.stitch += (performance.now() - t1) / 1000;
      }
      // Rows above the next strip get no more contributions.
      await finishRows(s + 1 < ys.length ? ys[s + 1]! : H);
    }
  } finally {
    // No run is in flight here: each was awaited.
    scratch.give(inputs.before, inputs.after, acc, weight, tileProbability, windows.before.data, windows.after.data);
  }
  timings.decode = windows.before.decodeSeconds + windows.after.decodeSeconds;

  const t0 = performance.now();
  const tracing = tracePolygons(mask, {
    minRegionPixels: options.minRegionPixels,
    simplifyTolerance: options.simplifyTolerance,
    maxVertices: options.maxPolygonVertices,
  });
  const polygons: PixelPolygon[] = [];
  let summary: TraceSummary;
  for (;;) {
    const next = tracing.next();
    if (next.done) {
      summary = next.value;
      break;
    }
    if (sink.writePolygon) await sink.writePolygon(next.value);
    else polygons.push(next.value);
  }
  const trace: TraceResult = { ...summary, polygons };
  timings.polygons = (performance.now() - t0) / 1000;

  let changedPixels = 0;
  for (let y = 0; y < H; y++) changedPixels += changedPerRow[y]!;
  const area = plan.georef ? changedAreaSquareMeters(plan.georef, changedPerRow) : null;
  const stats: ChangeStatsPayload = {
    changedPixels,
    changedFraction: changedPixels / (W * H),
    regions: trace.regions,
    areaSquareMeters: area,
    areaHectares: area === null ? null : area / 10_000,
  };
  const summarise = (side: Side) => windows[side].stats.map((s, c) => s.summary(contract.bandNames[c]!));
  return {
    width: W,
    height: H,
    georef: plan.georef,
    tiles,
    stats,
    trace,
    drift: {
      input: { scale: contract.normalization.scale, bins: HISTOGRAM_BINS, before: summarise('before'), after: summarise('after') },
      prediction: { changedFraction: stats.changedFraction, meanProbability: probabilitySum / (W * H) },
      embedding: {
        dim: D,
        tiles: embeddingCount,
        mean: Array.from(embeddingMean),
        variance: Array.from(embeddingM2, (m2) => (embeddingCount > 1 ? m2 / (embeddingCount - 1) : 0)),
      },
      tiles: tileSamples,
    },
    timings,
  };
}

