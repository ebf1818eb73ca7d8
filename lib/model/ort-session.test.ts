// onnxruntime sessions in their own threads: what the inference worker and the evaluator rely on.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { OrtSession, SessionCreateError } from './ort-session.js';
import { repoRoot } from './testing.js';

const settings = { providers: ['cpu'], cudaDeviceId: 0, intraOpThreads: 1 };
const demoModel = () => readFile(join(repoRoot, 'training', 'demo-model', 'model.onnx'));

describe('OrtSession', () => {
  it('runs the model in its thread and gives back the outputs with their shapes; overlapping runs each get theirs', async () => {
    const session = await OrtSession.open(await demoModel(), settings);
    try {
      expect(session.provider).toBe('cpu');
      const dims = [1, 3, 64, 64];
      const zeros = new Float32Array(3 * 64 * 64);
      const ones = new Float32Array(3 * 64 * 64).fill(1);
      const [a, b] = await Promise.all([
        session.run({ before: { data: zeros, dims }, after: { data: zeros, dims } }),
        session.run({ before: { data: zeros, dims }, after: { data: ones, dims } }),
      ]);
      expect(a.change_logits!.dims).toEqual([1, 1, 64, 64]);
      expect(a.change_logits!.data).toBeInstanceOf(Float32Array);
      expect(a.change_logits!.data.length).toBe(64 * 64);
      expect(Array.from(a.change_logits!.data.slice(0, 8))).not.toEqual(Array.from(b.change_logits!.data.slice(0, 8)));
      // The caller's buffers are its own: the run copied them.
      expect(zeros.every((v) => v === 0)).toBe(true);
    } finally {
      await session.release();
    }
  });

  it("names onnxruntime's reason for a bad run, and the session goes on working", async () => {
    const session = await OrtSession.open(await demoModel(), settings);
    try {
      const dims = [1, 3, 64, 64];
      const data = new Float32Array(3 * 64 * 64);
      // Four bands where the model takes three: onnxruntime's own message comes back from the thread.
      const fourBands = new Float32Array(4 * 64 * 64);
      await expect(session.run({ before: { data: fourBands, dims: [1, 4, 64, 64] }, after: { data, dims } })).rejects.toThrow(/invalid dimensions for input: before/);
      await expect(session.run({ before: { data, dims }, after: { data, dims } })).resolves.toHaveProperty('change_logits');
    } finally {
      await session.release();
    }
    await expect(session.run({ before: { data: new Float32Array(1), dims: [1] } })).rejects.toThrow(/released|exited/);
  });

  it('refuses bytes that are not a model with SessionCreateError, and a CUDA-only setting where CUDA is missing', async () => {
    const error = await OrtSession.open(Buffer.from('not an onnx model'), settings).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SessionCreateError);
    expect((error as SessionCreateError).provider).toBe('cpu');
    expect((error as Error).message.length).toBeGreaterThan(0);
    const cuda = await OrtSession.open(await demoModel(), { ...settings, providers: ['cuda'] }).then(
      async (s) => {
        await s.release();
        return null; // a host with CUDA: nothing to check here
      },
      (e: unknown) => e,
    );
    if (cuda) {
      expect(cuda).toBeInstanceOf(SessionCreateError);
      expect((cuda as SessionCreateError).provider).toBe('cuda');
      expect((cuda as Error).message).toMatch(/CUDA execution provider could not be loaded/);
    }
  });
});
