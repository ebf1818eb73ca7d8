// The alert rules and dashboards in deploy/ are checked against the metrics the code really exports: every metric a
// rule or panel names must be registered by a running service, with every label the query filters or groups on.
// The rules also pass `promtool check rules` and their unit tests (`promtool test rules`) where promtool is installed
// (.ci/run installs Debian's prometheus package). The Kubernetes manifests start entry points that exist, with
// environment variables some service's configuration reads.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { repoRoot, startTestPlatform, type TestPlatform } from '../support/platform.js';

const run = promisify(execFile);
const deploy = join(repoRoot, 'deploy');

/** Labels Prometheus adds from the target (deploy/prometheus/prometheus.yml) rather than from the metric. */
const TARGET_LABELS = new Set(['pod', 'app', 'instance', 'job']);

interface Query {
  source: string;
  expr: string;
}

interface RecordingRule {
  name: string;
  labels: Set<string>;
}

async function which(cmd: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return null;
}

async function ruleGroups(): Promise<{ record?: string; alert?: string; expr: string }[]> {
  const [doc] = parseAllDocuments(await readFile(join(deploy, 'prometheus', 'rules.yml'), 'utf8'));
  const groups = (doc!.toJS() as { groups: { rules: { record?: string; alert?: string; expr: string }[] }[] }).groups;
  return groups.flatMap((g) => g.rules);
}

async function dashboardQueries(): Promise<Query[]> {
  const dir = join(deploy, 'grafana', 'dashboards');
  const queries: Query[] = [];
  for (const file of (await readdir(dir)).filter((f) => f.endsWith('.json'))) {
    const dashboard = JSON.parse(await readFile(join(dir, file), 'utf8')) as { panels: { title: string; targets?: { expr: string }[] }[] };
    for (const panel of dashboard.panels) for (const target of panel.targets ?? []) queries.push({ source: `${file}: ${panel.title}`, expr: target.expr });
  }
  return queries;
}

/** `by (…)` and `without (…)` label lists of an expression. */
function groupingLabels(expr: string): string[] {
  return [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((l) => l.trim()).filter(Boolean));
}

/** Series selectors of an expression: metric (or recording rule) name and the label names it matches on. */
function selectors(expr: string): { name: string; labels: string[] }[] {
  const found: { name: string; labels: string[] }[] = [];
  // Strings are dropped first so that label values (e.g. regular expressions) are not read as metric names.
  for (const m of expr.matchAll(/\b(lcd[_:][A-Za-z0-9_:]+)\s*(\{([^}]*)\})?/g)) {
    const labels = [...(m[3] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)\s*"/g)].map((l) => l[1]!);
    found.push({ name: m[1]!, labels });
  }
  return found;
}

/** Metric family → label names, from the text exposition of every service (samples carry their labels). */
function parseExposition(text: string, into: Map<string, Set<string>>): void {
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      if (!into.has(type[1]!)) into.set(type[1]!, new Set(['service']));
      continue;
    }
    if (line.startsWith('#') || line.trim() === '') continue;
    const sample = /^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s/.exec(line);
    if (!sample) continue;
    const family = familyOf(sample[1]!, into);
    const labels = into.get(family) ?? new Set<string>();
    for (const l of (sample[2] ?? '').matchAll(/([A-Za-z_][A-Za-z0-9_]*)="/g)) labels.add(l[1]!);
    into.set(family, labels);
  }
}

function familyOf(series: string, families: Map<string, Set<string>>): string {
  if (families.has(series)) return series;
  for (const suffix of ['_bucket', '_sum', '_count']) {
    if (series.endsWith(suffix) && families.has(series.slice(0, -suffix.length))) return series.slice(0, -suffix.length);
  }
  return series;
}

