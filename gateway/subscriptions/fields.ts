// What each subscription field streams: the event-log stream it follows, who may follow it, which events it shows,
// when it ends, and which fields of its event type are entities fetched through the federated graph.
import type { Identity } from '../../lib/auth.js';
import type { LoggedEvent } from '../../lib/events/event-log.js';

export interface EntityRef {
  /** Root query field that returns the entity, e.g. `job`. */
  query: string;
  /** Its arguments and their GraphQL types, e.g. `{ id: ['ID!', '…'] }`. */
  args: Record<string, [type: string, value: unknown]>;
}

/** Runs a query as the subscriber (same rules as HTTP); returns its errors' codes, empty when it may read. */
export type ReadCheck = (query: string, variables: Record<string, unknown>) => Promise<string[]>;

export interface SubscriptionFieldSpec {
  stream(args: Record<string, unknown>, identity: Identity): string;
  /** Refuses a subscription to something the caller could not read with a query. */
  authorize?(args: Record<string, unknown>, check: ReadCheck): Promise<string | null>;
  accept?(event: LoggedEvent, args: Record<string, unknown>): boolean;
  isFinal?(event: LoggedEvent): boolean;
  /** Entity fields of the event type, by field name. */
  entities: Record<string, (event: LoggedEvent) => EntityRef | null>;
}

const TERMINAL_JOB = new Set(['SUCCEEDED', 'PARTIAL', 'FAILED', 'CANCELLED']);
const TERMINAL_RUN = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);

async function mustRead(check: ReadCheck, query: string, variables: Record<string, unknown>, what: string): Promise<string | null> {
  const codes = await check(query, variables);
  if (codes.length === 0) return null;
  return codes.includes('FORBIDDEN') ? `You may not read this ${what}` : `${what} ${JSON.stringify(Object.values(variables)[0])} was not found`;
}

const jobEntity = (event: LoggedEvent): EntityRef => ({ query: 'job', args: { id: ['ID!', event.payload.jobId] } });

export const SUBSCRIPTION_FIELDS: Record<string, SubscriptionFieldSpec> = {
  jobProgress: {
    stream: (args) => `job:${String(args.jobId)}`,
    authorize: (args, check) => mustRead(check, 'query($id: ID!) { job(id: $id) { id } }', { id: args.jobId }, 'Job'),
    isFinal: (event) => TERMINAL_JOB.has(String(event.payload.status)),
    entities: { job: jobEntity },
  },
  jobUpdates: {
    stream: (_args, identity) => `jobs:${identity.tenant}`,
    entities: { job: jobEntity },
  },
  trainingProgress: {
    stream: (args) => `training:${String(args.runId)}`,
    authorize: (args, check) => mustRead(check, 'query($id: ID!) { trainingRun(id: $id) { id } }', { id: args.runId }, 'TrainingRun'),
    // The run's stream also carries cancellation requests for the training service: only progress is shown.
    accept: (event) => event.type === 'training.progress',
    isFinal: (event) => TERMINAL_RUN.has(String(event.payload.status)),
    entities: { run: (event) => ({ query: 'trainingRun', args: { id: ['ID!', event.payload.runId] } }) },
  },
  driftAlerts: {
    stream: (_args, identity) => `drift:${identity.tenant}`,
    accept: (event, args) => !args.modelName || event.payload.modelName === args.modelName,
    entities: { alert: (event) => ({ query: 'driftAlert', args: { id: ['ID!', event.payload.alertId] } }) },
  },
  modelVersionStageChanged: {
    stream: (args, identity) => (args.modelName ? `model:${identity.tenant}:${String(args.modelName)}` : `models:${identity.tenant}`),
    accept: (event, args) => !args.modelName || event.payload.modelName === args.modelName,
    entities: { modelVersion: (event) => ({ query: 'modelVersion', args: { id: ['ID!', event.payload.versionId] } }) },
  },
};
