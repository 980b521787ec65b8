/**
 * Purge by path, tag, prefix and all; the purge-during-render race; refresh in place; bad input.
 * Through a real nginx and the real CLI where the outcome is what nginx serves.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { pages, siteHandler } from '../fixtures/site/app.js';
import { PrerenderError, createCache, type Cache, type PurgeSelector } from '../src/index.js';
import { CacheRoot } from '../src/cache-root.js';
import { purge } from '../src/purge.js';
import type { EntryMeta } from '../src/store/meta-log.js';
import { Store } from '../src/store/store.js';
import { Gate, listFiles, nginxAvailable, removeDir, request, runCli, startCachedSite, startServer, stopCachedSite, tempDir, type CachedSite, type Server } from './helpers.js';
import { PageBody } from '../src/page-body.js';

const hasNginx = nginxAvailable();
const html = 'text/html; charset=utf-8';

// ---


interface RaceContext {
  dir: string;
  root: string;
  cache: Cache;
  app: Server;
  gate: Gate;
  version: number;
}

const race = suite<RaceContext>('no stale resurrection: a render that started before a purge never stores');

async function startRaceApp(context: RaceContext, options: { maxRenderMs?: number } = {}): Promise<void> {
  context.cache = createCache({ root: context.root, log: () => undefined, ...options });
  context.version = 1;
  context.gate = new Gate();
  context.app = await startServer(context.cache.wrap(async (req, res) => {
    const version = context.version;
    if (req.url?.startsWith('/slow/')) await context.gate.pass();
    res.writeHead(200, { 'Content-Type': html, 'Cache-Tag': 'post:1' });
    res.end(`<p>version ${version}</p>`);
  }));
}

race.before.each(async (context) => {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  await startRaceApp(context);
});
race.after.each(async (context) => {
  await context.app.close();
  await context.cache.idle();
  await removeDir(context.dir);
});

/** A render reads version 1 and blocks; the app writes version 2 and purges; then the render finishes. */
async function renderAcross(context: RaceContext, purge: () => Promise<unknown>): Promise<string[]> {
  const reply = request(context.app.port, '/slow/post');
  await context.gate.entered;
  context.version = 2;
  await purge();
  context.gate.release();
  assert.is((await reply).body.toString(), '<p>version 1</p>');
  await context.cache.idle();
  return listFiles(context.root);
}

for (const [name, selector] of [
  ['tag', { tags: ['POST:1'] }],
  ['path', { paths: ['/slow/post'] }],
  ['prefix', { prefix: '/slow/' }],
  ['all', { all: true }],
] as Array<[string, PurgeSelector]>) {
  race(`purge by ${name}`, async (context) => {
    assert.equal(await renderAcross(context, () => context.cache.purge(selector)), []);
  });
}

race('purge by tag from another process (the CLI)', async (context) => {
  const purged = await renderAcross(context, async () => {
    const result = await runCli(['purge', '--tag', 'post:1', '--root', context.root]);
    assert.is(result.code, 0, result.stderr);
  });
  assert.equal(purged, []);
});

race('purge from the CLI, whose settings differ from the app\'s (maxRenderMs)', async (context) => {
  // Journals were once bucketed by each process's own maxRenderMs: the app looked for this purge in
  // a journal the CLI never wrote, and stored the stale render.
  await context.app.close();
  await context.cache.idle();
  await startRaceApp(context, { maxRenderMs: 60_000 });
  const purged = await renderAcross(context, async () => {
    const result = await runCli(['purge', '--tag', 'post:1', '--root', context.root]);
    assert.is(result.code, 0, result.stderr);
  });
  assert.equal(purged, []);
});

/**
 * A write whose purge lands after its first check and before its rename: the purge finds no file
 * yet, so only the write's second check can take the page back off the disk.
 */
