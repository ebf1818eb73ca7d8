import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { openModelsDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ db, close } = await openModelsDatabase());
});
afterAll(async () => {
  await close();
});

describe('models migrations', () => {
  it('create exactly the schema the entities describe', async () => {
    // Custom indexes (keyset pagination, the one-Production partial unique index) are declared on the entities by name
    // and compared by name, so they count here too.
    const diff = await db.orm.getSchemaGenerator().getUpdateSchemaSQL({ wrap: false });
    expect(diff.trim()).toBe('');
  });

  it('include the partial unique index on Production versions', async () => {
    const rows = await db.orm.em
      .getConnection()
      .execute<{ indexdef: string }[]>(`select indexdef from pg_indexes where schemaname = 'models' and indexname = 'model_version_one_production_unique'`);
    expect(rows).toHaveLength(1);
    expect(rows[0]!.indexdef).toMatch(/UNIQUE INDEX .* \(registered_model_id\) WHERE \(stage = 'PRODUCTION'::text\)/);
  });
});
