// The durable queue that feeds retraining policies: relayed drift alerts (`drift.alert`), new dataset versions
// (`dataset.version.created`), and commands of the trigger CLI (a scheduler pass from the Kubernetes CronJob, a manual
// trigger). Each occurrence makes at most one decision per policy however often it is delivered.
import { z } from 'zod';
import type { Logger } from 'pino';
import { PermanentMessageError, type Broker, type Delivery, type Subscription } from '../../lib/broker/broker.js';
import type { Database } from '../../lib/db.js';
import { LOGGED_EVENT_TYPE, type LoggedEvent } from '../../lib/events/event-log.js';
import { DATASET_VERSION_CREATED } from '../datasets/dataset-events.js';
import { DRIFT_ALERT_ROUTING_KEY } from './alerts.js';
import { RETRAINING_COMMAND_TYPES, RetrainingTrigger, triggerCommandSchema } from './retraining.contracts.js';
import type { RetrainingService } from './retraining.service.js';

export const RETRAINING_BINDING_KEYS = [DRIFT_ALERT_ROUTING_KEY, DATASET_VERSION_CREATED.routingKey];

const driftAlertSchema = z.object({
  alertId: z.string().min(1),
  tenant: z.string().min(1),
  modelName: z.string().min(1),
  modelVersionId: z.string().nullable().optional(),
  kind: z.string(),
  metric: z.string(),
  value: z.number(),
  threshold: z.number(),
});

const datasetVersionSchema = z.object({
  tenant: z.string().min(1),
  datasetId: z.string().min(1),
  datasetName: z.string(),
  versionId: z.string().regex(/^[0-9a-f]{64}$/),
  number: z.number().int(),
  previousVersionIds: z.array(z.string().regex(/^[0-9a-f]{64}$/)),
});

function parse<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (!result.success) throw new PermanentMessageError(`invalid ${what}: ${result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return result.data;
}

export async function consumeRetrainingTriggers(options: {
  broker: Broker;
  queue: string;
  db: Database;
  retraining: RetrainingService;
  log: Logger;
}): Promise<Subscription> {
  const { db, retraining, log } = options;
  return options.broker.subscribe<unknown>(
    RETRAINING_BINDING_KEYS,
    async ({ envelope }: Delivery<unknown>) => {
      switch (envelope.type) {
        case LOGGED_EVENT_TYPE: {
          const event = envelope.payload as LoggedEvent;
          if (event.tenant !== envelope.tenant) throw new PermanentMessageError('the event tenant differs from the envelope tenant');
          if (event.routingKey === DRIFT_ALERT_ROUTING_KEY) {
            const alert = parse(driftAlertSchema, event.payload, 'drift alert');
            if (alert.tenant !== envelope.tenant) throw new PermanentMessageError('the alert names another tenant than its envelope');
            const decision = await retraining.onDriftAlert(db.fork(), alert);
            if (decision) log.info({ tenant: alert.tenant, modelName: alert.modelName, outcome: decision.outcome, decisionId: decision.id }, 'drift alert decided');
          } else if (event.routingKey === DATASET_VERSION_CREATED.routingKey) {
            const version = parse(datasetVersionSchema, event.payload, 'dataset version event');
            if (version.tenant !== envelope.tenant) throw new PermanentMessageError('the event names another tenant than its envelope');
            const decisions = await retraining.onNewDatasetVersion(db.fork(), version);
            if (decisions.length > 0) log.info({ tenant: version.tenant, versionId: version.versionId, decisions: decisions.map((d) => [d.modelName, d.outcome]) }, 'new dataset version decided');
          }
          return;
        }
        case RETRAINING_COMMAND_TYPES.schedulePass:
          await retraining.schedulePass(db.fork);
          return;
        case RETRAINING_COMMAND_TYPES.trigger: {
          const command = parse(triggerCommandSchema, envelope.payload, 'trigger command');
          if (command.tenant !== envelope.tenant) throw new PermanentMessageError('the command names another tenant than its envelope');
          try {
            await retraining.trigger(db.fork(), {
              tenant: command.tenant,
              modelName: command.modelName,
              trigger: RetrainingTrigger.MANUAL,
              triggerKey: `manual:${envelope.messageId}`,
              reason: command.reason,
              requestedBy: command.requestedBy,
            });
          } catch (error) {
            // No policy for that model: nothing to retry.
            if ((error as { extensions?: { code?: string } }).extensions?.code === 'NOT_FOUND') throw new PermanentMessageError((error as Error).message);
            throw error;
          }
          return;
        }
        default:
          throw new PermanentMessageError(`unexpected message type ${envelope.type}`);
      }
    },
    { queue: options.queue, prefetch: 2 },
  );
}
