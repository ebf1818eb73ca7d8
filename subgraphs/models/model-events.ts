// The events the models subgraph appends to its event log (lib/events/event-log.ts), in the transaction of the change
// they report: training progress (`training.<runId>.progress`, stream `training:<runId>`) for subscriptions and the
// MLflow mirror, cancellations for the training service, and stage changes (`model.<name>.stage`, stream
// `model:<tenant>:<name>`) the inference workers reload on.
import type { AppendEvent } from '../../lib/events/event-log.js';
import type { TrainingArtifact, TrainingRunStatus } from './models.contracts.js';
import {
  TRAINING_EVENT_KEYS,
  TRAINING_LOGGED_EVENT_TYPES,
  TRAINING_STREAMS,
  type ModelStageEventPayload,
  type TrainingMetricReport,
} from './training.contracts.js';

/** Something that publishes appended events soon (the event relay); called after a transaction commits. */
export interface EventPublisher {
  kick(): void;
}

export type ProgressKind =
  | 'queued'
  | 'started'
  | 'environment'
  | 'metrics'
  | 'artifacts'
  | 'cancel-requested'
  | 'succeeded'
  | 'failed'
  | 'cancelled';

/** Payload of `training.<runId>.progress` events. */
export interface TrainingProgressPayload {
  runId: string;
  tenant: string;
  modelName: string;
  kind: ProgressKind;
  status: TrainingRunStatus;
  at: string;
  params?: Record<string, unknown>;
  datasetVersionId?: string;
  environment?: Record<string, unknown>;
  metrics?: TrainingMetricReport[];
  artifacts?: TrainingArtifact[];
  logKey?: string | null;
  error?: string | null;
  errorCode?: string | null;
  modelVersion?: { id: string; version: number; stage: string; sha256: string; artifactKey: string; metrics: Record<string, number>; gatePassed: boolean | null };
}

export function progressEvent(payload: Omit<TrainingProgressPayload, 'at'> & { at?: string }): AppendEvent {
  return {
    stream: TRAINING_STREAMS.run(payload.runId),
    type: TRAINING_LOGGED_EVENT_TYPES.progress,
    tenant: payload.tenant,
    routingKey: TRAINING_EVENT_KEYS.progress(payload.runId),
    payload: { ...payload, at: payload.at ?? new Date().toISOString() } as Record<string, unknown>,
  };
}

export function cancelEvent(tenant: string, runId: string): AppendEvent {
  return {
    stream: TRAINING_STREAMS.run(runId),
    type: TRAINING_LOGGED_EVENT_TYPES.cancelRequested,
    tenant,
    routingKey: TRAINING_EVENT_KEYS.cancel(runId),
    payload: { runId, tenant },
  };
}

export function stageEvent(payload: ModelStageEventPayload & { previousStage: string; version: number; changedBy: string; reason: string }): AppendEvent {
  return {
    stream: TRAINING_STREAMS.model(payload.tenant, payload.modelName),
    type: TRAINING_LOGGED_EVENT_TYPES.modelStage,
    tenant: payload.tenant,
    routingKey: TRAINING_EVENT_KEYS.modelStage(payload.modelName),
    payload,
  };
}
