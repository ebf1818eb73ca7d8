import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata';
import { issueDevToken } from '../lib/auth.js';
import { BENCH_MODEL, ensureTrainedModel, repoRoot } from '../lib/model/testing.js';
import { startPlatform } from '../lib/platform.js';
import { percentile } from './inference-support.js';
const model = await ensureTrainedModel(BENCH_MODEL);
if (!model.ok) throw new Error('x');
const stateDir = await mkdtemp(join(tmpdir(), 'prof-'));
const platform = await startPlatform({ env: { NODE_ENV: 'production', RATE_LIMIT_ENABLED: 'false', LOG_LEVEL: 'warn', STATE_DIR: stateDir, SUPERGRAPH_CONFIG: join(repoRoot, 'supergraph.yaml'), INFERENCE_DEMO_MODEL: model.path }, ephemeralPorts: true, stateDir: null });
const token = await issueDevToken(stateDir, { subject: 'bench', tenant: 'bench', roles: ['analyst'] });
const gql = async (url: string, query: string, variables: Record<string, unknown>) => {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` }, body: JSON.stringify({ query, variables }) });
  return (await res.json()) as { data?: any; errors?: unknown[] };
};
async function upload(bytes: Buffer): Promise<string> {
  const c = await gql(platform.gateway.url, `mutation($input: CreateUploadInput!) { createUpload(input: $input) { id url headers { name value } } }`, { input: { filename: 'a.png', contentType: 'image/png', byteSize: bytes.length } });
  const u = c.data.createUpload;
  await fetch(u.url, { method: 'PUT', headers: Object.fromEntries(u.headers.map((h: any) => [h.name, h.value])), body: bytes });
  return u.id;
}
const levir = (d: string) => readFile(join(repoRoot, '..', 'shared', 'data', 'levir-cd-256', d, 'test_7_0256_0512.png'));
const input = { beforeUploadId: await upload(await levir('A')), afterUploadId: await upload(await levir('B')) };
const q = `mutation($input: DetectChangesInput!) { detectChanges(input: $input) { statsUrl } }`;
const time = async (url: string) => { const t0 = performance.now(); const r = await gql(url, q, { input }); if (r.errors) throw new Error(JSON.stringify(r.errors)); const s = await (await fetch(r.data.detectChanges.statsUrl)).json() as any; return { ms: performance.now() - t0, model: s.timings.inference * 1000, worker: s.timings.total * 1000 }; };
for (let i = 0; i < 4; i++) { await time(platform.gateway.url); await time(platform.subgraphs.jobs.url); }
const g: any[] = [], d: any[] = [];
for (let i = 0; i < 12; i++) { g.push(await time(platform.gateway.url)); d.push(await time(platform.subgraphs.jobs.url)); }
const p = (a: any[], f: (x: any) => number) => percentile(a.map(f), 50).toFixed(1);
console.log('gateway overhead p50', p(g, (x) => x.ms - x.model), 'direct overhead p50', p(d, (x) => x.ms - x.model), 'worker non-model p50', p(g, (x) => x.worker - x.model));
await platform.close();