async function commitWithPurgeBeforeRename(context: RaceContext, selector: PurgeSelector | undefined): Promise<{ stored: boolean; files: string[] }> {
  const root = new CacheRoot(context.root);
  await root.init();
  const place = root.store.place.bind(root.store);
  root.store.place = async (temp, meta) => {
    if (selector !== undefined) await purge(root, selector);
    return place(temp, meta);
  };
  const body = Buffer.from('<p>version 1</p>');
  const renderedAt = Date.now() - 1;
  const meta: EntryMeta = {
    urlPath: '/slow/post', file: 'slow/post/index.html', tags: ['post:1'], renderedAt, storedAt: Date.now(),
    expiresAt: null, mediaType: 'text/html', size: body.length, mtime: Math.floor(renderedAt / 1000),
  };
  const temp = new PageBody();
  temp.write(body);
  const result = await root.commit(temp, meta);
  return { stored: result.stored, files: await listFiles(context.root) };
}

race('a purge between the write\'s first check and its rename: the write takes its page back', async (context) => {
  for (const selector of [{ tags: ['post:1'] }, { paths: ['/slow/post'] }, { prefix: '/slow/' }] as PurgeSelector[]) {
    assert.equal(await commitWithPurgeBeforeRename(context, selector), { stored: false, files: [] }, JSON.stringify(selector));
  }
  assert.equal(await commitWithPurgeBeforeRename(context, undefined), { stored: true, files: ['slow/post/index.html'] }, 'control: no purge');
});

race('control: without the purge the same render is stored', async (context) => {
  assert.equal(await renderAcross(context, async () => undefined), ['slow/post/index.html']);
});

race('a render that starts after the purge stores the new data', async (context) => {
  await context.cache.purge({ tags: ['post:1'] });
  context.version = 2;
  await request(context.app.port, '/fast/post');
  await context.cache.idle();
  assert.is(await fs.readFile(path.join(context.root, 'fast/post/index.html'), 'utf8'), '<p>version 2</p>');
});

race.run();

// ---

interface SiteContext extends CachedSite {
  failing: Set<string>;
  version: number;
}

async function setUpSite(context: SiteContext): Promise<void> {
  context.failing = new Set();
  context.version = 1;
  await startCachedSite(context, (req: IncomingMessage, res: ServerResponse) => {
    if (context.failing.has(req.url ?? '')) {
      res.writeHead(500, { 'Content-Type': html });
      res.end('<p>down</p>');
      return;
    }
    if (req.url?.startsWith('/v/')) {
      // Large enough that a torn read would show.
      res.writeHead(200, { 'Content-Type': html, 'Cache-Tag': 'versioned' });
      res.end(`<p>v${context.version}</p>${'.'.repeat(200_000)}<p>v${context.version}</p>`);
      return;
    }
    siteHandler(req, res);
  });
}

const tearDownSite = stopCachedSite;

async function warm(context: SiteContext, targets: string[]): Promise<void> {
  for (const target of targets) await request(context.nginx.port, target);
  await context.cache.idle();
}

async function xcache(context: SiteContext, target: string): Promise<string> {
  return String((await request(context.nginx.port, target)).headers['x-cache']);
}

const site = suite<SiteContext>('prerender purge through nginx');
if (hasNginx) {
  site.before.each(setUpSite);
  site.after.each(tearDownSite);
}
const siteTest = hasNginx ? site : site.skip;
const allTargets = pages.filter((page) => page.path !== '/big').map((page) => page.target);

siteTest('--tag: tagged pages reach the app again, the others stay on disk', async (context) => {
  await warm(context, allTargets);
  const result = await runCli(['purge', '--tag', 'DOCS', '--json', '--root', context.root]);
  assert.is(result.code, 0, result.stderr);
  const report = JSON.parse(result.stdout) as { removed: string[]; counts: { removed: number } };
  assert.equal(report.removed.sort(), ['docs/getting-started/index.html', 'docs/index.html']);
  assert.is(await xcache(context, '/docs/'), 'MISS');
  assert.is(await xcache(context, '/docs/getting-started'), 'MISS');
  assert.is(await xcache(context, '/about'), 'HIT');
  assert.is(await xcache(context, '/style.css'), 'HIT');
});

