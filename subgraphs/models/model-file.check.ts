// Checks an ONNX file before it becomes a model version: the model-file contract (lib/model/contract.ts, read from the
// protobuf), then onnxruntime-node itself loads the model and runs it once, so that a file which parses but cannot run
// (unknown operators, wrong output shapes) is refused at registration rather than at the first inference. For trained
// models, the parity check compares onnxruntime's outputs with the PyTorch outputs the trainer recorded.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { z } from 'zod';
import { ModelContractError, validateModelContract, type ModelContract } from '../../lib/model/contract.js';

export { ModelContractError };

const SESSION_OPTIONS: ort.InferenceSession.SessionOptions = { executionProviders: ['cpu'], intraOpNumThreads: 2, graphOptimizationLevel: 'all' };

async function createSession(bytes: Uint8Array): Promise<ort.InferenceSession> {
  try {
    return await ort.InferenceSession.create(bytes, SESSION_OPTIONS);
  } catch (error) {
    throw new ModelContractError('GRAPH', [`onnxruntime cannot load the model: ${String((error as Error).message ?? error).split('\n')[0]!.slice(0, 500)}`]);
  }
}

/** The side of the square test input: a fixed spatial size if the model has one, else two size multiples. */
function probeSide(contract: ModelContract): number {
  const fixed = contract.inputs.flatMap((i) => i.shape.slice(2)).find((d): d is number => typeof d === 'number' && d > 0);
  return fixed ?? Math.max(contract.sizeMultiple * 2, 16);
}

/**
 * The contract of `bytes`, after onnxruntime has loaded the model and run it once on a zero input with the
 * contract's shapes. Throws ModelContractError naming every problem.
 */
export async function checkModelFile(bytes: Uint8Array): Promise<ModelContract> {
  const contract = validateModelContract(bytes);
  const session = await createSession(bytes);
  try {
    const side = probeSide(contract);
    const dims = [1, contract.bands, side, side];
    const zeros = new Float32Array(contract.bands * side * side);
    let outputs: ort.InferenceSession.OnnxValueMapType;
    try {
      outputs = await session.run({ before: new ort.Tensor('float32', zeros, dims), after: new ort.Tensor('float32', zeros, dims) });
    } catch (error) {
      throw new ModelContractError('GRAPH', [`onnxruntime cannot run the model on a ${dims.join('×')} input: ${String((error as Error).message).split('\n')[0]!.slice(0, 500)}`]);
    }
    const problems: string[] = [];
    const logits = outputs.change_logits as ort.Tensor | undefined;
    const embedding = outputs.embedding as ort.Tensor | undefined;
    const shape = (t: ort.Tensor | undefined) => (t ? `[${t.dims.join('×')}]` : 'nothing');
    if (!logits || logits.dims.length !== 4 || logits.dims[0] !== 1 || logits.dims[1] !== 1 || logits.dims[2] !== side || logits.dims[3] !== side) {
      problems.push(`change_logits must be 1×1×${side}×${side} for a ${dims.join('×')} input, got ${shape(logits)}`);
    }
    if (!embedding || embedding.dims.length !== 2 || embedding.dims[0] !== 1 || embedding.dims[1] !== contract.embeddingDim) {
      problems.push(`embedding must be 1×${contract.embeddingDim} (lcd.embedding_dim), got ${shape(embedding)}`);
    }
    for (const [name, t] of [['change_logits', logits], ['embedding', embedding]] as const) {
      if (t && !(t.data as Float32Array).every(Number.isFinite)) problems.push(`${name} holds NaN or infinite values for a zero input`);
    }
    if (problems.length > 0) throw new ModelContractError('GRAPH', problems);
    return contract;
  } finally {
    await session.release();
  }
}

const parityIndexSchema = z.object({
  tolerance: z.object({ maxAbsDiff: z.number().positive() }),
  tensors: z.record(z.string(), z.object({ file: z.string().regex(/^[A-Za-z0-9_.-]+$/), dtype: z.literal('float32'), shape: z.array(z.number().int().positive()) })),
});

export interface ParityResult {
  /** Largest |onnxruntime − PyTorch| per output. */
  maxAbsDiff: Record<'change_logits' | 'embedding', number>;
  tolerance: number;
  pairs: number;
  ok: boolean;
}

async function readTensor(dir: string, entry: { file: string; shape: number[] }): Promise<Float32Array> {
  const buf = await readFile(join(dir, entry.file));
  const expected = entry.shape.reduce((a, b) => a * b, 1);
  if (buf.length !== expected * 4) throw new Error(`${entry.file} holds ${buf.length} bytes, its shape [${entry.shape.join(', ')}] needs ${expected * 4}`);
  // Copy: the Buffer may not be 4-byte aligned inside Node's pool.
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length));
}

/**
 * Runs the model on the held-back pairs the trainer wrote to `parityDir` (index.json + raw float32 tensors) and
 * compares with the PyTorch outputs recorded there; ok when every difference is under the recorded tolerance.
 */
export async function checkParity(bytes: Uint8Array, parityDir: string, tolerance?: number): Promise<ParityResult> {
  const index = parityIndexSchema.parse(JSON.parse(await readFile(join(parityDir, 'index.json'), 'utf8')));
  const entry = (name: string) => {
    const e = index.tensors[name];
    if (!e) throw new Error(`parity/index.json lacks the tensor ${name}`);
    return e;
  };
  const before = entry('before');
  const session = await createSession(bytes);
  try {
    const outputs = await session.run({
      before: new ort.Tensor('float32', await readTensor(parityDir, before), before.shape),
      after: new ort.Tensor('float32', await readTensor(parityDir, entry('after')), entry('after').shape),
    });
    const maxAbsDiff = { change_logits: 0, embedding: 0 };
    for (const name of ['change_logits', 'embedding'] as const) {
      const expected = await readTensor(parityDir, entry(name));
      const got = outputs[name] as ort.Tensor | undefined;
      const data = got?.data as Float32Array | undefined;
      if (!data || data.length !== expected.length) throw new Error(`onnxruntime's ${name} has ${data?.length ?? 0} values, PyTorch's ${expected.length}`);
      let max = 0;
      for (let i = 0; i < data.length; i++) {
        const d = Math.abs(data[i]! - expected[i]!);
        if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
      }
      maxAbsDiff[name] = max;
    }
    const limit = tolerance ?? index.tolerance.maxAbsDiff;
    return { maxAbsDiff, tolerance: limit, pairs: before.shape[0]!, ok: maxAbsDiff.change_logits < limit && maxAbsDiff.embedding < limit };
  } finally {
    await session.release();
  }
}
