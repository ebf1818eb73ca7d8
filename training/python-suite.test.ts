// Runs the trainer's own Python test suite (unittest) with the interpreter that has PyTorch, so `npm test` covers the
// Python side too. Without PyTorch the suite is skipped and says why.
import { spawnSync } from 'node:child_process';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const trainingDir = dirname(fileURLToPath(import.meta.url));

function pythonWithTorch(): string | null {
  const candidates = [process.env.LCD_PYTHON, '/usr/bin/python3', 'python3'].filter((c): c is string => !!c);
  for (const candidate of candidates) {
    const probe = spawnSync(candidate, ['-c', 'import torch, numpy, PIL'], { encoding: 'utf8' });
    if (probe.status === 0) return candidate;
  }
  return null;
}

const python = pythonWithTorch();

describe.skipIf(!python)(`trainer unit tests (Python; skipped: no interpreter imports torch, numpy and PIL — set LCD_PYTHON)`, () => {
  it('pass: synthetic generator, SNUNet-CBAM shapes, losses, a tiny training run with all artifacts, determinism, bad inputs', () => {
    const run = spawnSync(python!, ['-m', 'unittest', 'discover', '-s', 'tests'], {
      cwd: trainingDir,
      encoding: 'utf8',
      timeout: 600_000,
      env: { ...process.env, OMP_NUM_THREADS: '1' },
    });
    const tail = `${run.stdout}\n${run.stderr}`.split('\n').slice(-40).join('\n');
    expect(run.status, tail).toBe(0);
    expect(run.stderr).toMatch(/\nOK/);
  }, 620_000);
});
