// Writes a pair's outputs and reports on it. Rows and polygons arrive from the processor as they are finished and go
// straight into encoders — PNG mask and probability map, GeoTIFF mask and float probability when the input is
// georeferenced, the GeoJSON of the changed regions — in memory for small scenes, through temporary files for large
// ones. Once the pair is done, stats and drift join them and everything is uploaded under the job's keys: the same keys
// on every delivery, so a redelivered message rewrites rather than adds. Reports to the jobs subgraph go to its durable
// queue (`jobs.pair-results`), confirmed by the broker.
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, type WriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { once } from 'node:events';
import { join } from 'node:path';
import { createEnvelope, type Broker } from '../../lib/broker/broker.js';
import { crsUrn, describeCrs, pixelToMap, type GeoReference } from '../../lib/imaging/georef.js';
import { encodePng, PngRowWriter } from '../../lib/imaging/png-stream.js';
import { encodeTiff, FileTiffSink, TiffRowWriter } from '../../lib/imaging/tiff-writer.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import type { Logger } from 'pino';
import {
  DRIFT_SAMPLE_TYPE,
  DRIFT_SAMPLES_QUEUE,
  DRIFT_SAMPLES_QUEUE_OPTIONS,
  type DriftSamplePayloadInput,
} from '../../subgraphs/monitoring/drift-samples.contract.js';
import {
  JOBS_PAIR_RESULTS_QUEUE,
  MESSAGE_TYPES,
  pairIdempotencyKey,
  RESULT_FILES,
  type ChangeResultPayload,
  type PairError,
  type PairReport,
} from './contracts.js';
import { toGeoJsonRings, type PixelPolygon } from './polygons.js';
import type { PairOutcome, RowSink } from './processor.js';

const CONTENT_TYPES: Record<keyof typeof RESULT_FILES, string> = {
  mask: 'image/png',
  maskGeoTiff: 'image/tiff',
  probability: 'image/png',
  probabilityGeoTiff: 'image/tiff',
  polygons: 'application/geo+json',
  stats: 'application/json',
  drift: 'application/json',
};

export interface ResultMeta {
  jobId: string;
  pairIndex: number;
  modelName: string;
  modelVersionId: string;
  threshold: number;
  minRegionPixels: number;
  simplifyTolerance: number;
  /** Model facts recorded with the drift statistics. */
  model: { datasetVersion: string | null; configHash: string | null; embeddingDim: number };
  /** performance.now() when the pair's work began, for the total in stats.json. */
  startedAt?: number;
}

async function write(stream: WriteStream, text: string): Promise<void> {
  if (!stream.write(text)) await once(stream, 'drain');
}

async function closeStream(stream: WriteStream): Promise<void> {
  stream.end();
  await once(stream, 'close');
}

/** Outputs of scenes up to this many pixels are built in memory; larger ones stream through temporary files. */
export const MEMORY_OUTPUT_PIXELS = 4 * 1024 * 1024;

type FileParts = {
  kind: 'files';
  dir: string;
  polygons: WriteStream;
  maskPng: PngRowWriter;
  probabilityPng: PngRowWriter;
  maskTiff: { writer: TiffRowWriter; sink: FileTiffSink } | null;
  probabilityTiff: { writer: TiffRowWriter; sink: FileTiffSink } | null;
};
type MemoryParts = { kind: 'memory'; mask: Uint8Array; probability8: Uint8Array; probability: Float32Array | null; polygons: string[] };

/** The outputs of one pair while it is processed: a RowSink, then `finish` uploads everything. */
export class PairOutputs implements RowSink {
  private features = 0;

  private constructor(
    private readonly store: ObjectStore,
    private readonly prefix: string,
    private readonly size: { width: number; height: number; georef: GeoReference | null },
    private readonly parts: FileParts | MemoryParts,
  ) {}

