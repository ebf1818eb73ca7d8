// One training run from request to report: materialise the dataset version, run the trainer, stream its progress,
// check the exported ONNX against the contract and the PyTorch outputs, upload the artifacts, and report success or
// the reason for failure. A run that fails for a reason in the run itself (bad data, bad config, a crash, the time
// limit) is reported FAILED and its request acknowledged; only infrastructure errors (storage or broker down) throw,
// so that the request is delivered again.
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Broker } from '../../lib/broker/broker.js';
import { registryContract } from '../../lib/model/contract.js';
import type { ObjectStore } from '../../lib/storage/index.js';
import { checkModelFile, checkParity, ModelContractError } from '../../subgraphs/models/model-file.check.js';
import { modelArtifactKey, type RegistrationReport, type TrainingRequest } from '../../subgraphs/models/training.contracts.js';
import { ArtifactUploader, type UploadedArtifact } from './artifact-uploader.js';
import type { TrainingConfig } from './config.js';
import { DatasetCache, DatasetUnavailableError } from './dataset-cache.js';
import type { RunOutcome, TrainingMetrics } from './metrics.js';
import { probePython, torchUnavailableMessage } from './python-runtime.js';
import { RunReporter } from './reporter.js';
import { metricsOf, type DoneEvent } from './trainer-events.js';
import { runTrainer, type TrainerOutcome } from './trainer-process.js';

export interface RunProcessorDeps {
  config: TrainingConfig;
  store: ObjectStore;
  broker: Broker;
  cache: DatasetCache;
  python: string;
  trainingDir: string;
  /** The environment the trainer inherits (default: this process's). */
  baseEnv?: NodeJS.ProcessEnv;
  log: Logger;
  metrics?: TrainingMetrics;
  /** The Python module run as the trainer (tests substitute fakes). */
  trainerModule?: string;
}

export interface RunContext {
  /** Delivery count of the request: a run started again after a crash gets a fresh working folder. */
  attempt: number;
  /** Aborted when the run is cancelled. */
  signal: AbortSignal;
}

export interface RunResult {
  outcome: RunOutcome;
  code?: string;
  message?: string;
  artifacts: UploadedArtifact[];
}

type Failure = { code: string; message: string };

/** Aborts a run because the service is stopping: nothing is reported, the request is not acknowledged and runs again. */
export class ServiceStoppingError extends Error {
  constructor() {
    super('the training service is stopping; the run will be delivered again');
    this.name = 'ServiceStoppingError';
  }
}

function throwIfStopping(signal: AbortSignal): void {
  if (signal.aborted && signal.reason instanceof ServiceStoppingError) throw signal.reason;
}

/** Evaluation metrics of the held-out split, as the registry stores them on the version. */
function evaluationMetrics(done: DoneEvent): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of ['f1', 'iou', 'precision', 'recall', 'kappa'] as const) {
    const v = done.evaluation[k];
    if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  }
  out.bestEpoch = done.bestEpoch;
  return out;
}

