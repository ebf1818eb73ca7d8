import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { testDatabaseUrl } from '../../test/support/test-database.js';
import { openDatabase, type Database } from '../../lib/db.js';
import { loadDatasetsConfig } from './config.js';
import { datasetsSubgraph } from './schema.js';

let db: Database;
let drop: () => Promise<void>;

beforeAll(async () => {
  const target = await testDatabaseUrl();
  const definition = datasetsSubgraph(loadDatasetsConfig({}));
  db = await openDatabase({ schema: 'datasets', entities: definition.entities, migrations: definition.migrations, databaseUrl: target.url, stateDir: null });
  drop = target.drop;
});
afterAll(async () => {
  await db?.close();
  await drop?.();
});

describe('datasets migrations', () => {
  it('create exactly the schema the entities describe (the event log included)', async () => {
    const diff = await db.orm.getSchemaGenerator().getUpdateSchemaSQL({ wrap: false });
    expect(diff.trim()).toBe('');
  });
});