  static async open(
    store: ObjectStore,
    tmpDir: string,
    prefix: string,
    size: { width: number; height: number; georef: GeoReference | null },
    options: { memoryPixels?: number } = {},
  ): Promise<PairOutputs> {
    const pixels = size.width * size.height;
    if (pixels <= (options.memoryPixels ?? MEMORY_OUTPUT_PIXELS)) {
      return new PairOutputs(store, prefix, size, {
        kind: 'memory',
        mask: new Uint8Array(pixels),
        probability8: new Uint8Array(pixels),
        probability: size.georef ? new Float32Array(pixels) : null,
        polygons: [geoJsonOpening(size.georef)],
      });
    }
    const dir = join(tmpDir, randomUUID());
    await mkdir(dir, { recursive: true });
    const path = (name: keyof typeof RESULT_FILES) => join(dir, RESULT_FILES[name]);
    const png = { width: size.width, height: size.height, colorType: 0 as const };
    const tiff = async (name: 'maskGeoTiff' | 'probabilityGeoTiff', sampleType: 'uint8' | 'float32') => {
      const sink = await FileTiffSink.create(path(name));
      const writer = await TiffRowWriter.create(tiffOptions(size, name, sampleType), sink);
      return { writer, sink };
    };
    const polygons = createWriteStream(path('polygons'));
    await write(polygons, geoJsonOpening(size.georef));
    return new PairOutputs(store, prefix, size, {
      kind: 'files',
      dir,
      polygons,
      maskPng: new PngRowWriter(png, createWriteStream(path('mask'))),
      probabilityPng: new PngRowWriter(png, createWriteStream(path('probability'))),
      maskTiff: size.georef ? await tiff('maskGeoTiff', 'uint8') : null,
      probabilityTiff: size.georef ? await tiff('probabilityGeoTiff', 'float32') : null,
    });
  }

  async writeRows(y: number, rows: number, mask: Uint8Array, probability: Float32Array): Promise<void> {
    const parts = this.parts;
    if (parts.kind === 'memory') {
      const offset = y * this.size.width;
      parts.mask.set(mask, offset);
      for (let i = 0; i < probability.length; i++) parts.probability8[offset + i] = Math.round(probability[i]! * 255);
      parts.probability?.set(probability, offset);
      return;
    }
    const probability8 = new Uint8Array(probability.length);
    for (let i = 0; i < probability.length; i++) probability8[i] = Math.round(probability[i]! * 255);
    await Promise.all([
      parts.maskPng.writeRows(mask, rows),
      parts.probabilityPng.writeRows(probability8, rows),
      parts.maskTiff?.writer.writeRows(mask, rows),
      parts.probabilityTiff?.writer.writeRows(probability, rows),
    ]);
  }

  /** Appends one change polygon to the GeoJSON, as the processor traces it. */
  async writePolygon(polygon: PixelPolygon): Promise<void> {
    this.features += 1;
    const georef = this.size.georef;
    const cell = georef ? pixelAreaSquareMeters(georef, (polygon.bbox[1] + polygon.bbox[3]) / 2) : null;
    const area = cell === null ? null : polygon.pixels * cell;
    const feature = {
      type: 'Feature',
      id: this.features,
      properties: { region: this.features, pixels: polygon.pixels, areaSquareMeters: area, areaHectares: area === null ? null : area / 10_000, bbox: polygon.bbox },
      geometry: { type: 'Polygon', coordinates: toGeoJsonRings(polygon, georef?.transform ?? null) },
    };
    const text = `${this.features > 1 ? ',' : ''}${JSON.stringify(feature)}`;
    if (this.parts.kind === 'memory') this.parts.polygons.push(text);
    else await write(this.parts.polygons, text);
  }

