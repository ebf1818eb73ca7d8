// The states of the monitoring domain, shared by the entities, the GraphQL types and the events that feed them.

export enum AuditOutcome {
  SUCCESS = 'SUCCESS',
  /** Refused before the resolver ran: authorisation, the rate limit or an operation limit (see lib/security/audit.ts). */
  DENIED = 'DENIED',
  ERROR = 'ERROR',
}

export enum DriftAlertKind {
  /** The inputs moved away from the model version's reference statistics. */
  DATA_DRIFT = 'DATA_DRIFT',
  /** Quality on labelled feedback (IoU, F1) fell. */
  MODEL_DRIFT = 'MODEL_DRIFT',
}

export enum DriftAlertStatus {
  OPEN = 'OPEN',
  ACKNOWLEDGED = 'ACKNOWLEDGED',
}

/** Per-band and whole-input drift scores of one report window. */
export interface DriftMetrics {
  bands?: { band: number; psi?: number; wasserstein?: number; ks?: number }[];
  mmd?: number;
  changeFraction?: number;
  [metric: string]: unknown;
}
