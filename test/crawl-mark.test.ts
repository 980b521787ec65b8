/**
 * The crawl mark (src/crawl-mark.ts), end to end with the README's own set-up: nginx with the generated
 * config in front of an Express app that runs cache.middleware() and sets Cache-Tag. Pages stored by
 * `crawl`, `crawl --swap`, `purge --refresh` and `sweep --refresh` keep their tags, so `purge --tag`
 * removes them and nginx stops serving them; a client cannot get the mark through nginx.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import express from 'express';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createCache, crawl, type CacheEvent } from '../src/index.js';
import { nginxAvailable, request, runCli, setUpSuite, sleep, startNginx, startServer, stopCachedSite, tempDir, type CachedSite } from './helpers.js';

const hasNginx = nginxAvailable();

interface Site extends CachedSite {
  /** Where the cache, nginx and the CLI point: a plain root, or `<base>/current` for the swap suite. */
  root: string;
  events: CacheEvent[];
  version: number;
}

/** The README's Express example, reduced: tags and an expiry on every page. */
function readmeApp(site: Site): express.Express {
  const app = express();
  app.use(site.cache.middleware());
  app.get('/posts/:id', (req, res) => {
    res.set('Cache-Tag', `post:${req.params.id}, feed`)
      .set('Cache-Control', 'public, s-maxage=3600')
      .send(`<h1>post ${req.params.id} v${site.version}</h1>`);
  });
  app.get('/expiring/:id', (req, res) => {
    res.set('Cache-Tag', `expiring:${req.params.id}`)
      .set('Cache-Control', 'public, s-maxage=1')
      .send(`<h1>expiring ${req.params.id} v${site.version}</h1>`);
  });
  app.get('/sitemap.xml', (req, res) => {
    res.set('Cache-Tag', 'sitemap').type('application/xml')
      .send(`<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>https://www.example.com/posts/9</loc></url></urlset>`);
  });
  app.get('/mark', (req, res) => {
    res.set('Cache-Tag', 'mark').send(`<p>mark: ${String(req.headers['x-prerender-crawl'] ?? 'none')}</p>`);
  });
  return app;
}

async function startSite(site: Site, root: string): Promise<void> {
  site.root = root;
  site.events = [];
  site.version = 1;
  // Expired pages stay for sweep --refresh to find: no expiry timer here.
  site.cache = createCache({ root, log: () => undefined, expiryCheckMs: 0, onEvent: (event) => site.events.push(event) });
  site.app = await startServer(readmeApp(site));
  site.nginx = await startNginx({ root, upstream: site.app.url });
}

/** Through nginx, as a client: the X-Cache it answered with and how often the app saw the target. */
async function viaNginx(site: Site, target: string): Promise<{ xCache: string | undefined; body: string; appHits: number }> {
  const reply = await request(site.nginx.port, target);
  await site.cache.idle();
  return { xCache: reply.headers['x-cache'] as string | undefined, body: reply.body.toString(), appHits: site.app.hits.get(target) ?? 0 };
}

async function cli(args: string[]): Promise<string> {
  const result = await runCli(args);
  assert.is(result.code, 0, `prerender ${args.join(' ')}: ${result.stdout}${result.stderr}`);
  return result.stdout;
}

async function taggedFiles(root: string, tag: string): Promise<string[]> {
  const listing = JSON.parse(await cli(['ls', '--tag', tag, '--json', '--root', root])) as { entries: Array<{ file: string }> };
  return listing.entries.map((entry) => entry.file);
}

/** What the README promises after any of the writers: purge --tag removes the page, nginx stops serving it. */
async function purgeTagRemoves(site: Site, tag: string, target: string): Promise<void> {
  const before = await viaNginx(site, target);
  assert.is(before.xCache, 'HIT', `${target} before the purge`);
  assert.match(await cli(['purge', '--tag', tag, '--root', site.root]), /^removed 1 file\n/);
  const after = await viaNginx(site, target);
  assert.is(after.xCache, 'MISS', `${target} after purge --tag ${tag}`);
  assert.is(after.appHits, before.appHits + 1, 'the app rendered the page again');
}

function storedByMiddleware(site: Site, urlPath: string): number {
  return site.events.filter((event) => event.type === 'stored' && event.urlPath === urlPath).length;
}

// ---

const live = suite<Site>('crawl mark: crawl and refresh through an app running the middleware keep tags');
setUpSuite(live, async (site) => {
  site.dir = await tempDir();
  await startSite(site, path.join(site.dir, 'cache'));
}, stopCachedSite);
const it = hasNginx ? live : live.skip;

it('crawl: stored by the crawl with its tags, not by the middleware; purge --tag removes it', async (site) => {
  const list = path.join(site.dir, 'urls.txt');
  await fs.writeFile(list, '/posts/1\n/posts/2\n');
  assert.match(await cli(['crawl', list, '--origin', site.app.url, '--root', site.root]), /2 stored/);
  await site.cache.idle();
  assert.is(storedByMiddleware(site, '/posts/1'), 0, 'the middleware stored a crawl request itself');
  assert.equal(await taggedFiles(site.root, 'post:1'), ['posts/1/index.html']);
  assert.equal(await taggedFiles(site.root, 'feed'), ['posts/1/index.html', 'posts/2/index.html']);
  await purgeTagRemoves(site, 'post:1', '/posts/1');
  assert.is((await viaNginx(site, '/posts/2')).xCache, 'HIT');
});

