// The model-file contract (ARCHITECTURE.md): an ONNX model with inputs `before` and `after` (float32 N×C×H×W),
// outputs `change_logits` (N×1×H×W) and `embedding` (N×D), and `lcd.*` metadata saying how to prepare pixels for it.
// validateModelContract is the one check every consumer runs: the inference worker before loading a model, and the
// registration of user-uploaded models before accepting one.
import { OnnxParseError, readOnnxModelInfo, type OnnxModelInfo, type OnnxTensorInfo } from './onnx-metadata.js';

export const SUPPORTED_CONTRACT_VERSIONS = ['1'] as const;
export const CONTRACT_INPUT_NAMES = ['before', 'after'] as const;
export const CONTRACT_OUTPUT_NAMES = ['change_logits', 'embedding'] as const;
export const OUTPUT_ACTIVATIONS = ['sigmoid', 'identity'] as const;
export type OutputActivation = (typeof OUTPUT_ACTIVATIONS)[number];

export const MAX_BANDS = 64;
export const MAX_TILE_SIZE = 8192;
export const MAX_EMBEDDING_DIM = 65_536;

export interface ContractTensor {
  name: string;
  dtype: string;
  /** A string names a dynamic axis. */
  shape: (number | string)[];
}

/** What inference needs to know about a model besides its weights (a superset of the registry's ModelContract). */
export interface ModelContract {
  contractVersion: string;
  bands: number;
  bandNames: string[];
  /** input = (raw / scale - mean) / std, per band. */
  normalization: { mean: number[]; std: number[]; scale: number };
  tileSize: number;
  /** H and W fed to the model must be multiples of this. */
  sizeMultiple: number;
  /** Probability above which a pixel is changed. */
  threshold: number;
  outputActivation: OutputActivation;
  embeddingDim: number;
  inputs: ContractTensor[];
  outputs: ContractTensor[];
  architecture: string | null;
  baseWidth: number | null;
  datasetVersion: string | null;
  configHash: string | null;
  codeVersion: string | null;
}

export type ModelContractProblem = 'NOT_ONNX' | 'GRAPH' | 'METADATA';

/** A model that does not satisfy the contract; `problems` lists every violation, each naming the field. */
export class ModelContractError extends Error {
  constructor(
    readonly problem: ModelContractProblem,
    readonly problems: string[],
  ) {
    super(`The model does not satisfy the model-file contract: ${problems.join('; ')}`);
    this.name = 'ModelContractError';
  }
}

/** The metadata keys a model must carry. */
export const REQUIRED_METADATA_KEYS = [
  'lcd.contract_version',
  'lcd.bands',
  'lcd.band_names',
  'lcd.normalization',
  'lcd.tile_size',
  'lcd.size_multiple',
  'lcd.threshold',
  'lcd.output_activation',
  'lcd.embedding_dim',
] as const;

/**
 * Checks serialized ONNX bytes against the contract and returns what inference needs; throws ModelContractError
 * naming everything that is wrong (all problems at once, so a model author fixes them in one go).
 */
export function validateModelContract(bytes: Uint8Array): ModelContract {
  if (bytes.byteLength === 0) throw new ModelContractError('NOT_ONNX', ['the file is empty']);
  let info: OnnxModelInfo;
  try {
    info = readOnnxModelInfo(bytes);
  } catch (error) {
    if (error instanceof OnnxParseError) throw new ModelContractError('NOT_ONNX', [`not an ONNX model (${error.message})`]);
    throw error;
  }
  if (info.irVersion === null || info.nodeCount === 0) {
    const missing = [info.irVersion === null ? 'no ir_version' : null, info.nodeCount === 0 ? 'no graph nodes' : null].filter(Boolean);
    throw new ModelContractError('NOT_ONNX', [`not an ONNX model (${missing.join(', ')})`]);
  }
  const metadataProblems: string[] = [];
  const meta = readContractMetadata(info.metadata, metadataProblems);
  const graphProblems = checkGraph(info, meta);
  if (graphProblems.length > 0) throw new ModelContractError('GRAPH', [...graphProblems, ...metadataProblems]);
  if (metadataProblems.length > 0 || !meta) throw new ModelContractError('METADATA', metadataProblems);
  return {
    ...meta,
    inputs: info.inputs.filter((i) => (CONTRACT_INPUT_NAMES as readonly string[]).includes(i.name)).map(toContractTensor),
    outputs: info.outputs.filter((o) => (CONTRACT_OUTPUT_NAMES as readonly string[]).includes(o.name)).map(toContractTensor),
  };
}

type ContractMetadata = Omit<ModelContract, 'inputs' | 'outputs'>;

function toContractTensor(t: OnnxTensorInfo): ContractTensor {
  return { name: t.name, dtype: t.dtype, shape: t.shape ?? [] };
}

function parseJson(raw: string): unknown {
  try {
    return JSON.parse(raw);
  } catch {
    return undefined;
  }
}

