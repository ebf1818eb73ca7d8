// Events of the datasets domain, logged in the same transaction as the change (lib/events/event-log.ts) and relayed
// to the topic exchange after commit: consumers (retraining policies in the monitoring subgraph) hear of every new
// version once it really exists, at least once.
import type { AppendEvent } from '../../lib/events/event-log.js';

export const DATASET_VERSION_CREATED = { type: 'dataset.version.created', routingKey: 'dataset.version.created' } as const;

/** Event stream of one dataset's versions. */
export const datasetStream = (tenant: string, datasetId: string): string => `dataset:${tenant}:${datasetId}`;

/** Earlier versions listed in the event at most (newest first): enough for lineage, bounded in size. */
export const PREVIOUS_VERSIONS_IN_EVENT = 500;

export interface DatasetVersionCreatedPayload {
  tenant: string;
  datasetId: string;
  datasetName: string;
  versionId: string;
  number: number;
  itemCount: number;
  labelledCount: number;
  synthetic: boolean;
  createdBy: string;
  /** Ids of the dataset's earlier versions, newest first: models trained on them are "trained on this dataset". */
  previousVersionIds: string[];
}

export function datasetVersionCreatedEvent(payload: DatasetVersionCreatedPayload): AppendEvent {
  return {
    stream: datasetStream(payload.tenant, payload.datasetId),
    type: DATASET_VERSION_CREATED.type,
    tenant: payload.tenant,
    routingKey: DATASET_VERSION_CREATED.routingKey,
    payload: { ...payload },
  };
}
