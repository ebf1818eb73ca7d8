// Watching jobs live through the one gateway URL with the official graphql-ws client: a real batch job streams its
// progress to completion with fields from several subgraphs; a client that drops mid-job and resumes with
// afterSequence sees every event exactly once; tokens and tenants are enforced as for queries.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createClient, type Client } from 'graphql-ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { existsSync } from 'node:fs';
import { sharedData, startTestPlatform, uploadFile, type TestPlatform } from '../support/platform.js';

// The models subgraph registers the committed demo model as the platform's Production version when it starts.
const demoModel = join(process.cwd(), 'training', 'demo-model', 'model.onnx');
let t: TestPlatform;

beforeAll(async () => {
  t = await startTestPlatform();
}, 300_000);
afterAll(async () => {
  await t?.close();
});

function wsUrl(): string {
  return t.url.replace(/^http/, 'ws');
}

function client(token: string, extra: Partial<Parameters<typeof createClient>[0]> = {}): Client {
  return createClient({ url: wsUrl(), webSocketImpl: WebSocket, connectionParams: { authorization: `Bearer ${token}` }, retryAttempts: 0, lazy: true, ...extra });
}

interface ProgressEvent {
  sequence: number;
  status: string;
  progress: number;
  pair: { index: number; status: string } | null;
  job: { id: string; status: string; pairCount: number; modelVersion: { id: string; version: number } | null };
}

const PROGRESS = `subscription Watch($id: ID!, $after: Int) {
  jobProgress(jobId: $id, afterSequence: $after) {
    sequence status progress
    pair { index status }
    job { ...JobFields }
  }
}
fragment JobFields on Job { id status pairCount modelVersion { id version } }`;

/** Collects events until the stream completes, or until `stopAfter` events (then disposes, like a dropped client). */
function watch(c: Client, variables: Record<string, unknown>, stopAfter = Infinity): Promise<{ events: ProgressEvent[]; errors: unknown[]; completed: boolean }> {
  return new Promise((resolve) => {
    const events: ProgressEvent[] = [];
    const errors: unknown[] = [];
    let dispose: () => void = () => undefined;
    dispose = c.subscribe<{ jobProgress: ProgressEvent }>(
      { query: PROGRESS, variables },
      {
        next: (result) => {
          if (result.errors) errors.push(...result.errors);
          if (result.data) events.push(result.data.jobProgress);
          if (events.length >= stopAfter) {
            dispose();
            resolve({ events, errors, completed: false });
          }
        },
        error: (error) => resolve({ events, errors: [...errors, error], completed: false }),
        complete: () => resolve({ events, errors, completed: true }),
      },
    );
  });
}

async function submitJob(token: string, pairs = 3): Promise<string> {
  const names = ['test_7_0256_0512.png', 'val_27_0000_0256.png', 'train_36_0512_0512.png', 'train_386_0512_0768.png'];
  const input = [];
  for (let i = 0; i < pairs; i++) {
    const name = names[i % names.length]!;
    input.push({
      beforeUploadId: await uploadFile(t, await readFile(join(sharedData, 'levir-cd-256', 'A', name)), `a${i}.png`, 'image/png', token),
      afterUploadId: await uploadFile(t, await readFile(join(sharedData, 'levir-cd-256', 'B', name)), `b${i}.png`, 'image/png', token),
    });
  }
  const res = await t.gql<{ submitChangeDetectionJob: { id: string } }>(
    `mutation($input: SubmitChangeDetectionJobInput!) { submitChangeDetectionJob(input: $input) { id } }`,
    { input: { pairs: input } },
    token,
  );
  if (!res.data) throw new Error(JSON.stringify(res.errors));
  return res.data.submitChangeDetectionJob.id;
}

