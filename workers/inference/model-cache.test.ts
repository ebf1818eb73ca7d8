import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createObjectStore, type ObjectStore } from '../../lib/storage/index.js';
import { ensureTrainedModel, fakeOnnxModel, type TrainedModel } from '../../lib/model/testing.js';
import type { ModelResolutionReply, ModelResolutionRequest } from '../../subgraphs/models/model-resolution.rpc.js';
import { createEnvelope } from '../../lib/broker/broker.js';
import { LOGGED_EVENT_TYPE, type LoggedEvent } from '../../lib/events/event-log.js';
import { stageEvent } from '../../subgraphs/models/model-events.js';
import { ModelCache, ModelUnavailableError, stageChangeOf } from './model-cache.js';
import { PairInputError } from './processor.js';

let model: TrainedModel;
let dir: string;
let store: ObjectStore;
const artifacts = new Map<string, { key: string; sha256: string }>();
let production = '';
let resolveCalls = 0;
let resolutionDown = false;

async function addVersion(bytes: Uint8Array): Promise<string> {
  const id = randomUUID();
  const key = `models/test/${id}.onnx`;
  await store.put(key, bytes);
  artifacts.set(id, { key, sha256: createHash('sha256').update(bytes).digest('hex') });
  return id;
}

async function resolve(request: ModelResolutionRequest): Promise<ModelResolutionReply> {
  resolveCalls += 1;
  if (resolutionDown) throw new Error('RPC timed out');
  const id = request.versionId ?? production;
  const found = artifacts.get(id);
  if (!found) return { found: false, reason: 'no such version' };
  return { found: true, versionId: id, modelName: 'm', owner: '*', version: 1, stage: 'PRODUCTION', artifactKey: found.key, sha256: found.sha256, byteSize: 1, contract: {} };
}

const cacheOf = (capacity: number) =>
  new ModelCache({ store, resolve, capacity, session: { providers: ['cpu'], cudaDeviceId: 0, intraOpThreads: 1 }, resolutionTtlMs: 60_000, log: pino({ level: 'silent' }) });

