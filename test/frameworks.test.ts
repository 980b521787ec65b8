/**
 * Koa, Fastify and Hono (on @hono/node-server) through `cache.wrap` or a hook, each the real framework
 * behind a real nginx running the generated config, as the README shows them: a page and a JSON file
 * are stored on the miss, served by nginx as HIT with the same bytes and type, their tags recorded
 * and purgeable. (Express and polka: test/middleware.test.ts.)
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { getRequestListener } from '@hono/node-server';
import Fastify from 'fastify';
import { Hono } from 'hono';
import Koa from 'koa';
import { createCache, type Cache } from '../src/index.js';
import { parseContentType } from '../src/mime.js';
import { listFiles, nginxAvailable, request, runCli, setUpSuite, startNginx, startServer, stopCachedSite, tempDir, type CachedSite } from './helpers.js';

const hasNginx = nginxAvailable();

interface Site extends CachedSite {
  /** The framework's own shutdown, if it has one. */
  close?: () => Promise<void>;
}

type Listener = (req: IncomingMessage, res: ServerResponse) => void;

/** Starts the cache, the framework's listener (which gets the cache), and nginx in front. */
async function startSite(site: Site, listener: (cache: Cache) => Listener | Promise<Listener>): Promise<void> {
  site.dir = await tempDir();
  site.root = path.join(site.dir, 'cache');
  site.cache = createCache({ root: site.root, log: () => undefined });
  site.app = await startServer(await listener(site.cache));
  site.nginx = await startNginx({ root: site.root, upstream: site.app.url });
}

async function stopSite(site: Partial<Site>): Promise<void> {
  await site.close?.();
  await stopCachedSite(site);
}

/**
 * What every framework must give: the miss answered by the app (tags kept from the client) and
 * stored, the hit served by nginx with the same bytes and media type without the app, the tag
 * recorded, and `prerender purge --tag` sending the next request to the app again.
 */
async function assertCachedAndPurgeable(site: Site, target: string, file: string, tag: string): Promise<void> {
  const miss = await request(site.nginx.port, target);
  assert.is(miss.status, 200, `${target}: ${miss.body.toString()}`);
  assert.is(miss.headers['x-cache'], 'MISS');
  assert.is(miss.headers['cache-tag'], undefined, 'tags never reach the client');
  await site.cache.idle();
  assert.ok((await listFiles(site.root)).includes(file), `${file} stored, got ${(await listFiles(site.root)).join(', ')}`);

  const hit = await request(site.nginx.port, target);
  assert.is(hit.headers['x-cache'], 'HIT');
  assert.ok(hit.body.equals(miss.body), 'the same bytes from disk');
  const appType = parseContentType(String(miss.headers['content-type']));
  const diskType = parseContentType(String(hit.headers['content-type']));
  assert.is(diskType?.mediaType, appType?.mediaType);
  assert.is(diskType?.charset, appType?.charset);
  assert.is(site.app.hits.get(target), 1, 'the hit did not reach the app');

  const listed = JSON.parse((await runCli(['ls', '--tag', tag, '--json', '--root', site.root])).stdout) as { entries: Array<{ file: string }> };
  assert.ok(listed.entries.some((entry) => entry.file === file), `${file} is under tag ${tag}`);
  const purged = await runCli(['purge', '--tag', tag, '--root', site.root]);
  assert.is(purged.code, 0, purged.stderr);
  assert.ok(!(await listFiles(site.root)).includes(file), `${file} purged`);
  const after = await request(site.nginx.port, target);
  assert.is(after.headers['x-cache'], 'MISS');
  assert.is(site.app.hits.get(target), 2, 'after the purge the app renders it again');
  await site.cache.idle();
}

// ---

