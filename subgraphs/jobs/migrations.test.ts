import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { openJobsDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ db, close } = await openJobsDatabase());
});
afterAll(async () => {
  await close();
});

describe('jobs migrations', () => {
  it('create exactly the schema the entities describe', async () => {
    // The keyset-pagination index is declared on the entity by name and compared by name, so it counts here too.
    const diff = await db.orm.getSchemaGenerator().getUpdateSchemaSQL({ wrap: false });
    expect(diff.trim()).toBe('');
  });

  it('include the keyset-pagination index and the per-tenant idempotency key', async () => {
    const rows = await db.orm.em
      .getConnection()
      .execute<{ indexname: string; indexdef: string }[]>(`select indexname, indexdef from pg_indexes where schemaname = 'jobs' and tablename = 'job'`);
    const byName = new Map(rows.map((r: { indexname: string; indexdef: string }) => [r.indexname, r.indexdef]));
    expect(byName.get('job_tenant_created_index')).toMatch(/\(tenant, created_at DESC, id DESC\)/);
    expect(byName.get('job_tenant_idempotency_key_unique')).toMatch(/UNIQUE INDEX .* \(tenant, idempotency_key\)/);
  });
});
