import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabaseUrl, type TestDatabase } from '../../test/support/test-database.js';
import { createBroker, type Broker, type Delivery } from '../broker/broker.js';
import { MemoryBrokerServer } from '../broker/memory-broker.js';
import { openDatabase, type Database } from '../db.js';
import { appendEvents, EVENT_LOG_ENTITIES, EventRelay, replayEvents, type LoggedEvent } from './event-log.js';
import { eventLogMigration } from './event-log.migration.js';

let testDb: TestDatabase;
let db: Database;
let broker: Broker;

beforeAll(async () => {
  testDb = await testDatabaseUrl();
  db = await openDatabase({
    schema: 'evt',
    entities: EVENT_LOG_ENTITIES,
    migrations: [{ name: '0001-event-log', class: eventLogMigration('evt') }],
    databaseUrl: testDb.url,
    stateDir: null,
  });
  broker = await createBroker({ memoryServer: new MemoryBrokerServer() });
});
afterAll(async () => {
  await broker?.close();
  await db?.close();
  await testDb?.drop();
});

describe('event log', () => {
  it('numbers each stream from 1 without gaps, even under concurrent appends', async () => {
    const stream = `job:${randomUUID()}`;
    await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        db.fork().transactional((em) => appendEvents(em, [{ stream, type: 'progress', tenant: 't', routingKey: 'job.x.progress', payload: { i } }])),
      ),
    );
    const events = await replayEvents(db.fork(), stream, 0);
    expect(events.map((e) => e.sequence)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect((await replayEvents(db.fork(), stream, 10)).map((e) => e.sequence)).toEqual([11, 12]);
  });

  it('writes nothing when the surrounding transaction rolls back', async () => {
    const stream = `job:${randomUUID()}`;
    await expect(
      db.fork().transactional(async (em) => {
        await appendEvents(em, [{ stream, type: 'progress', tenant: 't', routingKey: 'k', payload: {} }]);
        throw new Error('the state change failed');
      }),
    ).rejects.toThrow('the state change failed');
    await db.fork().transactional((em) => appendEvents(em, [{ stream, type: 'progress', tenant: 't', routingKey: 'k', payload: {} }]));
    expect((await replayEvents(db.fork(), stream, 0)).map((e) => e.sequence)).toEqual([1]);
  });

  it('relays logged events to the topic exchange in order, once each', async () => {
    const id = randomUUID();
    const received: LoggedEvent[] = [];
    const subscription = await broker.subscribe<LoggedEvent>([`job.${id}.progress`], async (d: Delivery<LoggedEvent>) => {
      received.push(d.envelope.payload);
    });
    const relay = new EventRelay({ fork: db.fork, broker, intervalMs: 50 });
    await db.fork().transactional((em) =>
      appendEvents(em, [1, 2, 3].map((n) => ({ stream: `job:${id}`, type: 'progress', tenant: 't', routingKey: `job.${id}.progress`, payload: { n } }))),
    );
    relay.start();
    await relay.flush();
    await relay.flush();
    await expect.poll(() => received.length).toBe(3);
    expect(received.map((e) => e.sequence)).toEqual([1, 2, 3]);
    expect(received.map((e) => e.payload.n)).toEqual([1, 2, 3]);
    await relay.stop();
    await subscription.close();
  });

  it('appends to several streams at once, each numbered on from its own head, in the order given', async () => {
    const [a, b] = [`job:${randomUUID()}`, `job:${randomUUID()}`];
    const event = (stream: string, n: number) => ({ stream, type: 'progress', tenant: 't', routingKey: 'k', payload: { n } });
    await db.fork().transactional((em) => appendEvents(em, [event(a, 0)]));
    const sequences = await db.fork().transactional((em) => appendEvents(em, [event(b, 1), event(a, 2), event(b, 3), event(a, 4)]));
    expect(sequences).toEqual([1, 2, 2, 3]);
    expect((await replayEvents(db.fork(), a, 0)).map((e) => [e.sequence, e.payload.n])).toEqual([[1, 0], [2, 2], [3, 4]]);
    expect((await replayEvents(db.fork(), b, 0)).map((e) => [e.sequence, e.payload.n])).toEqual([[1, 1], [2, 3]]);
  });

  it('publishes a delayed kick once its delay has passed, and the events of both kicks in one pass', async () => {
    const id = randomUUID();
    const received: { at: number; sequence: number }[] = [];
    const subscription = await broker.subscribe<LoggedEvent>([`job.${id}.progress`], async (d: Delivery<LoggedEvent>) => {
      received.push({ at: Date.now(), sequence: d.envelope.payload.sequence });
    });
    const relay = new EventRelay({ fork: db.fork, broker }); // not started: only kicks publish
    const append = () => db.fork().transactional((em) => appendEvents(em, [{ stream: `job:${id}`, type: 'progress', tenant: 't', routingKey: `job.${id}.progress`, payload: {} }]));
    await append();
    const kicked = Date.now();
    relay.kick(300);
    await append();
    relay.kick(300);
    await new Promise((r) => setTimeout(r, 150));
    expect(received).toEqual([]);
    await expect.poll(() => received.length, { timeout: 3000 }).toBe(2);
    expect(received.map((r) => r.sequence)).toEqual([1, 2]);
    expect(received[0]!.at - kicked).toBeGreaterThanOrEqual(290);
    await relay.stop();
    await subscription.close();
  });
});
