import { Directive, Field, Float, ID, Int, ObjectType, registerEnumType } from 'type-graphql';
import { Connection } from '../../lib/graphql/connection.js';
import { JobKind, JobPairStatus, JobStatus, type ChangeStatistics, type PairResultDetails, type PairResultKeys } from './job.contracts.js';
import type { JobEntity } from './job.entity.js';
import type { JobPairEntity } from './job-pair.entity.js';

registerEnumType(JobKind, { name: 'JobKind', description: 'SYNC: one pair answered within the request; BATCH: pairs queued to workers' });
registerEnumType(JobStatus, { name: 'JobStatus', description: 'PARTIAL: every pair finished and some failed' });
registerEnumType(JobPairStatus, { name: 'JobPairStatus' });

/** The models subgraph owns ModelVersion; this subgraph only refers to it by id. */
@Directive('@key(fields: "id", resolvable: false)')
@ObjectType('ModelVersion')
export class ModelVersionRef {
  @Field(() => ID)
  id!: string;
}

/** The datasets subgraph owns DatasetVersion; this subgraph only refers to it by id. */
@Directive('@key(fields: "id", resolvable: false)')
@ObjectType('DatasetVersion')
export class DatasetVersionRef {
  @Field(() => ID)
  id!: string;
}

@ObjectType({ description: 'How much of one pair changed' })
export class ChangeStats {
  @Field(() => Float, { nullable: true })
  changedPixels!: number | null;

  @Field(() => Float, { nullable: true, description: 'Changed pixels / all pixels, 0–1' })
  changedFraction!: number | null;

  @Field(() => Int, { nullable: true, description: 'Connected changed regions (polygons)' })
  regions!: number | null;

  @Field(() => Float, { nullable: true, description: 'Known when the images are georeferenced' })
  areaSquareMeters!: number | null;

  @Field(() => Float, { nullable: true })
  areaHectares!: number | null;
}

@ObjectType({ description: 'Where and how much changed in one pair: signed download URLs of the outputs, and the statistics' })
export class ChangeResult {
  @Field(() => ID)
  jobId!: string;

  @Field(() => Int)
  pairIndex!: number;

  @Field(() => Int)
  width!: number;

  @Field(() => Int)
  height!: number;

  @Field({ description: 'PNG, 8-bit grey: 255 where changed, 0 elsewhere' })
  maskUrl!: string;

  @Field({ description: 'PNG, 8-bit grey: change probability × 255' })
  probabilityUrl!: string;

  @Field({ description: 'GeoJSON FeatureCollection of the changed regions (map coordinates when georeferenced, else pixels)' })
  polygonsUrl!: string;

  @Field(() => String, { nullable: true, description: 'GeoTIFF of the mask in the input grid; only for georeferenced input' })
  maskGeoTiffUrl!: string | null;

  @Field(() => String, { nullable: true, description: 'GeoTIFF, float32 probability 0–1; only for georeferenced input' })
  probabilityGeoTiffUrl!: string | null;

  @Field({ description: 'JSON: the statistics, timings and the model version' })
  statsUrl!: string;

  @Field(() => String, { nullable: true, description: 'JSON: input statistics per band and the embedding summary (drift monitoring)' })
  driftUrl!: string | null;

  @Field({ description: 'When the signed URLs stop working (ask again for fresh ones)' })
  urlsExpireAt!: Date;

  @Field({ description: 'Whether the input carried a CRS and geotransform (GeoTIFF)' })
  georeferenced!: boolean;

  @Field(() => String, { nullable: true, description: 'e.g. EPSG:32633, when georeferenced' })
  crs!: string | null;

  @Field(() => Float, { nullable: true, description: 'Probability above which a pixel counts as changed' })
  threshold!: number | null;

  @Field(() => ChangeStats)
  stats!: ChangeStats;

  @Field(() => ModelVersionRef, { nullable: true, description: 'The model version that produced this result' })
  modelVersion!: ModelVersionRef | null;
}

@ObjectType({ description: 'One before/after pair of a job and its outcome' })
export class JobPair {
  /** Not in the schema: what the result field is made from. */
  jobId!: string;
  resultKeys!: PairResultKeys | null;
  rawStats!: ChangeStatistics | null;
  details!: PairResultDetails | null;
  modelVersionId!: string | null;