export async function processTrainingRun(deps: RunProcessorDeps, request: TrainingRequest, ctx: RunContext): Promise<RunResult> {
  const { config, log } = deps;
  const reporter = new RunReporter(deps.broker, config.TRAINING_EVENTS_QUEUE, request.tenant, request.runId, config.TRAINING_METRICS_FLUSH_MS);
  const uploader = new ArtifactUploader(deps.store);
  const workDir = join(config.workDir, `${request.runId}-${ctx.attempt}`);
  const outDir = join(workDir, 'out');
  const logPath = join(workDir, 'trainer.log');
  const runLog = log.child({ runId: request.runId, tenant: request.tenant, attempt: ctx.attempt });

  // Reports a run that did not succeed (success is reported with its registration below).
  const finish = async (result: RunResult & { outcome: 'failed' | 'cancelled' }): Promise<RunResult> => {
    if (result.outcome === 'cancelled') await reporter.cancelled(result.message ?? 'cancelled');
    else await reporter.failed(result.code ?? 'failed', result.message ?? 'the run failed');
    return result;
  };

  try {
    throwIfStopping(ctx.signal);
    await reporter.started(ctx.attempt);
    if (ctx.signal.aborted) return await finish({ outcome: 'cancelled', message: 'cancelled before it started', artifacts: [] });

    const probe = await probePython(deps.python);
    if (!probe.torch) return await finish({ outcome: 'failed', code: 'pytorch_unavailable', message: torchUnavailableMessage(probe), artifacts: [] });

    await rm(workDir, { recursive: true, force: true });
    await mkdir(outDir, { recursive: true });
    const clock = { start: performance.now(), dataset: 0, trainer: 0, check: 0, upload: 0 };
    let manifestPath: string;
    try {
      const dataset = await deps.cache.materialise(request.datasetVersionId, request.manifestKey);
      deps.metrics?.datasetCache.inc({ result: dataset.reused ? 'hit' : 'miss' });
      runLog.info({ items: dataset.items, reused: dataset.reused, downloaded: dataset.downloaded }, 'dataset version materialised');
      manifestPath = dataset.manifestPath;
      clock.dataset = performance.now();
    } catch (error) {
      if (!(error instanceof DatasetUnavailableError)) throw error;
      return await finish({ outcome: 'failed', code: 'dataset_unavailable', message: error.message, artifacts: [] });
    }

    const maxLimit = config.TRAINING_MAX_TIME_LIMIT_SECONDS;
    const outcome = await runTrainer({
      python: deps.python,
      trainingDir: deps.trainingDir,
      manifestPath,
      outDir,
      config: request.config,
      timeLimitMs: Math.min(request.timeLimitSeconds, maxLimit) * 1000,
      killGraceMs: config.TRAINING_KILL_GRACE_SECONDS * 1000,
      memoryLimitMb: config.TRAINING_MEMORY_LIMIT_MB,
      threads: config.TRAINING_THREADS,
      env: { LCD_CODE_VERSION: config.LCD_CODE_VERSION },
      baseEnv: deps.baseEnv,
      signal: ctx.signal,
      logPath,
      module: deps.trainerModule,
      onEvent: (event) => {
        if (event.event === 'start') {
          void reporter.environment({
            codeVersion: event.codeVersion,
            configHash: event.configHash,
            resolvedConfig: event.config,
            datasetVersion: event.datasetVersion,
            torch: event.torch,
            device: event.device,
            threads: event.threads,
            counts: event.counts,
            parameters: event.parameters,
            python: deps.python,
          });
        }
        if (event.event === 'step' && typeof event.pairsPerSecond === 'number') deps.metrics?.pairsPerSecond.set(event.pairsPerSecond);
        reporter.metrics(metricsOf(event));
      },
    });
    runLog.info({ status: outcome.status, seconds: outcome.seconds, exitCode: outcome.exitCode, signal: outcome.signal }, 'trainer finished');
    throwIfStopping(ctx.signal);
    clock.trainer = performance.now();

    let failure: Failure | null = null;
    let registration: RegistrationReport | null = null;
    const keys: Record<string, string> = {};
    let modelBytes: Buffer | null = null;
    if (outcome.status === 'succeeded') {
      const checked = await checkExport(outDir, outcome, config.TRAINING_PARITY_TOLERANCE);
      if ('failure' in checked) failure = checked.failure;
      else {
        modelBytes = checked.bytes;
        keys['model.onnx'] = modelArtifactKey(request.tenant, request.modelName, checked.sha256);
        registration = { ...checked.registration, artifactKey: keys['model.onnx'], referenceStatsKey: null };
      }
    }

    clock.check = performance.now();
    const artifacts = await uploader.uploadRun(request.tenant, request.runId, outDir, [
      { name: 'config.json', path: join(workDir, 'config.json') },
      { name: 'trainer.log', path: logPath },
    ], keys);
    clock.upload = performance.now();
    const logKey = artifacts.find((a) => a.name === 'trainer.log')?.key ?? null;
    await reporter.artifacts(artifacts.filter((a) => a.name !== 'trainer.log'), logKey);

    if (outcome.status === 'cancelled') return await finish({ outcome: 'cancelled', message: outcome.message, artifacts });
    if (outcome.status === 'timed-out') return await finish({ outcome: 'failed', code: 'time_limit', message: outcome.message, artifacts });
    if (outcome.status === 'failed') return await finish({ outcome: 'failed', code: outcome.code, message: outcome.message, artifacts });
    if (failure || !registration || !modelBytes) {
      return await finish({ outcome: 'failed', code: failure?.code ?? 'export_invalid', message: failure?.message ?? 'the export could not be checked', artifacts });
    }
    registration.referenceStatsKey = artifacts.find((a) => a.name === 'reference_stats.json')?.key ?? null;
    const seconds = (from: number, to: number) => Math.round(to - from) / 1000;
    await reporter.succeeded(registration, {
      datasetSeconds: seconds(clock.start, clock.dataset),
      trainerSeconds: outcome.seconds,
      checkSeconds: seconds(clock.trainer, clock.check),
      uploadSeconds: seconds(clock.check, clock.upload),
    });
    return { outcome: 'succeeded', artifacts };
  } finally {
    try {
      await reporter.settle();
    } finally {
      reporter.dispose();
      if (config.TRAINING_KEEP_WORK_DIRS !== 'true') await rm(workDir, { recursive: true, force: true });
    }
  }
}

type CheckedExport = { failure: Failure } | { bytes: Buffer; sha256: string; registration: Omit<RegistrationReport, 'artifactKey' | 'referenceStatsKey'> };

/** The exported model against the contract (onnxruntime-node) and against the PyTorch outputs on held-back pairs. */
async function checkExport(outDir: string, outcome: Extract<TrainerOutcome, { status: 'succeeded' }>, tolerance: number): Promise<CheckedExport> {
  const modelPath = join(outDir, 'model.onnx');
  const bytes = await readFile(modelPath).catch(() => null);
  if (!bytes) return { failure: { code: 'export_missing', message: 'the trainer reported success but wrote no model.onnx' } };
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  let contract;
  try {
    contract = await checkModelFile(bytes);
  } catch (error) {
    if (error instanceof ModelContractError) return { failure: { code: 'contract_violation', message: `the exported model breaks the model-file contract: ${error.problems.join('; ')}` } };
    throw error;
  }
  let parity;
  try {
    parity = await checkParity(bytes, join(outDir, 'parity'), tolerance);
  } catch (error) {
    return { failure: { code: 'parity_unavailable', message: `the parity check could not run: ${(error as Error).message}` } };
  }
  const worst = Math.max(parity.maxAbsDiff.change_logits, parity.maxAbsDiff.embedding);
  if (!parity.ok) {
    return {
      failure: {
        code: 'parity_mismatch',
        message: `onnxruntime and PyTorch disagree on ${parity.pairs} held-back pair(s): max |difference| ${parity.maxAbsDiff.change_logits.toExponential(2)} (change_logits), ${parity.maxAbsDiff.embedding.toExponential(2)} (embedding); the tolerance is ${parity.tolerance}`,
      },
    };
  }
  return {
    bytes,
    sha256,
    registration: {
      sha256,
      byteSize: bytes.length,
      contract: registryContract(contract) as unknown as Record<string, unknown>,
      metrics: evaluationMetrics(outcome.done),
      evaluationSplit: outcome.done.evaluation.split,
      weightsSha256: outcome.done.weightsSha256,
      parityMaxAbsDiff: worst,
    },
  };
}