beforeAll(async () => {
  model = await ensureTrainedModel();
  dir = await mkdtemp(join(tmpdir(), 'lcd-cache-'));
  store = createObjectStore({ url: undefined, localDir: dir, publicBaseUrl: 'http://127.0.0.1:1', signingSecret: randomBytes(32) });
}, 20 * 60_000);
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ModelCache', () => {
  it('keeps a leased version usable after a promotion evicts it, and serves the new one to new work', async (ctx) => {
    if (!model.ok) return ctx.skip(model.reason);
    const v1 = await addVersion(model.bytes);
    const v2 = await addVersion(Buffer.concat([model.bytes]));
    production = v1;
    const cache = cacheOf(1);
    const inFlight = await cache.acquireProduction('acme', 'm');
    expect(inFlight.versionId).toBe(v1);
    production = v2;
    cache.invalidate('*', 'm');
    const next = await cache.acquireProduction('acme', 'm');
    expect(next.versionId).toBe(v2);
    expect(cache.isLoaded(v1)).toBe(false); // evicted (capacity 1) ...
    const tile = new Float32Array(3 * 64 * 64);
    const { logits, embedding } = await inFlight.runner.run(tile, tile, 1, 64, 64); // ... but still runs for its lease
    expect(logits).toHaveLength(64 * 64);
    expect(embedding).toHaveLength(32);
    inFlight.release();
    next.release();
    await cache.close();
  });

  it('resolves once per model until invalidated, and loads a version once for concurrent leases', async (ctx) => {
    if (!model.ok) return ctx.skip(model.reason);
    production = await addVersion(model.bytes);
    const cache = cacheOf(2);
    resolveCalls = 0;
    const leases = await Promise.all([cache.acquireProduction('acme', 'm'), cache.acquireProduction('acme', 'm')]);
    await cache.acquireProduction('acme', 'm').then((l) => l.release());
    expect(new Set(leases.map((l) => l.versionId)).size).toBe(1);
    expect(resolveCalls).toBeLessThanOrEqual(2);
    expect(cache.loadedVersions()).toHaveLength(1);
    leases.forEach((l) => l.release());
    await cache.close();
  });

  it('forgets a tenant model on its own stage change, and a platform model for every tenant', async (ctx) => {
    if (!model.ok) return ctx.skip(model.reason);
    const v1 = await addVersion(model.bytes);
    const v2 = await addVersion(Buffer.concat([model.bytes]));
    production = v1;
    const cache = cacheOf(3);
    const lease = async (tenant: string) => {
      const l = await cache.acquireProduction(tenant, 'm');
      l.release();
      return l.versionId;
    };
    expect([await lease('acme'), await lease('globex')]).toEqual([v1, v1]);
    production = v2;
    // Cached until told otherwise (the TTL here is a minute).
    expect(await lease('acme')).toBe(v1);
    cache.invalidate('acme', 'other-model');
    expect(await lease('acme')).toBe(v1);
    cache.invalidate('acme', 'm');
    expect([await lease('acme'), await lease('globex')]).toEqual([v2, v1]);
    production = v1;
    cache.invalidate('*', 'm');
    expect([await lease('acme'), await lease('globex')]).toEqual([v1, v1]);
    await cache.close();
  });

  it('does not cache a resolution that was asked before an invalidation', async (ctx) => {
    if (!model.ok) return ctx.skip(model.reason);
    const v1 = await addVersion(model.bytes);
    const v2 = await addVersion(Buffer.concat([model.bytes]));
    production = v1;
    let answer: (() => void) | null = null;
    const slow = new ModelCache({
      store,
      resolve: async (request) => {
        const reply = await resolve(request);
        await new Promise<void>((r) => (answer = r));
        return reply;
      },
      capacity: 3,
      session: { providers: ['cpu'], cudaDeviceId: 0, intraOpThreads: 1 },
      resolutionTtlMs: 60_000,
      log: pino({ level: 'silent' }),
    });
    const first = slow.acquireProduction('acme', 'm');
    while (!answer) await new Promise((r) => setTimeout(r, 5));
    // The stage changes while the old answer is on its way.
    production = v2;
    slow.invalidate('*', 'm');
    (answer as () => void)();
    const old = await first;
    expect(old.versionId).toBe(v1); // work that asked before the change runs on what it was told
    old.release();
    answer = null;
    const next = slow.acquireProduction('acme', 'm');
    while (!answer) await new Promise((r) => setTimeout(r, 5));
    (answer as () => void)();
    const lease = await next;
    expect(lease.versionId).toBe(v2); // asked again, not served the stale answer
    lease.release();
    await slow.close();
  });

  it('reads the stage change out of the event as the relay publishes it, and only the model stream\'s copy', () => {
    const appended = stageEvent({ modelName: 'lcd-demo', versionId: 'v-2', stage: 'PRODUCTION', tenant: '*', previousStage: 'STAGING', version: 2, changedBy: 'u', reason: 'r' });
    const logged = (event: typeof appended): LoggedEvent => ({ ...event, sequence: 3, occurredAt: new Date().toISOString() });
    const publish = (event: LoggedEvent) => createEnvelope(LOGGED_EVENT_TYPE, event, { tenant: event.tenant, idempotencyKey: `${event.stream}#${event.sequence}` });
    expect(stageChangeOf(publish(logged(appended)))).toEqual({ tenant: '*', modelName: 'lcd-demo', versionId: 'v-2', stage: 'PRODUCTION', previousStage: 'STAGING' });
    // The tenant stream's copy of the same change, another event type, a bare payload: not a change to act on.
    expect(stageChangeOf(publish(logged({ ...appended, stream: 'models:*', routingKey: 'models.*.stage' })))).toBeNull();
    expect(stageChangeOf(publish(logged({ ...appended, type: 'training.progress' })))).toBeNull();
    expect(stageChangeOf(createEnvelope('model.stage', appended.payload, { tenant: '*' }))).toBeNull();
  });

  it('refuses an artifact that is not what the registry says, or breaks the contract; reports an unreachable registry as transient', async (ctx) => {
    if (!model.ok) return ctx.skip(model.reason);
    const cache = cacheOf(2);
    const tampered = await addVersion(model.bytes);
    artifacts.get(tampered)!.sha256 = '0'.repeat(64);
    await expect(cache.acquireVersion('acme', tampered)).rejects.toMatchObject({ code: 'MODEL_INVALID' });
    const broken = await addVersion(fakeOnnxModel({ metadata: {} }));
    const error = await cache.acquireVersion('acme', broken).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PairInputError);
    expect((error as PairInputError).message).toContain('metadata lacks');
    await expect(cache.acquireVersion('acme', randomUUID())).rejects.toMatchObject({ code: 'MODEL_NOT_FOUND' });
    resolutionDown = true;
    await expect(cache.acquireVersion('acme', randomUUID())).rejects.toBeInstanceOf(ModelUnavailableError);
    resolutionDown = false;
    await cache.close();
  });
});
