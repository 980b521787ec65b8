/**
 * Test helpers: temp roots, real servers on loopback, a real nginx with the generated config, raw HTTP
 * and the real CLI. Nothing here mocks fs, http or nginx.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import http, { type IncomingHttpHeaders, type RequestListener } from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createCache, type Cache, type CacheOptions } from '../src/cache.js';
import type { CacheRoot } from '../src/cache-root.js';
import { setCommitHook } from '../src/commit.js';
import { BROTLI_MODULE, brotliModuleInstalled, nginxConfig, type NginxConfigOptions } from '../src/nginx-config.js';
import { PageBody } from '../src/page-body.js';
import type { MetaRecord } from '../src/store/meta-log.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const cliPath = path.join(repoRoot, 'bin', 'prerender.js');

/** A fresh directory (mode 0755 so nginx's worker, running as nobody, can traverse it). */
export async function tempDir(prefix = 'prerender-test-'): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  await fs.chmod(dir, 0o755);
  return dir;
}

export async function removeDir(dir: string): Promise<void> {
  await fs.rm(dir, { recursive: true, force: true, maxRetries: 5 });
}

/** Every file below `dir`, relative and sorted; the state directory is left out unless asked for. */
export async function listFiles(dir: string, options: { includeState?: boolean } = {}): Promise<string[]> {
  const out: string[] = [];
  async function walk(current: string, prefix: string): Promise<void> {
    let entries;
    try {
      entries = await fs.readdir(current, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of entries) {
      const rel = prefix === '' ? entry.name : `${prefix}/${entry.name}`;
      if (!options.includeState && prefix === '' && entry.name === '.prerender') continue;
      if (entry.isDirectory()) await walk(path.join(current, entry.name), rel);
      else out.push(rel);
    }
  }
  await walk(dir, '');
  return out.sort();
}

export interface Server {
  port: number;
  url: string;
  /** Requests the app saw, by raw req.url. */
  hits: Map<string, number>;
  /** TCP connections the app accepted. */
  connections(): number;
  close(): Promise<void>;
}

/** Starts a real node:http server on a free loopback port. */
export async function startServer(listener: RequestListener): Promise<Server> {
  const hits = new Map<string, number>();
  const server = http.createServer((req, res) => {
    hits.set(req.url ?? '', (hits.get(req.url ?? '') ?? 0) + 1);
    listener(req, res);
  });
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    hits,
    connections: () => connections,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/**
 * One request written byte for byte (request line and headers as given, then `Connection: close`), for
 * what node:http would refuse or normalise: a raw `#`, odd header spellings, absolute-form targets.
 */
export function rawRequest(port: number, lines: string[]): Promise<{ status: number; xCache: string | undefined; body: string }> {
  return new Promise((resolve) => {
    let data = '';
    const socket = net.connect(port, '127.0.0.1', () => socket.write(`${lines.join('\r\n')}\r\nConnection: close\r\n\r\n`));
    socket.on('data', (chunk: Buffer) => {
      data += chunk.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      resolve({
        status: Number(/^HTTP\/1\.[01] (\d{3})/.exec(data)?.[1] ?? 0),
        xCache: /\r\nx-cache: *([^\r\n]*)/i.exec(data)?.[1],
        body: data.slice(data.indexOf('\r\n\r\n') + 4),
      });
    });
  });
}

/** One request over a fresh connection; `target` goes into the request line as given. */
export function request(port: number, target: string, options: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: target, method: options.method ?? 'GET', headers: options.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Sends raw bytes as the request line's target (no URL library touches it) and returns the status code,
 * or 0 when the server closed the connection without a status line.
 */
export function rawStatus(port: number, target: Buffer | string, extraHeaders = ''): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.write(Buffer.concat([
        Buffer.from('GET '),
        typeof target === 'string' ? Buffer.from(target, 'latin1') : target,
        Buffer.from(` HTTP/1.1\r\nHost: localhost\r\n${extraHeaders}Connection: close\r\n\r\n`),
      ]));
    });
    let head = '';
    socket.setTimeout(10_000, () => socket.destroy(new Error('raw request timed out')));
    socket.on('data', (chunk: Buffer) => {
      head += chunk.toString('latin1');
    });
    socket.on('error', reject);
    socket.on('close', () => {
      const match = /^HTTP\/1\.[01] (\d{3})/.exec(head);
      resolve(match ? Number(match[1]) : 0);
    });
  });
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export const NGINX_BIN = ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx'].find((bin) => existsSync(bin));
let nginxNoticeShown = false;

/**
 * Whether nginx tests can run. Under CI=true a missing nginx is a failure; elsewhere the tests are
 * skipped with a notice nobody can miss.
 */
