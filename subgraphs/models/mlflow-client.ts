// A small client for MLflow's REST API 2.0 (tracking, model registry, proxied artifacts): only the calls the mirror
// makes, each retried with back-off on network errors, 429 and 5xx. Batches respect runs/log-batch's limits
// (1000 metrics, 100 params, 100 tags, 1000 items in all per request).
export const LOG_BATCH_LIMITS = { metrics: 1000, params: 100, tags: 100, total: 1000 } as const;
/** Longest param value every MLflow version accepts (newer servers take 6000). */
export const MAX_PARAM_VALUE_LENGTH = 500;
export const MAX_TAG_VALUE_LENGTH = 5000;
export const MAX_KEY_LENGTH = 250;

export type MlflowRunStatus = 'RUNNING' | 'SCHEDULED' | 'FINISHED' | 'FAILED' | 'KILLED';

export interface MlflowMetric {
  key: string;
  value: number;
  /** Epoch milliseconds. */
  timestamp: number;
  step: number;
}

export interface MlflowKeyValue {
  key: string;
  value: string;
}

export class MlflowError extends Error {
  constructor(
    readonly status: number,
    readonly errorCode: string,
    message: string,
  ) {
    super(`MLflow ${status} ${errorCode}: ${message}`);
    this.name = 'MlflowError';
  }

  /** Worth another try: network trouble, rate limiting, server errors. */
  get retryable(): boolean {
    return this.status === 0 || this.status === 429 || this.status >= 500;
  }
}

export interface MlflowClientOptions {
  trackingUri: string;
  token?: string;
  username?: string;
  password?: string;
  timeoutMs?: number;
  /** Tries per call (first included). */
  attempts?: number;
  /** Delay before the second try; doubles after each. */
  backoffMs?: number;
}

export class MlflowClient {
  private readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(private readonly options: MlflowClientOptions) {
    this.base = options.trackingUri.replace(/\/+$/, '');
    this.headers = {};
    if (options.token) this.headers.authorization = `Bearer ${options.token}`;
    else if (options.username !== undefined) {
      this.headers.authorization = `Basic ${Buffer.from(`${options.username}:${options.password ?? ''}`).toString('base64')}`;
    }
  }

