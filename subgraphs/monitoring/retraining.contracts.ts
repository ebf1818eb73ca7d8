// The retraining domain's vocabulary: what can trigger a retraining, what a decision came to, and the messages the
// trigger queue carries besides relayed events (the CronJob's scheduled pass and manual triggers from the CLI).
import { z } from 'zod';

export enum RetrainingTrigger {
  SCHEDULE = 'SCHEDULE',
  DRIFT_ALERT = 'DRIFT_ALERT',
  NEW_DATASET_VERSION = 'NEW_DATASET_VERSION',
  MANUAL = 'MANUAL',
}

export enum RetrainingOutcome {
  /** Being asked of the models subgraph right now; counts towards the cooldown and the daily maximum. */
  PENDING = 'PENDING',
  STARTED = 'STARTED',
  SKIPPED = 'SKIPPED',
  FAILED = 'FAILED',
}

/** Durable queue of the monitoring subgraph bound to the events that may trigger a retraining. */
export const RETRAINING_TRIGGERS_QUEUE = 'monitoring.retraining-triggers';

export const RETRAINING_COMMAND_TYPES = {
  /** Run the scheduler's pass once (the Kubernetes CronJob sends it when the in-process scheduler is off). */
  schedulePass: 'retraining.schedule-pass',
  /** A manual trigger of one policy, as triggerRetraining does. */
  trigger: 'retraining.trigger',
} as const;

export const schedulePassSchema = z.object({ at: z.iso.datetime({ offset: true }).optional() });
export type SchedulePassCommand = z.infer<typeof schedulePassSchema>;

export const triggerCommandSchema = z.object({
  tenant: z.string().min(1).max(200),
  modelName: z.string().min(1).max(100),
  reason: z.string().min(1).max(2000),
  requestedBy: z.string().min(1).max(300),
});
export type TriggerCommand = z.infer<typeof triggerCommandSchema>;
