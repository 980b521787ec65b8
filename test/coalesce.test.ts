/**
 * Miss coalescing (coalesce.ts): concurrent requests for one cold page cost one render when its
 * response is storable; when it is not, each waiter is rendered by the app itself.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { IncomingMessage, ServerResponse } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { createCache, type CacheOptions } from '../src/index.js';
import { LINGER_MS } from '../src/coalesce.js';
import {
  nginxAvailable, removeDir, request, runCli, setUpSuite, sleep, startCachedSite, startServer, stopCachedSite, tempDir,
  type CachedSite, type Reply,
} from './helpers.js';

const hasNginx = nginxAvailable();
const CONCURRENT = 50;

/** A page that takes 50 ms to render; `headers` decide whether it is storable. */
function countedApp(headers: (render: number, req: IncomingMessage) => Record<string, string | undefined>) {
  const state = { renders: 0 };
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const render = ++state.renders;
    setTimeout(() => {
      const body = `<!doctype html><p>${req.url} render ${render} é</p>\n`;
      const extra = Object.fromEntries(Object.entries(headers(render, req)).filter((entry): entry is [string, string] => entry[1] !== undefined));
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(body), ...extra });
      res.write(body.slice(0, 10));
      res.end(body.slice(10));
    }, 50);
  };
  return { state, handler };
}

const all = (count: number, send: (i: number) => Promise<Reply>): Promise<Reply[]> => Promise.all(Array.from({ length: count }, (_, i) => send(i)));

type Context = CachedSite & { state: { renders: number } };
const nginx = suite<Context>('coalesce: a stampede through nginx');
const counted = countedApp((_, req) => (req.url === '/private' ? { 'Cache-Control': 'private' } : { 'Cache-Tag': 'page', 'X-App': 'yes' }));
setUpSuite(nginx, async (context) => {
  context.state = counted.state;
  if (hasNginx) await startCachedSite(context, counted.handler);
}, async (context) => stopCachedSite(context));

(hasNginx ? nginx : nginx.skip)(`${CONCURRENT} concurrent requests for one cold page: one render, every client its status, headers and bytes`, async (context) => {
  const replies = await all(CONCURRENT, () => request(context.nginx.port, '/cold'));
  assert.is(context.state.renders, 1);
  const first = replies[0] as Reply;
  assert.match(first.body.toString(), /render 1 é/);
  for (const reply of replies) {
    assert.is(reply.status, 200);
    assert.ok(reply.body.equals(first.body));
    assert.is(reply.headers['content-type'], 'text/html; charset=utf-8');
    assert.is(reply.headers['x-app'], 'yes');
    assert.is(reply.headers['cache-tag'], undefined, 'tag headers never reach a client');
    assert.is(reply.headers['x-cache'], 'MISS');
    assert.is(reply.headers.etag, first.headers.etag);
  }
  await context.cache.idle();
  const hit = await request(context.nginx.port, '/cold');
  assert.is(hit.headers['x-cache'], 'HIT');
  assert.ok(hit.body.equals(first.body));
  assert.is(context.state.renders, 1);
});

(hasNginx ? nginx : nginx.skip)('a first response that is not storable: each waiter is rendered by the app', async (context) => {
  const before = context.state.renders;
  const replies = await all(CONCURRENT, () => request(context.nginx.port, '/private'));
  assert.is(context.state.renders - before, CONCURRENT);
  const renders = new Set(replies.map((reply) => /render (\d+)/.exec(reply.body.toString())?.[1]));
  assert.is(renders.size, CONCURRENT, 'each client got a render of its own');
});

// ---

const direct = suite('coalesce: who shares, who does not');

async function withApp(options: Omit<CacheOptions, 'root'>, headers: Parameters<typeof countedApp>[0], run: (port: number, state: { renders: number }) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  const cache = createCache({ root: path.join(dir, 'cache'), log: () => undefined, ...options });
  const { state, handler } = countedApp(headers);
  const app = await startServer(cache.wrap(handler));
  try {
    await run(app.port, state);
  } finally {
    await app.close();
    await cache.idle();
    await removeDir(dir);
  }
}