  @Field(() => Int)
  index!: number;

  @Field(() => JobPairStatus)
  status!: JobPairStatus;

  @Field(() => Int, { description: 'Deliveries to a worker so far' })
  attempts!: number;

  @Field(() => String, { nullable: true, description: 'Why the pair failed (or why its last attempt did, while it is retried)' })
  error!: string | null;

  @Field(() => String, { nullable: true, description: 'Stable code of the error: BEFORE_NOT_AN_IMAGE, SIZE_MISMATCH, BAND_COUNT, …' })
  errorCode!: string | null;

  @Field(() => ChangeStats, { nullable: true })
  stats!: ChangeStats | null;

  @Field(() => Int, { nullable: true })
  width!: number | null;

  @Field(() => Int, { nullable: true })
  height!: number | null;
}

@Directive('@key(fields: "id")')
@ObjectType({ description: 'A change-detection run over one or more before/after pairs' })
export class Job {
  @Field(() => ID)
  id!: string;

  @Field(() => JobKind)
  kind!: JobKind;

  @Field(() => JobStatus)
  status!: JobStatus;

  @Field(() => Float, { description: 'Finished pairs (succeeded or failed) / all pairs, 0–1' })
  progress!: number;

  @Field(() => Int)
  pairCount!: number;

  @Field(() => Int)
  succeededCount!: number;

  @Field(() => Int)
  failedCount!: number;

  @Field()
  modelName!: string;

  @Field(() => Float, { nullable: true, description: "Overrides the model's threshold when set" })
  threshold!: number | null;

  @Field()
  requestedBy!: string;

  @Field(() => String, { nullable: true })
  error!: string | null;

  @Field()
  createdAt!: Date;

  @Field(() => Date, { nullable: true })
  startedAt!: Date | null;

  @Field(() => Date, { nullable: true })
  finishedAt!: Date | null;

  @Field(() => ModelVersionRef, { nullable: true, description: 'The version that served the job, once known' })
  modelVersion!: ModelVersionRef | null;

  @Field(() => DatasetVersionRef, { nullable: true, description: 'The dataset version the pairs came from, if any' })
  datasetVersion!: DatasetVersionRef | null;
}

export const JobConnection = Connection(Job, 'Job');
export const JobPairConnection = Connection(JobPair, 'JobPair');

export function toJob(e: JobEntity): Job {
  return Object.assign(new Job(), {
    id: e.id,
    kind: e.kind,
    status: e.status,
    progress: e.pairCount > 0 ? (e.succeededCount + e.failedCount) / e.pairCount : 0,
    pairCount: e.pairCount,
    succeededCount: e.succeededCount,
    failedCount: e.failedCount,
    modelName: e.modelName,
    threshold: e.threshold,
    requestedBy: e.requestedBy,
    error: e.error,
    createdAt: e.createdAt,
    startedAt: e.startedAt,
    finishedAt: e.finishedAt,
    modelVersion: e.modelVersionId ? Object.assign(new ModelVersionRef(), { id: e.modelVersionId }) : null,
    datasetVersion: e.datasetVersionId ? Object.assign(new DatasetVersionRef(), { id: e.datasetVersionId }) : null,
  });
}

export function toJobPair(e: JobPairEntity, jobId: string): JobPair {
  const stats = e.stats;
  return Object.assign(new JobPair(), {
    jobId,
    resultKeys: e.resultKeys,
    rawStats: e.stats,
    details: e.details,
    modelVersionId: e.modelVersionId,
    index: e.index,
    status: e.status,
    attempts: e.attempts,
    error: e.error,
    errorCode: e.errorCode,
    stats: stats
      ? Object.assign(new ChangeStats(), {
          changedPixels: stats.changedPixels ?? null,
          changedFraction: stats.changedFraction ?? null,
          regions: stats.regions ?? null,
          areaSquareMeters: stats.areaSquareMeters ?? null,
          areaHectares: stats.areaHectares ?? null,
        })
      : null,
    width: e.width,
    height: e.height,
  });
}
