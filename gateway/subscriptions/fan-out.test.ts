import type { ExecutionResult } from 'graphql';
import { GraphQLError } from 'graphql';
import { describe, expect, it } from 'vitest';
import type { WebSocket } from 'ws';
import type { LoggedEvent } from '../../lib/events/event-log.js';
import { EventChannel } from './event-channel.js';
import { SharedResults, Subscriber, type SubscriberOptions } from './fan-out.js';

const event = (sequence: number, status = 'RUNNING'): LoggedEvent => ({
  stream: 'job:1',
  sequence,
  type: 'progress',
  tenant: 't',
  routingKey: 'job.1.progress',
  payload: { status },
  occurredAt: new Date().toISOString(),
});

/** What a subscriber writes to: the frames it was given; with `stuck`, nothing is ever flushed to the peer. */
function socket(stuck = false) {
  const frames: string[] = [];
  const s = {
    frames,
    readyState: 1,
    OPEN: 1,
    bufferedAmount: 0,
    send: (data: string) => {
      frames.push(data);
      if (stuck) s.bufferedAmount += data.length;
    },
  };
  return s;
}

function subscriber(options: Omit<Partial<SubscriberOptions>, 'socket'> & { socket: ReturnType<typeof socket>; results: SharedResults }) {
  const channel = new EventChannel({
    afterSequence: null,
    replay: async () => [],
    maxPending: 100,
    isFinal: (e) => e.payload.status === 'SUCCEEDED',
    onOverflow: () => undefined,
    onError: () => undefined,
  });
  let slow = 0;
  const sub = new Subscriber({
    id: 'sub-1',
    channel,
    group: 'g',
    execute: (e) => ({ data: { jobProgress: { sequence: e.sequence } } }),
    maxPending: 100,
    maxBufferedBytes: 1024,
    onSent: () => undefined,
    onSlow: () => (slow += 1),
    ...options,
    socket: options.socket as unknown as WebSocket,
  });
  channel.attach(sub.offer);
  return { channel, sub, slowCount: () => slow };
}

describe('fan-out', () => {
  it('executes and serialises an event once for a group, and sends the same JSON under each subscription id', async () => {
    const results = new SharedResults();
    let executions = 0;
    const execute = (e: LoggedEvent): ExecutionResult => {
      executions += 1;
      return { data: { jobProgress: { sequence: e.sequence } } };
    };
    const sockets = [socket(), socket()];
    const subs = sockets.map((s, i) => subscriber({ socket: s, results, execute, id: `id-${i}` }));
    subs.forEach(({ sub }) => void sub.next());
    const e = event(1);
    subs.forEach(({ channel }) => channel.push(e));
    expect(executions).toBe(1);
    expect(sockets.map((s) => JSON.parse(s.frames[0]!))).toEqual([
      { id: 'id-0', type: 'next', payload: { data: { jobProgress: { sequence: 1 } } } },
      { id: 'id-1', type: 'next', payload: { data: { jobProgress: { sequence: 1 } } } },
    ]);
    results.close();
  });

  it('keeps each subscriber in stream order when results are ready out of order, and ends after the final event', async () => {
    const results = new SharedResults();
    const release: Record<number, (r: ExecutionResult) => void> = {};
    const s = socket();
    const { channel, sub } = subscriber({
      socket: s,
      results,
      execute: (e) => new Promise<ExecutionResult>((resolve) => (release[e.sequence] = resolve)),
    });
    const ended = sub.next();
    channel.push(event(1));
    channel.push(event(2, 'SUCCEEDED'));
    release[2]!({ data: { n: 2 } });
    await Promise.resolve();
    expect(s.frames).toEqual([]);
    release[1]!({ data: { n: 1 }, errors: [new GraphQLError('partly', { extensions: { code: 'NOT_FOUND' } })] });
    expect(await ended).toEqual({ value: undefined, done: true });
    expect(s.frames.map((f) => JSON.parse(f).payload)).toEqual([
      { data: { n: 1 }, errors: [{ message: 'partly', extensions: { code: 'NOT_FOUND' } }] },
      { data: { n: 2 } },
    ]);
    expect(channel.closed).toBe(true);
    results.close();
  });

  it('writes nothing before graphql-ws takes the subscription, then what waited, in order', async () => {
    const results = new SharedResults();
    const s = socket();
    const { channel, sub } = subscriber({ socket: s, results });
    channel.push(event(1));
    channel.push(event(2));
    expect(s.frames).toEqual([]);
    void sub.next();
    expect(s.frames.map((f) => JSON.parse(f).payload.data.jobProgress.sequence)).toEqual([1, 2]);
    await sub.return();
    results.close();
  });

  it('cuts off a subscriber whose socket holds too much unsent, and stops its stream', async () => {
    const results = new SharedResults();
    const s = socket(true);
    const { channel, sub, slowCount } = subscriber({ socket: s, results, maxBufferedBytes: 100 });
    const ended = sub.next();
    channel.push(event(1));
    expect(slowCount()).toBe(0);
    channel.push(event(2));
    expect(slowCount()).toBe(1);
    expect(await ended).toEqual({ value: undefined, done: true });
    channel.push(event(3));
    expect(s.frames.length).toBe(2);
    expect(channel.closed).toBe(true);
    results.close();
  });
});