  private async once(method: 'GET' | 'POST' | 'DELETE' | 'PUT', path: string, body?: unknown, raw?: Uint8Array): Promise<unknown> {
    const headers: Record<string, string> = { ...this.headers };
    let payload: string | Uint8Array | undefined;
    if (raw) {
      headers['content-type'] = 'application/octet-stream';
      payload = raw;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await fetch(`${this.base}${path}`, { method, headers, body: payload as string | undefined, signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000) });
    } catch (error) {
      throw new MlflowError(0, 'NETWORK', (error as Error).message);
    }
    const text = await res.text();
    let json: unknown = {};
    if (text) {
      try {
        json = JSON.parse(text);
      } catch {
        json = { message: text.slice(0, 200) };
      }
    }
    if (!res.ok) {
      const err = json as { error_code?: string; message?: string };
      throw new MlflowError(res.status, err.error_code ?? 'UNKNOWN', err.message ?? res.statusText);
    }
    return json;
  }

  private async call<T>(method: 'GET' | 'POST' | 'DELETE' | 'PUT', path: string, body?: unknown, raw?: Uint8Array): Promise<T> {
    const attempts = this.options.attempts ?? 3;
    let delay = this.options.backoffMs ?? 250;
    for (let attempt = 1; ; attempt++) {
      try {
        return (await this.once(method, path, body, raw)) as T;
      } catch (error) {
        if (!(error instanceof MlflowError) || !error.retryable || attempt >= attempts) throw error;
        await new Promise((r) => setTimeout(r, delay));
        delay *= 2;
      }
    }
  }

  /** The experiment's id, creating it when it does not exist. */
  async ensureExperiment(name: string): Promise<string> {
    const found = await this.getExperimentByName(name);
    if (found) return found;
    try {
      const created = await this.call<{ experiment_id: string }>('POST', '/api/2.0/mlflow/experiments/create', { name });
      return created.experiment_id;
    } catch (error) {
      // Created by someone else in between.
      if (error instanceof MlflowError && error.errorCode === 'RESOURCE_ALREADY_EXISTS') {
        const again = await this.getExperimentByName(name);
        if (again) return again;
      }
      throw error;
    }
  }

  async getExperimentByName(name: string): Promise<string | null> {
    try {
      const res = await this.call<{ experiment: { experiment_id: string } }>('GET', `/api/2.0/mlflow/experiments/get-by-name?experiment_name=${encodeURIComponent(name)}`);
      return res.experiment.experiment_id;
    } catch (error) {
      if (error instanceof MlflowError && error.errorCode === 'RESOURCE_DOES_NOT_EXIST') return null;
      throw error;
    }
  }

  async createRun(input: { experimentId: string; runName: string; startTime: number; tags: MlflowKeyValue[] }): Promise<{ runId: string; artifactUri: string }> {
    const res = await this.call<{ run: { info: { run_id: string; artifact_uri: string } } }>('POST', '/api/2.0/mlflow/runs/create', {
      experiment_id: input.experimentId,
      run_name: input.runName,
      start_time: input.startTime,
      tags: input.tags.map(clampTag),
    });
    return { runId: res.run.info.run_id, artifactUri: res.run.info.artifact_uri };
  }

  async getRun(runId: string): Promise<{ runId: string; artifactUri: string; status: string }> {
    const res = await this.call<{ run: { info: { run_id: string; artifact_uri: string; status: string } } }>('GET', `/api/2.0/mlflow/runs/get?run_id=${encodeURIComponent(runId)}`);
    return { runId: res.run.info.run_id, artifactUri: res.run.info.artifact_uri, status: res.run.info.status };
  }

  async updateRun(runId: string, status: MlflowRunStatus, endTime?: number): Promise<void> {
    await this.call('POST', '/api/2.0/mlflow/runs/update', { run_id: runId, status, ...(endTime !== undefined ? { end_time: endTime } : {}) });
  }

  /** Logs everything, in as few requests as the limits allow; returns how many requests it took. */
  async logBatch(runId: string, input: { metrics?: MlflowMetric[]; params?: MlflowKeyValue[]; tags?: MlflowKeyValue[] }): Promise<number> {
    const metrics = [...(input.metrics ?? [])];
    const params = (input.params ?? []).map(clampParam);
    const tags = (input.tags ?? []).map(clampTag);
    let requests = 0;
    while (metrics.length > 0 || params.length > 0 || tags.length > 0) {
      const p = params.splice(0, LOG_BATCH_LIMITS.params);
      const t = tags.splice(0, LOG_BATCH_LIMITS.tags);
      const m = metrics.splice(0, Math.min(LOG_BATCH_LIMITS.metrics, LOG_BATCH_LIMITS.total - p.length - t.length));
      await this.call('POST', '/api/2.0/mlflow/runs/log-batch', { run_id: runId, metrics: m, params: p, tags: t });
      requests += 1;
    }
    return requests;
  }

  /**
   * Uploads one artifact through the tracking server's artifact proxy (`mlflow server --serve-artifacts`); only runs
   * whose artifact URI is `mlflow-artifacts:/…` can take them. Returns false when the run's store is not proxied.
   */
  async uploadArtifact(artifactUri: string, path: string, bytes: Uint8Array): Promise<boolean> {
    const match = /^mlflow-artifacts:(?:\/\/[^/]*)?\/(.+)$/.exec(artifactUri);
    if (!match) return false;
    const encoded = `${match[1]!.replace(/\/+$/, '')}/${path}`.split('/').map(encodeURIComponent).join('/');
    await this.call('PUT', `/api/2.0/mlflow-artifacts/artifacts/${encoded}`, undefined, bytes);
    return true;
  }

  /** Creates the registered model unless it exists. */
  async ensureRegisteredModel(name: string, tags: MlflowKeyValue[] = []): Promise<void> {
    try {
      await this.call('POST', '/api/2.0/mlflow/registered-models/create', { name, tags: tags.map(clampTag) });
    } catch (error) {
      if (error instanceof MlflowError && error.errorCode === 'RESOURCE_ALREADY_EXISTS') return;
      throw error;
    }
  }

  async createModelVersion(input: { name: string; source: string; runId?: string; tags: MlflowKeyValue[]; description?: string }): Promise<string> {
    const res = await this.call<{ model_version: { version: string } }>('POST', '/api/2.0/mlflow/model-versions/create', {
      name: input.name,
      source: input.source,
      ...(input.runId ? { run_id: input.runId } : {}),
      tags: input.tags.map(clampTag),
      ...(input.description ? { description: input.description } : {}),
    });
    return String(res.model_version.version);
  }

  async setAlias(name: string, alias: string, version: string): Promise<void> {
    await this.call('POST', '/api/2.0/mlflow/registered-models/alias', { name, alias, version });
  }

  /** Deleting an alias that does not exist is not an error. */
  async deleteAlias(name: string, alias: string): Promise<void> {
    try {
      await this.call('DELETE', '/api/2.0/mlflow/registered-models/alias', { name, alias });
    } catch (error) {
      if (error instanceof MlflowError && (error.errorCode === 'RESOURCE_DOES_NOT_EXIST' || error.status === 404)) return;
      throw error;
    }
  }
}

function clampKey(key: string): string {
  return key.length > MAX_KEY_LENGTH ? key.slice(0, MAX_KEY_LENGTH) : key;
}

function clampParam(p: MlflowKeyValue): MlflowKeyValue {
  return { key: clampKey(p.key), value: p.value.length > MAX_PARAM_VALUE_LENGTH ? `${p.value.slice(0, MAX_PARAM_VALUE_LENGTH - 1)}…` : p.value };
}

function clampTag(t: MlflowKeyValue): MlflowKeyValue {
  return { key: clampKey(t.key), value: t.value.length > MAX_TAG_VALUE_LENGTH ? t.value.slice(0, MAX_TAG_VALUE_LENGTH) : t.value };
}
