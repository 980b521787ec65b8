/**
 * `prerender export` / `exportSite`: the served tree as a plain static site, checked by a plain nginx
 * (no prerender config: only `root`) answering every page with the app's bytes and media type.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { pages, siteHandler } from '../fixtures/site/app.js';
import { crawl, exportSite } from '../src/index.js';
import {
  listFiles, nginxAvailable, removeDir, request, runCli, setUpSuite, startCachedSite, startNginx, startServer,
  stopCachedSite, tempDir, type CachedSite, type Nginx, type Reply,
} from './helpers.js';

const hasNginx = nginxAvailable();

/** A server block with nothing of prerender's: the listen line startNginx picked, and a root. */
function plainServer(root: string): (generated: string) => string {
  return (generated) => `server {\n    ${/listen [^;]+;/.exec(generated)?.[0] ?? ''}\n    root "${root}";\n}\n`;
}

/** GET, following one redirect (plain nginx sends /about to /about/, its directory). */
async function get(port: number, target: string): Promise<Reply> {
  const first = await request(port, target);
  const location = first.headers.location;
  if (first.status !== 301 || location === undefined) return first;
  return request(port, new URL(location, `http://127.0.0.1:${port}`).pathname);
}

const mediaType = (value: string | undefined): string => (value ?? '').split(';')[0]?.trim().toLowerCase() ?? '';

type Context = CachedSite & { out: string; victim: string };
const served = suite<Context>('export: plain nginx over the export');
setUpSuite(served, async (context) => {
  await startCachedSite(context, siteHandler, { precompress: ['gzip'] });
  for (const page of pages) await request(context.app.port, page.target);
  await context.cache.idle();
  // Planted links below the root: a file and a directory outside it, which must not reach the export.
  context.victim = path.join(context.dir, 'victim');
  await fs.mkdir(context.victim);
  await fs.writeFile(path.join(context.victim, 'secret.txt'), 'secret\n');
  await fs.symlink(context.victim, path.join(context.root, 'leak'));
  await fs.symlink(path.join(context.victim, 'secret.txt'), path.join(context.root, 'docs', 'secret.txt'));
  context.out = path.join(context.dir, 'site');
}, async (context) => stopCachedSite(context));

(hasNginx ? served : served.skip)('every page answers with the bytes and media type the app sent; no state, siblings or links', async (context) => {
  const result = await runCli(['export', context.out, '--root', context.root, '--json']);
  assert.is(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as { files: number; siblings: number; skipped: Array<{ file: string }> };
  assert.is(report.files, pages.length);
  assert.is(report.siblings, 0);
  assert.equal(report.skipped.map((skip) => skip.file).sort(), ['docs/secret.txt', 'leak']);
  const files = await listFiles(context.out, { includeState: true });
  assert.is(files.length, pages.length);
  assert.not.ok(files.some((file) => file.startsWith('.prerender') || file.endsWith('.gz') || file.includes('secret') || file.startsWith('leak')), files.join(' '));

  let nginx: Nginx | undefined;
  try {
    nginx = await startNginx({ root: context.out, upstream: context.app.url, edit: plainServer(context.out) });
    assert.not.match(nginx.config, /try_files|X-Cache|@app/);
    for (const page of pages) {
      const reply = await get(nginx.port, page.target);
      assert.is(reply.status, 200, page.target);
      assert.is(mediaType(reply.headers['content-type']), mediaType(page.contentType), page.target);
      assert.ok(reply.body.equals(page.body), `${page.target}: the bytes the app sent`);
    }
    assert.is((await request(nginx.port, '/leak/secret.txt')).status, 404);
  } finally {
    await nginx?.stop();
  }
});

served('--precompressed copies the siblings beside their files', async (context) => {
  const out = path.join(context.dir, 'site-gz');
  const report = await exportSite(context.root, out, { precompressed: true });
  assert.ok(report.siblings > 0);
  const files = await listFiles(out);
  assert.ok(files.includes('big/index.html.gz'));
  for (const file of files.filter((name) => name.endsWith('.gz'))) assert.ok(files.includes(file.slice(0, -3)), file);
  assert.is((await fs.stat(path.join(out, 'big'))).mode & 0o777, 0o755);
  assert.is((await fs.stat(path.join(out, 'big/index.html'))).mode & 0o777, 0o644);
});

served('refuses an export inside the root, one holding it, and a non-empty one unless --overwrite', async (context) => {
  const inside = await runCli(['export', path.join(context.root, 'docs', 'out'), '--root', context.root]);
  assert.is(inside.code, 2);
  assert.match(inside.stderr, /outside the cache root/);
  assert.is(await fs.stat(path.join(context.root, 'docs', 'out')).catch(() => undefined), undefined, 'nothing created in the root');
  const holding = await runCli(['export', context.dir, '--root', context.root, '--overwrite']);
  assert.is(holding.code, 2);
  assert.ok((await listFiles(context.root)).includes('index.html'), 'the root is untouched');

  const busy = path.join(context.dir, 'busy');
  await fs.mkdir(busy);
  await fs.writeFile(path.join(busy, 'keep.txt'), 'mine');
  const refused = await runCli(['export', busy, '--root', context.root]);
  assert.is(refused.code, 2);
  assert.match(refused.stderr, /not empty.*--overwrite/);
  assert.is(await fs.readFile(path.join(busy, 'keep.txt'), 'utf8'), 'mine');
  const replaced = await runCli(['export', busy, '--root', context.root, '--overwrite']);
  assert.is(replaced.code, 0, replaced.stderr);
  const files = await listFiles(busy);
  assert.not.ok(files.includes('keep.txt'));
  assert.ok(files.includes('index.html'));
  assert.is((await runCli(['export', path.join(context.dir, 'x'), '--root', path.join(context.dir, 'none')])).code, 2);
});

// ---

const swapped = suite('export: from a crawl --swap base');

swapped('copies the generation current points at', async () => {
  const dir = await tempDir();
  const app = await startServer(siteHandler);
  try {
    const base = path.join(dir, 'base');
    const list = path.join(dir, 'urls.txt');
    await fs.writeFile(list, '/\n/about\n/style.css\n');
    const report = await crawl({ source: list, origin: app.url, root: base, swap: true });
    assert.is(report.swapped, true);
    const out = path.join(dir, 'out');
    const exported = await exportSite(base, out);
    assert.is(exported.source, await fs.realpath(path.join(base, 'current')));
    assert.equal(await listFiles(out, { includeState: true }), ['about/index.html', 'index.html', 'style.css']);
  } finally {
    await app.close();
    await removeDir(dir);
  }
});

served.run();
swapped.run();
