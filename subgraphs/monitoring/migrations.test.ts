import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Database } from '../../lib/db.js';
import { openMonitoringDatabase } from './testing.js';

let db: Database;
let close: () => Promise<void>;

beforeAll(async () => {
  ({ db, close } = await openMonitoringDatabase());
});
afterAll(async () => {
  await close();
});

describe('monitoring migrations', () => {
  it('create exactly the schema the entities describe', async () => {
    // The keyset-pagination indexes are declared on the entities by name and compared by name, so they count here too.
    const diff = await db.orm.getSchemaGenerator().getUpdateSchemaSQL({ wrap: false });
    expect(diff.trim()).toBe('');
  });

  it('include the keyset-pagination indexes', async () => {
    const rows = await db.orm.em
      .getConnection()
      .execute<{ indexname: string; indexdef: string }[]>(`select indexname, indexdef from pg_indexes where schemaname = 'monitoring'`);
    const byName = new Map(rows.map((r: { indexname: string; indexdef: string }) => [r.indexname, r.indexdef]));
    expect(byName.get('audit_event_tenant_at_index')).toMatch(/\(tenant, at DESC, id DESC\)/);
    expect(byName.get('drift_report_tenant_model_created_index')).toMatch(/\(tenant, model_name, created_at DESC, id DESC\)/);
    expect(byName.get('drift_alert_tenant_created_index')).toMatch(/\(tenant, created_at DESC, id DESC\)/);
  });
});
