// A small stand-in for an MLflow tracking server, for tests: the REST endpoints the mirror calls, with MLflow's
// documented request and reply shapes (REST API 2.0, proxied artifacts). Requests are validated strictly (unknown
// fields, wrong types, missing required fields, the log-batch limits, changed params are refused with MLflow's error
// codes), and every request is recorded. Imported by tests only.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { z } from 'zod';

const keyValue = z.strictObject({ key: z.string().min(1).max(250), value: z.string() });
const int64 = z.number().int().nonnegative();

const schemas = {
  'experiments/create': z.strictObject({ name: z.string().min(1), artifact_location: z.string().optional(), tags: z.array(keyValue).optional() }),
  'runs/create': z.strictObject({
    experiment_id: z.string().min(1),
    user_id: z.string().optional(),
    run_name: z.string().optional(),
    start_time: int64.optional(),
    tags: z.array(keyValue).optional(),
  }),
  'runs/update': z.strictObject({
    run_id: z.string().min(1),
    run_uuid: z.string().optional(),
    status: z.enum(['RUNNING', 'SCHEDULED', 'FINISHED', 'FAILED', 'KILLED']).optional(),
    end_time: int64.optional(),
    run_name: z.string().optional(),
  }),
  'runs/log-batch': z.strictObject({
    run_id: z.string().min(1),
    metrics: z.array(z.strictObject({ key: z.string().min(1).max(250), value: z.number(), timestamp: int64, step: z.number().int().optional() })).optional(),
    params: z.array(z.strictObject({ key: z.string().min(1).max(250), value: z.string().max(6000) })).optional(),
    tags: z.array(keyValue).optional(),
  }),
  'registered-models/create': z.strictObject({ name: z.string().min(1), tags: z.array(keyValue).optional(), description: z.string().optional() }),
  'model-versions/create': z.strictObject({
    name: z.string().min(1),
    source: z.string().min(1),
    run_id: z.string().optional(),
    tags: z.array(keyValue).optional(),
    run_link: z.string().optional(),
    description: z.string().optional(),
  }),
  'registered-models/alias': z.strictObject({ name: z.string().min(1), alias: z.string().regex(/^[\w-]+$/), version: z.string().regex(/^\d+$/) }),
  'registered-models/alias#delete': z.strictObject({ name: z.string().min(1), alias: z.string().min(1) }),
};

export interface FakeRun {
  info: { run_id: string; run_uuid: string; experiment_id: string; run_name: string; status: string; start_time?: number; end_time?: number; artifact_uri: string; lifecycle_stage: string };
  params: Map<string, string>;
  metrics: { key: string; value: number; timestamp: number; step: number }[];
  tags: Map<string, string>;
}

