import { GraphQLJSON } from 'graphql-scalars';
import { ArgsType, Field, ID, InputType, Int } from 'type-graphql';
import { badInput } from '../../lib/errors.js';
import {
  CONTRACT_INPUTS,
  CONTRACT_OUTPUTS,
  type ContractTensor,
  type EvaluationMetrics,
  type ModelContract,
  type ModelVersionSource,
} from './models.contracts.js';

@ArgsType()
export class PageArgs {
  @Field(() => Int, { nullable: true, description: 'Page size, 1–100 (default 20)' })
  first?: number | null;

  @Field(() => String, { nullable: true, description: 'Cursor of the last item of the previous page' })
  after?: string | null;
}

@ArgsType()
export class TrainingRunsArgs extends PageArgs {
  @Field(() => String, { nullable: true, description: 'Only runs training this registered model' })
  modelName?: string | null;
}

@InputType({ description: 'A training run of a model on a dataset version' })
export class StartTrainingInput {
  @Field(() => ID, { description: 'The dataset version to train on (pairs with binary labels)' })
  datasetVersionId!: string;

  @Field({ description: 'Registered model the run trains (created with its first version)' })
  modelName!: string;

  @Field(() => GraphQLJSON, {
    description:
      'Trainer settings: epochs, baseWidth, batchSize, learningRate, seed, tileSize, threshold, valFraction, … (see training/README.md); timeLimitSeconds bounds the run',
  })
  config!: Record<string, unknown>;

  @Field(() => String, { nullable: true, description: 'Repeating a start with the same key returns the run the first one made' })
  idempotencyKey?: string | null;
}

@InputType({ description: 'Your own ONNX file, uploaded with createUpload, as a new version of a model' })
export class RegisterModelVersionInput {
  @Field()
  modelName!: string;

  @Field(() => ID)
  uploadId!: string;
}

/** What the training service knows when it queues a run. */
export interface CreateTrainingRunInput {
  tenant: string;
  modelName: string;
  params: Record<string, unknown>;
  datasetVersionId: string;
  codeVersion: string;
  requestedBy: string;
  idempotencyKey?: string | null;
}

/** One metric value reported by the trainer; (name, step) identifies it within its run. */
export interface MetricInput {
  name: string;
  step: number;
  epoch?: number | null;
  value: number;
  recordedAt?: Date;
}

export interface RegisterVersionInput {
  tenant: string;
  modelName: string;
  artifactKey: string;
  sha256: string;
  byteSize: number;
  metrics: EvaluationMetrics;
  contract: ModelContract;
  /** Required for TRAINED versions, refused for UPLOADED ones. */
  trainingRunId?: string | null;
  source: ModelVersionSource;
  createdBy: string;
}

// No dots: the name is one segment of event routing keys (`model.<name>.stage`).
const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$/;
const METRIC_NAME = /^[A-Za-z0-9][A-Za-z0-9_./-]{0,99}$/;
const MAX_PARAMS_BYTES = 64 * 1024;

export function checkModelName(name: string, field = 'modelName'): string {
  if (!MODEL_NAME.test(name)) throw badInput(`${field} must be 1–100 letters, digits, dashes or underscores, starting with a letter or digit`, field);
  return name;
}

export function checkText(value: string, field: string, max = 200): string {
  if (typeof value !== 'string' || value.trim().length === 0 || value.length > max) {
    throw badInput(`${field} must be 1–${max} characters`, field);
  }
  return value;
}

export function checkParams(params: unknown): Record<string, unknown> {
  if (!isPlainObject(params)) throw badInput('params must be a JSON object', 'params');
  if (Buffer.byteLength(JSON.stringify(params)) > MAX_PARAMS_BYTES) throw badInput(`params must be at most ${MAX_PARAMS_BYTES} bytes of JSON`, 'params');
  return params;
}

export function checkObjectKey(key: string, field: string): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 1024 || key.startsWith('/') || key.split('/').some((part) => part === '..' || part === '')) {
    throw badInput(`${field} must be a relative object key without empty or ".." segments`, field);
  }
  return key;
}

