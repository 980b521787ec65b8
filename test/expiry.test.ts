/**
 * Expiry acted on by running processes (RFC 9111 4.2): through a real nginx, a page stops being a hit
 * within one second of going stale, whoever stored it (this process, or a crawl in another one).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { CacheRoot } from '../src/cache-root.js';
import { createCache } from '../src/index.js';
import {
  listFiles, nginxAvailable, removeDir, request, runCli, setUpSuite, sleep, startCachedSite, startServer, stopCachedSite, tempDir, waitFor,
  type CachedSite, type Server,
  readMeta,
} from './helpers.js';

const hasNginx = nginxAvailable();
const html = 'text/html; charset=utf-8';

/** Pages by path: the headers the app sends with them. */
const headersFor: Record<string, Record<string, string>> = {
  '/two': { 'Cache-Control': 'max-age=2' },
  '/shared': { 'Cache-Control': 'max-age=1, s-maxage=2' },
  '/restored': { 'Cache-Control': 'max-age=1' },
};

function app(overrides: Map<string, Record<string, string>>) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '';
    res.writeHead(200, { 'Content-Type': html, ...(overrides.get(url) ?? headersFor[url] ?? {}) });
    res.end(`<p>${url}</p>`);
  };
}

/**
 * Reads `target` through nginx every 20 ms until it is not a hit; returns the time of that first miss.
 * Fails if it stops being a hit before `notBefore`.
 */
async function firstMiss(port: number, target: string, notBefore: number, timeoutMs = 6000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const sentAt = Date.now();
    const reply = await request(port, target);
    if (reply.headers['x-cache'] !== 'HIT') {
      assert.ok(sentAt >= notBefore, `${target} stopped being a hit ${notBefore - sentAt} ms before it expired`);
      return sentAt;
    }
    if (Date.now() > deadline) throw new Error(`${target} was still a hit after ${timeoutMs} ms`);
    await sleep(20);
  }
}

async function expiryOf(root: string, file: string): Promise<number> {
  const meta = await readMeta(new CacheRoot(root), file);
  assert.ok(meta !== undefined && meta.expiresAt !== null, `${file} has an expiry`);
  return meta?.expiresAt ?? 0;
}

// ---

const running = suite<CachedSite & { overrides: Map<string, Record<string, string>> }>('expiry in the process that stored it');
setUpSuite(running, async (context) => {
  if (!hasNginx) return;
  context.overrides = new Map();
  // Without coalescing: a test asks the app again at once and needs a new render, not the shared one.
  await startCachedSite(context, app(context.overrides), { coalesce: false });
}, stopCachedSite);

running('a reader loop through nginx: max-age and s-maxage pages stop being hits within 1 s of expiring', async (context) => {
  if (!hasNginx) return;
  for (const target of ['/two', '/shared']) await request(context.nginx.port, target);
  await context.cache.idle();
  const two = await expiryOf(context.root, 'two/index.html');
  const shared = await expiryOf(context.root, 'shared/index.html');
  assert.ok(shared - Date.now() > 1000, 's-maxage=2 wins over max-age=1');
  assert.is((await request(context.nginx.port, '/two')).headers['x-cache'], 'HIT');
  const [twoMiss, sharedMiss] = await Promise.all([firstMiss(context.nginx.port, '/two', two), firstMiss(context.nginx.port, '/shared', shared)]);
  assert.ok(twoMiss - two <= 1000, `/two was a hit ${twoMiss - two} ms after its expiry`);
  assert.ok(sharedMiss - shared <= 1000, `/shared was a hit ${sharedMiss - shared} ms after its expiry`);
});

running('a page stored again with a later expiry is not removed by its old record', async (context) => {
  if (!hasNginx) return;
  await request(context.nginx.port, '/restored');
  await context.cache.idle();
  const first = await expiryOf(context.root, 'restored/index.html');
  // The app is asked directly (nginx would answer from disk), and now gives the page a minute.
  context.overrides.set('/restored', { 'Cache-Control': 'max-age=60' });
  await request(context.app.port, '/restored');
  await context.cache.idle();
  assert.ok((await expiryOf(context.root, 'restored/index.html')) > first + 30_000);
  await sleep(Math.max(0, first - Date.now()) + 1200);
  assert.is((await request(context.nginx.port, '/restored')).headers['x-cache'], 'HIT');
  // Nor does the old record act on the new version as if it had expired: no purge of the file is
  // recorded, which would refuse renders of it in flight.
  const target = { file: 'restored/index.html', urlPath: '/restored', tags: [] };
  assert.is(await new CacheRoot(context.root).invalidations.staleReason(first - 500, target), undefined, 'no removal recorded for the new version');
});

