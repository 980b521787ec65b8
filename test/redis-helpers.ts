/**
 * A real redis-server per suite (a free loopback port, its own directory, append-only file on), and
 * real `prerender agent` processes. Nothing here mocks Redis. Every process started here is killed by
 * its `stop()`, which tests call in `finally`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { cliPath, freePort, removeDir, repoRoot, sleep, tempDir, waitFor, waitForPort } from './helpers.js';

export const REDIS_BIN = ['/usr/bin/redis-server', '/usr/local/bin/redis-server'].find((bin) => existsSync(bin));

/** Tests needing Redis fail under CI=true when it is missing, and skip loudly otherwise. */
export function redisAvailable(): boolean {
  if (REDIS_BIN !== undefined) return true;
  if (process.env.CI === 'true') throw new Error('redis-server is missing: .ci/run installs it (apt-get install redis-server)');
  console.warn('SKIPPING fleet tests: redis-server is not installed (apt-get install redis-server)');
  return false;
}

export interface RedisServer {
  port: number;
  url: string;
  dir: string;
  /** Kills it with SIGKILL (no shutdown save; the append-only file is all that survives). */
  kill(): Promise<void>;
  /** Starts it again on the same port and directory, from its append-only file. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  if (REDIS_BIN === undefined) throw new Error('redis-server is not installed');
  const bin = REDIS_BIN;
  const dir = await tempDir('prerender-redis-');
  const port = await freePort();
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    // appendfsync always: a test that kills Redis must not lose what it acknowledged (the README
    // discusses the everysec trade-off for production).
    child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'yes', '--appendfsync', 'always', '--daemonize', 'no', '--logfile', path.join(dir, 'redis.log')], { stdio: 'ignore' });
    if (!(await waitForPort(port, 5000))) throw new Error(`redis-server did not listen on ${port}`);
  };
  const kill = async (): Promise<void> => {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill('SIGKILL');
    await exited;
  };
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    kill,
    restart: launch,
    async stop() {
      await kill();
      await removeDir(dir);
    },
  };
}

export interface AgentProcess {
  child: ChildProcess;
  /** Everything the agent wrote to stderr so far. */
  log(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after 5 s; resolves once it exited. */
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/** Runs the real `prerender agent` (built dist/) for `root`. */
export function startAgentProcess(root: string, redisUrl: string, id: string, options: { env?: Record<string, string>; args?: string[] } = {}): AgentProcess {
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env };
  delete env.PRERENDER_REDIS;
  const child = spawn(process.execPath, [cliPath, 'agent', '--root', root, '--redis', redisUrl, '--id', id, ...(options.args ?? [])], {
    cwd: repoRoot, env, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const end = async (signal: NodeJS.Signals): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  return { child, log: () => stderr, exited, stop: () => end('SIGTERM'), kill: () => end('SIGKILL') };
}

/** Waits until the agent's log holds `text`. */
export async function waitForLog(agent: AgentProcess, text: string | RegExp, timeoutMs = 10_000): Promise<void> {
  await waitFor(() => (typeof text === 'string' ? agent.log().includes(text) : text.test(agent.log())), timeoutMs, `agent log ${String(text)}`);
}

export { sleep };
