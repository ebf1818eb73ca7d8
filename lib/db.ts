// The database every subgraph uses: MikroORM 6 on PostgreSQL when DATABASE_URL is set, else PGlite (Postgres in
// WASM) in the state folder. Each subgraph owns one Postgres schema and migrates it at start-up.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { MikroORM, ReferenceKind, type Constructor, type EntityManager, type Options } from '@mikro-orm/core';
import { Migration, Migrator } from '@mikro-orm/migrations';
import { PostgreSqlDriver } from '@mikro-orm/postgresql';
import { PGliteDriver, type PGliteConnectionConfig } from 'mikro-orm-pglite';
import { serviceLogger } from './telemetry.js';

export { Migration };

export interface DatabaseOptions {
  /** Postgres schema this service owns, e.g. `datasets`. */
  schema: string;
  entities: Constructor<object>[];
  migrations: { name: string; class: Constructor<Migration> }[];
  /** postgres://… ; when absent, PGlite in `<stateDir>/pglite/<schema>` (or in memory when stateDir is null). */
  databaseUrl?: string;
  stateDir?: string | null;
  poolMax?: number;
}

export interface Database {
  orm: MikroORM;
  kind: 'postgresql' | 'pglite';
  /** A fresh entity manager: one per request and per message, never shared. */
  fork(): EntityManager;
  isHealthy(): Promise<boolean>;
  close(): Promise<void>;
}

const log = serviceLogger('db');

/** A table of the entity manager's schema as raw SQL names it (`"schema"."table"`), for statements MikroORM does not build. */
export function qualifiedTable(em: EntityManager, table: string): string {
  const schema = em.config.get('schema');
  return schema ? `"${schema}"."${table}"` : `"${table}"`;
}

/**
 * An entity as one JSON row keyed by column name, for `json_populate_recordset(null::<table>, ?::json)`: a hot path then
 * inserts several entities in one statement (data-modifying CTEs) instead of a transaction of ORM flushes. The
 * entity's own defaults are already applied (construct it with `new`); many-to-one properties become their key.
 */
export function entityRow(em: EntityManager, entity: object): Record<string, unknown> {
  const meta = em.getMetadata().get(entity.constructor.name);
  const row: Record<string, unknown> = {};
  for (const prop of meta.props) {
    if (prop.persist === false || !prop.fieldNames?.length) continue;
    const value = (entity as Record<string, unknown>)[prop.name];
    if (prop.kind === ReferenceKind.MANY_TO_ONE || (prop.kind === ReferenceKind.ONE_TO_ONE && prop.owner)) {
      const target = em.getMetadata().get(prop.type);
      row[prop.fieldNames[0]!] = value == null ? null : (value as Record<string, unknown>)[target.primaryKeys[0]!];
    } else if (prop.kind === ReferenceKind.SCALAR) {
      row[prop.fieldNames[0]!] = value instanceof Date ? value.toISOString() : (value ?? null);
    }
  }
  return row;
}

/** `insert into <table> select * from json_populate_recordset(…, ?)`: its parameter is a JSON array of entityRow()s. */
export function insertRowsSql(em: EntityManager, table: string): string {
  const qualified = qualifiedTable(em, table);
  return `insert into ${qualified} select * from json_populate_recordset(null::${qualified}, ?::json)`;
}

export async function openDatabase(options: DatabaseOptions): Promise<Database> {
  const common: Options = {
    entities: options.entities,
    schema: options.schema,
    extensions: [Migrator],
    allowGlobalContext: false,
    forceUndefined: false,
    discovery: { disableDynamicFileAccess: true, requireEntitiesArray: true },
    migrations: {
      migrationsList: options.migrations,
      tableName: 'mikro_orm_migrations',
      transactional: true,
      allOrNothing: true,
      snapshot: false,
      silent: true,
    },
    debug: false,
  };
  let orm: MikroORM;
  let pglite: PGlite | undefined;
  if (options.databaseUrl) {
    orm = await MikroORM.init({
      ...common,
      driver: PostgreSqlDriver,
      clientUrl: options.databaseUrl,
      pool: { min: 0, max: options.poolMax ?? 10, idleTimeoutMillis: 30_000 },
    });
  } else {
    let dataDir: string | undefined;
    if (options.stateDir) {
      dataDir = join(options.stateDir, 'pglite', options.schema);
      await mkdir(dataDir, { recursive: true });
    }
    const instance = new PGlite(dataDir);
    pglite = instance;
    orm = await MikroORM.init({
      ...common,
      driver: PGliteDriver,
      dbName: 'postgres',
      driverOptions: { connection: { pglite: () => instance } satisfies PGliteConnectionConfig },
    });
  }
  await migrate(orm, options.schema);
  const kind = options.databaseUrl ? 'postgresql' : 'pglite';
  log.info({ schema: options.schema, kind }, 'database ready');
  return {
    orm,
    kind,
    fork: () => orm.em.fork(),
    async isHealthy() {
      try {
        await orm.em.getConnection().execute('select 1');
        return true;
      } catch {
        return false;
      }
    },
    async close() {
      await orm.close(true);
      await pglite?.close();
    },
  };
}

async function migrate(orm: MikroORM, schema: string): Promise<void> {
  const connection = orm.em.getConnection();
  await connection.execute(`create schema if not exists "${schema}"`);
  const migrator = orm.getMigrator();
  const pending = await migrator.getPendingMigrations();
  if (pending.length === 0) return;
  try {
    await migrator.up();
  } catch (error) {
    // Replicas starting together race for the same migration; the loser finds nothing left to do. Each migration runs
    // in one transaction (allOrNothing), so the loser's attempt left nothing half applied.
    await new Promise((r) => setTimeout(r, 500));
    if ((await migrator.getPendingMigrations()).length > 0) throw error;
  }
  log.info({ schema, applied: pending.map((m) => m.name) }, 'migrations applied');
}
