// Runs the PyTorch trainer (`python -m lcd_training.train`) as a child process: feeds it the manifest and config,
// reads its JSON-lines progress, keeps its stderr in a log file, enforces the time limit and cancellation (SIGTERM,
// then SIGKILL after a grace period), and says how it ended in terms a user can act on.
import { spawn } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { pythonEnv } from './python-runtime.js';
import { parseTrainerLine, type ArtifactEvent, type DoneEvent, type StartEvent, type TrainerEvent } from './trainer-events.js';

export interface TrainerRunOptions {
  python: string;
  /** training/ (holds lcd_training/): working directory and PYTHONPATH. */
  trainingDir: string;
  manifestPath: string;
  outDir: string;
  config: Record<string, unknown>;
  timeLimitMs: number;
  /** Between SIGTERM and SIGKILL. */
  killGraceMs: number;
  /** Address-space limit of the trainer (RLIMIT_AS), so a run that needs too much memory fails instead of the host. */
  memoryLimitMb?: number;
  /** OMP/MKL thread count of the child (torch's default otherwise). */
  threads?: number;
  /** More environment for the child (e.g. LCD_CODE_VERSION). */
  env?: Record<string, string | undefined>;
  /** The environment the child inherits (default: this process's). */
  baseEnv?: NodeJS.ProcessEnv;
  signal?: AbortSignal;
  /** stderr and the protocol lines go here. */
  logPath: string;
  onEvent?: (event: TrainerEvent) => void;
  /** The Python module to run (tests substitute a fake trainer). */
  module?: string;
}

interface Common {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  seconds: number;
  start: StartEvent | null;
  artifacts: Map<string, ArtifactEvent>;
}

export type TrainerOutcome =
  | (Common & { status: 'succeeded'; done: DoneEvent })
  | (Common & { status: 'failed'; code: string; message: string })
  | (Common & { status: 'cancelled'; message: string })
  | (Common & { status: 'timed-out'; message: string });

const STDERR_TAIL_BYTES = 16 * 1024;
const LOG_MAX_BYTES = 32 * 1024 * 1024;
/** Signals a trainer dies of when memory runs out without a Python error: native aborts and crashes, the OOM killer. */
const NATIVE_CRASH_SIGNALS: string[] = ['SIGABRT', 'SIGSEGV', 'SIGBUS', 'SIGKILL'];
const OOM_PATTERNS = [/MemoryError/, /out of memory/i, /Cannot allocate memory/i, /can't allocate memory/i, /std::bad_alloc/, /DefaultCPUAllocator/];

/** Runs `python -c` with an address-space limit, then the trainer module as `__main__` with the same arguments. */
const RLIMIT_LAUNCHER = [
  'import resource, runpy, sys',
  'limit = int(sys.argv.pop(1)) * 1024 * 1024',
  'module = sys.argv.pop(1)',
  'resource.setrlimit(resource.RLIMIT_AS, (limit, limit))',
  'runpy.run_module(module, run_name="__main__", alter_sys=True)',
].join('\n');

class BoundedLog {
  private written = 0;
  private truncated = false;
  constructor(private readonly stream: WriteStream) {}

  write(text: string): void {
    if (this.truncated) return;
    const bytes = Buffer.byteLength(text);
    if (this.written + bytes > LOG_MAX_BYTES) {
      this.truncated = true;
      this.stream.write(`\n[log truncated at ${LOG_MAX_BYTES} bytes]\n`);
      return;
    }
    this.written += bytes;
    this.stream.write(text);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.stream.end(() => resolve()));
  }
}

function lastLines(text: string, n: number): string {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean)
    .slice(-n)
    .join(' | ');
}