running('the index holds only what is yet to expire', async (context) => {
  if (!hasNginx) return;
  // Logs of seconds long past are deleted once read (the grace is 5 s).
  const expiryDir = path.join(context.root, '.prerender', 'expiry');
  await waitFor(async () => {
    const logs = await listFiles(expiryDir);
    return logs.every((log) => Number(path.basename(log, '.log')) * 1000 > Date.now() - 7000);
  }, 8000, 'old expiry logs to go');
});

running.run();

// ---

interface Crawled {
  dir: string;
  root: string;
  origin: Server;
}

const crawled = suite<Crawled>('expiry of pages a CLI crawl stored');
setUpSuite(crawled, async (context) => {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  context.origin = await startServer(app(new Map()));
}, async (context) => {
  await context.origin.close();
  await removeDir(context.dir);
});

crawled('a running process removes the crawled page within 1 s of its expiry; with expiryCheckMs 0 it stays', async (context) => {
  await fs.writeFile(path.join(context.dir, 'urls.txt'), '/two\n');
  const watching = createCache({ root: context.root, log: () => undefined });
  const idle = createCache({ root: path.join(context.dir, 'other'), log: () => undefined, expiryCheckMs: 0 });
  try {
    const result = await runCli(['crawl', path.join(context.dir, 'urls.txt'), '--origin', context.origin.url, '--root', context.root]);
    assert.is(result.code, 0, result.stderr);
    const expiresAt = await expiryOf(context.root, 'two/index.html');
    assert.ok(await new CacheRoot(context.root).store.exists('two/index.html'));
    await waitFor(async () => !(await new CacheRoot(context.root).store.exists('two/index.html')), 4000, 'the crawled page to go');
    assert.ok(Date.now() - expiresAt <= 1000, `removed ${Date.now() - expiresAt} ms after its expiry`);
    assert.ok(Date.now() >= expiresAt, 'not before its expiry');

    const other = path.join(context.dir, 'other');
    const crawl = await runCli(['crawl', path.join(context.dir, 'urls.txt'), '--origin', context.origin.url, '--root', other]);
    assert.is(crawl.code, 0, crawl.stderr);
    await sleep(Math.max(0, (await expiryOf(other, 'two/index.html')) - Date.now()) + 800);
    assert.ok(await new CacheRoot(other).store.exists('two/index.html'), 'expiryCheckMs: 0 acts on nothing');
  } finally {
    await watching.close();
    await idle.close();
  }
});

crawled('after a crawl --swap, a process on current acts on the expiries of the new generation', async (context) => {
  const base = path.join(context.dir, 'swapped');
  const list = path.join(context.dir, 'swap.txt');
  await fs.writeFile(list, '/forever\n');
  const first = await runCli(['crawl', list, '--swap', '--origin', context.origin.url, '--root', base]);
  assert.is(first.code, 0, first.stderr);
  const current = path.join(base, 'current');
  const watching = createCache({ root: current, log: () => undefined });
  try {
    // Let the process read the first generation's (empty) index before current moves.
    await sleep(600);
    await fs.writeFile(list, '/forever\n/two\n');
    const second = await runCli(['crawl', list, '--swap', '--origin', context.origin.url, '--root', base]);
    assert.is(second.code, 0, second.stderr);
    const expiresAt = await expiryOf(current, 'two/index.html');
    await waitFor(async () => !(await new CacheRoot(current).store.exists('two/index.html')), 4000, 'the page of the new generation to go');
    assert.ok(Date.now() - expiresAt <= 1000, `removed ${Date.now() - expiresAt} ms after its expiry`);
    assert.ok(await new CacheRoot(current).store.exists('forever/index.html'));
  } finally {
    await watching.close();
  }
});

crawled.run();