export function nginxAvailable(): boolean {
  if (NGINX_BIN !== undefined) return true;
  if (process.env.CI === 'true') throw new Error('nginx is not installed, and CI=true: nginx tests must not be skipped (.ci/run installs it)');
  if (!nginxNoticeShown) {
    nginxNoticeShown = true;
    process.stderr.write('\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n'
      + '!!  nginx is NOT installed: every test that needs it is SKIPPED.            !!\n'
      + '!!  Install it (apt-get install -y nginx) or run bash .ci/run.              !!\n'
      + '!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\n');
  }
  return false;
}

export interface Nginx {
  port: number;
  url: string;
  config: string;
  stop(): Promise<void>;
}

/** Starts a real nginx on a free loopback port serving `root` with the config `prerender nginx` prints. */
export async function startNginx(options: Omit<NginxConfigOptions, 'listen'> & { edit?: (server: string) => string }): Promise<Nginx> {
  if (NGINX_BIN === undefined) throw new Error('nginx is not installed');
  const dir = await tempDir('prerender-nginx-');
  for (let attempt = 0; ; attempt++) {
    const port = await freePort();
    const brotli = brotliModuleInstalled();
    const { edit, ...configOptions } = options;
    const generated = nginxConfig({ brotli, ...configOptions, listen: `127.0.0.1:${port}` });
    const server = edit === undefined ? generated : edit(generated);
    const runAsRoot = process.getuid?.() === 0;
    const config = `${runAsRoot ? 'user nobody nogroup;\n' : ''}${brotli ? `load_module ${BROTLI_MODULE};\n` : ''}daemon off;
worker_processes 1;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 1024; }
http {
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    access_log off;
    client_body_temp_path ${dir}/body;
    proxy_temp_path ${dir}/proxy;
    fastcgi_temp_path ${dir}/fastcgi;
    uwsgi_temp_path ${dir}/uwsgi;
    scgi_temp_path ${dir}/scgi;
${server}
}
`;
    await fs.writeFile(path.join(dir, 'nginx.conf'), config);
    const child = spawn(NGINX_BIN, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    let stderr = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const up = await Promise.race([waitForPort(port, 5000), exited.then(() => false)]);
    if (up) {
      return {
        port,
        url: `http://127.0.0.1:${port}`,
        config,
        stop: async () => {
          await stopChild(child, exited);
          await removeDir(dir);
        },
      };
    }
    await stopChild(child, exited);
    if (attempt >= 2) {
      const log = await fs.readFile(path.join(dir, 'error.log'), 'utf8').catch(() => '');
      throw new Error(`nginx did not start: ${stderr}\n${log}`);
    }
  }
}

async function stopChild(child: ChildProcess, exited: Promise<unknown>): Promise<void> {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  await Promise.race([exited, sleep(3000).then(() => child.kill('SIGKILL'))]);
}

/** Resolves true once something accepts connections on the loopback port, false after `timeoutMs`. */
export async function waitForPort(port: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1', () => {
        socket.destroy();
        resolve(true);
      });
      socket.on('error', () => resolve(false));
    });
    if (ok) return true;
    await sleep(25);
  }
  return false;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a Node script in a child process and collects its output. */
export function runNode(args: string[], options: { env?: Record<string, string>; input?: string; cwd?: string } = {}): Promise<CliResult> {
  return runCommand(process.execPath, args, options);
}