function integerIn(raw: string | undefined, min: number, max: number): number | null {
  if (raw === undefined || !/^\s*\d+\s*$/.test(raw)) return null;
  const value = Number(raw);
  return Number.isSafeInteger(value) && value >= min && value <= max ? value : null;
}

function finiteNumbers(value: unknown, length: number, positive: boolean): value is number[] {
  return (
    Array.isArray(value) &&
    value.length === length &&
    value.every((v) => typeof v === 'number' && Number.isFinite(v) && (!positive || v > 0))
  );
}

/** Reads the `lcd.*` metadata; every problem is pushed onto `problems`. Null when something required is unusable. */
function readContractMetadata(metadata: Record<string, string>, problems: string[]): ContractMetadata | null {
  const missing = REQUIRED_METADATA_KEYS.filter((key) => metadata[key] === undefined);
  if (missing.length > 0) problems.push(`metadata lacks ${missing.join(', ')}`);
  const get = (key: string): string | undefined => metadata[key];

  const contractVersion = get('lcd.contract_version');
  if (contractVersion !== undefined && !(SUPPORTED_CONTRACT_VERSIONS as readonly string[]).includes(contractVersion.trim())) {
    problems.push(`lcd.contract_version ${JSON.stringify(contractVersion)} is not supported (supported: ${SUPPORTED_CONTRACT_VERSIONS.join(', ')})`);
  }
  const bands = integerIn(get('lcd.bands'), 1, MAX_BANDS);
  if (get('lcd.bands') !== undefined && bands === null) problems.push(`lcd.bands must be an integer from 1 to ${MAX_BANDS}`);

  let bandNames: string[] | null = null;
  if (get('lcd.band_names') !== undefined) {
    const parsed = parseJson(get('lcd.band_names')!);
    if (!Array.isArray(parsed) || !parsed.every((n) => typeof n === 'string' && n.length > 0 && n.length <= 50)) {
      problems.push('lcd.band_names must be a JSON array of band names');
    } else if (bands !== null && parsed.length !== bands) {
      problems.push(`lcd.band_names lists ${parsed.length} name(s) for ${bands} band(s)`);
    } else bandNames = parsed as string[];
  }

  let normalization: ModelContract['normalization'] | null = null;
  if (get('lcd.normalization') !== undefined) {
    const parsed = parseJson(get('lcd.normalization')!) as Record<string, unknown> | undefined;
    const n = bands ?? 0;
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      problems.push('lcd.normalization must be a JSON object {mean, std, scale}');
    } else if (bands !== null && (!finiteNumbers(parsed.mean, n, false) || !finiteNumbers(parsed.std, n, true))) {
      problems.push(`lcd.normalization must hold ${n} finite mean value(s) and ${n} positive std value(s)`);
    } else if (parsed.scale !== undefined && !(typeof parsed.scale === 'number' && Number.isFinite(parsed.scale) && parsed.scale > 0)) {
      problems.push('lcd.normalization.scale must be a positive number');
    } else if (bands !== null) {
      normalization = { mean: parsed.mean as number[], std: parsed.std as number[], scale: (parsed.scale as number | undefined) ?? 255 };
    }
  }

  const sizeMultiple = integerIn(get('lcd.size_multiple'), 1, 1024);
  if (get('lcd.size_multiple') !== undefined && sizeMultiple === null) problems.push('lcd.size_multiple must be an integer from 1 to 1024');
  const tileSize = integerIn(get('lcd.tile_size'), 1, MAX_TILE_SIZE);
  if (get('lcd.tile_size') !== undefined) {
    if (tileSize === null) problems.push(`lcd.tile_size must be an integer from 1 to ${MAX_TILE_SIZE}`);
    else if (sizeMultiple !== null && tileSize % sizeMultiple !== 0) {
      problems.push(`lcd.tile_size ${tileSize} is not a multiple of lcd.size_multiple ${sizeMultiple}`);
    }
  }

  const thresholdRaw = get('lcd.threshold');
  const threshold = thresholdRaw !== undefined && thresholdRaw.trim() !== '' ? Number(thresholdRaw) : NaN;
  if (thresholdRaw !== undefined && !(threshold > 0 && threshold < 1)) problems.push('lcd.threshold must be a number between 0 and 1 (exclusive)');

  const activation = get('lcd.output_activation');
  if (activation !== undefined && !(OUTPUT_ACTIVATIONS as readonly string[]).includes(activation)) {
    problems.push(`lcd.output_activation must be one of ${OUTPUT_ACTIVATIONS.join(', ')}, got ${JSON.stringify(activation)}`);
  }
  const embeddingDim = integerIn(get('lcd.embedding_dim'), 1, MAX_EMBEDDING_DIM);
  if (get('lcd.embedding_dim') !== undefined && embeddingDim === null) problems.push(`lcd.embedding_dim must be an integer from 1 to ${MAX_EMBEDDING_DIM}`);

  const baseWidthRaw = get('lcd.base_width');
  const baseWidth = baseWidthRaw === undefined ? null : integerIn(baseWidthRaw, 1, 4096);
  if (baseWidthRaw !== undefined && baseWidth === null) problems.push('lcd.base_width must be a positive integer');

  if (
    problems.length > 0 ||
    bands === null ||
    bandNames === null ||
    normalization === null ||
    tileSize === null ||
    sizeMultiple === null ||
    embeddingDim === null
  ) {
    return null;
  }
  return {
    contractVersion: contractVersion!.trim(),
    bands,
    bandNames,
    normalization,
    tileSize,
    sizeMultiple,
    threshold,
    outputActivation: activation as OutputActivation,
    embeddingDim,
    architecture: get('lcd.architecture') ?? null,
    baseWidth,
    datasetVersion: get('lcd.dataset_version') ?? null,
    configHash: get('lcd.config_hash') ?? null,
    codeVersion: get('lcd.code_version') ?? null,
  };
}

