// One database per test file: with TEST_DATABASE_URL set, a fresh PostgreSQL database is created on that server
// and dropped afterwards; without it, the caller uses PGlite in memory (url undefined).
import { randomBytes } from 'node:crypto';
import pg from 'pg';

export interface TestDatabase {
  url: string | undefined;
  drop(): Promise<void>;
}

export async function testDatabaseUrl(): Promise<TestDatabase> {
  const base = process.env.TEST_DATABASE_URL;
  if (!base) return { url: undefined, drop: async () => undefined };
  const name = `lcd_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: base });
  await admin.connect();
  try {
    await admin.query(`create database "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(base);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    async drop() {
      const client = new pg.Client({ connectionString: base });
      await client.connect();
      try {
        await client.query(`drop database if exists "${name}" with (force)`);
      } finally {
        await client.end();
      }
    },
  };
}
