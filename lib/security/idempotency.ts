// Idempotency keys for mutations that create work (`startTraining`, …), reusable by any subgraph: a table in the
// subgraph's own schema remembers, per tenant, scope (the mutation) and key, a hash of the input and the result.
// The same key with the same input returns the first result; with other input it is a CONFLICT. The record is written
// in the same transaction as the work, so either both are stored or neither (a failed call can be retried).
//
// Use it in a subgraph:
//   entities:   [..., IdempotencyKeyEntity]
//   migrations: [..., { name: '0002-idempotency-keys', class: idempotencyKeysMigration('models') }]
//   service:    const { result } = await runIdempotent(em, { tenant, scope: 'startTraining', key, input },
//                 async (tx) => ({ runId: tx.create(TrainingRunEntity, {...}).id }));
//               then load the run by result.runId. Publish messages after it returns (also when `replayed`, if the
//               first call may have stopped before publishing): the work must only touch the database.
import { createHash, randomUUID } from 'node:crypto';
import { Entity, Index, OptionalProps, PrimaryKey, Property, Unique, UniqueConstraintViolationException, type Constructor, type EntityManager } from '@mikro-orm/core';
import { Migration } from '../db.js';
import { badInput, conflict } from '../errors.js';

/** One idempotency key of one tenant for one mutation. */
@Entity({ tableName: 'idempotency_key' })
@Unique({ name: 'idempotency_key_tenant_scope_key_unique', properties: ['tenant', 'scope', 'key'] })
@Index({ name: 'idempotency_key_created_at_index', properties: ['createdAt'] })
export class IdempotencyKeyEntity {
  [OptionalProps]?: 'id' | 'createdAt';

  @PrimaryKey({ type: 'uuid' })
  id: string = randomUUID();

  @Property({ type: 'text' })
  tenant!: string;

  /** What the key is for, usually the mutation's name: the same key may be used for two different mutations. */
  @Property({ type: 'text' })
  scope!: string;

  @Property({ type: 'text' })
  key!: string;

  /** sha256 of the canonical JSON of the input. */
  @Property({ type: 'text' })
  requestHash!: string;

  /** What the first call returned (JSON), returned again to every retry. */
  @Property({ type: 'json', nullable: true })
  result: unknown = null;

  @Property({ type: 'timestamptz' })
  createdAt: Date = new Date();
}

const SCHEMA_NAME = /^[a-z_][a-z0-9_]{0,62}$/;

/** The migration that creates the table in a subgraph's Postgres schema. */
export function idempotencyKeysMigration(schema: string): Constructor<Migration> {
  if (!SCHEMA_NAME.test(schema)) throw new RangeError(`invalid schema name "${schema}"`);
  return class IdempotencyKeysMigration extends Migration {
    override async up(): Promise<void> {
      this.addSql(`create schema if not exists "${schema}";`);
      this.addSql(
        `create table if not exists "${schema}"."idempotency_key" ("id" uuid not null, "tenant" text not null, "scope" text not null, "key" text not null, "request_hash" text not null, "result" jsonb null, "created_at" timestamptz not null, constraint "idempotency_key_pkey" primary key ("id"));`,
      );
      this.addSql(
        `create unique index if not exists "idempotency_key_tenant_scope_key_unique" on "${schema}"."idempotency_key" ("tenant", "scope", "key");`,
      );
      this.addSql(`create index if not exists "idempotency_key_created_at_index" on "${schema}"."idempotency_key" ("created_at");`);
    }
  };
}

export interface IdempotentCall {
  tenant: string;
  /** The mutation (or other unit of work) the key belongs to. */
  scope: string;
  /** The client's key; without one the work simply runs (in a transaction). */
  key: string | null | undefined;
  /** Everything that makes two calls "the same": compared by a hash of its canonical JSON. */
  input: unknown;
  /** Argument named in BAD_USER_INPUT / CONFLICT errors (default `idempotencyKey`). */
  field?: string;
}

export interface IdempotentResult<R> {
  result: R;
  /** True when an earlier call with the same key produced the result. */
  replayed: boolean;
}

const KEY = /^[\x21-\x7e]{1,200}$/;

/**
 * Runs `work` once per (tenant, scope, key). `work` gets the transaction's entity manager and returns a JSON value
 * (ids, not entities): that value is stored and returned again, as JSON, to every retry with the same input.
 */
export async function runIdempotent<R>(em: EntityManager, call: IdempotentCall, work: (tx: EntityManager) => Promise<R>): Promise<IdempotentResult<R>> {
  const field = call.field ?? 'idempotencyKey';
  if (call.key == null) return { result: await em.transactional((tx) => work(tx)), replayed: false };
  if (!KEY.test(call.key)) throw badInput(`${field} must be 1–200 printable ASCII characters without spaces`, field);
  const requestHash = hashRequest(call.input);
  const where = { tenant: call.tenant, scope: call.scope, key: call.key };

  const existing = await em.findOne(IdempotencyKeyEntity, where);
  if (existing) return replay<R>(existing, requestHash, field);
  try {
    const result = await em.transactional(async (tx) => {
      const value = await work(tx);
      tx.create(IdempotencyKeyEntity, { ...where, requestHash, result: toJson(value) });
      return value;
    });
    return { result, replayed: false };
  } catch (error) {
    // A concurrent call with the same key committed first; this one's work was rolled back with its key.
    if (!(error instanceof UniqueConstraintViolationException)) throw error;
    const winner = await em.fork().findOne(IdempotencyKeyEntity, where);
    if (!winner) throw error;
    return replay<R>(winner, requestHash, field);
  }
}

function replay<R>(record: IdempotencyKeyEntity, requestHash: string, field: string): IdempotentResult<R> {
  if (record.requestHash !== requestHash) {
    throw conflict(`This ${field} was already used with other input; use a new key for a new request`, { field });
  }
  return { result: record.result as R, replayed: true };
}

/** Deletes keys older than `before` (retention); returns how many. */
export function purgeIdempotencyKeys(em: EntityManager, before: Date): Promise<number> {
  return em.nativeDelete(IdempotencyKeyEntity, { createdAt: { $lt: before } });
}

function toJson(value: unknown): unknown {
  return value === undefined ? null : (JSON.parse(JSON.stringify(value)) as unknown);
}

/** sha256 of the canonical JSON of a value: object keys sorted, undefined dropped, dates as ISO strings. */
export function hashRequest(input: unknown): string {
  return createHash('sha256').update(canonicalJson(input)).digest('hex');
}

export function canonicalJson(value: unknown): string {
  if (value === undefined || typeof value === 'function' || typeof value === 'symbol') return 'null';
  if (typeof value === 'bigint') return JSON.stringify(value.toString());
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (value instanceof Date) return JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}
