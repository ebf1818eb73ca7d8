// The trainer's progress protocol (training/README.md): one JSON object per stdout line with an `event` field.
// Parsed leniently (extra fields are kept, unknown events are ignored) so that the trainer may add fields without
// breaking the service; the fields the service relies on are checked.
import { z } from 'zod';
import type { TrainingMetricReport } from '../../subgraphs/models/training.contracts.js';

const num = z.number().nullable();
const metricsSchema = z.looseObject({ precision: num, recall: num, f1: num, iou: num });

export const startEventSchema = z.looseObject({
  event: z.literal('start'),
  config: z.record(z.string(), z.unknown()),
  configHash: z.string(),
  datasetVersion: z.string(),
  codeVersion: z.string(),
  device: z.string(),
  torch: z.string(),
  threads: z.number().int(),
  counts: z.record(z.string(), z.number().int()),
  parameters: z.number().int(),
  totalSteps: z.number().int().optional(),
});
export const stepEventSchema = z.looseObject({
  event: z.literal('step'),
  epoch: z.number().int(),
  step: z.number().int(),
  globalStep: z.number().int(),
  loss: num,
  bce: num.optional(),
  dice: num.optional(),
  lr: num.optional(),
  pairsPerSecond: num.optional(),
});
export const epochEventSchema = z.looseObject({
  event: z.literal('epoch'),
  epoch: z.number().int(),
  trainLoss: num,
  val: metricsSchema.nullable(),
  best: z.boolean().optional(),
  seconds: num.optional(),
  cpuSeconds: num.optional(),
  lr: num.optional(),
});
export const artifactEventSchema = z.looseObject({
  event: z.literal('artifact'),
  name: z.string(),
  path: z.string(),
  bytes: z.number().int().optional(),
  sha256: z.string().optional(),
  metadata: z.record(z.string(), z.string()).optional(),
});
export const doneEventSchema = z.looseObject({
  event: z.literal('done'),
  bestEpoch: z.number().int(),
  best: metricsSchema.nullable().optional(),
  evaluation: z.looseObject({ split: z.string(), precision: num, recall: num, f1: num, iou: num, kappa: num.optional() }),
  weightsSha256: z.string(),
  onnxBytes: z.number().int().optional(),
  seconds: z.number().optional(),
});
export const errorEventSchema = z.looseObject({
  event: z.literal('error'),
  code: z.string(),
  message: z.string(),
  item: z.string().nullable().optional(),
});

export const trainerEventSchema = z.discriminatedUnion('event', [
  startEventSchema,
  stepEventSchema,
  epochEventSchema,
  artifactEventSchema,
  doneEventSchema,
  errorEventSchema,
]);
export type TrainerEvent = z.infer<typeof trainerEventSchema>;
export type StartEvent = z.infer<typeof startEventSchema>;
export type StepEvent = z.infer<typeof stepEventSchema>;
export type EpochEvent = z.infer<typeof epochEventSchema>;
export type ArtifactEvent = z.infer<typeof artifactEventSchema>;
export type DoneEvent = z.infer<typeof doneEventSchema>;
export type ErrorEvent = z.infer<typeof errorEventSchema>;

export type ParsedLine = { ok: true; event: TrainerEvent } | { ok: false; ignored: string };

/** One stdout line; never throws. Lines that are not a known event are returned as ignored (and logged by the caller). */
export function parseTrainerLine(line: string): ParsedLine {
  const text = line.trim();
  if (text === '') return { ok: false, ignored: 'empty line' };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, ignored: 'not JSON' };
  }
  const parsed = trainerEventSchema.safeParse(value);
  if (!parsed.success) {
    const event = (value as { event?: unknown })?.event;
    return { ok: false, ignored: typeof event === 'string' ? `unexpected ${event} event` : 'no event field' };
  }
  return { ok: true, event: parsed.data };
}

function add(out: TrainingMetricReport[], name: string, step: number, epoch: number | null, value: number | null | undefined, at: number): void {
  // Non-finite values arrive as null (the protocol's rule); the registry keeps finite values only.
  if (typeof value === 'number' && Number.isFinite(value)) out.push({ name, step, epoch, value, at });
}

/**
 * The metric values one trainer event carries: per step `train/*` at the global step, per epoch `epoch/*` and `val/*`
 * at the epoch number, and the final held-out evaluation `eval/*` at step 0.
 */
export function metricsOf(event: TrainerEvent, at: number = Date.now()): TrainingMetricReport[] {
  const out: TrainingMetricReport[] = [];
  switch (event.event) {
    case 'step':
      add(out, 'train/loss', event.globalStep, event.epoch, event.loss, at);
      add(out, 'train/bce', event.globalStep, event.epoch, event.bce, at);
      add(out, 'train/dice', event.globalStep, event.epoch, event.dice, at);
      add(out, 'train/lr', event.globalStep, event.epoch, event.lr, at);
      add(out, 'train/pairs_per_second', event.globalStep, event.epoch, event.pairsPerSecond, at);
      break;
    case 'epoch':
      add(out, 'epoch/train_loss', event.epoch, event.epoch, event.trainLoss, at);
      add(out, 'epoch/seconds', event.epoch, event.epoch, event.seconds, at);
      if (event.val) for (const k of ['precision', 'recall', 'f1', 'iou'] as const) add(out, `val/${k}`, event.epoch, event.epoch, event.val[k], at);
      break;
    case 'done':
      for (const k of ['precision', 'recall', 'f1', 'iou', 'kappa'] as const) add(out, `eval/${k}`, 0, null, event.evaluation[k], at);
      break;
    case 'start':
    case 'artifact':
    case 'error':
      break;
  }
  return out;
}
