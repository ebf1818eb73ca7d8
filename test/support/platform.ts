// Starts the whole platform for an end-to-end test, as a client would meet it: free ports, a fresh state folder,
// one fresh database per subgraph (PostgreSQL when TEST_DATABASE_URL is set, else PGlite in memory), RabbitMQ when
// TEST_AMQP_URL is set, S3 when TEST_STORAGE_URL is set; real JWTs signed with the embedded key.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { issueDevToken, type Role } from '../../lib/auth.js';
import type { Env } from '../../lib/config.js';
import { startPlatform, type Platform } from '../../lib/platform.js';
import { SUBGRAPH_NAMES, type SubgraphName } from '../../subgraphs/index.js';
import { testDatabaseUrl, type TestDatabase } from './test-database.js';

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Real change-detection sample pairs, beside the repository (never copied into it). */
export const sharedData = resolve(repoRoot, '..', 'shared', 'data');

export interface TestPlatform {
  platform: Platform;
  url: string;
  stateDir: string;
  token(roles?: Role[], tenant?: string, subject?: string): Promise<string>;
  gql<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>, token?: string | null): Promise<GqlResponse<T>>;
  close(): Promise<void>;
}

export interface GqlResponse<T> {
  status: number;
  data: T | null;
  errors?: { message: string; path?: string[]; extensions?: Record<string, unknown> }[];
}

export async function startTestPlatform(extraEnv: Env = {}): Promise<TestPlatform> {
  const stateDir = await mkdtemp(join(tmpdir(), 'lcd-e2e-'));
  const databases: Partial<Record<SubgraphName, TestDatabase>> = {};
  for (const name of SUBGRAPH_NAMES) databases[name] = await testDatabaseUrl();
  const env: Env = {
    NODE_ENV: 'test',
    STATE_DIR: stateDir,
    SUPERGRAPH_CONFIG: join(repoRoot, 'supergraph.yaml'),
    AMQP_URL: process.env.TEST_AMQP_URL,
    STORAGE_URL: process.env.TEST_STORAGE_URL,
    ...extraEnv,
  };
  const platform = await startPlatform({
    env,
    ephemeralPorts: true,
    stateDir: null,
    databaseUrls: Object.fromEntries(SUBGRAPH_NAMES.map((n) => [n, databases[n]?.url])),
  });
  const url = platform.gateway.url;
  const adminToken = await issueDevToken(stateDir, { subject: 'admin-1', tenant: 'acme', roles: ['admin', 'ml-engineer', 'analyst', 'viewer'] });
  return {
    platform,
    url,
    stateDir,
    token: (roles = ['admin'], tenant = 'acme', subject = `user-${roles.join('-')}`) => issueDevToken(stateDir, { subject, tenant, roles }),
    async gql<T>(query: string, variables: Record<string, unknown> = {}, token: string | null = adminToken) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await res.json()) as { data?: T | null; errors?: GqlResponse<T>['errors'] };
      return { status: res.status, data: body.data ?? null, errors: body.errors };
    },
    async close() {
      await platform.close();
      for (const db of Object.values(databases)) await db?.drop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** Creates an upload through the API and PUTs the bytes to its signed URL, as a client does. */
export async function uploadFile(t: TestPlatform, bytes: Buffer, filename: string, contentType = 'image/png', token?: string): Promise<string> {
  const res = await t.gql<{ createUpload: { id: string; url: string; method: string; headers: { name: string; value: string }[] } }>(
    `mutation($input: CreateUploadInput!) { createUpload(input: $input) { id url method headers { name value } } }`,
    { input: { filename, contentType, byteSize: bytes.length } },
    token,
  );
  if (!res.data) throw new Error(`createUpload failed: ${JSON.stringify(res.errors)}`);
  const upload = res.data.createUpload;
  const put = await fetch(upload.url, {
    method: upload.method,
    headers: Object.fromEntries(upload.headers.map((h) => [h.name, h.value])),
    body: bytes,
  });
  if (!put.ok) throw new Error(`PUT to the signed URL failed with ${put.status}: ${await put.text()}`);
  return upload.id;
}

export function errorCodes(res: GqlResponse<unknown>): string[] {
  return (res.errors ?? []).map((e) => String(e.extensions?.code));
}
