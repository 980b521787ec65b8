/**
 * The app process of bench/burst.bench.ts and of hits.bench.ts case c, apart from the bench so that
 * the load generator does not share its event loop. Usage (IPC channel required):
 *   node --import tsx bench/burst-app.ts <middleware|plain|alone> <root>
 * Serves `/p/<n>`: a ~19 KB cacheable HTML page, the same bytes for the same n.
 * - middleware: `createCache({ root }).wrap(handler)` from the built package, options at their defaults;
 * - plain: the handler answers, then writes the body itself with plain Node (temp file + rename, no
 *   fsync, no index): the least a store can cost, the floor the middleware is compared with;
 * - alone: the handler answers and stores nothing, the app without the cache.
 * Sends `{ port }` once listening; answers `{ type: 'idle' }` with `{ stored, skipped, reasons }` once
 * every store it started has finished.
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type * as Prerender from '../src/index.js';

export const PAGE_BYTES = 19 * 1024;

/** middleware: wrapped by the cache; plain: stores each body itself; alone: stores nothing. */
export type Mode = 'middleware' | 'plain' | 'alone';

const START_LIMIT_MS = 30_000;
const IDLE_LIMIT_MS = 300_000;
const script = fileURLToPath(import.meta.url);

/** The page for `/p/<n>`, exactly PAGE_BYTES long, so a file on disk can be checked by its size. */
export function burstPage(n: number): Buffer {
  const head = `<!doctype html><html><head><title>page ${n}</title></head><body><h1>page ${n}</h1>`;
  const tail = '</body></html>';
  const filler = `<p>${'lorem ipsum dolor sit amet '.repeat(3)}${n}</p>\n`;
  let middle = '';
  while (head.length + middle.length + filler.length + tail.length <= PAGE_BYTES) middle += filler;
  return Buffer.from(head + middle + ' '.repeat(PAGE_BYTES - head.length - middle.length - tail.length) + tail);
}

export interface IdleReply {
  stored: number;
  skipped: number;
  /** Skip reasons and how often each came, so a low share stored says why. */
  reasons: Record<string, number>;
}

const HEADERS = { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'public, max-age=3600' };

function parsePage(req: IncomingMessage): number | undefined {
  const match = /^\/p\/(\d+)$/.exec(req.url ?? '');
  return match === null ? undefined : Number(match[1]);
}

function notFound(res: ServerResponse): void {
  res.writeHead(404, { 'Content-Type': 'text/plain', 'Cache-Control': 'no-store' });
  res.end('no such page\n');
}

async function middlewareApp(root: string): Promise<{ handler: http.RequestListener; idle: () => Promise<IdleReply> }> {
  // dist/, as users run it (see loadBuilt in hits.bench.ts for why not src/ through tsx).
  const { createCache } = (await import(new URL('../dist/index.js', import.meta.url).href)) as typeof Prerender;
  const counts: IdleReply = { stored: 0, skipped: 0, reasons: {} };
  const cache = createCache({
    root,
    onEvent: (event) => {
      if (event.type === 'stored') counts.stored++;
      else {
        counts.skipped++;
        counts.reasons[event.reason] = (counts.reasons[event.reason] ?? 0) + 1;
      }
    },
  });
  const handler = cache.wrap((req, res) => {
    const n = parsePage(req);
    if (n === undefined) return notFound(res);
    res.writeHead(200, HEADERS);
    res.end(burstPage(n));
  });
  return { handler, idle: async () => (await cache.idle(), counts) };
}

function plainApp(root: string): { handler: http.RequestListener; idle: () => Promise<IdleReply> } {
  const counts: IdleReply = { stored: 0, skipped: 0, reasons: {} };
  const pending = new Set<Promise<void>>();
  let sequence = 0;
  const write = async (n: number, body: Buffer): Promise<void> => {
    const dir = path.join(root, 'p', String(n));
    const temp = path.join(root, `.tmp-${process.pid}-${sequence++}`);
    try {
      await fs.mkdir(dir, { recursive: true });
      await fs.writeFile(temp, body, { mode: 0o644 });
      await fs.rename(temp, path.join(dir, 'index.html'));
      counts.stored++;
    } catch (error) {
      counts.skipped++;
      const reason = (error as NodeJS.ErrnoException).code ?? String(error);
      counts.reasons[reason] = (counts.reasons[reason] ?? 0) + 1;
      await fs.rm(temp, { force: true });
    }
  };
  const handler: http.RequestListener = (req, res) => {
    const n = parsePage(req);
    if (n === undefined) return notFound(res);
    const body = burstPage(n);
    res.writeHead(200, HEADERS);
    res.end(body);
    // After the response, as the middleware stores: the client never waits for this disk.
    const store = write(n, body).finally(() => pending.delete(store));
    pending.add(store);
  };
  return {
    handler,
    idle: async () => {
      while (pending.size > 0) await Promise.all(pending);
      return counts;
    },
  };
}

function aloneApp(): { handler: http.RequestListener; idle: () => Promise<IdleReply> } {
  const handler: http.RequestListener = (req, res) => {
    const n = parsePage(req);
    if (n === undefined) return notFound(res);
    res.writeHead(200, HEADERS);
    res.end(burstPage(n));
  };
  return { handler, idle: async () => ({ stored: 0, skipped: 0, reasons: {} }) };
}

async function main(): Promise<void> {
  const [mode, root] = process.argv.slice(2);
  if ((mode !== 'middleware' && mode !== 'plain' && mode !== 'alone') || root === undefined) throw new Error('usage: burst-app.ts <middleware|plain|alone> <root>');
  if (process.send === undefined) throw new Error('burst-app.ts needs an IPC channel (spawn it with stdio "ipc")');
  await fs.mkdir(root, { recursive: true });
  const app = mode === 'middleware' ? await middlewareApp(root) : mode === 'plain' ? plainApp(root) : aloneApp();
  const server = http.createServer(app.handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  process.on('message', (message: unknown) => {
    if (typeof message !== 'object' || message === null || (message as { type?: unknown }).type !== 'idle') return;
    void app.idle().then((reply) => process.send?.({ type: 'idle', ...reply }));
  });
  process.send({ type: 'listening', port: (server.address() as AddressInfo).port });
}

/** The app process as the bench sees it. */
export interface BurstApp {
  port: number;
  idle(): Promise<IdleReply>;
  stop(): Promise<void>;
}

/** Starts the app in a child process (the bench's event loop stays the load generator's). */
export async function startBurstApp(mode: Mode, root: string): Promise<BurstApp> {
  const child: ChildProcess = fork(script, [mode, root], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const message = <T>(type: string, limitMs: number): Promise<T> => new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`burst-app: ${mode} app: no ${type} message within ${limitMs} ms`)), limitMs);
    const onMessage = (value: unknown): void => {
      if (typeof value !== 'object' || value === null || (value as { type?: unknown }).type !== type) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(value as T);
    };
    child.on('message', onMessage);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`burst-app: ${mode} app exited before its ${type} message`));
    });
  });
  const stop = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  try {
    const { port } = await message<{ port: number }>('listening', START_LIMIT_MS);
    return {
      port,
      stop,
      idle: () => {
        const reply = message<IdleReply>('idle', IDLE_LIMIT_MS);
        child.send({ type: 'idle' });
        return reply;
      },
    };
  } catch (error) {
    await stop();
    throw error;
  }
}

// Imported by the bench for burstPage; runs only as a script.
if (process.argv[1] !== undefined && import.meta.url.endsWith(path.basename(process.argv[1]))) await main();
