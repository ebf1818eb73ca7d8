// The states of the jobs domain, shared by the entities and the GraphQL types; the messages workers send are in
// workers/inference/contracts.ts.

export enum JobKind {
  /** detectChanges: one pair, answered within the request. */
  SYNC = 'SYNC',
  /** submitChangeDetectionJob: pairs queued to workers, the job returns at once. */
  BATCH = 'BATCH',
}

export enum JobStatus {
  QUEUED = 'QUEUED',
  RUNNING = 'RUNNING',
  SUCCEEDED = 'SUCCEEDED',
  /** Every pair finished, some failed. */
  PARTIAL = 'PARTIAL',
  FAILED = 'FAILED',
  CANCELLED = 'CANCELLED',
}

export enum JobPairStatus {
  QUEUED = 'QUEUED',
  RUNNING = 'RUNNING',
  SUCCEEDED = 'SUCCEEDED',
  FAILED = 'FAILED',
  CANCELLED = 'CANCELLED',
}

export const FINISHED_JOB_STATUSES: readonly JobStatus[] = [JobStatus.SUCCEEDED, JobStatus.PARTIAL, JobStatus.FAILED, JobStatus.CANCELLED];

export const FINISHED_PAIR_STATUSES: readonly JobPairStatus[] = [JobPairStatus.SUCCEEDED, JobPairStatus.FAILED, JobPairStatus.CANCELLED];

/** Object keys of one pair's outputs, as the inference worker writes them under the job's prefix. */
export interface PairResultKeys {
  mask?: string;
  probability?: string;
  polygons?: string;
  stats?: string;
  maskGeoTiff?: string;
  probabilityGeoTiff?: string;
  drift?: string;
  [output: string]: string | undefined;
}

/** What else a result says, beside its keys and stats. */
export interface PairResultDetails {
  georeferenced: boolean;
  crs: { epsg: number | null; kind: string; name: string } | null;
  threshold: number;
  tiles: number;
  timings: Record<string, number>;
}

export interface ChangeStatistics {
  changedPixels?: number;
  changedFraction?: number;
  regions?: number;
  /** Null when the images are not georeferenced (or their units are unknown). */
  areaSquareMeters?: number | null;
  areaHectares?: number | null;
}
