// Finds the Python interpreter that runs the project's trainer and synthetic generator (training/lcd_training), and
// says whether it can import what each needs. Used by the training service and by the datasets subgraph's synthetic
// generator; both run `python -m lcd_training.<module>` with training/ as the working directory.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Debian's interpreter carries python3-torch; the `python3` first on PATH may be another build without it. */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/**
 * The `training/` folder (holding `lcd_training/`), found by walking up from this module so that it works from the
 * sources (vitest) and from `dist/` alike.
 */
export function findTrainingDir(start: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (;;) {
    const candidate = join(dir, 'training');
    if (existsSync(join(candidate, 'lcd_training', '__init__.py'))) return candidate;
    if (existsSync(join(dir, 'lcd_training', '__init__.py'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find training/lcd_training above ${start}`);
    dir = parent;
  }
}

export interface PythonProbe {
  python: string;
  /** torch.__version__, or null when torch cannot be imported. */
  torch: string | null;
  /** numpy and PIL (enough for the synthetic generator). */
  imaging: boolean;
  /** Why torch (or numpy/PIL) is unusable, for error messages. */
  problem: string | null;
}

const PROBE_SCRIPT = [
  'import json',
  'out = {"torch": None, "imaging": False, "problem": None}',
  'try:',
  '    import numpy, PIL',
  '    out["imaging"] = True',
  'except Exception as e:',
  '    out["problem"] = "numpy/PIL: %s: %s" % (type(e).__name__, e)',
  'try:',
  '    import torch',
  '    out["torch"] = torch.__version__',
  'except Exception as e:',
  '    out["problem"] = out["problem"] or "torch: %s: %s" % (type(e).__name__, e)',
  'print(json.dumps(out))',
].join('\n');

const probes = new Map<string, Promise<PythonProbe>>();

/** What `python` can import; cached per interpreter for the life of the process. Never throws. */
export function probePython(python: string): Promise<PythonProbe> {
  let probe = probes.get(python);
  if (!probe) {
    probe = (async (): Promise<PythonProbe> => {
      try {
        const { stdout } = await run(python, ['-c', PROBE_SCRIPT], { timeout: 120_000 });
        const parsed = JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}') as { torch: string | null; imaging: boolean; problem: string | null };
        return { python, torch: parsed.torch ?? null, imaging: parsed.imaging === true, problem: parsed.problem ?? null };
      } catch (error) {
        const e = error as NodeJS.ErrnoException & { stderr?: string };
        const why = e.code === 'ENOENT' ? `${python} was not found` : `${python} failed: ${(e.stderr ?? e.message).trim().split('\n').at(-1)}`;
        return { python, torch: null, imaging: false, problem: why };
      }
    })();
    probes.set(python, probe);
  }
  return probe;
}

/** LCD_PYTHON when configured; else /usr/bin/python3 when it imports torch; else `python3`. */
export async function resolvePython(configured: string | undefined): Promise<string> {
  if (configured) return configured;
  if (existsSync(SYSTEM_PYTHON) && (await probePython(SYSTEM_PYTHON)).torch) return SYSTEM_PYTHON;
  return 'python3';
}

/** For the synthetic generator (numpy and PIL suffice): LCD_PYTHON; else /usr/bin/python3 when it has them; else `python3`. */
export async function resolveGeneratorPython(configured: string | undefined): Promise<string> {
  if (configured) return configured;
  if (existsSync(SYSTEM_PYTHON) && (await probePython(SYSTEM_PYTHON)).imaging) return SYSTEM_PYTHON;
  return 'python3';
}

/** The message a run fails with when the interpreter cannot import torch. */
export function torchUnavailableMessage(probe: PythonProbe): string {
  return `PyTorch cannot be imported by ${probe.python} (${probe.problem ?? 'unknown reason'}); install python3-torch or set LCD_PYTHON to an interpreter that has torch`;
}

/** Environment for a child Python process: training/ on PYTHONPATH, unbuffered output, optional thread count. */
export function pythonEnv(trainingDir: string, extra: Record<string, string | undefined> = {}, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...base, PYTHONPATH: base.PYTHONPATH ? `${trainingDir}:${base.PYTHONPATH}` : trainingDir, PYTHONUNBUFFERED: '1', PYTHONDONTWRITEBYTECODE: '1' };
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) env[k] = v;
  return env;
}
