// Reads what inference needs from a serialized ONNX ModelProto without onnxruntime: the custom metadata
// (`metadata_props`, which onnxruntime-node does not expose) and the graph's inputs and outputs with their element
// types and shapes. A minimal protobuf walker: only the fields named below are decoded, the weights are skipped over.

/** ModelProto / GraphProto / ValueInfoProto / TypeProto field numbers (onnx/onnx.proto). */
const MODEL = { irVersion: 1, producerName: 2, producerVersion: 3, opsetImport: 8, graph: 7, metadataProps: 14 } as const;
const GRAPH = { node: 1, initializer: 5, input: 11, output: 12 } as const;
const VALUE_INFO = { name: 1, type: 2 } as const;
const TYPE = { tensorType: 1 } as const;
const TENSOR_TYPE = { elemType: 1, shape: 2 } as const;
const SHAPE = { dim: 1 } as const;
const DIMENSION = { value: 1, param: 2 } as const;
const TENSOR_PROTO_NAME = 8;

/** TensorProto.DataType names by number. */
export const ONNX_ELEMENT_TYPES: Record<number, string> = {
  1: 'float32',
  2: 'uint8',
  3: 'int8',
  4: 'uint16',
  5: 'int16',
  6: 'int32',
  7: 'int64',
  8: 'string',
  9: 'bool',
  10: 'float16',
  11: 'float64',
  12: 'uint32',
  13: 'uint64',
  14: 'complex64',
  15: 'complex128',
  16: 'bfloat16',
};

export class OnnxParseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OnnxParseError';
  }
}

export interface OnnxTensorInfo {
  name: string;
  /** `float32`, `int64`, …; `unknown(<n>)` for a type number this reader does not know; `non-tensor` for sequences, maps. */
  dtype: string;
  /** One entry per dimension: a number when fixed, the parameter's name when symbolic, `?` when neither is given. */
  shape: (number | string)[] | null;
}

export interface OnnxModelInfo {
  irVersion: number | null;
  producerName: string | null;
  producerVersion: string | null;
  /** Operator set version by domain (`""` is the default ONNX domain). */
  opsets: Record<string, number>;
  /** Graph inputs that are not initializers (what a caller feeds). */
  inputs: OnnxTensorInfo[];
  outputs: OnnxTensorInfo[];
  nodeCount: number;
  metadata: Record<string, string>;
}

interface Field {
  number: number;
  wireType: number;
  /** Varint / fixed values (as numbers; ONNX's int64 dims fit in 2^53). */
  value: number;
  /** Length-delimited payload. */
  bytes: Uint8Array | null;
}

const decoder = new TextDecoder('utf-8', { fatal: true });

function text(bytes: Uint8Array, what: string): string {
  try {
    return decoder.decode(bytes);
  } catch {
    throw new OnnxParseError(`${what} is not valid UTF-8`);
  }
}

function* fields(buf: Uint8Array, what: string): Generator<Field> {
  let pos = 0;
  const readVarint = (): number => {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (pos >= buf.length) throw new OnnxParseError(`${what}: truncated varint`);
      const byte = buf[pos++]!;
      result += (byte & 0x7f) * scale;
      if ((byte & 0x80) === 0) return result;
      scale *= 128;
    }
    throw new OnnxParseError(`${what}: varint longer than 10 bytes`);
  };
  while (pos < buf.length) {
    const tag = readVarint();
    const number = Math.floor(tag / 8);
    const wireType = tag % 8;
    if (number === 0) throw new OnnxParseError(`${what}: field number 0`);
    switch (wireType) {
      case 0:
        yield { number, wireType, value: readVarint(), bytes: null };
        break;
      case 1:
        if (pos + 8 > buf.length) throw new OnnxParseError(`${what}: truncated fixed64`);
        pos += 8;
        yield { number, wireType, value: 0, bytes: null };
        break;
      case 2: {
        const length = readVarint();
        if (pos + length > buf.length) throw new OnnxParseError(`${what}: field ${number} runs past the end (truncated file?)`);
        const bytes = buf.subarray(pos, pos + length);
        pos += length;
        yield { number, wireType, value: length, bytes };
        break;
      }
      case 5:
        if (pos + 4 > buf.length) throw new OnnxParseError(`${what}: truncated fixed32`);
        pos += 4;
        yield { number, wireType, value: 0, bytes: null };
        break;
      default:
        throw new OnnxParseError(`${what}: unsupported protobuf wire type ${wireType}`);
    }
  }
}

/** Signed int64 dims arrive as two's-complement varints: a huge value is a negative dimension (invalid). */
function dimValue(value: number): number {
  return value >= 2 ** 63 ? -1 : value;
}