/** Label names declared in the code for metrics that may have no sample yet (a labelled counter before its first inc). */
async function declaredLabels(): Promise<Map<string, string[]>> {
  const declared = new Map<string, string[]>();
  const dirs = ['lib', 'gateway', 'subgraphs', 'workers', 'training/service'];
  const files: string[] = [];
  for (const dir of dirs) {
    for (const entry of await readdir(join(repoRoot, dir), { recursive: true })) {
      if (entry.endsWith('.ts') && !entry.endsWith('.test.ts')) files.push(join(repoRoot, dir, entry));
    }
  }
  for (const file of files) {
    const text = await readFile(file, 'utf8');
    for (const m of text.matchAll(/name:\s*'(lcd_[a-z0-9_]+)'(?:(?!name:)[\s\S]){0,400}?labelNames:\s*\[([^\]]*)\]/g)) {
      declared.set(m[1]!, [...m[2]!.matchAll(/'([^']+)'/g)].map((l) => l[1]!));
    }
  }
  return declared;
}

describe('alert rules and dashboards against the exported metrics', () => {
  let t: TestPlatform;
  const families = new Map<string, Set<string>>();

  beforeAll(async () => {
    t = await startTestPlatform();
    const p = t.platform;
    const bases = [p.gateway.url, ...Object.values(p.subgraphs).map((s) => s.url), p.inference?.url, p.training?.url]
      .filter((u): u is string => typeof u === 'string')
      .map((u) => new URL(u).origin);
    for (const base of bases) {
      const res = await fetch(`${base}/metrics`);
      expect(res.status, `${base}/metrics`).toBe(200);
      parseExposition(await res.text(), families);
    }
    for (const [name, labels] of await declaredLabels()) {
      const known = families.get(name);
      if (known) for (const l of labels) known.add(l);
    }
  }, 120_000);

  afterAll(async () => {
    await t?.close();
  });

  it('exports every metric and label that a rule or dashboard panel uses', async () => {
    const rules = await ruleGroups();
    const recording = new Map<string, RecordingRule>();
    for (const rule of rules) if (rule.record) recording.set(rule.record, { name: rule.record, labels: new Set(groupingLabels(rule.expr)) });
    const queries: Query[] = [...rules.map((r) => ({ source: `rules.yml: ${r.record ?? r.alert}`, expr: r.expr })), ...(await dashboardQueries())];
    expect(queries.length).toBeGreaterThan(20);
    const problems: string[] = [];
    for (const q of queries) {
      const used = selectors(q.expr);
      if (used.length === 0) problems.push(`${q.source}: names no platform metric`);
      const available = new Set<string>(TARGET_LABELS);
      for (const s of used) {
        const rule = recording.get(s.name);
        let labels: Set<string> | undefined;
        if (rule) labels = rule.labels;
        else {
          const family = familyOf(s.name, families);
          labels = families.get(family);
          if (labels && s.name.endsWith('_bucket')) labels = new Set([...labels, 'le']);
        }
        if (!labels) {
          problems.push(`${q.source}: ${s.name} is not exported by any service`);
          continue;
        }
        for (const l of labels) available.add(l);
        for (const l of s.labels) if (!labels.has(l) && !TARGET_LABELS.has(l)) problems.push(`${q.source}: ${s.name} has no label ${l}`);
      }
      for (const l of groupingLabels(q.expr)) if (!available.has(l)) problems.push(`${q.source}: groups by ${l}, which none of its metrics has`);
    }
    expect(problems).toEqual([]);
  });

  it('would notice a rule naming a metric that does not exist', () => {
    // The checker itself: a misspelt metric and a label the metric lacks are both reported.
    const [misspelt] = selectors('rate(lcd_inference_pair_total[5m])');
    expect(families.has(familyOf(misspelt!.name, families))).toBe(false);
    const [wrongLabel] = selectors('lcd_queue_depth{queu="inference.pairs"}');
    expect(families.get('lcd_queue_depth')?.has(wrongLabel!.labels[0]!)).toBe(false);
  });
});

