// A database that drops every connection and comes back: clients get a typed, retryable error or a normal answer,
// never an internal error, and the service keeps serving without a restart.
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { errorCodes, startTestPlatform, type TestPlatform } from '../support/platform.js';

const databaseUrl = process.env.TEST_DATABASE_URL;

describe.skipIf(!databaseUrl)('database connections dropped (needs TEST_DATABASE_URL: PGlite cannot drop connections)', () => {
  let t: TestPlatform;
  beforeAll(async () => {
    t = await startTestPlatform();
  });
  afterAll(async () => {
    await t?.close();
  });

  it('answers with UNAVAILABLE or data while connections are killed, then recovers', async () => {
    const created = await t.gql(`mutation { createDataset(input: {name: "before-outage"}) { id } }`);
    expect(created.errors).toBeUndefined();
    const datasetsDb = t.platform.subgraphs.datasets.db.orm.config.get('dbName');
    const admin = new pg.Client({ connectionString: databaseUrl });
    await admin.connect();
    try {
      const killed = await admin.query('select pg_terminate_backend(pid) from pg_stat_activity where datname = $1 and pid <> pg_backend_pid()', [datasetsDb]);
      expect(killed.rowCount).toBeGreaterThan(0);
    } finally {
      await admin.end();
    }
    const codes = new Set<string>();
    let answered = false;
    for (let attempt = 0; attempt < 10 && !answered; attempt++) {
      const res = await t.gql<{ datasets: { totalCount: number } }>(`{ datasets { totalCount } }`);
      if (res.data?.datasets) {
        answered = true;
        expect(res.data.datasets.totalCount).toBe(1);
      } else {
        errorCodes(res).forEach((c) => codes.add(c));
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    expect(answered).toBe(true);
    expect([...codes].filter((c) => c !== 'UNAVAILABLE')).toEqual([]);
    const again = await t.gql(`mutation { createDataset(input: {name: "after-outage"}) { id } }`);
    expect(again.errors).toBeUndefined();
  });
});
