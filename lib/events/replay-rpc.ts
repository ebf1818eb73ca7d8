// Replay of an owner's event log over the broker: the gateway asks the subgraph that owns a stream for the events a
// resuming subscriber missed. Only events of the asking tenant (or platform-wide ones) are ever returned.
import type { EntityManager } from '@mikro-orm/core';
import { z } from 'zod';
import { createEnvelope, type Broker, type Subscription } from '../broker/broker.js';
import { replayEvents, type LoggedEvent } from './event-log.js';

export type EventOwner = 'jobs' | 'models' | 'monitoring';

export const replayQueue = (owner: EventOwner): string => `events.replay.${owner}`;

const replayRequestSchema = z.object({
  stream: z.string().min(1).max(300),
  afterSequence: z.number().int().min(0),
  limit: z.number().int().min(1).max(1000).optional(),
});
export type ReplayRequest = z.infer<typeof replayRequestSchema>;

export interface ReplayReply {
  events: LoggedEvent[];
}

/** Which subgraph owns a stream, from its prefix (`job:<id>`, `jobs:<tenant>`, `training:<id>`, `drift:<tenant>`…). */
export function streamOwner(stream: string): EventOwner {
  const prefix = stream.split(':')[0];
  switch (prefix) {
    case 'job':
    case 'jobs':
      return 'jobs';
    case 'training':
    case 'model':
    case 'models':
      return 'models';
    case 'drift':
      return 'monitoring';
    default:
      throw new Error(`No owner for event stream ${JSON.stringify(stream)}`);
  }
}

export async function serveReplay(broker: Broker, owner: EventOwner, fork: () => EntityManager): Promise<Subscription> {
  const queue = replayQueue(owner);
  await broker.assertQueue(queue);
  return broker.serveRpc<ReplayRequest, ReplayReply>(
    queue,
    async (delivery) => {
      const { stream, afterSequence, limit } = delivery.envelope.payload;
      const events = (await replayEvents(fork(), stream, afterSequence, limit ?? 500)).filter(
        (e) => e.tenant === delivery.envelope.tenant || e.tenant === '*',
      );
      return createEnvelope('events.replayed', { events }, { tenant: delivery.envelope.tenant });
    },
    { prefetch: 8, payloadSchema: replayRequestSchema },
  );
}

export async function requestReplay(broker: Broker, tenant: string, stream: string, afterSequence: number, timeoutMs = 10_000): Promise<LoggedEvent[]> {
  const reply = await broker.rpc<ReplayRequest, ReplayReply>(
    replayQueue(streamOwner(stream)),
    createEnvelope('events.replay', { stream, afterSequence, limit: 1000 }, { tenant }),
    { timeoutMs },
  );
  return reply.payload.events;
}