siteTest('--tag twice and a path together', async (context) => {
  await warm(context, allTargets);
  const result = await runCli(['purge', '/style.css', '--tag', 'home', '--tag', 'nav', '--root', context.root]);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, 'removed 3 files');
  for (const target of ['/', '/about', '/style.css']) assert.is(await xcache(context, target), 'MISS', target);
  assert.is(await xcache(context, '/data.json'), 'HIT');
});

siteTest('--prefix: a section, and a string prefix across names', async (context) => {
  await warm(context, [...allTargets, '/docs-old']);
  const section = await runCli(['purge', '--prefix', '/docs/', '--root', context.root]);
  assert.is(section.code, 0, section.stderr);
  assert.match(section.stdout, 'removed 2 files');
  assert.is(await xcache(context, '/about'), 'HIT');
  await warm(context, ['/some%20thing', '/snow%20%E2%98%83/']);
  const spaced = await runCli(['purge', '--prefix', '/s', '--json', '--root', context.root]);
  assert.equal((JSON.parse(spaced.stdout) as { removed: string[] }).removed.sort(),
    ['sitemap.xml', 'snow ☃/index.html', 'some thing/index.html', 'stream/index.html', 'style.css']);
  assert.is(await xcache(context, '/sitemap.xml'), 'MISS');
  assert.is(await xcache(context, '/data.json'), 'HIT');
});

siteTest('--prefix and a directory\'s index.html: covered by the directory\'s URL, or named whole', async (context) => {
  const removedBy = async (prefix: string): Promise<string[]> => {
    await warm(context, allTargets);
    const result = await runCli(['purge', '--prefix', prefix, '--json', '--root', context.root]);
    assert.is(result.code, 0, result.stderr);
    return (JSON.parse(result.stdout) as { removed: string[] }).removed.sort();
  };
  // /in names no page: before, it took the home page (index.html) by its file name.
  assert.equal(await removedBy('/in'), []);
  assert.is(await xcache(context, '/'), 'HIT');
  assert.equal(await removedBy('/docs/ind'), []);
  assert.equal(await removedBy('/docs/index.html'), ['docs/index.html']);
  assert.equal(await removedBy('/docs'), ['docs/getting-started/index.html', 'docs/index.html']);
  assert.equal(await removedBy('/index.html'), ['index.html']);
});

siteTest('--all: everything reaches the app again; the state directory survives', async (context) => {
  await warm(context, allTargets);
  const result = await runCli(['purge', '--all', '--json', '--root', context.root]);
  assert.is(result.code, 0, result.stderr);
  assert.is((JSON.parse(result.stdout) as { removed: string[] }).removed.length, allTargets.length);
  assert.equal(await listFiles(context.root), []);
  for (const target of allTargets.slice(0, 5)) assert.is(await xcache(context, target), 'MISS');
  await context.cache.idle();
  assert.is(await xcache(context, '/about'), 'HIT', 'the cache fills again after --all');
});

siteTest('--dry-run lists and deletes nothing', async (context) => {
  await warm(context, allTargets);
  const before = await listFiles(context.root);
  for (const args of [['--tag', 'docs'], ['--prefix', '/'], ['--all'], ['/about']]) {
    const result = await runCli(['purge', ...args, '--dry-run', '--json', '--root', context.root]);
    assert.is(result.code, 0, result.stderr);
    const report = JSON.parse(result.stdout) as { dryRun: boolean; removed: string[] };
    assert.ok(report.dryRun && report.removed.length > 0, args.join(' '));
  }
  assert.equal(await listFiles(context.root), before);
  assert.is(await xcache(context, '/docs/'), 'HIT');
});