export interface RecordedRequest {
  method: string;
  path: string;
  body: unknown;
}

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export class FakeMlflowServer {
  readonly experiments = new Map<string, { experiment_id: string; name: string }>();
  readonly runs = new Map<string, FakeRun>();
  readonly registeredModels = new Map<string, { name: string; versions: { version: string; source: string; run_id?: string; tags: Map<string, string> }[]; aliases: Map<string, string> }>();
  readonly artifacts = new Map<string, Buffer>();
  readonly requests: RecordedRequest[] = [];
  /** Requests answered 503 before the next ones succeed (to test retries). */
  failNext = 0;
  private server: Server | null = null;
  private nextId = 1;
  url = '';

  async start(): Promise<string> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this.url;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    await new Promise<void>((resolve) => {
      this.server!.close(() => resolve());
      this.server!.closeAllConnections();
    });
    this.server = null;
  }

  /** The run mirrored for an lcd run id (by its `lcd.run_id` tag). */
  runByTag(key: string, value: string): FakeRun | undefined {
    return [...this.runs.values()].find((r) => r.tags.get(key) === value);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://fake');
    const method = req.method ?? 'GET';
    try {
      if (this.failNext > 0) {
        this.failNext -= 1;
        throw new ApiError(503, 'TEMPORARILY_UNAVAILABLE', 'injected failure');
      }
      let body: unknown = null;
      if (url.pathname.startsWith('/api/2.0/mlflow-artifacts/artifacts/')) {
        if (method !== 'PUT') throw new ApiError(405, 'INVALID_PARAMETER_VALUE', 'artifacts are uploaded with PUT');
        const path = decodeURIComponent(url.pathname.slice('/api/2.0/mlflow-artifacts/artifacts/'.length));
        if (path.split('/').some((p) => p === '..' || p === '')) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `invalid artifact path ${path}`);
        this.requests.push({ method, path: url.pathname, body: { bytes: raw.length } });
        this.artifacts.set(path, raw);
        return this.reply(res, 200, {});
      }
      if (method === 'POST' || method === 'DELETE') {
        if (raw.length > 0 && !(req.headers['content-type'] ?? '').startsWith('application/json')) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', 'content type must be application/json');
        try {
          body = raw.length > 0 ? JSON.parse(raw.toString('utf8')) : {};
        } catch {
          throw new ApiError(400, 'MALFORMED_REQUEST', 'body is not JSON');
        }
      }
      this.requests.push({ method, path: url.pathname + url.search, body });
      const endpoint = url.pathname.replace(/^\/api\/2\.0\/mlflow\//, '');
      this.reply(res, 200, this.route(method, endpoint, body, url.searchParams));
    } catch (error) {
      if (error instanceof ApiError) this.reply(res, error.status, { error_code: error.code, message: error.message });
      else this.reply(res, 500, { error_code: 'INTERNAL_ERROR', message: String(error) });
    }
  }

  private reply(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  private parse<K extends keyof typeof schemas>(name: K, body: unknown): z.infer<(typeof schemas)[K]> {
    const parsed = schemas[name].safeParse(body);
    if (!parsed.success) {
      throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `${name}: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
    }
    return parsed.data as z.infer<(typeof schemas)[K]>;
  }

  private run(id: string): FakeRun {
    const run = this.runs.get(id);
    if (!run) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Run '${id}' not found`);
    return run;
  }

  private runJson(run: FakeRun) {
    return {
      info: run.info,
      data: {
        metrics: run.metrics,
        params: [...run.params].map(([key, value]) => ({ key, value })),
        tags: [...run.tags].map(([key, value]) => ({ key, value })),
      },
    };
  }

  private route(method: string, endpoint: string, body: unknown, query: URLSearchParams): unknown {
    const route = `${method} ${endpoint}`;
    switch (route) {
      case 'GET experiments/get-by-name': {
        const name = query.get('experiment_name');
        if (!name) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', 'experiment_name is required');
        const experiment = this.experiments.get(name);
        if (!experiment) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Could not find experiment with name '${name}'`);
        return { experiment: { ...experiment, artifact_location: `mlflow-artifacts:/${experiment.experiment_id}`, lifecycle_stage: 'active', tags: [] } };
      }
      case 'POST experiments/create': {
        const input = this.parse('experiments/create', body);
        if (this.experiments.has(input.name)) throw new ApiError(400, 'RESOURCE_ALREADY_EXISTS', `Experiment '${input.name}' already exists.`);
        const experiment_id = String(this.nextId++);
        this.experiments.set(input.name, { experiment_id, name: input.name });
        return { experiment_id };
      }
      case 'POST runs/create': {
        const input = this.parse('runs/create', body);
        if (![...this.experiments.values()].some((e) => e.experiment_id === input.experiment_id)) {
          throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `No Experiment with id=${input.experiment_id} exists`);
        }
        const run_id = `run${this.nextId++}`.padEnd(32, '0');
        const run: FakeRun = {
          info: {
            run_id,
            run_uuid: run_id,
            experiment_id: input.experiment_id,
            run_name: input.run_name ?? run_id,
            status: 'RUNNING',
            start_time: input.start_time,
            artifact_uri: `mlflow-artifacts:/${input.experiment_id}/${run_id}/artifacts`,
            lifecycle_stage: 'active',
          },
          params: new Map(),
          metrics: [],
          tags: new Map((input.tags ?? []).map((t) => [t.key, t.value])),
        };
        this.runs.set(run_id, run);
        return { run: this.runJson(run) };
      }
      case 'GET runs/get': {
        const run = this.run(query.get('run_id') ?? '');
        return { run: this.runJson(run) };
      }
      case 'POST runs/update': {
        const input = this.parse('runs/update', body);
        const run = this.run(input.run_id);
        if (input.status) run.info.status = input.status;
        if (input.end_time !== undefined) run.info.end_time = input.end_time;
        return { run_info: run.info };
      }
      case 'POST runs/log-batch': {
        const input = this.parse('runs/log-batch', body);
        const metrics = input.metrics ?? [];
        const params = input.params ?? [];
        const tags = input.tags ?? [];
        // MLflow's LogBatch limits (mlflow/utils/validation.py).
        if (metrics.length > 1000) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `A batch logging request can contain at most 1000 metrics. Got ${metrics.length} metrics.`);
        if (params.length > 100) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `A batch logging request can contain at most 100 params. Got ${params.length} params.`);
        if (tags.length > 100) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `A batch logging request can contain at most 100 tags. Got ${tags.length} tags.`);
        const total = metrics.length + params.length + tags.length;
        if (total > 1000) throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `A batch logging request can contain at most 1000 metrics, params, and tags in total. Got ${total}.`);
        const run = this.run(input.run_id);
        for (const p of params) {
          const old = run.params.get(p.key);
          if (old !== undefined && old !== p.value) {
            throw new ApiError(400, 'INVALID_PARAMETER_VALUE', `Changing param values is not allowed. Param with key='${p.key}' was already logged with value='${old}'`);
          }
        }
        for (const p of params) run.params.set(p.key, p.value);
        for (const t of tags) run.tags.set(t.key, t.value);
        for (const m of metrics) run.metrics.push({ key: m.key, value: m.value, timestamp: m.timestamp, step: m.step ?? 0 });
        return {};
      }
      case 'POST registered-models/create': {
        const input = this.parse('registered-models/create', body);
        if (this.registeredModels.has(input.name)) throw new ApiError(400, 'RESOURCE_ALREADY_EXISTS', `Registered Model (name=${input.name}) already exists.`);
        this.registeredModels.set(input.name, { name: input.name, versions: [], aliases: new Map() });
        const now = Date.now();
        return { registered_model: { name: input.name, creation_timestamp: now, last_updated_timestamp: now, tags: input.tags ?? [] } };
      }
      case 'POST model-versions/create': {
        const input = this.parse('model-versions/create', body);
        const model = this.registeredModels.get(input.name);
        if (!model) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Registered Model with name=${input.name} not found`);
        if (input.run_id) this.run(input.run_id);
        const version = String(model.versions.length + 1);
        model.versions.push({ version, source: input.source, run_id: input.run_id, tags: new Map((input.tags ?? []).map((t) => [t.key, t.value])) });
        const now = Date.now();
        return {
          model_version: { name: input.name, version, creation_timestamp: now, last_updated_timestamp: now, current_stage: 'None', source: input.source, run_id: input.run_id ?? '', status: 'READY' },
        };
      }
      case 'POST registered-models/alias': {
        const input = this.parse('registered-models/alias', body);
        const model = this.registeredModels.get(input.name);
        if (!model) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Registered Model with name=${input.name} not found`);
        if (!model.versions.some((v) => v.version === input.version)) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Model Version (name=${input.name}, version=${input.version}) not found`);
        model.aliases.set(input.alias, input.version);
        return {};
      }
      case 'DELETE registered-models/alias': {
        const input = this.parse('registered-models/alias#delete', body);
        const model = this.registeredModels.get(input.name);
        if (!model) throw new ApiError(404, 'RESOURCE_DOES_NOT_EXIST', `Registered Model with name=${input.name} not found`);
        model.aliases.delete(input.alias);
        return {};
      }
      default:
        throw new ApiError(404, 'ENDPOINT_NOT_FOUND', `No endpoint ${route}`);
    }
  }
}
