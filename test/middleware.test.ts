/**
 * The capture middleware in real servers: plain node:http (`wrap`), Express 5 and polka
 * (`middleware`), over real loopback HTTP.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import express from 'express';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net from 'node:net';
import path from 'node:path';
import polka from 'polka';
import { createCache, type Cache, type CacheEvent } from '../src/index.js';
import { listFiles, removeDir, request, sleep, startServer, tempDir, waitFor } from './helpers.js';
import { HOST_TAG } from '../src/owner.js';
import { PENDING_PAGE_BYTES } from '../src/page-body.js';

interface Context {
  dir: string;
  root: string;
  cache: Cache;
  events: CacheEvent[];
  warnings: string[];
}

async function fresh(context: Context, options: { root?: string } = {}): Promise<void> {
  context.dir = await tempDir();
  context.root = options.root ?? path.join(context.dir, 'cache');
  context.events = [];
  context.warnings = [];
  context.cache = createCache({
    root: context.root,
    log: (message) => context.warnings.push(message),
    onEvent: (event) => context.events.push(event),
  });
}

const html = 'text/html; charset=utf-8';

// ---

const wrap = suite<Context>('wrap(): plain node:http');
wrap.before.each(fresh);
wrap.after.each(async (context) => removeDir(context.dir));

wrap('passes the body through unchanged, strips tag headers, stores the page', async (context) => {
  const app = await startServer(context.cache.wrap((req, res) => {
    res.setHeader('Content-Type', html);
    res.setHeader('Cache-Tag', 'Post:1, Feed');
    res.setHeader('Surrogate-Key', 'author:7 feed');
    res.setHeader('X-Custom', 'kept');
    res.end('<p>post</p>');
  }));
  try {
    const reply = await request(app.port, '/posts/1');
    assert.is(reply.body.toString(), '<p>post</p>');
    assert.is(reply.headers['cache-tag'], undefined);
    assert.is(reply.headers['surrogate-key'], undefined);
    assert.is(reply.headers['x-custom'], 'kept');
    await context.cache.idle();
    assert.is(await fs.readFile(path.join(context.root, 'posts/1/index.html'), 'utf8'), '<p>post</p>');
    const meta = context.events.find((event) => event.type === 'stored');
    assert.ok(meta);
  } finally {
    await app.close();
  }
});

wrap('headers passed to writeHead (object and raw array) are seen and tags stripped', async (context) => {
  const app = await startServer(context.cache.wrap((req, res) => {
    if (req.url === '/object') {
      res.writeHead(200, { 'Content-Type': html, 'Cache-Tag': 'a' });
    } else if (req.url === '/array') {
      res.writeHead(200, 'Fine', ['Content-Type', html, 'Surrogate-Key', 'b', 'X-Two', '1', 'X-Two', '2']);
    } else {
      res.writeHead(200, { 'Content-Type': html, 'Set-Cookie': 'x=1' });
    }
    res.end(`<p>${req.url}</p>`);
  }));
  try {
    const object = await request(app.port, '/object');
    const array = await request(app.port, '/array');
    const cookie = await request(app.port, '/cookie');
    assert.is(object.headers['cache-tag'], undefined);
    assert.is(array.headers['surrogate-key'], undefined);
    assert.is(array.headers['x-two'], '1, 2');
    assert.equal(cookie.headers['set-cookie'], ['x=1']);
    await context.cache.idle();
    assert.equal(await listFiles(context.root), ['array/index.html', 'object/index.html']);
  } finally {
    await app.close();
  }
});

wrap('tag headers are stripped from responses that are never stored, and from a busy cache\'s', async (context) => {
  const busy = createCache({ root: path.join(context.dir, 'busy'), maxPendingBytes: PENDING_PAGE_BYTES + Buffer.byteLength('<p>first half</p>'), log: () => undefined });
  let releaseHeld: (() => void) | undefined;
  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    if (req.url === '/held') {
      // Takes the busy cache's whole byte budget and keeps it until released.
      res.writeHead(200, { 'Content-Type': html, 'Cache-Tag': 'held' });
      res.write('<p>first half</p>');
      releaseHeld = () => res.end();
      return;
    }
    if (req.url?.startsWith('/head')) res.writeHead(200, 'Fine', { 'Content-Type': html, 'Cache-Tag': 'a', 'Surrogate-Key': 'b' });
    else {
      res.setHeader('Content-Type', html);
      res.setHeader('Cache-Tag', 'a');
      res.setHeader('Surrogate-Key', 'b');
    }
    res.end('<p>page</p>');
  };
  const app = await startServer(context.cache.wrap(handler));
  const busyApp = await startServer(busy.wrap(handler));
  try {
    const refused: Array<[string, { method?: string; headers?: Record<string, string> }]> = [
      ['/page?x=1', {}], ['/head?x=1', {}], ['/page', { method: 'POST' }], ['/head', { headers: { Authorization: 'Basic eDp5' } }],
    ];
    for (const [target, options] of refused) {
      const reply = await request(app.port, target, options);
      assert.is(reply.status, 200, target);
      assert.is(reply.headers['cache-tag'], undefined, target);
      assert.is(reply.headers['surrogate-key'], undefined, target);
    }
    const held = new Promise<void>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: busyApp.port, path: '/held', agent: false }, (res) => {
        res.resume();
        res.on('end', resolve);
      }).on('error', reject);
    });
    await waitFor(() => releaseHeld !== undefined);
    for (const target of ['/page', '/head']) {
      const reply = await request(busyApp.port, target);
      assert.is(reply.headers['cache-tag'], undefined, `busy ${target}`);
      assert.is(reply.headers['surrogate-key'], undefined, `busy ${target}`);
    }
    releaseHeld?.();
    await held;
    await context.cache.idle();
    await busy.idle();
    assert.equal(await listFiles(context.root), [], 'nothing refused was stored');
    assert.equal(await listFiles(path.join(context.dir, 'busy')), ['held/index.html'], 'only the held page, not the ones that found the cache busy');
  } finally {
    releaseHeld?.();
    await app.close();
    await busyApp.close();
    await busy.close();
  }
});

wrap('string chunks with an encoding are stored as the bytes the client got', async (context) => {
  const app = await startServer(context.cache.wrap((req, res) => {
    res.setHeader('Content-Type', html);
    res.write('<p>', 'utf8');
    res.write(Buffer.from('déjà vu').toString('hex'), 'hex');
    res.write(new Uint8Array([0x21]));
    res.end('</p>', 'latin1');
  }));
  try {
    const reply = await request(app.port, '/encodings');
    await context.cache.idle();
    const stored = await fs.readFile(path.join(context.root, 'encodings/index.html'));
    assert.ok(stored.equals(reply.body));
    assert.is(stored.toString(), '<p>déjà vu!</p>');
  } finally {
    await app.close();
  }
});

wrap('a client that aborts mid-response leaves no file and no temp file', async (context) => {
  let finished!: () => void;
  const done = new Promise<void>((resolve) => {
    finished = resolve;
  });
  const app = await startServer(context.cache.wrap((req, res) => {
    res.setHeader('Content-Type', html);
    res.write('<p>first chunk</p>');
    res.on('close', finished);
    const timer = setInterval(() => {
      if (res.destroyed) return clearInterval(timer);
      res.write('<p>more</p>');
    }, 5);
  }));
  try {
    await new Promise<void>((resolve, reject) => {
      const req = http.get({ host: '127.0.0.1', port: app.port, path: '/slow', agent: false }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      setTimeout(() => reject(new Error('no data')), 5000);
    });
    await done;
    await context.cache.idle();
    await sleep(50);
    assert.equal(await listFiles(context.root), []);
    assert.equal(await fs.readdir(path.join(context.root, '.prerender', 'tmp')), []);
    assert.ok(context.events.some((event) => event.type === 'skipped' && /did not complete/.test(event.reason)));
  } finally {
    await app.close();
  }
});

wrap('a body shorter than its Content-Length is not stored', async (context) => {
  const app = await startServer(context.cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': html, 'Content-Length': '100' });
    res.end('<p>only part</p>');
  }));
  try {
    await new Promise<void>((resolve) => {
      const socket = net.connect(app.port, '127.0.0.1', () => socket.write('GET /short HTTP/1.1\r\nHost: x\r\n\r\n'));
      socket.once('data', () => setTimeout(() => {
        socket.destroy();
        resolve();
      }, 50));
    });
    await waitFor(() => context.events.length > 0, 5000, 'a skip event');
    assert.equal(await listFiles(context.root), []);
    assert.match((context.events[0] as { reason: string }).reason, /Content-Length/);
  } finally {
    await app.close();
  }
});

wrap('HEAD requests are answered but not stored', async (context) => {
  const app = await startServer(context.cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': html });
    res.end(req.method === 'HEAD' ? undefined : '<p>x</p>');
  }));
  try {
    const reply = await request(app.port, '/head', { method: 'HEAD' });
    assert.is(reply.status, 200);
    await context.cache.idle();
    assert.equal(await listFiles(context.root), []);
  } finally {
    await app.close();
  }
});

wrap('files are 0644 and directories 0755 whatever the umask', async (context) => {
  const previous = process.umask(0o077);
  const app = await startServer(context.cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': html });
    res.end('<p>x</p>');
  }));
  try {
    await request(app.port, '/deep/er/page');
    await context.cache.idle();
    assert.is((await fs.stat(path.join(context.root, 'deep/er/page/index.html'))).mode & 0o777, 0o644);
    for (const dir of ['deep', 'deep/er', 'deep/er/page']) {
      assert.is((await fs.stat(path.join(context.root, dir))).mode & 0o777, 0o755, dir);
    }
  } finally {
    process.umask(previous);
    await app.close();
  }
});

wrap('a file where a directory is needed, or a directory where a file goes, is left alone', async (context) => {
  const app = await startServer(context.cache.wrap((req, res) => {
    const type = req.url?.endsWith('.css') ? 'text/css' : req.url?.endsWith('.json') ? 'application/json' : html;
    res.writeHead(200, { 'Content-Type': type });
    res.end(`/* ${req.url} */`);
  }));
  try {
    await request(app.port, '/x.json');
    await context.cache.idle();
    await request(app.port, '/x.json/child');
    await request(app.port, '/d/a.css');
    await context.cache.idle();
    await fs.mkdir(path.join(context.root, 'dir.css'));
    await request(app.port, '/dir.css');
    await context.cache.idle();
    assert.equal(await listFiles(context.root), ['d/a.css', 'x.json']);
    assert.is(await fs.readFile(path.join(context.root, 'x.json'), 'utf8'), '/* /x.json */');
    const reasons = context.events.filter((e) => e.type === 'skipped').map((e) => (e as { reason: string }).reason);
    assert.ok(reasons.some((r) => /file stands where a directory/.test(r)), reasons.join('; '));
    assert.ok(reasons.some((r) => /directory stands where the file/.test(r)), reasons.join('; '));
  } finally {
    await app.close();
  }
});

wrap('a root that is a file: responses are unaffected and the fault is logged once', async (context) => {
  const rootFile = path.join(context.dir, 'not-a-dir');
  await fs.writeFile(rootFile, 'x');
  const warnings: string[] = [];
  const cache = createCache({ root: rootFile, log: (message) => warnings.push(message) });
  const app = await startServer(cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': html });
    res.end('<p>fine</p>');
  }));
  try {
    for (let i = 0; i < 20; i++) {
      const reply = await request(app.port, `/page/${i}`);
      assert.is(reply.status, 200);
      assert.is(reply.body.toString(), '<p>fine</p>');
    }
    await cache.idle();
    assert.is(await fs.readFile(rootFile, 'utf8'), 'x');
    assert.ok(warnings.length >= 1 && warnings.length <= 2, `warnings: ${warnings.length}`);
    assert.match(warnings.join('\n'), /not-a-dir/);
  } finally {
    await app.close();
  }
});

wrap('stale temp files of dead processes are removed at start; live ones stay', async (context) => {
  const tmp = path.join(context.root, '.prerender', 'tmp');
  await context.cache.idle();
  await waitFor(() => existsSync(tmp), 2000, 'state dir');
  // Named as owner.ts names what a process owns: <pid>-<process tag>-<host tag>-<kind>-<n>.
  const dead = `${2 ** 22 + 17}-0000abcd-${HOST_TAG}-tmp-1.tmp`;
  const live = `${process.ppid}-0000abcd-${HOST_TAG}-tmp-1.tmp`;
  await fs.writeFile(path.join(tmp, dead), 'partial');
  await fs.writeFile(path.join(tmp, live), 'in progress elsewhere');
  const again = createCache({ root: context.root });
  const app = await startServer(again.wrap((req, res) => res.end()));
  try {
    await waitFor(async () => !(await fs.readdir(tmp)).includes(dead), 3000, 'stale temp removal');
    assert.equal(await fs.readdir(tmp), [live]);
  } finally {
    await app.close();
  }
});

wrap('a miss storm: past maxPendingBytes responses pass through unstored, counted as dropped, one warning, and storing resumes', async (context) => {
  const warnings: string[] = [];
  const events: CacheEvent[] = [];
  const cache = createCache({ root: context.root, maxPendingBytes: 2 * PENDING_PAGE_BYTES + 40, log: (message) => warnings.push(message), onEvent: (event) => events.push(event) });
  const app = await startServer(cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': html });
    res.end(`<p>${req.url}</p>`);
  }));
  try {
    const replies = await Promise.all(Array.from({ length: 60 }, (_, i) => request(app.port, `/storm/${i}`)));
    assert.ok(replies.every((reply, i) => reply.status === 200 && reply.body.toString() === `<p>/storm/${i}</p>`));
    await cache.idle();
    const busy = events.filter((event) => event.type === 'dropped' && /maxPendingBytes/.test(event.reason)).length;
    const stored = events.filter((event) => event.type === 'stored').length;
    assert.ok(busy > 0 && stored > 0 && busy + stored === 60, `busy ${busy}, stored ${stored}`);
    assert.is(warnings.filter((w) => /falls behind/.test(w)).length, 1);
    await request(app.port, '/storm/after');
    await cache.idle();
    assert.ok(existsSync(path.join(context.root, 'storm/after/index.html')));
  } finally {
    await app.close();
  }
});

wrap.run();

// ---

const frameworks = suite<Context>('middleware(): Express 5 and polka');
frameworks.before.each(fresh);
frameworks.after.each(async (context) => removeDir(context.dir));

async function listen(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ port: number; close: () => Promise<void> }> {
  const server = http.createServer(handler);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

frameworks('Express 5: res.send, res.json, a mounted router, and an error page', async (context) => {
  const app = express();
  app.use(context.cache.middleware());
  app.get('/', (req, res) => {
    res.set('Cache-Tag', 'home').send('<h1>home</h1>');
  });
  app.get('/api.json', (req, res) => {
    res.json({ ok: true });
  });
  const blog = express.Router();
  blog.get('/post', (req, res) => {
    res.send('<h1>post</h1>');
  });
  app.use('/blog', blog);
  app.get('/boom', () => {
    throw new Error('boom');
  });
  app.use((error: Error, req: express.Request, res: express.Response, next: express.NextFunction) => {
    void next;
    res.status(500).send(`<p>${error.message}</p>`);
  });
  const server = await listen(app);
  try {
    const home = await request(server.port, '/');
    assert.is(home.body.toString(), '<h1>home</h1>');
    assert.is(home.headers['cache-tag'], undefined);
    assert.is((await request(server.port, '/api.json')).status, 200);
    assert.is((await request(server.port, '/blog/post')).body.toString(), '<h1>post</h1>');
    assert.is((await request(server.port, '/boom')).status, 500);
    await context.cache.idle();
    assert.equal(await listFiles(context.root), ['api.json', 'blog/post/index.html', 'index.html']);
    assert.is(await fs.readFile(path.join(context.root, 'api.json'), 'utf8'), '{"ok":true}');
  } finally {
    await server.close();
  }
});

frameworks('polka: pages through the middleware', async (context) => {
  const app = polka();
  app.use(context.cache.middleware());
  app.get('/hello', (req, res) => {
    res.setHeader('Content-Type', html);
    res.setHeader('Surrogate-Key', 'greeting');
    res.end('<p>hello</p>');
  });
  app.get('/users/:id', (req, res) => {
    res.setHeader('Content-Type', html);
    res.end(`<p>user ${req.params.id}</p>`);
  });
  const server = await listen(app.handler as (req: IncomingMessage, res: ServerResponse) => void);
  try {
    const hello = await request(server.port, '/hello');
    assert.is(hello.body.toString(), '<p>hello</p>');
    assert.is(hello.headers['surrogate-key'], undefined);
    await request(server.port, '/users/42');
    await context.cache.idle();
    assert.equal(await listFiles(context.root), ['hello/index.html', 'users/42/index.html']);
  } finally {
    await server.close();
  }
});

frameworks.run();