siteTest('--refresh: nginx keeps serving whole pages, old then new, never a miss', async (context) => {
  const targets = Array.from({ length: 20 }, (_, i) => `/v/${i}`);
  await warm(context, targets);
  context.version = 2;
  let stop = false;
  const reads: Array<{ xcache: string; body: string }> = [];
  const reader = (async () => {
    while (!stop) {
      for (const target of targets) {
        const reply = await request(context.nginx.port, target);
        reads.push({ xcache: String(reply.headers['x-cache']), body: reply.body.toString() });
      }
    }
  })();
  const result = await runCli(['purge', '--tag', 'versioned', '--refresh', '--origin', context.app.url, '--json', '--root', context.root]);
  stop = true;
  await reader;
  assert.is(result.code, 0, result.stderr);
  assert.is((JSON.parse(result.stdout) as { refreshed: string[] }).refreshed.length, 20);
  assert.ok(reads.length >= 20, `reads: ${reads.length}`);
  for (const read of reads) {
    assert.is(read.xcache, 'HIT');
    assert.ok(/^<p>v([12])<\/p>\.{200000}<p>v\1<\/p>$/.test(read.body), 'a whole page of one version');
  }
  for (const target of targets) assert.match((await request(context.nginx.port, target)).body.toString(), /^<p>v2<\/p>/);
});

siteTest('--refresh: a page that fails to refresh is deleted and reported, exit 1', async (context) => {
  await warm(context, ['/v/1', '/v/2']);
  context.failing.add('/v/2');
  const result = await runCli(['purge', '/v/1', '/v/2', '--refresh', '--origin', context.app.url, '--json', '--root', context.root]);
  assert.is(result.code, 1);
  const report = JSON.parse(result.stdout) as { refreshed: string[]; failed: Array<{ urlPath: string; reason: string }> };
  assert.equal(report.refreshed, ['v/1/index.html']);
  assert.equal(report.failed.map((f) => [f.urlPath, f.reason]), [['/v/2', 'status 500']]);
  assert.equal(await listFiles(context.root), ['v/1/index.html']);
});

siteTest('--refresh right after the purge is recorded: a fetch in the same millisecond does not count as stale', async (context) => {
  // The refresh's fetches begin within a millisecond of the purge record; one that began in that same
  // millisecond used to be refused as a render older than the purge, and its page deleted (about one
  // refresh in three on this machine).
  const root = new CacheRoot(context.root);
  await warm(context, ['/v/1']);
  for (let i = 0; i < 40; i++) {
    for (const selector of [{ paths: ['/v/1'] }, { tags: ['versioned'] }] as PurgeSelector[]) {
      const result = await purge(root, selector, { refresh: { origin: context.app.url } });
      assert.equal(result.failed, [], `round ${i}, ${JSON.stringify(selector)}`);
      assert.equal(result.refreshed, ['v/1/index.html']);
    }
  }
});

site.run();

// ---

interface BadContext {
  dir: string;
  root: string;
}

const records = suite('index records survive a purge that raced the rename');

records('a meta record taken while its file was not yet placed is written again, and describes only its own version', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  const cache = createCache({ root, log: () => undefined });
  const app = await startServer(cache.wrap((req, res) => {
    res.setHeader('Content-Type', html);
    res.setHeader('Cache-Tag', 'feed');
    res.end('<p>page</p>');
  }));
  try {
    await request(app.port, '/page');
    await cache.idle();
    const store = new Store(root);
    const stats = await store.fileStats('page/index.html');
    const meta = (await store.meta.load()).current('page/index.html', stats);
    assert.ok(meta, 'stored with a record');
    if (meta === undefined) return;
    assert.is(meta.urlPath, '/page');
    const appended = await store.meta.append([meta]);
    // What a compaction (or purge --all) that took the segments before the rename leaves.
    for (const name of await fs.readdir(store.metaDir)) await fs.rm(path.join(store.metaDir, name));
    assert.is((await store.meta.load()).current('page/index.html', stats), undefined, 'the record is gone with its segment');
    await store.meta.ensureIndexed(appended);
    assert.equal((await store.meta.load()).current('page/index.html', stats), meta, 'appended again once seen gone');
    // Another version in place (same path, another file): the record is not its to describe.
    await fs.writeFile(path.join(root, 'page', 'other'), '<p>other</p>');
    await fs.rename(path.join(root, 'page', 'other'), path.join(root, 'page', 'index.html'));
    assert.is((await store.meta.load()).current('page/index.html', await store.fileStats('page/index.html')), undefined);
  } finally {
    await app.close();
    await cache.close();
    await removeDir(dir);
  }
});

