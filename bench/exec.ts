/**
 * Runs an external program (wrk, wget2, the CLI) for a benchmark: output collected, wall time taken from
 * spawn to exit, and a hard time limit so a hung tool cannot hang the benchmark run.
 */
import { spawn } from 'node:child_process';

export interface Execution {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time from spawn to exit, so it includes the program's own start-up. */
  ms: number;
}

/** Output beyond this is dropped: progress lines from a long crawl must not grow without bound. */
const MAX_OUTPUT_CHARS = 1_000_000;

export function execBounded(command: string, args: readonly string[], options: { timeoutMs: number; cwd?: string; env?: NodeJS.ProcessEnv }): Promise<Execution> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(command, args, { cwd: options.cwd, ...(options.env === undefined ? {} : { env: options.env }), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < MAX_OUTPUT_CHARS) stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < MAX_OUTPUT_CHARS) stderr += chunk.toString();
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, options.timeoutMs);
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (timedOut) reject(new Error(`${command} ${args.join(' ')} did not finish within ${options.timeoutMs} ms; killed`));
      else resolve({ code, signal, stdout, stderr, ms });
    });
  });
}

/** Runs `work` and then every registered cleanup, newest first, even when `work` throws. */
export async function withCleanup<T>(work: (defer: (cleanup: () => Promise<void>) => void) => Promise<T>): Promise<T> {
  const cleanups: Array<() => Promise<void>> = [];
  try {
    return await work((cleanup) => cleanups.push(cleanup));
  } finally {
    for (const cleanup of cleanups.reverse()) {
      // One failed cleanup must not leave the others' servers running or directories behind.
      await cleanup().catch((error: unknown) => process.stderr.write(`bench cleanup failed: ${String(error)}\n`));
    }
  }
}

/** The middle value; for an even count, the mean of the two middle ones. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  if (sorted.length % 2 === 1) return sorted[middle] ?? Number.NaN;
  return ((sorted[middle - 1] ?? Number.NaN) + (sorted[middle] ?? Number.NaN)) / 2;
}

/** Resolves to the promise's value, or to `undefined` once `ms` have passed. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
