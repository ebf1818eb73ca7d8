// Starts the whole platform for an end-to-end test, as a client would meet it: free ports, a fresh state folder,
// one fresh database per subgraph (PostgreSQL when TEST_DATABASE_URL is set, else PGlite in memory), RabbitMQ when
// TEST_AMQP_URL is set, S3 when TEST_STORAGE_URL is set; real JWTs signed with the embedded key.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { loadGatewayConfig } from '../../gateway/config.js';
import { startGateway, type RunningGateway } from '../../gateway/gateway.js';
import { issueDevToken, type Role } from '../../lib/auth.js';
import type { Env } from '../../lib/config.js';
import { startPlatform, type Platform } from '../../lib/platform.js';
import { createRuntime, loadRuntimeConfig } from '../../lib/runtime.js';
import { SUBGRAPH_NAMES, type SubgraphName } from '../../subgraphs/index.js';
import { testDatabaseUrl, type TestDatabase } from './test-database.js';

const run = promisify(execFile);

export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export { sharedData } from '../../lib/model/testing.js';

export interface TestPlatform {
  platform: Platform;
  url: string;
  stateDir: string;
  /** The environment the platform was started with. */
  env: Env;
  token(roles?: Role[], tenant?: string, subject?: string): Promise<string>;
  gql<T = Record<string, unknown>>(query: string, variables?: Record<string, unknown>, token?: string | null): Promise<GqlResponse<T>>;
  /** A raw POST as a client sends it (any body, any headers), to the gateway unless `url` says otherwise. */
  post(body: unknown, options?: { token?: string | null; headers?: Record<string, string>; url?: string }): Promise<RawResponse>;
  close(): Promise<void>;
}

export interface RawResponse {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON; null when it is not JSON. */
  json: { data?: unknown; errors?: { message: string; path?: (string | number)[]; extensions?: Record<string, unknown> }[] } | null;
}

export interface TestPlatformOptions {
  /** Signs the tokens `token()` returns (and the default admin token): an external issuer instead of the dev key. */
  signToken?: (claims: { subject: string; tenant: string; roles: Role[] }) => Promise<string>;
}

export interface GqlResponse<T> {
  status: number;
  data: T | null;
  errors?: { message: string; path?: string[]; extensions?: Record<string, unknown> }[];
}

export async function startTestPlatform(extraEnv: Env = {}, options: TestPlatformOptions = {}): Promise<TestPlatform> {
  const stateDir = await mkdtemp(join(tmpdir(), 'lcd-e2e-'));
  const databases: Partial<Record<SubgraphName, TestDatabase>> = {};
  for (const name of SUBGRAPH_NAMES) databases[name] = await testDatabaseUrl();
  // Test files run side by side on one RabbitMQ: every platform gets a virtual host of its own, so that another
  // platform's workers and subgraphs (same queue names, other databases) never take its messages.
  const vhost = process.env.TEST_AMQP_URL && !extraEnv.AMQP_URL ? await privateVhost(process.env.TEST_AMQP_URL) : null;
  const env: Env = {
    NODE_ENV: 'test',
    STATE_DIR: stateDir,
    SUPERGRAPH_CONFIG: join(repoRoot, 'supergraph.yaml'),
    AMQP_URL: vhost?.url ?? process.env.TEST_AMQP_URL,
    STORAGE_URL: process.env.TEST_STORAGE_URL,
    // Test files run side by side on one RabbitMQ: each platform's monitoring subgraph consumes its own audit queue.
    AUDIT_QUEUE: `monitoring.audit.test-${randomBytes(6).toString('hex')}`,
    // Tests that poll must not trip the per-identity rate limit; test/security/limits.test.ts sets real ones.
    RATE_LIMIT_BURST: '100000',
    RATE_LIMIT_REFILL_PER_SECOND: '10000',
    ...extraEnv,
  };
  const platform = await startPlatform({
    env,
    ephemeralPorts: true,
    stateDir: null,
    databaseUrls: Object.fromEntries(SUBGRAPH_NAMES.map((n) => [n, databases[n]?.url])),
  });
  const url = platform.gateway.url;
  const sign = options.signToken ?? ((claims) => issueDevToken(stateDir, claims));
  const adminToken = await sign({ subject: 'admin-1', tenant: 'acme', roles: ['admin', 'ml-engineer', 'analyst', 'viewer'] });
  return {
    platform,
    url,
    stateDir,
    env,
    token: (roles = ['admin'], tenant = 'acme', subject = `user-${roles.join('-')}`) => sign({ subject, tenant, roles }),
    async gql<T>(query: string, variables: Record<string, unknown> = {}, token: string | null = adminToken) {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
        body: JSON.stringify({ query, variables }),
      });
      const body = (await res.json()) as { data?: T | null; errors?: GqlResponse<T>['errors'] };
      return { status: res.status, data: body.data ?? null, errors: body.errors };
    },
    async post(body, { token = adminToken, headers = {}, url: target = url } = {}) {
      const res = await fetch(target, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
      });
      const text = await res.text();
      let json: RawResponse['json'] = null;
      try {
        json = JSON.parse(text) as RawResponse['json'];
      } catch {
        json = null;
      }
      return { status: res.status, headers: res.headers, text, json };
    },
    async close() {
      if (process.env.TEST_AMQP_URL && env.AUDIT_QUEUE) await platform.runtime.broker.deleteQueue(env.AUDIT_QUEUE).catch(() => undefined);
      await platform.close();
      await vhost?.drop();
      for (const db of Object.values(databases)) await db?.drop();
      await rm(stateDir, { recursive: true, force: true });
    },
  };
}

