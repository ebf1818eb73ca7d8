// Scores a person's change label against a result's change mask, pixel by pixel, streaming rows so that memory stays
// bounded whatever the scene size. Labels are PNG or TIFF (anything lib/imaging reads) holding 0 for "no change" and
// 1 or 255 for "change"; a label of another size or with other values is refused with an error that names them.
import { badInput } from '../../lib/errors.js';
import { ImageDecodeError } from '../../lib/imaging/probe.js';
import { openRaster, type RasterSource } from '../../lib/imaging/raster-source.js';

export interface ConfusionCounts {
  tp: number;
  fp: number;
  fn: number;
  tn: number;
}

/** Samples read per chunk of rows (bounded memory). */
const CHUNK_SAMPLES = 1 << 20;
/** How many distinct offending values a "not binary" error lists. */
const MAX_LISTED_VALUES = 5;

/**
 * IoU (Jaccard) of the changed class. When neither the label nor the result marks any change the two agree
 * perfectly and the score is 1: "no change, none predicted" is a correct answer, not a missing one.
 */
export const iouOf = (c: ConfusionCounts): number => (c.tp + c.fp + c.fn === 0 ? 1 : c.tp / (c.tp + c.fp + c.fn));

/** F1 (Dice) of the changed class; 1 when neither side marks any change (see iouOf). */
export const f1Of = (c: ConfusionCounts): number => (c.tp + c.fp + c.fn === 0 ? 1 : (2 * c.tp) / (2 * c.tp + c.fp + c.fn));

export const sumCounts = (counts: readonly ConfusionCounts[]): ConfusionCounts =>
  counts.reduce((s, c) => ({ tp: s.tp + c.tp, fp: s.fp + c.fp, fn: s.fn + c.fn, tn: s.tn + c.tn }), { tp: 0, fp: 0, fn: 0, tn: 0 });

export interface ScoreContext {
  /** How the result is named in messages, e.g. `pair 0 of job 1f…`. */
  resultName: string;
  width: number;
  height: number;
}

/** The label's decoding problems are the caller's: BAD_USER_INPUT naming what is wrong with the file. */
async function asLabelProblem<T>(read: () => Promise<T>): Promise<T> {
  try {
    return await read();
  } catch (error) {
    if (error instanceof ImageDecodeError) {
      throw badInput(`labelUploadId: the label could not be read as an image: ${error.message}`, 'labelUploadId', { problem: `LABEL_${error.problem}` });
    }
    throw error;
  }
}

/** Bands that carry the label (every band but alpha). */
function labelBands(source: RasterSource): number[] {
  const out: number[] = [];
  for (let b = 0; b < source.info.bands; b++) if (b !== source.info.alphaBand) out.push(b);
  return out.length > 0 ? out : [0];
}

/**
 * Confusion counts of `label` (the truth) against `mask` (the result: any non-zero sample is change). Throws
 * BAD_USER_INPUT naming the problem for a label that is not an image, of another size than the result, or not binary.
 */
export async function scoreLabel(maskBytes: Uint8Array, labelBytes: Uint8Array, ctx: ScoreContext): Promise<ConfusionCounts> {
  const label = await asLabelProblem(() => openRaster({ kind: 'bytes', bytes: labelBytes }));
  let mask: RasterSource | null = null;
  try {
    const { width, height } = label.info;
    if (width !== ctx.width || height !== ctx.height) {
      throw badInput(
        `labelUploadId: the label is ${width}×${height} pixels but the result of ${ctx.resultName} is ${ctx.width}×${ctx.height}; give a label of the result's size`,
        'labelUploadId',
        { problem: 'LABEL_SIZE_MISMATCH', labelWidth: width, labelHeight: height, resultWidth: ctx.width, resultHeight: ctx.height },
      );
    }
    mask = await openRaster({ kind: 'bytes', bytes: maskBytes });
    if (mask.info.width !== width || mask.info.height !== height) {
      throw new Error(`the result mask of ${ctx.resultName} is ${mask.info.width}×${mask.info.height}, not the recorded ${width}×${height}`);
    }
    const bands = labelBands(label);
    const lb = label.info.bands;
    const mb = mask.info.bands;
    const counts: ConfusionCounts = { tp: 0, fp: 0, fn: 0, tn: 0 };
    const offending = new Map<number, { x: number; y: number }>();
    let bandsDiffer: { x: number; y: number; values: number[] } | null = null;
    const rowsPerChunk = Math.max(1, Math.floor(CHUNK_SAMPLES / (width * Math.max(lb, mb))));
    for (let y0 = 0; y0 < height; y0 += rowsPerChunk) {
      const rows = Math.min(rowsPerChunk, height - y0);
      const [labelRows, maskRows] = await Promise.all([asLabelProblem(() => label.readRows(rows)), mask.readRows(rows)]);
      for (let p = 0; p < rows * width; p++) {
        const value = labelRows[p * lb + bands[0]!]!;
        for (let i = 1; i < bands.length; i++) {
          if (labelRows[p * lb + bands[i]!] !== value && !bandsDiffer) {
            bandsDiffer = { x: p % width, y: y0 + Math.floor(p / width), values: bands.map((b) => labelRows[p * lb + b]!) };
          }
        }
        if (value !== 0 && value !== 1 && value !== 255) {
          if (offending.size < MAX_LISTED_VALUES && !offending.has(value)) offending.set(value, { x: p % width, y: y0 + Math.floor(p / width) });
          continue;
        }
        const truth = value !== 0;
        const predicted = maskRows[p * mb]! !== 0;
        if (truth && predicted) counts.tp += 1;
        else if (predicted) counts.fp += 1;
        else if (truth) counts.fn += 1;
        else counts.tn += 1;
      }
    }
    if (offending.size > 0) {
      const values = [...offending.keys()].sort((a, b) => a - b);
      const first = offending.get(values[0]!)!;
      throw badInput(
        `labelUploadId: the label is not binary: besides 0 (no change) and 1 or 255 (change) it holds the value${values.length > 1 ? 's' : ''} ${values.join(', ')}${offending.size >= MAX_LISTED_VALUES ? ' and maybe more' : ''} (e.g. ${values[0]} at x=${first.x}, y=${first.y})`,
        'labelUploadId',
        { problem: 'LABEL_NOT_BINARY', values },
      );
    }
    if (bandsDiffer) {
      throw badInput(
        `labelUploadId: the label is not binary: its ${bands.length} bands differ (${bandsDiffer.values.join(', ')} at x=${bandsDiffer.x}, y=${bandsDiffer.y}); give a single-band mask of 0 and 1 or 255`,
        'labelUploadId',
        { problem: 'LABEL_NOT_BINARY', values: bandsDiffer.values },
      );
    }
    return counts;
  } finally {
    await label.close();
    await mask?.close();
  }
}