it('crawl of a sitemap the app serves: the sitemap request is marked too, and is not stored by the middleware', async (site) => {
  assert.match(await cli(['crawl', `${site.app.url}/sitemap.xml`, '--origin', site.app.url, '--root', site.root]), /1 stored/);
  await site.cache.idle();
  assert.is(site.app.hits.get('/sitemap.xml'), 1);
  assert.equal(site.events.filter((event) => event.urlPath === '/sitemap.xml' || event.urlPath === '/posts/9'), [], 'the middleware saw no unmarked request');
  assert.equal(await taggedFiles(site.root, 'post:9'), ['posts/9/index.html']);
});

it('purge --refresh: the refreshed page keeps its tags; a later purge --tag removes it', async (site) => {
  const first = await viaNginx(site, '/posts/3');
  assert.is(first.xCache, 'MISS');
  assert.is(storedByMiddleware(site, '/posts/3'), 1);
  assert.is((await viaNginx(site, '/posts/3')).xCache, 'HIT');
  site.version = 2;
  assert.match(await cli(['purge', '--tag', 'post:3', '--refresh', '--origin', site.app.url, '--root', site.root]), /refreshed 1 file/);
  await site.cache.idle();
  assert.is(storedByMiddleware(site, '/posts/3'), 1, 'the refresh request was stored by the middleware too');
  const refreshed = await viaNginx(site, '/posts/3');
  assert.is(refreshed.xCache, 'HIT');
  assert.is(refreshed.body, '<h1>post 3 v2</h1>');
  assert.equal(await taggedFiles(site.root, 'post:3'), ['posts/3/index.html']);
  await purgeTagRemoves(site, 'post:3', '/posts/3');
});

it('sweep --refresh: the re-rendered expired page keeps its tags; a later purge --tag removes it', async (site) => {
  assert.is((await viaNginx(site, '/expiring/1')).xCache, 'MISS');
  assert.is((await viaNginx(site, '/expiring/1')).xCache, 'HIT');
  await sleep(1100);
  site.version = 3;
  assert.match(await cli(['sweep', '--refresh', '--origin', site.app.url, '--root', site.root]), /refreshed 1 file/);
  await site.cache.idle();
  assert.is(storedByMiddleware(site, '/expiring/1'), 1);
  assert.is((await viaNginx(site, '/expiring/1')).body, '<h1>expiring 1 v3</h1>');
  assert.equal(await taggedFiles(site.root, 'expiring:1'), ['expiring/1/index.html']);
  await purgeTagRemoves(site, 'expiring:1', '/expiring/1');
});

it('a client cannot send the mark through nginx; sent to the app directly it only shows the tags, unstored', async (site) => {
  const through = await request(site.nginx.port, '/mark', { headers: { 'X-Prerender-Crawl': '1' } });
  assert.is(through.headers['x-cache'], 'MISS');
  assert.is(through.body.toString(), '<p>mark: none</p>');
  assert.is(through.headers['cache-tag'], undefined);
  await site.cache.idle();
  assert.is(storedByMiddleware(site, '/mark'), 1, 'nginx cleared the mark, so the middleware stored the page');
  await cli(['purge', '/mark', '--root', site.root]);

  const direct = await request(site.app.port, '/mark', { headers: { 'X-Prerender-Crawl': 'anything' } });
  assert.is(direct.body.toString(), '<p>mark: anything</p>');
  assert.is(direct.headers['cache-tag'], 'mark');
  await site.cache.idle();
  assert.is(storedByMiddleware(site, '/mark'), 1, 'a marked request was stored by the middleware');
});

live.run();

// ---

const swapped = suite<Site>('crawl mark: crawl --swap through an app running the middleware keeps tags');
setUpSuite(swapped, async (site) => {
  site.dir = await tempDir();
  const base = path.join(site.dir, 'site');
  // The first generation, so that `current` is the symlink the app and nginx are pointed at (a cache
  // started on a missing `current` would make it a plain directory, which --swap refuses to replace).
  const bootstrap = await startServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end('<p>first generation</p>');
  });
  try {
    const list = path.join(site.dir, 'first.txt');
    await fs.writeFile(list, '/\n');
    assert.ok((await crawl({ source: list, origin: bootstrap.url, root: base, swap: true })).swapped);
  } finally {
    await bootstrap.close();
  }
  await startSite(site, path.join(base, 'current'));
}, stopCachedSite);
const swapIt = hasNginx ? swapped : swapped.skip;

swapIt('crawl --swap: the new generation holds the tags; purge --tag on current removes the page', async (site) => {
  const base = path.dirname(site.root);
  const before = await fs.readlink(site.root);
  const list = path.join(site.dir, 'urls.txt');
  await fs.writeFile(list, '/posts/7\n/posts/8\n');
  const output = await cli(['crawl', list, '--origin', site.app.url, '--root', base, '--swap']);
  assert.match(output, /switched current to/);
  assert.is.not(await fs.readlink(site.root), before);
  await site.cache.idle();
  assert.is(storedByMiddleware(site, '/posts/7'), 0, 'the middleware stored a crawl request itself');
  assert.equal(await taggedFiles(site.root, 'post:7'), ['posts/7/index.html']);
  assert.equal(await taggedFiles(site.root, 'feed'), ['posts/7/index.html', 'posts/8/index.html']);
  await purgeTagRemoves(site, 'post:7', '/posts/7');
  assert.is((await viaNginx(site, '/posts/8')).xCache, 'HIT');
});

swapped.run();
