import { mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { runTrainer } from './dist/training/service/trainer-process.js';
const dir = mkdtempSync('/tmp/oom-');
const trainingDir = '/work/main/training';
execFileSync('/usr/bin/python3', ['-m', 'lcd_training.synthetic', '--out', join(dir, 'data'), '--pairs', '4', '--size', '64', '--seed', '1'], { cwd: trainingDir, env: { ...process.env, PYTHONPATH: trainingDir } });
const results = await Promise.all([0, 1, 2].map(async (i) => {
  const work = join(dir, `oom${i}`); mkdirSync(join(work, 'out'), { recursive: true });
  const outcome = await runTrainer({ python: '/usr/bin/python3', trainingDir, manifestPath: join(dir, 'data', 'manifest.json'), outDir: join(work, 'out'), config: { epochs: 1, baseWidth: 64, batchSize: 64, tileSize: 64, valFraction: 0 }, timeLimitMs: 120000, killGraceMs: 1000, memoryLimitMb: 1200, logPath: join(work, 'trainer.log') });
  return { code: outcome.code, message: outcome.message?.slice(0, 200), log: readFileSync(join(work, 'trainer.log'), 'utf8').slice(-600) };
}));
for (const r of results) console.log(JSON.stringify(r));
