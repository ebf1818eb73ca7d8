// The vocabulary of the registry lifecycle: promotion requests and their states, the kinds of history records, and
// the evidence a request carries (stored as JSON on the request, shown to the approver as it was at request time).
import type { DriftReportSummary } from '../monitoring/drift-summary.rpc.js';
import type { EvaluationMetrics, GateDecision } from './models.contracts.js';

export const PromotionStatus = {
  PENDING: 'PENDING',
  APPROVED: 'APPROVED',
  REJECTED: 'REJECTED',
  /** Withdrawn while pending, by its requester (or an admin of the tenant). */
  CANCELLED: 'CANCELLED',
} as const;
export type PromotionStatus = (typeof PromotionStatus)[keyof typeof PromotionStatus];
export const PROMOTION_STATUSES = Object.values(PromotionStatus);

/**
 * What a history record reports: a stage change, an alias set on (or moved to) a version or removed from it, or a
 * pending promotion request of the version withdrawn or rejected (the stage unchanged).
 */
export const ModelHistoryKind = {
  STAGE: 'STAGE',
  ALIAS_SET: 'ALIAS_SET',
  ALIAS_REMOVED: 'ALIAS_REMOVED',
  PROMOTION_CANCELLED: 'PROMOTION_CANCELLED',
  PROMOTION_REJECTED: 'PROMOTION_REJECTED',
} as const;
export type ModelHistoryKind = (typeof ModelHistoryKind)[keyof typeof ModelHistoryKind];
export const MODEL_HISTORY_KINDS = Object.values(ModelHistoryKind);

/** Where a version's evaluation report comes from. */
export const EvaluationSource = {
  /** The training run's held-out evaluation and the evaluation gate's decision. */
  TRAINING_GATE: 'TRAINING_GATE',
  /** The automatic evaluation of an uploaded version on a frozen test dataset version. */
  AUTOMATIC_EVALUATION: 'AUTOMATIC_EVALUATION',
} as const;
export type EvaluationSource = (typeof EvaluationSource)[keyof typeof EvaluationSource];

export interface EvaluationEvidence {
  source: EvaluationSource;
  passed: boolean;
  metrics: EvaluationMetrics;
  /** The frozen dataset version the metrics were measured on (the training run's, or the evaluation's test set). */
  datasetVersionId: string | null;
  gate: GateDecision | null;
  /** The stored report as it was at request time (the automatic evaluation's record, or null). */
  report: Record<string, unknown> | null;
  evaluatedAt: string | null;
}

export interface DriftEvidence {
  report: DriftReportSummary | null;
  /** Why there is no report, when there is none. */
  note: string | null;
}

export interface PromotionEvidence {
  evaluation: EvaluationEvidence;
  drift: DriftEvidence;
  collectedAt: string;
}

/** Alias names: lowercase words (`champion`, `challenger`, `shadow-eu`); stage names are reserved. */
export const ALIAS_PATTERN = /^[a-z][a-z0-9_-]{0,39}$/;
export const RESERVED_ALIASES: readonly string[] = ['none', 'staging', 'production', 'archived', 'latest'];