/** A RabbitMQ virtual host for one test platform (rabbitmqctl runs beside the local server); null without rabbitmqctl. */
export async function privateVhost(base: string): Promise<{ url: string; drop(): Promise<void> } | null> {
  const name = `lcd-test-${randomBytes(4).toString('hex')}`;
  const user = decodeURIComponent(new URL(base).username || 'guest');
  try {
    await run('rabbitmqctl', ['add_vhost', name], { timeout: 30_000 });
    await run('rabbitmqctl', ['set_permissions', '-p', name, user, '.*', '.*', '.*'], { timeout: 30_000 });
  } catch {
    return null;
  }
  const url = new URL(base);
  url.pathname = `/${encodeURIComponent(name)}`;
  return {
    url: url.toString(),
    drop: async () => void (await run('rabbitmqctl', ['delete_vhost', name], { timeout: 30_000 }).catch(() => undefined)),
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

export interface ExtraGatewayOptions {
  /** Routing URLs that differ from the platform's subgraphs (e.g. a spy in front of one). */
  subgraphUrls?: Partial<Record<SubgraphName, string>>;
  /** Builds a runtime of its own from the environment (to test what NODE_ENV or INTROSPECTION decide); it closes with
   * the gateway. By default the gateway shares the platform's runtime (broker, verifier). */
  ownRuntime?: boolean;
}

/**
 * One more gateway over the running platform's subgraphs, configured by the platform's environment plus `extraEnv`:
 * a second instance (e.g. sharing a Redis rate limit with the first) or a differently configured one.
 */
export async function startExtraGateway(t: TestPlatform, extraEnv: Env = {}, options: ExtraGatewayOptions = {}): Promise<RunningGateway> {
  const env: Env = { ...t.env, GATEWAY_PORT: '0', ...extraEnv };
  const runtimeConfig = loadRuntimeConfig(env);
  const runtime = options.ownRuntime ? await createRuntime(runtimeConfig) : t.platform.runtime;
  const subgraphUrls = { ...Object.fromEntries(SUBGRAPH_NAMES.map((n) => [n, t.platform.subgraphs[n].url])), ...options.subgraphUrls };
  try {
    const gateway = await startGateway({ runtime, config: loadGatewayConfig(env), host: runtimeConfig.HOST, subgraphUrls });
    return {
      ...gateway,
      async close() {
        await gateway.close();
        if (options.ownRuntime) await runtime.close();
      },
    };
  } catch (error) {
    if (options.ownRuntime) await runtime.close();
    throw error;
  }
}

/** The data of a response that must have succeeded; the test fails with the errors otherwise. */
export function ok<T>(res: GqlResponse<T>): T {
  expect(res.errors, JSON.stringify(res.errors)).toBeUndefined();
  return res.data!;
}

/** Reads until `done` says yes; fails naming `what` and the last value read when it takes longer than `timeoutMs`. */
export async function until<T>(read: () => Promise<T>, done: (value: T) => boolean, what: string, timeoutMs = 300_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`${what}: still ${JSON.stringify(value)} after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** A training configuration small enough for a test: one epoch of a width-8 SNUNet on 64 px tiles, one thread. */
export const TINY_TRAINING = { epochs: 1, baseWidth: 8, batchSize: 4, learningRate: 0.01, seed: 3, tileSize: 64, valFraction: 0.25, numThreads: 1 };