records.run();

// ---

const bad = suite<BadContext>('bad purge input: exit 2, a clear message, nothing deleted');
const seeded = ['a/index.html', 'b/index.html', 'x.css'];
bad.before.each(async (context) => {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  for (const file of seeded) {
    await fs.mkdir(path.dirname(path.join(context.root, file)), { recursive: true });
    await fs.writeFile(path.join(context.root, file), file);
  }
  await fs.writeFile(path.join(context.dir, 'outside'), 'outside');
});
bad.after.each(async (context) => removeDir(context.dir));

const badArgs: Array<[args: string[], mentions: string]> = [
  [['--prefix', '../..'], '--prefix'],
  [['--prefix', '/a/../..'], '--prefix'],
  [['--prefix', '/%2e%2e/'], '--prefix'],
  [['--prefix', 'a'], '--prefix'],
  [['--tag', 'a\nb'], '--tag'],
  [['--tag', ''], '--tag'],
  [['--tag', 'x'.repeat(1025)], '--tag'],
  [['/a\nb'], 'cannot use path'],
  [['/a%00b'], 'cannot use path'],
  [['--all', '--bogus'], 'unknown option'],
  [[], 'purge needs'],
  [['--all', '--refresh'], '--origin'],
  [['--all', '--origin', 'http://127.0.0.1:1'], '--refresh'],
  [['--all', '--refresh', '--origin', 'file:///etc/passwd'], '--origin'],
  [['--all', '--refresh', '--origin', 'http://127.0.0.1:1', '--concurrency', '0'], '--concurrency'],
  [['--tag', 'ok', '--tag', 'bad\u0001'], '--tag'],
];

for (const [args, mentions] of badArgs) {
  bad(JSON.stringify(args).slice(0, 70), async (context) => {
    const result = await runCli(['purge', ...args, '--root', context.root]);
    assert.is(result.code, 2, result.stderr);
    assert.match(result.stderr, mentions);
    assert.equal(await listFiles(context.root), seeded);
    assert.is(await fs.readFile(path.join(context.dir, 'outside'), 'utf8'), 'outside');
  });
}

bad('NUL in a tag, path or prefix (only reachable from code: no OS passes NUL in argv)', async (context) => {
  const cache = createCache({ root: context.root, log: () => undefined });
  for (const selector of [{ tags: ['a\u0000b'] }, { paths: ['/a\u0000'] }, { prefix: '/a\u0000' }, { tags: ['ok'], paths: ['/a', '/../x'] }]) {
    try {
      await cache.purge(selector);
      assert.unreachable(JSON.stringify(selector));
    } catch (error) {
      assert.instance(error, PrerenderError);
      assert.ok(['EUSAGE', 'EPATH'].includes((error as PrerenderError).code));
    }
  }
  assert.equal(await listFiles(context.root), seeded);
});

bad('sweep with bad options', async (context) => {
  for (const args of [['--refresh'], ['--origin', 'http://x'], ['--nope']]) {
    const result = await runCli(['sweep', ...args, '--root', context.root]);
    assert.is(result.code, 2, args.join(' '));
  }
  assert.equal(await listFiles(context.root), seeded);
});

bad.run();