export function checkMetric(metric: MetricInput, field: string): MetricInput {
  if (!METRIC_NAME.test(metric.name)) throw badInput(`${field}.name must be 1–100 letters, digits, dots, slashes, dashes or underscores`, `${field}.name`);
  if (!Number.isInteger(metric.step) || metric.step < 0 || metric.step > 2 ** 31 - 1) throw badInput(`${field}.step must be a non-negative integer`, `${field}.step`);
  if (metric.epoch != null && (!Number.isInteger(metric.epoch) || metric.epoch < 0 || metric.epoch > 2 ** 31 - 1)) {
    throw badInput(`${field}.epoch must be a non-negative integer`, `${field}.epoch`);
  }
  // NaN and infinities cannot be returned as GraphQL Floats; a diverged loss is reported as a failed run instead.
  if (typeof metric.value !== 'number' || !Number.isFinite(metric.value)) throw badInput(`${field}.value must be a finite number`, `${field}.value`);
  return metric;
}

export function checkEvaluationMetrics(metrics: unknown): EvaluationMetrics {
  if (!isPlainObject(metrics)) throw badInput('metrics must be an object of numbers by name', 'metrics');
  const entries = Object.entries(metrics);
  if (entries.length > 100) throw badInput('metrics holds at most 100 values', 'metrics');
  for (const [name, value] of entries) {
    if (!METRIC_NAME.test(name)) throw badInput(`metrics: ${JSON.stringify(name)} is not a valid metric name`, 'metrics');
    if (typeof value !== 'number' || !Number.isFinite(value)) throw badInput(`metrics.${name} must be a finite number`, `metrics.${name}`);
  }
  return metrics as EvaluationMetrics;
}

/** Checks the contract metadata a version is registered with; each message names the field that is wrong. */
export function checkModelContract(contract: unknown): ModelContract {
  if (!isPlainObject(contract)) throw badInput('contract must be an object', 'contract');
  const c = contract as Partial<Record<keyof ModelContract, unknown>>;
  const positiveInt = (value: unknown, field: string, max: number): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > max) throw badInput(`contract.${field} must be an integer from 1 to ${max}`, `contract.${field}`);
    return value;
  };
  const bands = positiveInt(c.bands, 'bands', 64);
  const bandNames = c.bandNames;
  if (!Array.isArray(bandNames) || bandNames.length !== bands || !bandNames.every((n) => typeof n === 'string' && n.length > 0 && n.length <= 50)) {
    throw badInput(`contract.bandNames must list ${bands} band name(s)`, 'contract.bandNames');
  }
  const normalization = c.normalization;
  const numbers = (value: unknown, positive: boolean) =>
    Array.isArray(value) && value.length === bands && value.every((v) => typeof v === 'number' && Number.isFinite(v) && (!positive || v > 0));
  if (!isPlainObject(normalization) || !numbers(normalization.mean, false) || !numbers(normalization.std, true)) {
    throw badInput(`contract.normalization must hold ${bands} mean value(s) and ${bands} positive std value(s)`, 'contract.normalization');
  }
  const tileSize = positiveInt(c.tileSize, 'tileSize', 8192);
  const threshold = c.threshold;
  if (typeof threshold !== 'number' || !(threshold > 0 && threshold < 1)) throw badInput('contract.threshold must be a probability between 0 and 1 (exclusive)', 'contract.threshold');
  const embeddingDim = positiveInt(c.embeddingDim, 'embeddingDim', 65_536);
  const inputs = checkTensors(c.inputs, 'inputs', CONTRACT_INPUTS);
  const outputs = checkTensors(c.outputs, 'outputs', CONTRACT_OUTPUTS);
  return {
    bands,
    bandNames: bandNames as string[],
    normalization: { mean: normalization.mean as number[], std: normalization.std as number[] },
    tileSize,
    threshold,
    embeddingDim,
    inputs,
    outputs,
  };
}

function checkTensors(value: unknown, field: 'inputs' | 'outputs', required: readonly string[]): ContractTensor[] {
  const valid = (t: unknown): t is ContractTensor =>
    isPlainObject(t) &&
    typeof t.name === 'string' &&
    typeof t.dtype === 'string' &&
    Array.isArray(t.shape) &&
    t.shape.every((d) => (typeof d === 'number' && Number.isInteger(d) && d > 0) || (typeof d === 'string' && d.length > 0));
  if (!Array.isArray(value) || !value.every(valid)) {
    throw badInput(`contract.${field} must be a list of {name, dtype, shape}`, `contract.${field}`);
  }
  const missing = required.filter((name) => !value.some((t) => t.name === name));
  if (missing.length > 0) throw badInput(`contract.${field} lacks ${missing.join(', ')}`, `contract.${field}`);
  return value.map((t) => ({ name: t.name, dtype: t.dtype, shape: [...t.shape] }));
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