describe('promtool', () => {
  it('accepts the rules and passes their unit tests', async (ctx) => {
    const promtool = await which('promtool');
    if (!promtool) ctx.skip(true, 'promtool is not installed (apt-get install prometheus)');
    const check = await run(promtool!, ['check', 'rules', join(deploy, 'prometheus', 'rules.yml')]);
    expect(check.stdout).toMatch(/SUCCESS/);
    const unit = await run(promtool!, ['test', 'rules', join(deploy, 'prometheus', 'rules.test.yml')]);
    expect(unit.stdout).toMatch(/SUCCESS/);
  });
});

describe('Kubernetes manifests', () => {
  async function manifests(): Promise<{ file: string; doc: Record<string, unknown> }[]> {
    const dir = join(deploy, 'k8s');
    const out: { file: string; doc: Record<string, unknown> }[] = [];
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.yaml'))) {
      for (const doc of parseAllDocuments(await readFile(join(dir, file), 'utf8'))) {
        expect(doc.errors, file).toEqual([]);
        const value = doc.toJS() as Record<string, unknown> | null;
        if (value) out.push({ file, doc: value });
      }
    }
    return out;
  }

  /** Every environment variable name a service's configuration reads (the keys of its zod schema). */
  async function configuredNames(): Promise<Set<string>> {
    const names = new Set<string>();
    const files = ['lib/config.ts', 'lib/runtime.ts', 'gateway/config.ts', 'workers/inference/config.ts', 'training/service/config.ts'];
    for (const name of ['jobs', 'models', 'datasets', 'monitoring']) files.push(`subgraphs/${name}/config.ts`);
    for (const file of files) {
      const path = join(repoRoot, file);
      if (!existsSync(path)) continue;
      for (const m of (await readFile(path, 'utf8')).matchAll(/^\s*([A-Z][A-Z0-9_]+):/gm)) names.add(m[1]!);
    }
    return names;
  }

  it('lists every manifest in the kustomization, and each workload starts an entry point that exists', async () => {
    const [kustomization] = parseAllDocuments(await readFile(join(deploy, 'k8s', 'kustomization.yaml'), 'utf8'));
    const resources = (kustomization!.toJS() as { resources: string[] }).resources;
    const files = (await readdir(join(deploy, 'k8s'))).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
    expect([...resources].sort()).toEqual(files.sort());

    const workloads = (await manifests()).filter((m) => ['Deployment', 'CronJob', 'Job'].includes(m.doc.kind as string));
    expect(workloads.map((w) => (w.doc.metadata as { name: string }).name)).toEqual(
      expect.arrayContaining(['lcd-gateway', 'lcd-jobs', 'lcd-models', 'lcd-datasets', 'lcd-monitoring', 'lcd-inference', 'lcd-training']),
    );
    const configured = await configuredNames();
    const problems: string[] = [];
    for (const { file, doc } of workloads) {
      const spec = doc.kind === 'CronJob' ? (doc.spec as any).jobTemplate.spec.template.spec : (doc.spec as any).template.spec; // eslint-disable-line @typescript-eslint/no-explicit-any
      for (const container of spec.containers as { name: string; command?: string[]; env?: { name: string }[] }[]) {
        const entry = container.command?.find((c) => c.startsWith('dist/'));
        if (!entry) problems.push(`${file}: container ${container.name} starts no dist/ entry point`);
        else if (!existsSync(join(repoRoot, entry.replace(/^dist\//, '').replace(/\.js$/, '.ts')))) problems.push(`${file}: ${entry} is built from no source file`);
        for (const env of container.env ?? []) if (!configured.has(env.name)) problems.push(`${file}: ${container.name} sets ${env.name}, which no configuration reads`);
      }
    }
    const config = (await manifests()).find((m) => m.doc.kind === 'ConfigMap');
    for (const key of Object.keys((config!.doc.data as Record<string, string>) ?? {})) {
      if (!configured.has(key)) problems.push(`config.yaml: ${key} is read by no configuration`);
    }
    expect(problems).toEqual([]);
  });
});