  /** Finishes the files, writes polygons, stats and drift, uploads all of them; returns the result to report. */
  async finish(outcome: PairOutcome, meta: ResultMeta, timings: Record<string, number>): Promise<ChangeResultPayload> {
    const t0 = performance.now();
    const georeferenced = outcome.georef !== null;
    const keys: ChangeResultPayload['keys'] = {
      mask: `${this.prefix}/${RESULT_FILES.mask}`,
      probability: `${this.prefix}/${RESULT_FILES.probability}`,
      polygons: `${this.prefix}/${RESULT_FILES.polygons}`,
      stats: `${this.prefix}/${RESULT_FILES.stats}`,
      drift: `${this.prefix}/${RESULT_FILES.drift}`,
      ...(georeferenced && {
        maskGeoTiff: `${this.prefix}/${RESULT_FILES.maskGeoTiff}`,
        probabilityGeoTiff: `${this.prefix}/${RESULT_FILES.probabilityGeoTiff}`,
      }),
    };
    const names: (keyof typeof RESULT_FILES)[] = ['mask', 'probability', 'polygons', ...(georeferenced ? (['maskGeoTiff', 'probabilityGeoTiff'] as const) : [])];
    const put = (name: keyof typeof RESULT_FILES, body: Buffer | NodeJS.ReadableStream) => this.store.put(keys[name]!, body, { contentType: CONTENT_TYPES[name] });
    // Outputs that do not wait for the images to encode are stored meanwhile. All of them are stored before this
    // returns: the jobs subgraph learns of the result from the report sent after it, never from the objects.
    const stored: Promise<unknown>[] = [];
    const t1 = performance.now();
    const drift = {
      jobId: meta.jobId,
      pairIndex: meta.pairIndex,
      modelName: meta.modelName,
      modelVersionId: meta.modelVersionId,
      datasetVersion: meta.model.datasetVersion,
      configHash: meta.model.configHash,
      width: outcome.width,
      height: outcome.height,
      ...outcome.drift,
    };
    stored.push(put('drift', Buffer.from(JSON.stringify(drift))));
    let encodeSeconds: number;
    try {
      const parts = this.parts;
      if (parts.kind === 'memory') {
        const { width, height, georef } = this.size;
        const png = { width, height, colorType: 0 as const };
        parts.polygons.push(geoJsonClosing(outcome, meta));
        stored.push(put('polygons', Buffer.from(parts.polygons.join(''))));
        const [mask, probability] = await Promise.all([encodePng(png, parts.mask), encodePng(png, parts.probability8)]);
        stored.push(put('mask', mask), put('probability', probability));
        if (georef) {
          stored.push(put('maskGeoTiff', await encodeTiff(tiffOptions(this.size, 'maskGeoTiff', 'uint8'), parts.mask)));
          stored.push(put('probabilityGeoTiff', await encodeTiff(tiffOptions(this.size, 'probabilityGeoTiff', 'float32'), parts.probability!)));
        }
      } else {
        await Promise.all([parts.maskPng.finish(), parts.probabilityPng.finish()]);
        for (const tiff of [parts.maskTiff, parts.probabilityTiff]) {
          if (!tiff) continue;
          await tiff.writer.finish();
          await tiff.sink.close();
        }
        await write(parts.polygons, geoJsonClosing(outcome, meta));
        await closeStream(parts.polygons);
        for (const name of names) stored.push(put(name, createReadStream(join(parts.dir, RESULT_FILES[name]))));
      }
      encodeSeconds = (performance.now() - t0) / 1000;
    } catch (error) {
      await Promise.allSettled(stored);
      throw error;
    }
    const crs = outcome.georef ? { epsg: outcome.georef.crs.epsg, kind: outcome.georef.crs.kind, name: describeCrs(outcome.georef.crs) } : null;
    const result: ChangeResultPayload = {
      width: outcome.width,
      height: outcome.height,
      georeferenced,
      crs,
      modelName: meta.modelName,
      modelVersionId: meta.modelVersionId,
      threshold: meta.threshold,
      keys,
      stats: outcome.stats,
      tiles: outcome.tiles,
      timings: { ...timings, encode: encodeSeconds + outcome.timings.output },
    };
    if (meta.startedAt !== undefined) result.timings.total = (performance.now() - meta.startedAt) / 1000;
    const stats = {
      ...result,
      jobId: meta.jobId,
      pairIndex: meta.pairIndex,
      regionsBeforeFilter: outcome.trace.regionsBeforeFilter,
      minRegionPixels: meta.minRegionPixels,
      polygonsTruncated: outcome.trace.truncated,
      pixelAreaSquareMeters: outcome.stats.changedPixels > 0 && outcome.stats.areaSquareMeters !== null ? outcome.stats.areaSquareMeters / outcome.stats.changedPixels : null,
      meanProbability: outcome.drift.prediction.meanProbability,
    };
    stored.push(put('stats', Buffer.from(JSON.stringify(stats, null, 2))));
    await Promise.all(stored);
    result.timings.store = (performance.now() - t1) / 1000;
    return result;
  }

  /** Drops the temporary files (after an upload or a failure). */
  async dispose(): Promise<void> {
    const parts = this.parts;
    if (parts.kind === 'memory') return;
    parts.maskPng.abort();
    parts.probabilityPng.abort();
    parts.polygons.destroy();
    await Promise.all([parts.maskTiff?.sink.close().catch(() => undefined), parts.probabilityTiff?.sink.close().catch(() => undefined)]);
    await rm(parts.dir, { recursive: true, force: true });
  }
}

function tiffOptions(size: { width: number; height: number; georef: GeoReference | null }, name: 'maskGeoTiff' | 'probabilityGeoTiff', sampleType: 'uint8' | 'float32') {
  return {
    width: size.width,
    height: size.height,
    bands: 1,
    sampleType,
    geo: size.georef!.tags,
    bandNames: [name === 'maskGeoTiff' ? 'change' : 'change_probability'],
  };
}

/**
 * The GeoJSON FeatureCollection of the changed regions is written as it is traced: this opening (with the CRS), the
 * features one by one, then the closing with what is known only at the end (counts) in the foreign member `lcd`.
 */
function geoJsonOpening(georef: GeoReference | null): string {
  const urn = georef ? crsUrn(georef.crs) : null;
  return `{"type":"FeatureCollection",${urn ? `"crs":${JSON.stringify({ type: 'name', properties: { name: urn } })},` : ''}"features":[`;
}