/** Runs the trainer to its end; never rejects (a failure to start is a failed outcome). */
export async function runTrainer(options: TrainerRunOptions): Promise<TrainerOutcome> {
  const started = Date.now();
  const module = options.module ?? 'lcd_training.train';
  const configPath = join(options.outDir, '..', 'config.json');
  await writeFile(configPath, JSON.stringify(options.config));
  const trainerArgs = ['--manifest', options.manifestPath, '--out', options.outDir, '--config', `@${configPath}`];
  const args = options.memoryLimitMb ? ['-c', RLIMIT_LAUNCHER, String(options.memoryLimitMb), module, ...trainerArgs] : ['-m', module, ...trainerArgs];
  const threads = options.threads ? String(options.threads) : undefined;
  const env = pythonEnv(options.trainingDir, { OMP_NUM_THREADS: threads, MKL_NUM_THREADS: threads, ...options.env }, options.baseEnv);

  const log = new BoundedLog(createWriteStream(options.logPath, { flags: 'a' }));
  log.write(`[service] ${new Date().toISOString()} ${options.python} ${args.filter((a) => a !== RLIMIT_LAUNCHER).join(' ')}\n`);
  const common: Common = { exitCode: null, signal: null, seconds: 0, start: null, artifacts: new Map() };
  // Written from the child's callbacks; one object so that the reads after the child ends see every write.
  const state: { done: DoneEvent | null; error: { code: string; message: string } | null; stderrTail: string; stoppedFor: 'cancel' | 'time-limit' | null } = {
    done: null,
    error: null,
    stderrTail: '',
    stoppedFor: null,
  };

  const child = spawn(options.python, args, { cwd: options.trainingDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let killTimer: NodeJS.Timeout | undefined;
  const stop = (why: 'cancel' | 'time-limit') => {
    if (state.stoppedFor || child.exitCode !== null || child.signalCode !== null) return;
    state.stoppedFor = why;
    log.write(`[service] ${new Date().toISOString()} stopping the trainer (${why}): SIGTERM\n`);
    child.kill('SIGTERM');
    killTimer = setTimeout(() => {
      if (child.exitCode === null && child.signalCode === null) {
        log.write(`[service] ${new Date().toISOString()} still running after ${options.killGraceMs} ms: SIGKILL\n`);
        child.kill('SIGKILL');
      }
    }, options.killGraceMs);
  };
  const timeLimit = setTimeout(() => stop('time-limit'), options.timeLimitMs);
  const onAbort = () => stop('cancel');
  if (options.signal?.aborted) onAbort();
  else options.signal?.addEventListener('abort', onAbort, { once: true });

  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => {
    log.write(chunk);
    state.stderrTail = (state.stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
  });
  const lines = createInterface({ input: child.stdout, crlfDelay: Infinity });
  lines.on('line', (line) => {
    log.write(`[event] ${line}\n`);
    const parsed = parseTrainerLine(line);
    if (!parsed.ok) return;
    const event = parsed.event;
    if (event.event === 'start') common.start = event;
    else if (event.event === 'artifact') common.artifacts.set(event.name, event);
    else if (event.event === 'done') state.done = event;
    else if (event.event === 'error') state.error = { code: event.code, message: event.message };
    try {
      options.onEvent?.(event);
    } catch (e) {
      log.write(`[service] event handler failed: ${(e as Error).message}\n`);
    }
  });

  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>((resolve) => {
    let spawnError: Error | undefined;
    child.once('error', (e) => {
      spawnError = e;
      // A process that never started emits no close event on some Node versions.
      if (child.pid === undefined) resolve({ code: null, signal: null, spawnError });
    });
    child.once('close', (code, signal) => resolve({ code, signal, spawnError }));
  });
  clearTimeout(timeLimit);
  if (killTimer) clearTimeout(killTimer);
  options.signal?.removeEventListener('abort', onAbort);
  lines.close();
  common.exitCode = exit.code;
  common.signal = exit.signal;
  common.seconds = (Date.now() - started) / 1000;
  log.write(`[service] ${new Date().toISOString()} trainer ended: exit ${exit.code ?? '-'} signal ${exit.signal ?? '-'} after ${common.seconds.toFixed(1)} s\n`);
  await log.close();

  const outcome = classify({ exit, ...state, options });
  return { ...common, ...outcome } as TrainerOutcome;
}

type Classified =
  | { status: 'succeeded'; done: DoneEvent }
  | { status: 'failed'; code: string; message: string }
  | { status: 'cancelled'; message: string }
  | { status: 'timed-out'; message: string };

function classify(input: {
  exit: { code: number | null; signal: NodeJS.Signals | null; spawnError?: Error };
  done: DoneEvent | null;
  error: { code: string; message: string } | null;
  stderrTail: string;
  stoppedFor: 'cancel' | 'time-limit' | null;
  options: TrainerRunOptions;
}): Classified {
  const { exit, done, error, stderrTail, stoppedFor, options } = input;
  if (exit.spawnError) {
    const e = exit.spawnError as NodeJS.ErrnoException;
    return { status: 'failed', code: 'trainer_unavailable', message: e.code === 'ENOENT' ? `the Python interpreter ${options.python} was not found` : `the trainer could not start: ${e.message}` };
  }
  if (stoppedFor === 'cancel') return { status: 'cancelled', message: 'cancelled on request' };
  if (stoppedFor === 'time-limit') {
    return { status: 'timed-out', message: `the trainer passed its time limit of ${Math.round(options.timeLimitMs / 1000)} s and was stopped` };
  }
  if (exit.code === 0 && done) return { status: 'succeeded', done };
  const oom = OOM_PATTERNS.some((p) => p.test(stderrTail) || (error !== null && p.test(error.message)));
  const memory = options.memoryLimitMb ? ` (limit ${options.memoryLimitMb} MB)` : '';
  if (error && error.code !== 'internal') return { status: 'failed', code: error.code, message: `${error.code}: ${error.message}` };
  if (oom) {
    const detail = error?.message ?? lastLines(stderrTail, 1);
    return { status: 'failed', code: 'out_of_memory', message: `the trainer ran out of memory${memory}: ${detail}` };
  }
  if (error) return { status: 'failed', code: 'trainer_error', message: `the trainer failed: ${error.message}` };
  // Under an address-space limit, native code (libtorch, OpenMP, glibc) that cannot allocate may abort or dereference
  // null instead of raising, and the kernel's OOM killer sends SIGKILL (ours, for cancel and time limit, are handled
  // above). A full test run on a loaded machine once saw the out-of-memory trainer die of a signal.
  if (exit.signal && options.memoryLimitMb && NATIVE_CRASH_SIGNALS.includes(exit.signal)) {
    return { status: 'failed', code: 'out_of_memory', message: `the trainer ran out of memory${memory}: it died of ${exit.signal}, as native code does when an allocation fails, or the kernel when memory runs out` };
  }
  if (exit.signal) {
    const hint = exit.signal === 'SIGKILL' ? ' (the kernel kills a process that runs out of memory this way)' : '';
    return { status: 'failed', code: 'trainer_killed', message: `the trainer was killed by ${exit.signal}${hint}` };
  }
  if (exit.code === 0) return { status: 'failed', code: 'protocol_error', message: 'the trainer exited without reporting a result (no done event)' };
  const tail = lastLines(stderrTail, 3);
  return { status: 'failed', code: 'trainer_crashed', message: `the trainer exited with status ${exit.code}${tail ? `: ${tail}` : ''}` };
}