const isDynamic = (dim: number | string | undefined): boolean => typeof dim === 'string';

/** Inputs and outputs by name, type and rank; the channel and embedding sizes against the metadata when it is known. */
function checkGraph(info: OnnxModelInfo, meta: ContractMetadata | null): string[] {
  const problems: string[] = [];
  const inputNames = info.inputs.map((i) => i.name);
  const outputNames = info.outputs.map((o) => o.name);
  const missingInputs = CONTRACT_INPUT_NAMES.filter((n) => !inputNames.includes(n));
  if (missingInputs.length > 0) {
    problems.push(`inputs must be named ${CONTRACT_INPUT_NAMES.join(' and ')}; missing ${missingInputs.join(', ')} (the model has ${inputNames.join(', ') || 'none'})`);
  }
  const extraInputs = inputNames.filter((n) => !(CONTRACT_INPUT_NAMES as readonly string[]).includes(n));
  if (extraInputs.length > 0) problems.push(`the model takes inputs the contract does not feed: ${extraInputs.join(', ')}`);
  const missingOutputs = CONTRACT_OUTPUT_NAMES.filter((n) => !outputNames.includes(n));
  if (missingOutputs.length > 0) {
    problems.push(`outputs must include ${CONTRACT_OUTPUT_NAMES.join(' and ')}; missing ${missingOutputs.join(', ')} (the model has ${outputNames.join(', ') || 'none'})`);
  }

  const checkTensor = (tensor: OnnxTensorInfo | undefined, kind: 'input' | 'output', rank: number, fixed: Record<number, number | null>) => {
    if (!tensor) return;
    if (tensor.dtype !== 'float32') problems.push(`${kind} ${tensor.name} must be float32, not ${tensor.dtype}`);
    if (tensor.shape === null) return; // no shape recorded: checked when the model first runs
    if (tensor.shape.length !== rank) {
      problems.push(`${kind} ${tensor.name} must have rank ${rank}, not ${tensor.shape.length} [${tensor.shape.join('×')}]`);
      return;
    }
    for (const [axis, expected] of Object.entries(fixed)) {
      const dim = tensor.shape[Number(axis)];
      if (expected === null || isDynamic(dim) || dim === '?') continue;
      if (dim !== expected) problems.push(`${kind} ${tensor.name} has ${dim} on axis ${axis}, the contract needs ${expected}`);
    }
  };
  const byName = (list: OnnxTensorInfo[], name: string) => list.find((t) => t.name === name);
  for (const name of CONTRACT_INPUT_NAMES) checkTensor(byName(info.inputs, name), 'input', 4, { 1: meta?.bands ?? null });
  checkTensor(byName(info.outputs, 'change_logits'), 'output', 4, { 1: 1 });
  checkTensor(byName(info.outputs, 'embedding'), 'output', 2, { 1: meta?.embeddingDim ?? null });

  // Tiles of tile_size must fit: a fixed spatial size other than the tile size cannot take them.
  if (meta) {
    for (const name of CONTRACT_INPUT_NAMES) {
      const shape = byName(info.inputs, name)?.shape;
      if (!shape || shape.length !== 4) continue;
      for (const axis of [2, 3]) {
        const dim = shape[axis];
        if (typeof dim === 'number' && dim !== meta.tileSize) {
          problems.push(`input ${name} has a fixed size ${dim} on axis ${axis}, but lcd.tile_size is ${meta.tileSize}`);
        }
      }
    }
  }
  return problems;
}

/** The registry's view of a contract (subgraphs/models ModelContract): the fields it stores and checks. */
export function registryContract(contract: ModelContract) {
  return {
    bands: contract.bands,
    bandNames: contract.bandNames,
    normalization: { mean: contract.normalization.mean, std: contract.normalization.std },
    tileSize: contract.tileSize,
    threshold: contract.threshold,
    embeddingDim: contract.embeddingDim,
    inputs: contract.inputs,
    outputs: contract.outputs,
  };
}
