// The models domain's vocabulary: run states, version stages and sources as string unions, and the shapes stored as
// JSON (artifacts, the ONNX contract). Training, inference and lifecycle code import these, never the entities.

export const TrainingRunStatus = {
  QUEUED: 'QUEUED',
  RUNNING: 'RUNNING',
  SUCCEEDED: 'SUCCEEDED',
  FAILED: 'FAILED',
  CANCELLED: 'CANCELLED',
} as const;
export type TrainingRunStatus = (typeof TrainingRunStatus)[keyof typeof TrainingRunStatus];
export const TRAINING_RUN_STATUSES = Object.values(TrainingRunStatus);

export const ModelStage = {
  NONE: 'NONE',
  STAGING: 'STAGING',
  PRODUCTION: 'PRODUCTION',
  ARCHIVED: 'ARCHIVED',
} as const;
export type ModelStage = (typeof ModelStage)[keyof typeof ModelStage];
export const MODEL_STAGES = Object.values(ModelStage);

export const ModelVersionSource = {
  TRAINED: 'TRAINED',
  UPLOADED: 'UPLOADED',
} as const;
export type ModelVersionSource = (typeof ModelVersionSource)[keyof typeof ModelVersionSource];
export const MODEL_VERSION_SOURCES = Object.values(ModelVersionSource);

/** Tenant of platform-wide records (the demo model): every tenant reads them, none but the platform writes them. */
export const PLATFORM_TENANT = '*';

/** A file a training run produced (checkpoint, ONNX export, plots), stored in object storage. */
export interface TrainingArtifact {
  name: string;
  key: string;
  byteSize: number;
  sha256: string;
}

export interface ContractTensor {
  name: string;
  /** e.g. `float32`. */
  dtype: string;
  /** Dimensions; a string names a dynamic axis (`N`, `H`, `W`). */
  shape: (number | string)[];
}

/**
 * What inference needs to know about an ONNX model besides its weights: inputs `before`/`after` (N×C×H×W float32),
 * outputs `change_logits` (N×1×H×W) and `embedding` (N×D), and how to prepare pixels for it.
 */
export interface ModelContract {
  bands: number;
  bandNames: string[];
  /** Per band, applied as (x - mean) / std to pixel values scaled to [0, 1]. */
  normalization: { mean: number[]; std: number[] };
  tileSize: number;
  /** Probability above which a pixel counts as changed. */
  threshold: number;
  embeddingDim: number;
  inputs: ContractTensor[];
  outputs: ContractTensor[];
}

export const CONTRACT_INPUTS = ['before', 'after'] as const;
export const CONTRACT_OUTPUTS = ['change_logits', 'embedding'] as const;

/** Evaluation metrics of a version by name (iou, f1, precision, recall, …). */
export type EvaluationMetrics = Record<string, number>;

/** What the evaluation gate decided about a trained version, and why. */
export interface GateDecision {
  passed: boolean;
  /** One line per check, passed or not (e.g. `f1 0.91 ≥ 0.70`). */
  reasons: string[];
  /** Minimum value per metric. */
  thresholds: Record<string, number>;
  /** Largest allowed drop of a gated metric below the Production version's. */
  maxRegression: number;
  /** The Production version compared with, if there was one. */
  comparedWith: { versionId: string; version: number; metrics: Record<string, number> } | null;
  evaluatedAt: string;
}
