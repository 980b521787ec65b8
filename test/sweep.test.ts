/**
 * Expiry and sweeping: expired files go (or are refreshed), and the state directory stays bounded.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CacheRoot } from '../src/cache-root.js';
import { createCache, type Cache } from '../src/index.js';
import { sweep } from '../src/sweep.js';
import { listFiles, nginxAvailable, removeDir, request, runCli, sleep, startNginx, startServer, tempDir, waitFor, type Server } from './helpers.js';

const html = 'text/html; charset=utf-8';
const hasNginx = nginxAvailable();

interface Context {
  dir: string;
  root: string;
  cache: Cache;
  app: Server;
  version: number;
  failing: boolean;
}

const headersFor: Record<string, Record<string, string>> = {
  '/short': { 'Cache-Control': 'max-age=1' },
  '/shared': { 'Cache-Control': 'max-age=100, s-maxage=1' },
  '/expires': { Expires: new Date(Date.now() + 1000).toUTCString() },
  '/forever': {},
  '/long': { 'Cache-Control': 'max-age=3600' },
};

async function setUp(context: Context, options: { sweepIntervalMs?: number; maxRenderMs?: number } = {}): Promise<void> {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  context.version = 1;
  context.failing = false;
  context.cache = createCache({ root: context.root, log: () => undefined, expiryCheckMs: 0, ...options });
  context.app = await startServer(context.cache.wrap(async (req, res) => {
    if (req.url === '/slow') await sleep(300);
    const headers = headersFor[req.url === '/expires' ? '/expires' : req.url ?? ''] ?? {};
    if (req.url === '/expires') {
      // HTTP dates have whole seconds: a Date and an Expires one second apart give exactly 1 s to live,
      // from now when the Date is rounded up (a Date in the past would count as age, RFC 9111 4.2.3).
      const date = Math.ceil(Date.now() / 1000) * 1000;
      headers.Date = new Date(date).toUTCString();
      headers.Expires = new Date(date + 1000).toUTCString();
    }
    if (context.failing && req.url === '/shared') {
      res.writeHead(503, { 'Content-Type': html });
      res.end('<p>down</p>');
      return;
    }
    res.writeHead(200, { 'Content-Type': html, 'Cache-Tag': `page:${req.url}`, ...headers });
    res.end(`<p>${req.url} v${context.version}</p>`);
  }));
}

async function tearDown(context: Context): Promise<void> {
  await context.app.close();
  await context.cache.close();
  await removeDir(context.dir);
}

async function warm(context: Context, targets: string[]): Promise<void> {
  for (const target of targets) await request(context.app.port, target);
  await context.cache.idle();
}

// ---

const expiry = suite<Context>('expiry and sweep');
expiry.before.each((context) => setUp(context));
expiry.after.each(tearDown);

expiry('s-maxage, max-age and Expires set the expiry; sweep removes what has expired', async (context) => {
  await warm(context, Object.keys(headersFor));
  assert.is((await listFiles(context.root)).length, 5);
  const early = await runCli(['sweep', '--json', '--root', context.root]);
  assert.is(early.code, 0, early.stderr);
  assert.equal((JSON.parse(early.stdout) as { removed: string[] }).removed, []);
  await sleep(1100);
  const result = await runCli(['sweep', '--json', '--root', context.root]);
  assert.is(result.code, 0, result.stderr);
  assert.equal((JSON.parse(result.stdout) as { removed: string[] }).removed.sort(), ['expires/index.html', 'shared/index.html', 'short/index.html']);
  assert.equal(await listFiles(context.root), ['forever/index.html', 'long/index.html']);
});

expiry('sweep --refresh replaces expired pages in place; a failed refresh deletes', async (context) => {
  await warm(context, ['/short', '/shared', '/long']);
  await sleep(1100);
  context.version = 2;
  context.failing = true;
  const result = await runCli(['sweep', '--refresh', '--origin', context.app.url, '--json', '--root', context.root]);
  assert.is(result.code, 1, 'a failed refresh makes the exit code 1');
  const report = JSON.parse(result.stdout) as { refreshed: string[]; failed: Array<{ urlPath: string }> };
  assert.equal(report.refreshed, ['short/index.html']);
  assert.equal(report.failed.map((f) => f.urlPath), ['/shared']);
  assert.is(await fs.readFile(path.join(context.root, 'short/index.html'), 'utf8'), '<p>/short v2</p>');
  assert.equal(await listFiles(context.root), ['long/index.html', 'short/index.html']);
});

expiry('the index drops entries of removed files', async (context) => {
  await warm(context, ['/short', '/long', '/forever']);
  const cacheRoot = new CacheRoot(context.root);
  await context.cache.purge({ paths: ['/long', '/forever'] });
  await fs.rm(path.join(context.root, 'short'), { recursive: true });
  assert.equal(await cacheRoot.tags.files('page:/long'), ['long/index.html'], 'a purge by path leaves the tag entry');
  const first = await sweep(cacheRoot);
  assert.equal(await cacheRoot.tags.files('page:/long'), []);
  assert.equal(await cacheRoot.tags.files('page:/short'), []);
  assert.equal(await cacheRoot.tags.files('page:/forever'), []);
  assert.is(first.orphans, 3, 'the meta records of the two purged files and of the one deleted behind our back are dropped');
  assert.is((await cacheRoot.store.meta.load()).size, 0, 'none left');
  assert.is((await sweep(cacheRoot)).orphans, 0, 'and nothing is dropped twice');
});

expiry.run();

// ---

const interval = suite<Context>('sweepIntervalMs');
interval.before.each((context) => setUp(context, { sweepIntervalMs: 100 }));
interval.after.each(tearDown);

interval('the middleware sweeps on its own', async (context) => {
  await warm(context, ['/short', '/long']);
  await waitFor(async () => (await listFiles(context.root)).length === 1, 4000, 'the expired page to be swept');
  assert.equal(await listFiles(context.root), ['long/index.html']);
});

interval.run();

// ---

const slow = suite<Context>('maxRenderMs');
slow.before.each((context) => setUp(context, { maxRenderMs: 100 }));
slow.after.each(tearDown);

slow('a render that took longer than maxRenderMs is not stored', async (context) => {
  await warm(context, ['/slow', '/forever']);
  assert.equal(await listFiles(context.root), ['forever/index.html']);
});

slow.run();

// ---

const viaNginx = suite<Context>('expired pages through nginx');
viaNginx.before.each((context) => setUp(context));
viaNginx.after.each(tearDown);

(hasNginx ? viaNginx : viaNginx.skip)('after a sweep an expired page reaches the app again', async (context) => {
  const nginx = await startNginx({ root: context.root, upstream: context.app.url });
  try {
    await request(nginx.port, '/short');
    await context.cache.idle();
    assert.is((await request(nginx.port, '/short')).headers['x-cache'], 'HIT');
    await sleep(1100);
    await context.cache.sweep();
    assert.is((await request(nginx.port, '/short')).headers['x-cache'], 'MISS');
  } finally {
    await nginx.stop();
  }
});

viaNginx.run();