function readShape(buf: Uint8Array): (number | string)[] {
  const dims: (number | string)[] = [];
  for (const f of fields(buf, 'TensorShapeProto')) {
    if (f.number !== SHAPE.dim || !f.bytes) continue;
    let dim: number | string = '?';
    for (const d of fields(f.bytes, 'Dimension')) {
      if (d.number === DIMENSION.value && d.wireType === 0) dim = dimValue(d.value);
      else if (d.number === DIMENSION.param && d.bytes) dim = text(d.bytes, 'dimension name') || '?';
    }
    dims.push(dim);
  }
  return dims;
}

function readValueInfo(buf: Uint8Array): OnnxTensorInfo {
  let name = '';
  let dtype = 'non-tensor';
  let shape: (number | string)[] | null = null;
  for (const f of fields(buf, 'ValueInfoProto')) {
    if (f.number === VALUE_INFO.name && f.bytes) name = text(f.bytes, 'value name');
    else if (f.number === VALUE_INFO.type && f.bytes) {
      for (const t of fields(f.bytes, 'TypeProto')) {
        if (t.number !== TYPE.tensorType || !t.bytes) continue;
        dtype = 'unknown(0)';
        for (const tt of fields(t.bytes, 'TypeProto.Tensor')) {
          if (tt.number === TENSOR_TYPE.elemType && tt.wireType === 0) dtype = ONNX_ELEMENT_TYPES[tt.value] ?? `unknown(${tt.value})`;
          else if (tt.number === TENSOR_TYPE.shape && tt.bytes) shape = readShape(tt.bytes);
        }
      }
    }
  }
  return { name, dtype, shape };
}

function readEntry(buf: Uint8Array): [string, string] {
  let key = '';
  let value = '';
  for (const f of fields(buf, 'StringStringEntryProto')) {
    if (f.number === 1 && f.bytes) key = text(f.bytes, 'metadata key');
    else if (f.number === 2 && f.bytes) value = text(f.bytes, 'metadata value');
  }
  return [key, value];
}

function initializerName(buf: Uint8Array): string | null {
  for (const f of fields(buf, 'TensorProto')) {
    if (f.number === TENSOR_PROTO_NAME && f.bytes) return text(f.bytes, 'initializer name');
  }
  return null;
}

/**
 * Parses the top of a serialized ModelProto. Throws OnnxParseError when the bytes are not a well-formed protobuf
 * message; whether the result is a usable model is for the caller (contract.ts) to judge.
 */
export function readOnnxModelInfo(bytes: Uint8Array): OnnxModelInfo {
  const info: OnnxModelInfo = {
    irVersion: null,
    producerName: null,
    producerVersion: null,
    opsets: {},
    inputs: [],
    outputs: [],
    nodeCount: 0,
    metadata: {},
  };
  let graph: Uint8Array | null = null;
  for (const f of fields(bytes, 'ModelProto')) {
    switch (f.number) {
      case MODEL.irVersion:
        if (f.wireType === 0) info.irVersion = f.value;
        break;
      case MODEL.producerName:
        if (f.bytes) info.producerName = text(f.bytes, 'producer_name');
        break;
      case MODEL.producerVersion:
        if (f.bytes) info.producerVersion = text(f.bytes, 'producer_version');
        break;
      case MODEL.opsetImport:
        if (f.bytes) {
          let domain = '';
          let version = 0;
          for (const o of fields(f.bytes, 'OperatorSetIdProto')) {
            if (o.number === 1 && o.bytes) domain = text(o.bytes, 'opset domain');
            else if (o.number === 2 && o.wireType === 0) version = o.value;
          }
          info.opsets[domain] = version;
        }
        break;
      case MODEL.graph:
        // Protobuf merges repeated occurrences of a message field; exporters write one graph.
        if (f.bytes) graph = f.bytes;
        break;
      case MODEL.metadataProps:
        if (f.bytes) {
          const [key, value] = readEntry(f.bytes);
          // Last one wins, as in protobuf map semantics.
          info.metadata[key] = value;
        }
        break;
      default:
        break;
    }
  }
  if (graph) {
    const initializers = new Set<string>();
    const inputs: OnnxTensorInfo[] = [];
    for (const f of fields(graph, 'GraphProto')) {
      if (!f.bytes) continue;
      if (f.number === GRAPH.node) info.nodeCount += 1;
      else if (f.number === GRAPH.initializer) {
        const name = initializerName(f.bytes);
        if (name) initializers.add(name);
      } else if (f.number === GRAPH.input) inputs.push(readValueInfo(f.bytes));
      else if (f.number === GRAPH.output) info.outputs.push(readValueInfo(f.bytes));
    }
    // IR < 4 lists initializers among the inputs; they are weights, not something a caller feeds.
    info.inputs = inputs.filter((input) => !initializers.has(input.name));
  }
  return info;
}

/** Just the custom metadata (`metadata_props`) of a serialized model. */
export function readOnnxMetadata(bytes: Uint8Array): Record<string, string> {
  return readOnnxModelInfo(bytes).metadata;
}
