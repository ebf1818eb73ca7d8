import { randomUUID } from 'node:crypto';
import { Entity, PrimaryKey, Property } from '@mikro-orm/core';
import { GraphQLError } from 'graphql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabaseUrl, type TestDatabase } from '../../test/support/test-database.js';
import { Migration, openDatabase, type Database } from '../db.js';
import { canonicalJson, IdempotencyKeyEntity, idempotencyKeysMigration, purgeIdempotencyKeys, runIdempotent } from './idempotency.js';

/** The work a mutation does: one row per call that was not a replay. */
@Entity({ tableName: 'work_item' })
class WorkItemEntity {
  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  @Property({ type: 'text' })
  name!: string;
}

const workTable = (schema: string) =>
  class WorkItemMigration extends Migration {
    override async up(): Promise<void> {
      this.addSql(`create table "${schema}"."work_item" ("id" uuid not null primary key, "tenant" text not null, "name" text not null);`);
    }
  };

let target: TestDatabase;
const open: Database[] = [];
async function database(schema: string): Promise<Database> {
  const db = await openDatabase({
    schema,
    entities: [IdempotencyKeyEntity, WorkItemEntity],
    migrations: [
      { name: '0001-work', class: workTable(schema) },
      { name: '0002-idempotency-keys', class: idempotencyKeysMigration(schema) },
    ],
    databaseUrl: target.url,
    stateDir: null,
  });
  open.push(db);
  return db;
}

let db: Database;
beforeAll(async () => {
  target = await testDatabaseUrl();
  db = await database('idem_a');
});
afterAll(async () => {
  for (const d of open) await d.close();
  await target.drop();
});

async function codeOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    if (error instanceof GraphQLError) return error.extensions;
    throw error;
  }
  throw new Error('expected an API error');
}

/** What `startTraining` would do: create a row, return its id. */
const start = (database: Database, call: { tenant: string; key: string | null; input: Record<string, unknown>; scope?: string }) =>
  runIdempotent(database.fork(), { scope: 'startTraining', ...call }, async (tx) => {
    const item = tx.create(WorkItemEntity, { tenant: call.tenant, name: String(call.input.name) });
    return { id: item.id };
  });

const rows = (database: Database, tenant: string) => database.fork().count(WorkItemEntity, { tenant });

describe('runIdempotent', () => {
  it('returns the first result for the same key and input, doing the work once', async () => {
    const first = await start(db, { tenant: 'acme', key: 'train-1', input: { name: 'a', epochs: 3 } });
    const again = await start(db, { tenant: 'acme', key: 'train-1', input: { epochs: 3, name: 'a' } });
    expect(first.replayed).toBe(false);
    expect(again).toEqual({ result: first.result, replayed: true });
    expect(await rows(db, 'acme')).toBe(1);
  });

  it('refuses the same key with other input as CONFLICT, and writes nothing', async () => {
    await start(db, { tenant: 'conflict', key: 'k', input: { name: 'a' } });
    expect(await codeOf(start(db, { tenant: 'conflict', key: 'k', input: { name: 'b' } }))).toMatchObject({ code: 'CONFLICT', field: 'idempotencyKey' });
    expect(await rows(db, 'conflict')).toBe(1);
  });

  it('scopes keys to the tenant and to the mutation', async () => {
    await start(db, { tenant: 'scoped-1', key: 'same', input: { name: 'a' } });
    expect((await start(db, { tenant: 'scoped-2', key: 'same', input: { name: 'b' } })).replayed).toBe(false);
    expect((await start(db, { tenant: 'scoped-1', key: 'same', input: { name: 'c' }, scope: 'detectChanges' })).replayed).toBe(false);
  });

  it('does the work once when retries race, and gives every caller the same result', async () => {
    const results = await Promise.all(Array.from({ length: 5 }, () => start(db, { tenant: 'race', key: 'race-1', input: { name: 'a' } })));
    expect(new Set(results.map((r) => r.result.id)).size).toBe(1);
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(await rows(db, 'race')).toBe(1);
    expect(await db.fork().count(IdempotencyKeyEntity, { tenant: 'race' })).toBe(1);
  });

  it('keeps nothing when the work fails, so that a retry does it', async () => {
    const failing = runIdempotent(db.fork(), { tenant: 'fails', scope: 'startTraining', key: 'f-1', input: {} }, async (tx) => {
      tx.create(WorkItemEntity, { tenant: 'fails', name: 'half' });
      await tx.flush();
      throw new Error('the broker is down');
    });
    await expect(failing).rejects.toThrow('the broker is down');
    expect(await rows(db, 'fails')).toBe(0);
    expect(await db.fork().count(IdempotencyKeyEntity, { tenant: 'fails' })).toBe(0);
    expect((await start(db, { tenant: 'fails', key: 'f-1', input: {} })).replayed).toBe(false);
  });

  it('runs the work every time without a key, and refuses a malformed key with BAD_USER_INPUT', async () => {
    await start(db, { tenant: 'keyless', key: null, input: { name: 'a' } });
    await start(db, { tenant: 'keyless', key: null, input: { name: 'a' } });
    expect(await rows(db, 'keyless')).toBe(2);
    expect(await codeOf(start(db, { tenant: 'keyless', key: 'has space', input: {} }))).toMatchObject({ code: 'BAD_USER_INPUT', field: 'idempotencyKey' });
    expect(await codeOf(start(db, { tenant: 'keyless', key: 'x'.repeat(201), input: {} }))).toMatchObject({ code: 'BAD_USER_INPUT' });
  });

  it("keeps each subgraph's keys in its own schema", async () => {
    const other = await database('idem_b');
    await start(db, { tenant: 'schemas', key: 'shared', input: { name: 'a' } });
    expect((await start(other, { tenant: 'schemas', key: 'shared', input: { name: 'b' } })).replayed).toBe(false);
    expect(await other.fork().count(IdempotencyKeyEntity, {})).toBe(1);
  });

  it('purges keys older than a given time', async () => {
    await start(db, { tenant: 'purge', key: 'old', input: {} });
    expect(await purgeIdempotencyKeys(db.fork(), new Date(Date.now() + 60_000))).toBeGreaterThan(0);
    expect((await start(db, { tenant: 'purge', key: 'old', input: { other: true } })).replayed).toBe(false);
  });
});

describe('canonicalJson', () => {
  it('ignores key order and undefined values, and writes dates as ISO strings', () => {
    const at = new Date('2026-01-02T03:04:05Z');
    expect(canonicalJson({ b: [1, { d: 1, c: undefined }], a: at })).toBe('{"a":"2026-01-02T03:04:05.000Z","b":[1,{"d":1}]}');
    expect(canonicalJson({ a: 1, b: 2 })).toBe(canonicalJson({ b: 2, a: 1 }));
    expect(canonicalJson([undefined, 10n])).toBe('[null,"10"]');
  });
});
