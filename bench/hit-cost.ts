/**
 * What one hit costs nginx, counted instead of timed, so that a change to the generated config shows
 * on a VM whose throughput moves by tens of percent from one second to the next:
 * - instructions per hit in nginx's own process (user space: nginx, PCRE, libc), from valgrind's
 *   callgrind with nginx running as a single process;
 * - system calls per hit, from `strace -c`.
 * Each is the difference between a run that serves N hits and a run that serves none, divided by N,
 * so start-up and shutdown cancel out. The kernel's share of a hit (the loopback network stack, most
 * of a hit's time) is not in the instruction count; the system calls stand for it.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { freePort, removeDir, tempDir, waitForPort } from '../test/helpers.js';

export interface HitCost {
  /** User-space instructions per hit. */
  instructions: number;
  /** System calls per hit; undefined when strace is not installed. */
  syscalls: number | undefined;
}

export interface CostedPage {
  target: string;
  /** What each hit must answer with, or the count is of something else. */
  expect: (status: number, headers: http.IncomingHttpHeaders) => string | undefined;
}

const START_LIMIT_MS = 60_000;
const RUN_LIMIT_MS = 300_000;

/** The tools this needs, or why it cannot run here. */
export async function hitCostUnavailable(): Promise<string | undefined> {
  return (await onPath('valgrind')) ? undefined : 'valgrind is not installed (apt-get install valgrind)';
}

/**
 * Costs of `hits` hits of each page, served by nginx with `config`: a whole nginx.conf as startNginx
 * wrote it, whose one listen address is moved to a port of its own.
 */
export async function hitCosts(config: string, pages: readonly CostedPage[], hits: number): Promise<Map<string, HitCost>> {
  const strace = await onPath('strace');
  const dir = await tempDir('prerender-bench-cost-');
  try {
    const costs = new Map<string, HitCost>();
    const idle = await measure(config, dir, undefined, 0, strace);
    for (const page of pages) {
      const busy = await measure(config, dir, page, hits, strace);
      costs.set(page.target, {
        instructions: (busy.instructions - idle.instructions) / hits,
        syscalls: busy.syscalls === undefined || idle.syscalls === undefined ? undefined : (busy.syscalls - idle.syscalls) / hits,
      });
    }
    return costs;
  } finally {
    await removeDir(dir);
  }
}

async function measure(config: string, dir: string, page: CostedPage | undefined, hits: number, strace: boolean): Promise<{ instructions: number; syscalls: number | undefined }> {
  const callgrindOut = path.join(dir, 'callgrind.out');
  const counted = await underTool(config, dir, ['valgrind', '--tool=callgrind', `--callgrind-out-file=${callgrindOut}`], page, hits);
  const collected = /Collected : (\d+)/.exec(counted)?.[1];
  if (collected === undefined) throw new Error(`hit cost: no instruction count from callgrind:\n${counted.slice(-2000)}`);
  let syscalls: number | undefined;
  if (strace) {
    const summary = path.join(dir, 'strace.txt');
    await underTool(config, dir, ['strace', '-f', '-c', '-o', summary], page, hits);
    syscalls = totalCalls(await fs.readFile(summary, 'utf8'));
  }
  return { instructions: Number(collected), syscalls };
}

/** Runs nginx as one process under `wrapper`, sends the hits, stops it gracefully; resolves to stderr. */
async function underTool(config: string, dir: string, wrapper: readonly string[], page: CostedPage | undefined, hits: number): Promise<string> {
  const port = await freePort();
  const file = path.join(dir, 'nginx.conf');
  await fs.writeFile(file, singleProcess(config, dir, port));
  // The pid file names the process to stop: never one left by an earlier run, whose pid may be reused.
  const pidFile = path.join(dir, 'nginx.pid');
  await fs.rm(pidFile, { force: true });
  const [command, ...args] = wrapper;
  if (command === undefined) throw new Error('hit cost: no tool');
  const child = spawn(command, [...args, 'nginx', '-p', dir, '-c', file, '-e', path.join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  const timer = setTimeout(() => child.kill('SIGKILL'), RUN_LIMIT_MS);
  try {
    await waitForListener(port, exited);
    if (page !== undefined) await sendHits(port, page, hits);
  } finally {
    // QUIT to nginx itself (strace is a process of its own; valgrind runs inside nginx's): a graceful
    // stop, so the tool sees the process exit and writes its counts.
    // Sent again each second until it exits: nginx in one process checks for a signal only between
    // waits, and one arriving just before epoll_wait leaves it asleep. Native, that window is
    // nanoseconds; valgrind holds signals back to its own safe points, and nginx slept there for good.
    const pid = Number(await fs.readFile(pidFile, 'utf8').catch(() => ''));
    const quit = (): void => {
      try {
        if (Number.isSafeInteger(pid) && pid > 0) process.kill(pid, 'SIGQUIT');
        else child.kill('SIGQUIT');
      } catch {
        // Gone already.
      }
    };
    quit();
    const again = setInterval(quit, 1000);
    await exited;
    clearInterval(again);
    clearTimeout(timer);
  }
  return stderr;
}

/** The config with one process (no master, so the tool sees the process that serves), its own port and files. */
function singleProcess(config: string, dir: string, port: number): string {
  const listens = config.match(/^\s*listen 127\.0\.0\.1:\d+;/gm) ?? [];
  if (listens.length !== 1) throw new Error(`hit cost: expected one listen line in the config, found ${listens.length}`);
  return config
    .replace(/^(\s*)listen 127\.0\.0\.1:\d+;/m, `$1listen 127.0.0.1:${port};`)
    .replace(/^pid .*;$/m, `pid ${dir}/nginx.pid;`)
    .replace(/^error_log .*;$/m, `error_log ${dir}/error.log warn;`)
    .replace(/^daemon off;$/m, 'daemon off;\nmaster_process off;');
}

async function waitForListener(port: number, exited: Promise<void>): Promise<void> {
  const up = await Promise.race([waitForPort(port, START_LIMIT_MS), exited.then(() => 'exited' as const)]);
  if (up !== true) throw new Error(`hit cost: nginx did not listen on ${port} ${up === 'exited' ? '(it exited)' : `within ${START_LIMIT_MS} ms`}`);
}

/** One keep-alive connection, one hit after another, each checked. */
async function sendHits(port: number, page: CostedPage, hits: number): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    for (let i = 0; i < hits; i++) {
      const wrong = await new Promise<string | undefined>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port, path: page.target, agent }, (response) => {
          response.resume();
          response.on('end', () => resolve(page.expect(response.statusCode ?? 0, response.headers)));
          response.on('error', reject);
        }).on('error', reject);
      });
      if (wrong !== undefined) throw new Error(`hit cost: ${page.target}: ${wrong}`);
    }
  } finally {
    agent.destroy();
  }
}

/** The calls column of `strace -c`'s total line. */
function totalCalls(summary: string): number {
  const total = /^\s*100\.00\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?total\s*$/m.exec(summary)?.[1];
  if (total === undefined) throw new Error(`hit cost: no total line in strace -c output:\n${summary}`);
  return Number(total);
}

function onPath(tool: string): Promise<boolean> {
  return new Promise((resolve) => {
    const child = spawn(tool, ['--version'], { stdio: 'ignore' });
    child.on('error', () => resolve(false));
    child.on('close', (code) => resolve(code === 0));
  });
}