const koa = suite<Site>('Koa: http.createServer(cache.wrap(app.callback()))');
setUpSuite(koa, (site) => startSite(site, (cache) => {
  const app = new Koa();
  app.use(async (ctx) => {
    if (ctx.path === '/koa/page') {
      ctx.set('Cache-Tag', 'koa, page');
      ctx.type = 'html';
      ctx.body = '<h1>koa page</h1>';
    } else if (ctx.path === '/koa/data.json') {
      ctx.set('Surrogate-Key', 'koa-data');
      ctx.body = { framework: 'koa', ü: 'ß' };
    }
  });
  return cache.wrap(app.callback());
}), stopSite);

(hasNginx ? koa : koa.skip)('a page and a JSON file: stored, served from disk, purged by tag', async (site) => {
  await assertCachedAndPurgeable(site, '/koa/page', 'koa/page/index.html', 'koa');
  await assertCachedAndPurgeable(site, '/koa/data.json', 'koa/data.json', 'koa-data');
  assert.is((await request(site.nginx.port, '/koa/missing')).status, 404);
  await site.cache.idle();
  assert.ok(!(await listFiles(site.root)).some((file) => file.startsWith('koa/missing')));
});

koa.run();

// ---

const fastify = suite<Site>('Fastify: an onRequest hook handing request.raw and reply.raw to cache.middleware()');
setUpSuite(fastify, (site) => startSite(site, async (cache) => {
  const app = Fastify();
  const middleware = cache.middleware();
  app.addHook('onRequest', (request, reply, done) => {
    middleware(request.raw, reply.raw, () => done());
  });
  app.get('/fastify/page', async (request, reply) => {
    void request;
    reply.header('Cache-Tag', 'fastify').type('text/html; charset=utf-8');
    return '<h1>fastify page</h1>';
  });
  app.get('/fastify/data.json', async () => ({ framework: 'fastify', ü: 'ß' }));
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.url === '/fastify/data.json') reply.header('Surrogate-Key', 'fastify-data');
    return payload;
  });
  // Fastify's own server is not needed here: the test's server counts what reaches the app.
  await app.ready();
  site.close = () => app.close();
  return (req, res) => app.routing(req, res);
}), stopSite);

(hasNginx ? fastify : fastify.skip)('a page and a JSON file: stored, served from disk, purged by tag', async (site) => {
  await assertCachedAndPurgeable(site, '/fastify/page', 'fastify/page/index.html', 'fastify');
  await assertCachedAndPurgeable(site, '/fastify/data.json', 'fastify/data.json', 'fastify-data');
});

fastify.run();

// ---

const hono = suite<Site>('Hono on @hono/node-server: http.createServer(cache.wrap(getRequestListener(app.fetch)))');
setUpSuite(hono, (site) => startSite(site, (cache) => {
  const app = new Hono();
  app.get('/hono/page', (c) => {
    c.header('Cache-Tag', 'hono');
    return c.html('<h1>hono page</h1>');
  });
  app.get('/hono/data.json', (c) => {
    c.header('Surrogate-Key', 'hono-data');
    return c.json({ framework: 'hono', ü: 'ß' });
  });
  app.get('/hono/stream', (c) => {
    c.header('Cache-Tag', 'hono-stream');
    c.header('Content-Type', 'text/html; charset=utf-8');
    return c.body(new ReadableStream({
      start(controller) {
        for (const part of ['<p>one</p>', '<p>two</p>', '<p>three</p>']) controller.enqueue(new TextEncoder().encode(part));
        controller.close();
      },
    }));
  });
  // As the README writes it: the adapter's listener returns a promise, which wrap() ignores.
  return cache.wrap(getRequestListener(app.fetch));
}), stopSite);

(hasNginx ? hono : hono.skip)('a page, a JSON file and a streamed body: stored, served from disk, purged by tag', async (site) => {
  await assertCachedAndPurgeable(site, '/hono/page', 'hono/page/index.html', 'hono');
  await assertCachedAndPurgeable(site, '/hono/data.json', 'hono/data.json', 'hono-data');
  await assertCachedAndPurgeable(site, '/hono/stream', 'hono/stream/index.html', 'hono-stream');
});

hono.run();