function geoJsonClosing(outcome: PairOutcome, meta: ResultMeta): string {
  const georef = outcome.georef;
  const lcd = {
    coordinates: georef ? 'map' : 'pixel',
    crs: georef ? describeCrs(georef.crs) : null,
    width: outcome.width,
    height: outcome.height,
    modelName: meta.modelName,
    modelVersionId: meta.modelVersionId,
    threshold: meta.threshold,
    minRegionPixels: meta.minRegionPixels,
    simplifyTolerance: meta.simplifyTolerance,
    regions: outcome.trace.regions,
    regionsBeforeFilter: outcome.trace.regionsBeforeFilter,
    truncated: outcome.trace.truncated,
  };
  return `],"lcd":${JSON.stringify(lcd)}}`;
}

const EARTH_RADIUS_M = 6_371_007.2;

/** Ground area of one pixel at pixel row `row`: constant in a projected CRS, by latitude in a geographic one. */
function pixelAreaSquareMeters(georef: GeoReference, row: number): number | null {
  const t = georef.transform;
  if (georef.crs.kind === 'projected' && georef.crs.metresPerUnit !== null) return Math.abs(t[1] * t[5] - t[2] * t[4]) * georef.crs.metresPerUnit ** 2;
  if (georef.crs.kind === 'geographic' && t[2] === 0 && t[4] === 0) {
    const [, lat1] = pixelToMap(t, 0, Math.floor(row));
    const [, lat2] = pixelToMap(t, 0, Math.floor(row) + 1);
    return EARTH_RADIUS_M ** 2 * ((Math.abs(t[1]) * Math.PI) / 180) * Math.abs(Math.sin((lat1 * Math.PI) / 180) - Math.sin((lat2 * Math.PI) / 180));
  }
  return null;
}

/** Reports on pairs to the jobs subgraph, one durable message each. */
export class PairReporter {
  constructor(private readonly broker: Broker) {}

  private send(tenant: string, report: PairReport): Promise<void> {
    return this.broker.send(
      JOBS_PAIR_RESULTS_QUEUE,
      createEnvelope(MESSAGE_TYPES.pairReport, report, {
        tenant,
        idempotencyKey: `${pairIdempotencyKey(report.jobId, report.pairIndex)}:${report.kind}`,
      }),
    );
  }

  started(tenant: string, jobId: string, pairIndex: number, attempt: number): Promise<void> {
    return this.send(tenant, { kind: 'started', jobId, pairIndex, attempt });
  }

  succeeded(tenant: string, jobId: string, pairIndex: number, result: ChangeResultPayload): Promise<void> {
    return this.send(tenant, { kind: 'succeeded', jobId, pairIndex, result });
  }

  failed(tenant: string, jobId: string, pairIndex: number, error: PairError, final: boolean): Promise<void> {
    return this.send(tenant, { kind: 'failed', jobId, pairIndex, error, final });
  }
}

/**
 * Sends each successful pair's drift summary to the monitoring subgraph (durable `monitoring.drift-samples`). Never
 * fails the pair: a send that fails or takes longer than `timeoutMs` is logged and counted, and the pair goes on.
 */
export class DriftSampleSender {
  private ready: Promise<void> | null = null;

  constructor(
    private readonly broker: Broker,
    private readonly log: Logger,
    private readonly onOutcome?: (outcome: 'sent' | 'failed') => void,
    private readonly timeoutMs = 5000,
  ) {}

  async send(sample: DriftSamplePayloadInput): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const sending = (async () => {
        this.ready ??= this.broker.assertQueue(DRIFT_SAMPLES_QUEUE, DRIFT_SAMPLES_QUEUE_OPTIONS).catch((error: unknown) => {
          this.ready = null;
          throw error;
        });
        await this.ready;
        await this.broker.send(
          DRIFT_SAMPLES_QUEUE,
          createEnvelope(DRIFT_SAMPLE_TYPE, sample, { tenant: sample.tenant, idempotencyKey: `drift-sample:${sample.jobId}#${sample.pairIndex}` }),
        );
      })();
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no confirm within ${this.timeoutMs} ms`)), this.timeoutMs);
      });
      sending.catch(() => undefined);
      await Promise.race([sending, timeout]);
      this.onOutcome?.('sent');
      return true;
    } catch (error) {
      this.log.warn({ err: error, jobId: sample.jobId, pairIndex: sample.pairIndex }, 'drift sample not sent; the pair is not affected');
      this.onOutcome?.('failed');
      return false;
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}