direct('Set-Cookie, private, 404-like answers and oversized bodies are not shared; the next stampede is', async () => {
  await withApp({ maxBodyBytes: 100 }, (render, req) => (req.url === '/cookie' && render === 1 ? { 'Set-Cookie': 'a=1' } : req.url === '/private' ? { 'Cache-Control': 'private' } : {}), async (port, state) => {
    await all(10, () => request(port, '/cookie'));
    assert.is(state.renders, 10, 'the first response set a cookie: each waiter rendered');
    await all(10, () => request(port, '/private'));
    assert.is(state.renders, 20);
    await all(10, () => request(port, '/shared'));
    assert.is(state.renders, 21);
  });
  await withApp({ maxBodyBytes: 20 }, () => ({}), async (port, state) => {
    const replies = await all(10, () => request(port, '/big'));
    assert.is(state.renders, 10, 'over maxBodyBytes: not shared');
    assert.ok(replies.every((reply) => reply.status === 200 && reply.body.length > 20));
  });
});

direct('Authorization, bypass cookies, HEAD and query strings go to the app each; hosts apart in multi-site mode', async () => {
  await withApp({}, () => ({}), async (port, state) => {
    await all(5, () => request(port, '/p', { headers: { Authorization: 'Bearer x' } }));
    await all(5, () => request(port, '/p', { headers: { Cookie: 'session=1' } }));
    await all(5, () => request(port, '/p?x=1'));
    await all(5, () => request(port, '/p', { method: 'HEAD' }));
    assert.is(state.renders, 20);
  });
  await withApp({ hosts: ['a.test', 'b.test'], multiSite: true }, () => ({}), async (port, state) => {
    const replies = await all(10, (i) => request(port, '/p', { headers: { Host: i % 2 === 0 ? 'a.test' : 'b.test' } }));
    assert.is(state.renders, 2);
    for (const reply of replies) assert.match(reply.body.toString(), /render [12]/);
  });
});

direct('a finished response serves arrivals for a moment, never after a purge (in this process or another)', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  const cache = createCache({ root, log: () => undefined });
  const { state, handler } = countedApp(() => ({ 'Cache-Tag': 'feed' }));
  const app = await startServer(cache.wrap(handler));
  try {
    await request(app.port, '/p');
    const again = await request(app.port, '/p');
    assert.is(state.renders, 1, 'a request just after the render finished shares it');
    assert.match(again.body.toString(), /render 1/);
    await cache.idle();
    await cache.purge({ tags: ['feed'] });
    assert.match((await request(app.port, '/p')).body.toString(), /render 2/, 'purged: rendered again');
    await cache.idle();
    const cli = await runCli(['purge', '/p', '--root', root]);
    assert.is(cli.code, 0, cli.stderr);
    assert.match((await request(app.port, '/p')).body.toString(), /render 3/, 'purged by another process: rendered again');
    await sleep(LINGER_MS + 100);
    assert.match((await request(app.port, '/p')).body.toString(), /render 4/, 'past the linger: rendered again');
  } finally {
    await app.close();
    await cache.idle();
    await removeDir(dir);
  }
});

direct('coalesce: false renders every request', async () => {
  await withApp({ coalesce: false }, () => ({}), async (port, state) => {
    await all(20, () => request(port, '/p'));
    assert.is(state.renders, 20);
  });
});

direct('a waiter whose client left is skipped; an aborted first response sends the waiters to the app', async () => {
  await withApp({}, () => ({}), async (port, state) => {
    const first = request(port, '/a');
    await sleep(10);
    const gone = net.connect(port, '127.0.0.1', () => gone.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n'));
    gone.on('error', () => undefined);
    await sleep(10);
    gone.destroy();
    const replies = await all(4, () => request(port, '/a'));
    assert.is((await first).status, 200);
    assert.is(state.renders, 1);
    assert.ok(replies.every((reply) => reply.status === 200 && reply.body.equals(replies[0]?.body ?? Buffer.alloc(0))));
  });
  const dir = await tempDir();
  const cache = createCache({ root: path.join(dir, 'cache'), log: () => undefined });
  let renders = 0;
  const app = await startServer(cache.wrap((req, res) => {
    renders++;
    if (renders === 1) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.write('<p>partial');
      setTimeout(() => res.destroy(), 50);
      return;
    }
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.end('<p>whole</p>');
  }));
  try {
    const first = request(app.port, '/x').catch(() => undefined);
    await sleep(10);
    const waiters = await all(4, () => request(app.port, '/x'));
    await first;
    assert.is(renders, 5);
    for (const reply of waiters) assert.is(reply.body.toString(), '<p>whole</p>');
  } finally {
    await app.close();
    await cache.idle();
    await removeDir(dir);
  }
});

nginx.run();
direct.run();
