import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, cp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fakeOnnxModel } from '../../lib/model/testing.js';
import { defaultDemoModelDir } from './demo-model.js';
import { checkModelFile, checkParity, ModelContractError } from './model-file.check.js';

const demoDir = defaultDemoModelDir();

async function refusal(bytes: Uint8Array): Promise<ModelContractError> {
  const error = await checkModelFile(bytes).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(ModelContractError);
  return error as ModelContractError;
}

describe('model file check', () => {
  it.skipIf(!demoDir)('accepts the demo model after running it once in onnxruntime', async () => {
    const contract = await checkModelFile(await readFile(join(demoDir!, 'model.onnx')));
    expect(contract).toMatchObject({ bands: 3, sizeMultiple: 16, outputActivation: 'sigmoid' });
    expect(contract.inputs.map((i) => i.name)).toEqual(['before', 'after']);
  });

  it('refuses bytes that are not a model', async () => {
    expect((await refusal(randomBytes(1000))).problem).toBe('NOT_ONNX');
  });

  it('refuses a model with the wrong input names, naming them', async () => {
    const error = await refusal(fakeOnnxModel({ inputs: [{ name: 'a', shape: ['N', 3, 'H', 'W'] }, { name: 'after', shape: ['N', 3, 'H', 'W'] }] }));
    expect(error.problem).toBe('GRAPH');
    expect(error.message).toMatch(/inputs must be named before and after; missing before \(the model has a, after\)/);
  });

  it('refuses a model whose metadata and inputs are right but which onnxruntime cannot load', async () => {
    const error = await refusal(fakeOnnxModel());
    expect(error.problem).toBe('GRAPH');
    expect(error.message).toMatch(/onnxruntime cannot load the model/);
  });

  it.skipIf(!demoDir)("compares onnxruntime's outputs with the recorded PyTorch outputs", async () => {
    const bytes = await readFile(join(demoDir!, 'model.onnx'));
    const ok = await checkParity(bytes, join(demoDir!, 'parity'));
    expect(ok).toMatchObject({ ok: true, tolerance: 1e-3, pairs: 2 });
    expect(ok.maxAbsDiff.change_logits).toBeLessThan(1e-3);
    const dir = await mkdtemp(join(tmpdir(), 'lcd-parity-'));
    try {
      await cp(join(demoDir!, 'parity'), dir, { recursive: true });
      const embedding = await readFile(join(dir, 'embedding.bin'));
      embedding.writeFloatLE(embedding.readFloatLE(0) + 0.5, 0);
      await writeFile(join(dir, 'embedding.bin'), embedding);
      const bad = await checkParity(bytes, dir);
      expect(bad.ok).toBe(false);
      expect(bad.maxAbsDiff.embedding).toBeCloseTo(0.5, 3);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
