/**
 * stale-while-revalidate (RFC 5861) through a real nginx: once expired, the page is refreshed in place
 * from the app (refreshOrigin) and nginx never answers a miss meanwhile; a refresh that keeps failing
 * ends, N seconds past the expiry, in the page's deletion.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { CacheRoot } from '../src/cache-root.js';
import { createCache } from '../src/index.js';
import { nginxAvailable, readMeta, request, setUpSuite, sleep, startNginx, startServer, stopCachedSite, tempDir, waitFor, type CachedSite } from './helpers.js';

const hasNginx = nginxAvailable();

interface Site extends CachedSite {
  renders: Map<string, number>;
  failing: Set<string>;
}

function app(site: Site) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = req.url ?? '';
    const render = (site.renders.get(url) ?? 0) + 1;
    site.renders.set(url, render);
    // A render that takes a while: a client would wait this long on a miss.
    await sleep(150);
    if (site.failing.has(url)) {
      res.writeHead(503, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end('<p>down</p>');
      return;
    }
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': url === '/fails' ? 'max-age=1, stale-while-revalidate=2' : 'max-age=2, stale-while-revalidate=10' });
    res.end(`<p>${url} render ${render}</p>`);
  };
}

async function expiresAt(root: string, file: string): Promise<number> {
  const meta = await readMeta(new CacheRoot(root), file);
  assert.ok(meta?.expiresAt !== null && meta?.expiresAt !== undefined, `${file} has an expiry`);
  return meta?.expiresAt ?? 0;
}

// ---

const swr = suite<Site>('stale-while-revalidate');
setUpSuite(swr, async (site) => {
  if (!hasNginx) return;
  site.renders = new Map();
  site.failing = new Set();
  site.dir = await tempDir();
  site.root = path.join(site.dir, 'cache');
  const handler = app(site);
  // The cache needs the app's address, known once it listens: the server hands requests to it late.
  site.app = await startServer((req, res) => site.cache.wrap(handler)(req, res));
  site.cache = createCache({ root: site.root, log: () => undefined, refreshOrigin: site.app.url });
  site.nginx = await startNginx({ root: site.root, upstream: site.app.url });
}, stopCachedSite);

swr('a reader loop through nginx never sees a miss while the expired page is refreshed in place', async (site) => {
  if (!hasNginx) return;
  await request(site.nginx.port, '/fresh');
  await site.cache.idle();
  const first = await expiresAt(site.root, 'fresh/index.html');
  const bodies = new Set<string>();
  // Well past the first expiry: the refresh starts within a check (250 ms) and renders in 150 ms.
  while (Date.now() < first + 2000) {
    const reply = await request(site.nginx.port, '/fresh');
    assert.is(reply.headers['x-cache'], 'HIT', `a miss ${Date.now() - first} ms after the expiry`);
    bodies.add(reply.body.toString());
    await sleep(20);
  }
  assert.ok(bodies.has('<p>/fresh render 1</p>'));
  assert.ok(bodies.has('<p>/fresh render 2</p>'), `refreshed: ${[...bodies].join(' ')}`);
  assert.ok((site.renders.get('/fresh') ?? 0) >= 2);
});

swr('a refresh that keeps failing ends in deletion N seconds past the expiry', async (site) => {
  if (!hasNginx) return;
  await request(site.nginx.port, '/fails');
  await site.cache.idle();
  const expiry = await expiresAt(site.root, 'fails/index.html');
  site.failing.add('/fails');
  const root = new CacheRoot(site.root);
  // Served stale while the refreshes fail...
  await sleep(Math.max(0, expiry - Date.now()) + 1200);
  assert.is((await request(site.nginx.port, '/fails')).headers['x-cache'], 'HIT');
  assert.ok((site.renders.get('/fails') ?? 0) >= 2, 'refreshes were tried');
  // ...then deleted once the 2 s window has passed (plus the check's second).
  await waitFor(async () => !(await root.store.exists('fails/index.html')), 4000, 'the page to be deleted');
  assert.ok(Date.now() >= expiry + 2000, `deleted ${expiry + 2000 - Date.now()} ms before the window closed`);
  assert.ok(Date.now() <= expiry + 3000, `deleted ${Date.now() - expiry - 2000} ms after the window closed`);
});

swr.run();
