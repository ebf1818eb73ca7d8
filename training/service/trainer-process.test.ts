import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { findTrainerPython } from '../../lib/model/testing.js';
import { findTrainingDir, pythonEnv } from './python-runtime.js';
import type { TrainerEvent } from './trainer-events.js';
import { runTrainer, type TrainerRunOptions } from './trainer-process.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixtures = join(here, 'fixtures');
// The fake trainer needs only the standard library.
const python = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const torchPython = await findTrainerPython();

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'lcd-trainer-process-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

let n = 0;
async function fake(mode: string, overrides: Partial<TrainerRunOptions> = {}, onEvent?: (e: TrainerEvent) => void) {
  const work = join(dir, `run-${++n}`);
  await mkdir(join(work, 'out'), { recursive: true });
  const logPath = join(work, 'trainer.log');
  const outcome = await runTrainer({
    python,
    trainingDir: fixtures,
    module: 'fake_trainer',
    manifestPath: join(work, 'manifest.json'),
    outDir: join(work, 'out'),
    config: { mode },
    timeLimitMs: 60_000,
    killGraceMs: 500,
    logPath,
    onEvent,
    ...overrides,
  });
  return { outcome, log: await readFile(logPath, 'utf8') };
}

describe('the trainer process', () => {
  it('reads the progress protocol, skipping lines that are not events, and keeps everything in the log', async () => {
    const events: string[] = [];
    const { outcome, log } = await fake('succeed', {}, (e) => events.push(e.event));
    expect(outcome.status).toBe('succeeded');
    expect(events).toEqual(['start', 'step', 'step', 'epoch', 'artifact', 'done']);
    expect(outcome.start?.codeVersion).toBe('fake-code');
    expect([...outcome.artifacts.keys()]).toEqual(['evaluation.json']);
    expect(log).toContain('this is not JSON');
    expect(log).toContain('[event] {"event": "done"');
  });

  it('reports a crash with the end of its stderr', async () => {
    const { outcome } = await fake('crash');
    expect(outcome).toMatchObject({ status: 'failed', code: 'trainer_crashed', exitCode: 3 });
    expect(outcome.status === 'failed' && outcome.message).toMatch(/exited with status 3: .*ValueError: the fake trainer crashed on purpose/);
  });

  it('names running out of memory as such', async () => {
    const { outcome } = await fake('memory');
    expect(outcome).toMatchObject({ status: 'failed', code: 'out_of_memory' });
  });

  it('names a native crash under a memory limit as running out of memory, and without one as the signal it was', async () => {
    const limited = await fake('native-crash', { memoryLimitMb: 4096 });
    expect(limited.outcome).toMatchObject({ status: 'failed', code: 'out_of_memory' });
    expect(limited.outcome.status === 'failed' && limited.outcome.message).toMatch(/ran out of memory \(limit 4096 MB\): it died of SIGABRT/);
    expect((await fake('native-crash')).outcome).toMatchObject({ status: 'failed', code: 'trainer_killed' });
  });

  it("passes on the trainer's own error code and message", async () => {
    const { outcome } = await fake('error-event');
    expect(outcome).toMatchObject({ status: 'failed', code: 'non_binary_label', message: 'non_binary_label: items[0] (A/1.png): non-binary label' });
  });

  it('fails a trainer that exits without a result', async () => {
    expect((await fake('no-done')).outcome).toMatchObject({ status: 'failed', code: 'protocol_error' });
  });

  it('stops a trainer at its time limit', async () => {
    const started = Date.now();
    const { outcome, log } = await fake('sleep', { timeLimitMs: 1500 });
    expect(outcome).toMatchObject({ status: 'timed-out', message: 'the trainer passed its time limit of 2 s and was stopped' });
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(log).toContain('stopping the trainer (time-limit): SIGTERM');
  });

  it('kills a trainer that ignores SIGTERM after the grace period when cancelled', async () => {
    const controller = new AbortController();
    const { outcome, log } = await fake('ignore-sigterm', { signal: controller.signal }, (e) => {
      if (e.event === 'step') controller.abort();
    });
    expect(outcome).toMatchObject({ status: 'cancelled', signal: 'SIGKILL' });
    expect(log).toContain('SIGKILL');
  });

  it('fails when the interpreter does not exist', async () => {
    expect((await fake('succeed', { python: '/nonexistent/python3' })).outcome).toMatchObject({ status: 'failed', code: 'trainer_unavailable' });
  });

  it.skipIf(!torchPython)('fails a real training that needs more memory than its limit with out_of_memory', async () => {
    const data = join(dir, 'data');
    const trainingDir = findTrainingDir();
    await promisify(execFile)(torchPython!, ['-m', 'lcd_training.synthetic', '--out', data, '--pairs', '4', '--size', '64', '--seed', '1'], { cwd: trainingDir, env: pythonEnv(trainingDir) });
    const work = join(dir, 'oom');
    await mkdir(join(work, 'out'), { recursive: true });
    const outcome = await runTrainer({
      python: torchPython!,
      trainingDir,
      manifestPath: join(data, 'manifest.json'),
      outDir: join(work, 'out'),
      config: { epochs: 1, baseWidth: 64, batchSize: 64, tileSize: 64, valFraction: 0 },
      timeLimitMs: 120_000,
      killGraceMs: 1000,
      memoryLimitMb: 1200,
      logPath: join(work, 'trainer.log'),
    });
    expect(outcome).toMatchObject({ status: 'failed', code: 'out_of_memory' });
    expect(outcome.status === 'failed' && outcome.message).toMatch(/ran out of memory \(limit 1200 MB\)/);
  });
});
