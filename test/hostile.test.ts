/**
 * Hostile request-targets sent as raw bytes straight to the app (no nginx in front, no URL library on
 * the way): nothing may be written outside the root, and nothing at a non-canonical path.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createCache, type Cache } from '../src/index.js';
import { listFiles, rawStatus, removeDir, setUpSuite, startServer, tempDir, type Server } from './helpers.js';

interface Context {
  dir: string;
  root: string;
  sibling: string;
  cache: Cache;
  app: Server;
}

const targets: string[] = [
  '/../escape', '/../../../../../../tmp/escape', '/a/../../escape', '/..', '/../cache-evil/x',
  '/%2e%2e/escape', '/%2E%2E/%2e%2e/escape', '/.%2e/escape', '/%2e./escape', '/a/%2e%2e/%2e%2e/escape',
  '/..%2fescape', '/..%2Fcache-evil%2Fx', '/a%2F..%2F..%2Fescape', '/%252e%252e/escape',
  '/..\\escape', '/..%5cescape', '/a/..\\..\\escape',
  '/x%00.html', '/x%00/../escape', '/%00', '/a%0d%0aSet-Cookie:%20x',
  `/${'a'.repeat(256)}`, `/${'a'.repeat(300)}/x`, `/${Array.from({ length: 40 }, () => 'b'.repeat(200)).join('/')}`,
  '//escape', '/a//b', '/./a', '/a/.', '/.prerender/tmp/x', '/.prerender/meta/x.json', '/%2eprerender/x',
  '/%C0%AE%C0%AE/escape', '/%E0%80%AE%E0%80%AE/escape', '/%FF', '/%C3',
  'escape', '*', 'http://127.0.0.1/../escape', '/ok-control',
];

const canonical = ['%2e%2e/escape/index.html', '..\\escape/index.html', 'a/..\\..\\escape/index.html', 'ok-control/index.html'];

const hostile = suite<Context>('hostile request-targets straight to the app');

setUpSuite(hostile, async (context) => {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  // A sibling whose name shares the root's prefix: a bare startsWith(root) check would let it through.
  context.sibling = path.join(context.dir, 'cache-evil');
  await fs.mkdir(context.sibling);
  context.cache = createCache({ root: context.root, log: () => undefined });
  context.app = await startServer(context.cache.wrap((req, res) => {
    // The worst app: 200 with a cacheable page for any target at all.
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(`<p>${req.url?.length}</p>`);
  }));
}, async (context) => {
  // Set-up may have stopped part way: close only what it got to.
  await context.app?.close();
  if (context.dir !== undefined) await removeDir(context.dir);
});

hostile('no file is written outside the root or at a non-canonical path', async (context) => {
  for (const target of targets) {
    const status = await rawStatus(context.app.port, target);
    // Node's parser may reject a target outright (400); either way nothing may land on disk.
    assert.ok(status === 200 || status === 400, `${target.slice(0, 50)}: ${status}`);
  }
  await context.cache.idle();
  const everything = await listFiles(context.dir, { includeState: true });
  const outside = everything.filter((file) => !file.startsWith('cache/'));
  assert.equal(outside, [], 'nothing outside the root');
  assert.equal(await listFiles(context.sibling), []);
  // Double encoding and backslashes are literal characters of one segment (nginx on Linux decodes once
  // and does not split on "\\"), so these land inside the root under those literal names.
  assert.equal(await listFiles(context.root), canonical, 'only canonical targets were stored');
  assert.equal(await fs.readdir(path.join(context.root, '.prerender', 'tmp')), []);
});

hostile('raw bytes: NUL, CR and non-UTF-8 in the request line never reach the disk', async (context) => {
  for (const bytes of [[0x2f, 0x61, 0x00, 0x62], [0x2f, 0xc0, 0xaf], [0x2f, 0x2e, 0x2e, 0x2f, 0xff], [0x2f, 0x61, 0x0d, 0x62]]) {
    await rawStatus(context.app.port, Buffer.from(bytes));
  }
  await context.cache.idle();
  assert.equal(await listFiles(context.root), canonical);
});

hostile.run();
