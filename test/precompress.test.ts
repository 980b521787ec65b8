/**
 * Precompressed siblings served by nginx's gzip_static / brotli_static, and validators (ETag,
 * Last-Modified) that match between the app's miss and nginx's hit.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { brotliDecompressSync, gunzipSync, gzipSync } from 'node:zlib';
import { pages, siteHandler } from '../fixtures/site/app.js';
import { CacheRoot } from '../src/cache-root.js';
import type { FileIo } from '../src/store/file-io.js';
import { brotliModuleInstalled } from '../src/nginx-config.js';
import type { EntryMeta } from '../src/store/meta-log.js';
import { listFiles, nginxAvailable, removeDir, request, runCli, setUpSuite, startCachedSite, startServer, stopCachedSite, tempDir, type CachedSite } from './helpers.js';
import { PageBody } from '../src/page-body.js';

const hasNginx = nginxAvailable();
const hasBrotli = brotliModuleInstalled();
if (hasNginx && !hasBrotli) {
  if (process.env.CI === 'true') throw new Error('the nginx brotli static module is missing under CI=true (.ci/run installs libnginx-mod-http-brotli-static)');
  process.stderr.write('\n!!  libnginx-mod-http-brotli-static is NOT installed: brotli_static checks are SKIPPED  !!\n\n');
}

interface Context extends CachedSite {
  version: number;
}

const page = (context: Context): string => `<!doctype html><h1>v${context.version}</h1>${'<p>compress me please</p>\n'.repeat(500)}`;

async function setUp(context: Context): Promise<void> {
  context.version = 1;
  await startCachedSite(context, (req, res) => {
    if (req.url === '/versioned') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': String(Buffer.byteLength(page(context))) });
      res.end(page(context));
      return;
    }
    if (req.url === '/dated') {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Last-Modified': 'Tue, 03 Mar 2026 10:00:00 GMT', 'Content-Length': '9' });
      res.end('<p>hi</p>');
      return;
    }
    siteHandler(req, res);
  }, { precompress: ['gzip', 'br'] });
}

const tearDown = stopCachedSite;

// ---

const siblings = suite<Context>('precompressed siblings');
if (hasNginx) setUpSuite(siblings, setUp, tearDown);
const it = hasNginx ? siblings : siblings.skip;

it('each encoding through nginx decodes to the page; small and binary files get no siblings', async (context) => {
  for (const target of ['/big', '/about', '/logo.png', '/style.css', '/data.json']) await request(context.nginx.port, target);
  await context.cache.idle();
  const files = await listFiles(context.root);
  assert.ok(existsSync(path.join(context.root, 'big/index.html.gz')));
  assert.is(existsSync(path.join(context.root, 'big/index.html.br')), true);
  for (const small of ['about/index.html', 'logo.png', 'style.css', 'data.json']) {
    assert.ok(files.includes(small));
    assert.not.ok(existsSync(path.join(context.root, `${small}.gz`)), `${small} is too small or binary to compress`);
  }
  const big = pages.find((p) => p.path === '/big')?.body ?? Buffer.alloc(0);
  const gzip = await request(context.nginx.port, '/big', { headers: { 'Accept-Encoding': 'gzip' } });
  assert.is(gzip.headers['content-encoding'], 'gzip');
  assert.is(gzip.headers['x-cache'], 'HIT');
  // Downstream caches must key on the encoding, for the compressed answer and the plain one alike.
  assert.is(gzip.headers.vary, 'Accept-Encoding');
  assert.ok(gunzipSync(gzip.body).equals(big));
  assert.ok(gzip.body.length < big.length / 5);
  if (hasBrotli) {
    const br = await request(context.nginx.port, '/big', { headers: { 'Accept-Encoding': 'br, gzip' } });
    assert.is(br.headers['content-encoding'], 'br');
    assert.ok(brotliDecompressSync(br.body).equals(big));
  }
  const plain = await request(context.nginx.port, '/big', { headers: { 'Accept-Encoding': 'identity' } });
  assert.is(plain.headers['content-encoding'], undefined);
  assert.is(plain.headers.vary, 'Accept-Encoding');
  assert.ok(plain.body.equals(big));
  const noHeader = await request(context.nginx.port, '/big');
  assert.is(noHeader.headers['content-encoding'], undefined);
  assert.is(noHeader.headers.vary, 'Accept-Encoding', 'once, not twice (gzip_vary is off)');
});

it('a new version never leaves the old siblings behind', async (context) => {
  await request(context.nginx.port, '/versioned');
  await context.cache.idle();
  assert.ok(existsSync(path.join(context.root, 'versioned/index.html.gz')));
  await context.cache.purge({ paths: ['/versioned'] });
  assert.equal((await listFiles(context.root)).filter((file) => file.startsWith('versioned')), [], 'purge removes the siblings too');
  context.version = 2;
  await request(context.nginx.port, '/versioned');
  await context.cache.idle();
  for (const encoding of ['gzip', 'br'].slice(0, hasBrotli ? 2 : 1)) {
    const reply = await request(context.nginx.port, '/versioned', { headers: { 'Accept-Encoding': encoding } });
    const body = encoding === 'gzip' ? gunzipSync(reply.body) : brotliDecompressSync(reply.body);
    assert.is(body.toString(), page(context), encoding);
  }
});

it('a refresh in place keeps the encodings the old version had, made from the new version', async (context) => {
  await request(context.nginx.port, '/versioned');
  await context.cache.idle();
  const stored = path.join(context.root, 'versioned/index.html');
  const suffixes = hasBrotli ? ['.gz', '.br'] : ['.gz'];
  for (const suffix of suffixes) assert.ok(existsSync(stored + suffix), suffix);
  context.version += 1;
  // A bare origin, not the wrapped app: the middleware would store the page again itself. The CLI's
  // refresh is configured with no precompress at all, so what it writes follows the old version.
  const origin = await startServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': String(Buffer.byteLength(page(context))) });
    res.end(page(context));
  });
  const result = await runCli(['purge', '/versioned', '--refresh', '--origin', origin.url, '--root', context.root]);
  await origin.close();
  assert.is(result.code, 0, result.stderr);
  assert.is(await fs.readFile(stored, 'utf8'), page(context));
  assert.is(gunzipSync(await fs.readFile(`${stored}.gz`)).toString(), page(context), 'the .gz is of the new version');
  if (hasBrotli) assert.is(brotliDecompressSync(await fs.readFile(`${stored}.br`)).toString(), page(context), 'the .br is of the new version');
  // What a stale sibling would break: gzip_static would hand the old page to every gzip client.
  for (const encoding of hasBrotli ? ['gzip', 'br'] : ['gzip']) {
    const reply = await request(context.nginx.port, '/versioned', { headers: { 'Accept-Encoding': encoding } });
    assert.is(reply.headers['x-cache'], 'HIT');
    assert.is(reply.headers['content-encoding'], encoding);
    const body = encoding === 'gzip' ? gunzipSync(reply.body) : brotliDecompressSync(reply.body);
    assert.is(body.toString(), page(context), encoding);
  }
});

it('a page replaced in place that had no siblings gets none', async (context) => {
  const origin = await startServer((_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(page(context));
  });
  try {
    for (let round = 0; round < 2; round++) {
      const result = await runCli(['crawl', '-', '--origin', origin.url, '--root', context.root], { input: '/plain-page\n' });
      assert.is(result.code, 0, result.stderr);
    }
  } finally {
    await origin.close();
  }
  const stored = path.join(context.root, 'plain-page/index.html');
  assert.ok(existsSync(stored));
  assert.not.ok(existsSync(`${stored}.gz`));
  assert.not.ok(existsSync(`${stored}.br`));
});

it('crawl --precompress writes the siblings too', async (context) => {
  const origin = await startServer(siteHandler);
  const result = await runCli(['crawl', '-', '--precompress', '--origin', origin.url, '--root', context.root], { input: '/stream\n' });
  await origin.close();
  assert.is(result.code, 0, result.stderr);
  assert.ok(existsSync(path.join(context.root, 'stream/index.html.gz')));
  assert.ok(existsSync(path.join(context.root, 'stream/index.html.br')));
});

siblings.run();

// ---

const validators = suite<Context>('ETag and Last-Modified agree between the app and nginx');
if (hasNginx) setUpSuite(validators, setUp, tearDown);
const check = hasNginx ? validators : validators.skip;

check('the miss carries the ETag nginx gives the stored file; either answers 304 to it', async (context) => {
  const miss = await request(context.nginx.port, '/versioned', { headers: { 'Accept-Encoding': 'identity' } });
  assert.is(miss.headers['x-cache'], 'MISS');
  const etag = miss.headers.etag;
  assert.match(String(etag), /^"[0-9a-f]+-[0-9a-f]+"$/);
  await context.cache.idle();
  const hit = await request(context.nginx.port, '/versioned', { headers: { 'Accept-Encoding': 'identity' } });
  assert.is(hit.headers['x-cache'], 'HIT');
  assert.is(hit.headers.etag, etag);
  assert.is(hit.headers['last-modified'], miss.headers['last-modified']);

  const revalidated = await request(context.nginx.port, '/versioned', { headers: { 'If-None-Match': String(etag) } });
  assert.is(revalidated.status, 304);
});

check("an app's Last-Modified becomes the file's mtime, so a re-render of the same version is a 304 on the miss path", async (context) => {
  const first = await request(context.app.port, '/dated');
  assert.is(first.headers['last-modified'], 'Tue, 03 Mar 2026 10:00:00 GMT');
  await context.cache.idle();
  const stats = await fs.stat(path.join(context.root, 'dated/index.html'));
  assert.is(stats.mtimeMs, Date.parse('Tue, 03 Mar 2026 10:00:00 GMT'));
  await context.cache.purge({ paths: ['/dated'] });
  const again = await request(context.app.port, '/dated', { headers: { 'If-None-Match': String(first.headers.etag) } });
  assert.is(again.status, 304);
  assert.is(again.body.length, 0);
  await context.cache.idle();
  assert.is(await fs.readFile(path.join(context.root, 'dated/index.html'), 'utf8'), '<p>hi</p>', 'the body is still stored');
  const ims = await request(context.nginx.port, '/dated', { headers: { 'If-Modified-Since': 'Tue, 03 Mar 2026 10:00:00 GMT' } });
  assert.is(ims.status, 304);
  assert.is(ims.headers['x-cache'], 'HIT');
});

validators.run();

// ---

const race = suite('a sibling of the old version landing while the file is replaced');

race('it is removed after the rename (and made again from the new version)', async () => {
  const dir = await tempDir();
  try {
    const root = new CacheRoot(path.join(dir, 'cache'));
    await root.init();
    const version = (n: number): Buffer => Buffer.from(`<!doctype html><h1>v${n}</h1>${'<p>compress me please</p>\n'.repeat(200)}`);
    const store = async (n: number): Promise<void> => {
      const body = version(n);
      const meta: EntryMeta = {
        urlPath: '/page', file: 'page/index.html', tags: [], renderedAt: Date.now() - 1, storedAt: Date.now(),
        expiresAt: null, mediaType: 'text/html', size: body.length, mtime: Math.floor(Date.now() / 1000),
      };
      const temp = new PageBody();
      temp.write(body);
      assert.equal(await root.commit(temp, meta), { stored: true });
    };
    await store(1);
    const file = path.join(root.root, 'page', 'index.html');
    // Another writer, compressing version 1, renames its sibling between this writer's unlink of the
    // old siblings (there were none yet) and its rename of version 2: the moment the old code left open.
    const io = (root.store as unknown as { io: FileIo }).io;
    (root.store as unknown as { io: FileIo }).io = {
      ...io,
      rename: async (from, to) => {
        if (to === file) await fs.writeFile(`${file}.gz`, gzipSync(version(1)));
        return io.rename(from, to);
      },
    };
    await store(2);
    assert.is(await fs.readFile(file, 'utf8'), version(2).toString());
    if (existsSync(`${file}.gz`)) assert.is(gunzipSync(await fs.readFile(`${file}.gz`)).toString(), version(2).toString(), 'a .gz left is of version 2');
  } finally {
    await removeDir(dir);
  }
});

race.run();