describe.skipIf(!existsSync(demoModel))('subscriptions through the gateway (needs training/demo-model/model.onnx)', () => {
  it('streams a real batch job to completion, with fields of the jobs and models subgraphs, sequences without gaps', async () => {
    const token = await t.token(['analyst']);
    const jobId = await submitJob(token);
    const c = client(token);
    const { events, errors, completed } = await watch(c, { id: jobId, after: 0 });
    await c.dispose();
    expect(errors).toEqual([]);
    expect(completed).toBe(true);
    expect(events.map((e) => e.sequence)).toEqual(events.map((_, i) => i + 1));
    const last = events.at(-1)!;
    expect(last.status).toBe('SUCCEEDED');
    expect(last.progress).toBe(1);
    expect(last.job).toMatchObject({ id: jobId, pairCount: 3, status: 'SUCCEEDED', modelVersion: { id: expect.any(String), version: expect.any(Number) } });
    expect(new Set(events.filter((e) => e.pair?.status === 'SUCCEEDED').map((e) => e.pair!.index))).toEqual(new Set([0, 1, 2]));
  });

  it('resumes after a dropped connection with afterSequence: every event exactly once', async () => {
    const token = await t.token(['analyst']);
    const jobId = await submitJob(token, 4);
    const first = client(token);
    const head = await watch(first, { id: jobId, after: 0 }, 2);
    await first.dispose();
    expect(head.events.length).toBe(2);
    const lastSeen = head.events.at(-1)!.sequence;
    const second = client(token);
    const tail = await watch(second, { id: jobId, after: lastSeen });
    await second.dispose();
    expect(tail.completed).toBe(true);
    const all = [...head.events, ...tail.events].map((e) => e.sequence);
    expect(all).toEqual(all.map((_, i) => i + 1));
    expect(tail.events.at(-1)!.status).toMatch(/SUCCEEDED|PARTIAL/);
  });

  it("refuses another tenant's job as not found, and a connection without a valid token", async () => {
    const owner = await t.token(['analyst'], 'acme');
    const jobId = await submitJob(owner, 1);
    const stranger = client(await t.token(['admin'], 'other-tenant'));
    const res = await watch(stranger, { id: jobId, after: 0 });
    await stranger.dispose();
    expect(res.events).toEqual([]);
    expect(JSON.stringify(res.errors)).toMatch(/not found/i);

    const anonymous = createClient({ url: wsUrl(), webSocketImpl: WebSocket, retryAttempts: 0, lazy: true });
    const refused = await watch(anonymous, { id: jobId, after: 0 });
    await anonymous.dispose();
    expect(refused.events).toEqual([]);
    expect((refused.errors[0] as { code?: number }).code).toBe(4403);
  });

  it('answers an invalid document and a query sent over the socket with GraphQL errors', async () => {
    const c = client(await t.token(['viewer']));
    const result = await new Promise<unknown[]>((resolve) => {
      c.subscribe({ query: 'subscription { jobProgress(jobId: "x") { nope } }' }, { next: () => undefined, error: (e) => resolve(e as unknown[]), complete: () => resolve([]) });
    });
    expect(JSON.stringify(result)).toMatch(/Cannot query field .{0,4}nope/);
    const query = await new Promise<unknown[]>((resolve) => {
      c.subscribe({ query: '{ jobs { totalCount } }' }, { next: () => undefined, error: (e) => resolve(e as unknown[]), complete: () => resolve([]) });
    });
    expect(JSON.stringify(query)).toMatch(/Only subscriptions/);
    // The operation limits of HTTP requests apply: every event would re-run an oversized selection.
    const aliases = Array.from({ length: 40 }, (_, i) => `a${i}: sequence`).join(' ');
    const wide = await new Promise<unknown[]>((resolve) => {
      c.subscribe({ query: `subscription { jobUpdates { ${aliases} } }` }, { next: () => undefined, error: (e) => resolve(e as unknown[]), complete: () => resolve([]) });
    });
    expect(JSON.stringify(wide)).toMatch(/OPERATION_LIMIT.*aliases|aliases.*OPERATION_LIMIT/);
    await c.dispose();
  });

  it('ends the connection with a clear close code when the token expires', async () => {
    const { issueDevToken } = await import('../../lib/auth.js');
    const shortLived = await issueDevToken(t.stateDir, { subject: 'short', tenant: 'acme', roles: ['viewer'], ttlSeconds: 2 });
    const c = client(shortLived);
    const closed = await new Promise<{ code: number; reason: string }>((resolve) => {
      c.on('closed', (event) => resolve(event as { code: number; reason: string }));
      c.subscribe({ query: 'subscription { jobUpdates { sequence } }' }, { next: () => undefined, error: () => undefined, complete: () => undefined });
    });
    await c.dispose();
    expect(closed.code).toBe(4401);
    expect(closed.reason).toMatch(/expired/i);
  });
});