/** Runs a program (npm, tsc, nginx -t) in a child process and collects its output. */
export function runCommand(command: string, args: string[], options: { env?: Record<string, string>; input?: string; cwd?: string } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/** Runs the real `bin/prerender.js` (built `dist/`) in a child process. */
export function runCli(args: string[], options: { env?: Record<string, string>; input?: string; cwd?: string } = {}): Promise<CliResult> {
  return runNode([cliPath, ...args], options);
}

interface HookedSuite<T> {
  before(hook: (context: T) => Promise<void>): void;
  after(hook: (context: T) => Promise<void>): void;
  // uvu types `before.each` as a property of the `before` function.
}

/**
 * Registers set-up and tear-down on a uvu suite so that a failing set-up fails every test. uvu itself
 * swallows errors thrown by `before` hooks (its runner returns from `finally`), which would report a
 * broken suite as passing.
 */
export function setUpSuite<T>(target: HookedSuite<T> & { before: { each(hook: (context: T) => void): void } }, setUp: (context: T) => Promise<void>, tearDown: (context: T) => Promise<void>): void {
  let failure: unknown;
  target.before(async (context) => {
    try {
      await setUp(context);
    } catch (error) {
      failure = error;
    }
  });
  target.before.each(() => {
    if (failure !== undefined) throw failure;
  });
  target.after(async (context) => {
    await tearDown(context);
  });
}

/** An app with the cache in front of it and nginx in front of both, in a fresh temp root. */
export interface CachedSite {
  dir: string;
  root: string;
  cache: Cache;
  app: Server;
  nginx: Nginx;
}

/** Starts a CachedSite into `site` (a suite context); warnings are silenced unless `log` is given. */
export async function startCachedSite(
  site: CachedSite,
  handler: RequestListener,
  cacheOptions: Omit<CacheOptions, 'root'> = {},
  nginxOptions: Pick<NginxConfigOptions, 'hosts' | 'multiSite'> = {},
): Promise<void> {
  site.dir = await tempDir();
  site.root = path.join(site.dir, 'cache');
  site.cache = createCache({ root: site.root, log: () => undefined, ...cacheOptions });
  site.app = await startServer(site.cache.wrap(handler));
  site.nginx = await startNginx({ root: site.root, upstream: site.app.url, ...nginxOptions });
}

/** Stops what startCachedSite started (as far as it got), waiting for pending stores first. */
export async function stopCachedSite(site: Partial<CachedSite>): Promise<void> {
  await site.nginx?.stop();
  await site.app?.close();
  await site.cache?.idle();
  if (site.dir !== undefined) await removeDir(site.dir);
}

/**
 * SIGKILLs `child` while it is provably mid-write: it is frozen (SIGSTOP) until it is caught with a
 * file in `tempDir` (a write begun, not yet renamed into place), then killed frozen. A kill after a
 * fixed sleep may land between writes, and every "nothing partial is left" check after it would then
 * pass without testing anything. Resolves, once the child has exited, to the temp files it left.
 * `existing`: temp files there before the child started (an earlier process's), which prove nothing.
 */
export async function killMidWrite(child: ChildProcess, tempDir: string, options: { limitMs?: number; existing?: readonly string[] } = {}): Promise<string[]> {
  const limitMs = options.limitMs ?? 20_000;
  const existing = new Set(options.existing ?? []);
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const deadline = Date.now() + limitMs;
  for (;;) {
    child.kill('SIGSTOP');
    const temps = (await fs.readdir(tempDir).catch(() => [] as string[])).filter((name) => !existing.has(name));
    if (temps.length > 0) {
      child.kill('SIGKILL');
      await exited;
      return temps;
    }
    child.kill('SIGCONT');
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      await exited;
      throw new Error(`no write was under way in ${tempDir} within ${limitMs} ms`);
    }
    await sleep(5);
  }
}

/** Holds a handler mid-render until the test releases it. */
export class Gate {
  readonly entered: Promise<void>;
  private readonly opened: Promise<void>;
  private enter!: () => void;
  private open!: () => void;

  constructor() {
    this.entered = new Promise((resolve) => {
      this.enter = resolve;
    });
    this.opened = new Promise((resolve) => {
      this.open = resolve;
    });
  }

  async pass(): Promise<void> {
    this.enter();
    await this.opened;
  }

  release(): void {
    this.open();
  }
}

const PAGE_BODY = Buffer.from('<!doctype html><title>bench</title><p>a cached page</p>\n');

/**
 * Stores a page for `urlPath` as `<path>/index.html` through the real write path (commit), as the
 * middleware would, or throws naming why it was not stored. For tests and benches that need a filled root.
 */
export async function storePage(root: CacheRoot, urlPath: string, tags: readonly string[] = [], options: { body?: Buffer; expiresAt?: number | null } = {}): Promise<void> {
  const body = options.body ?? PAGE_BODY;
  const file = `${urlPath.slice(1)}/index.html`;
  const temp = new PageBody();
  temp.write(body);
  const now = Date.now();
  const result = await root.commit(temp, {
    urlPath, file, tags: [...tags], renderedAt: now, storedAt: now, expiresAt: options.expiresAt ?? null,
    mediaType: 'text/html', size: body.byteLength, mtime: Math.floor(now / 1000),
  });
  if (!result.stored) throw new Error(`${file} was not stored: ${result.reason}`);
}

/**
 * The meta record of the file stored at `file` now, read through the whole meta index (as ls does);
 * undefined when none describes the version in place.
 */
export async function readMeta(root: CacheRoot, file: string): Promise<MetaRecord | undefined> {
  return (await root.store.meta.load(new Set([file]))).current(file, await root.store.fileStats(file));
}

/**
 * Holds every batch of this process at its first step (`indexed`) until `release`, so nothing pending
 * is given back meanwhile; `batches` counts the batches held. `stop` releases them and clears the hook.
 */
export function holdCommits(): { release: () => void; stop: () => void; readonly batches: number } {
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  let batches = 0;
  setCommitHook(async (step) => {
    if (step !== 'indexed') return;
    batches++;
    await held;
  });
  return {
    release: () => release(),
    stop: () => {
      setCommitHook(undefined);
      release();
    },
    get batches() {
      return batches;
    },
  };
}
