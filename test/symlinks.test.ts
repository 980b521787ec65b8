/**
 * Symlinks planted inside the root (DESIGN.md invariant 2): whoever can write the root must not lead
 * prerender, run by a more privileged user, to write, append to or delete anything outside it. Every
 * test keeps a victim directory outside the root and checks, byte for byte, that it is untouched.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { createCache } from '../src/index.js';
import type { Cache } from '../src/cache.js';
import { listFiles, nginxAvailable, removeDir, request, runCli, startNginx, startServer, tempDir, type Nginx, type Server } from './helpers.js';

interface Context {
  dir: string;
  root: string;
  victim: string;
  /** The victim as it was: every entry with its content (files) or target (links). */
  before: string;
  cache: Cache;
  app: Server;
}

/** Each entry below `dir`, by lstat: files with content and mtime, links with their target. */
async function snapshot(dir: string): Promise<string> {
  const lines: string[] = [];
  const walk = async (current: string): Promise<void> => {
    for (const name of (await fs.readdir(current)).sort()) {
      const file = path.join(current, name);
      const stats = await fs.lstat(file);
      if (stats.isSymbolicLink()) lines.push(`${file} -> ${await fs.readlink(file)}`);
      else if (stats.isDirectory()) {
        lines.push(`${file}/`);
        await walk(file);
      } else lines.push(`${file} ${stats.mtimeMs} ${await fs.readFile(file, 'utf8')}`);
    }
  };
  await walk(dir);
  return lines.join('\n');
}

function app(req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Tag': 'post' });
  res.end(`<p>${req.url ?? ''}</p>`);
}

async function setUp(context: Context): Promise<void> {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  context.victim = path.join(context.dir, 'victim');
  await fs.mkdir(path.join(context.victim, 'x'), { recursive: true });
  await fs.writeFile(path.join(context.victim, 'x', 'index.html'), 'not prerender\'s');
  await fs.writeFile(path.join(context.victim, 'post', ), 'a file named like a page').catch(() => undefined);
  await fs.writeFile(path.join(context.victim, 'secret.txt'), 'secret');
  await fs.writeFile(path.join(context.victim, 'log.txt'), 'an append target');
  context.cache = createCache({ root: context.root, log: () => undefined });
  context.app = await startServer(context.cache.wrap(app));
  // The root in use, with one page and its index, before anything is planted.
  await request(context.app.port, '/kept');
  await context.cache.idle();
  context.before = await snapshot(context.victim);
}

async function tearDown(context: Context): Promise<void> {
  await context.app?.close();
  await context.cache?.close();
  if (context.dir !== undefined) await removeDir(context.dir);
}

async function assertVictimUntouched(context: Context, what: string): Promise<void> {
  assert.is(await snapshot(context.victim), context.before, `${what}: the victim outside the root changed`);
}

const tagLog = (root: string, tag: string): string => {
  const hash = createHash('sha1').update(tag).digest('hex');
  return path.join(root, '.prerender', 'tags', hash.slice(0, 2), `${hash}.log`);
};

// ---

const tree = suite<Context>('a symlinked directory in the tree');
tree.before.each(setUp);
tree.after.each(tearDown);

tree('the middleware does not store through it', async (context) => {
  await fs.symlink(context.victim, path.join(context.root, 'blog'));
  for (const target of ['/blog/new', '/blog/x', '/blog/']) assert.is((await request(context.app.port, target)).status, 200);
  await context.cache.idle();
  await assertVictimUntouched(context, 'store');
});

tree('a directory swapped for a link after a store: the next batch checks it again and stores nothing through it', async (context) => {
  // Directories are checked once a batch (NoFollow.batch): what a batch found must not outlive it.
  // Two batches: the second finds blog/ in place, and checks it (the first made it).
  for (const target of ['/blog/first', '/blog/second']) {
    assert.is((await request(context.app.port, target)).status, 200);
    await context.cache.idle();
    assert.ok(await fs.stat(path.join(context.root, target, 'index.html')), `${target} is stored`);
  }
  await fs.rm(path.join(context.root, 'blog'), { recursive: true });
  await fs.symlink(context.victim, path.join(context.root, 'blog'));
  for (const target of ['/blog/new', '/blog/x']) assert.is((await request(context.app.port, target)).status, 200);
  await context.cache.idle();
  await assertVictimUntouched(context, 'store after the swap');
});

tree('a crawl and a refresh do not store through it', async (context) => {
  await fs.symlink(context.victim, path.join(context.root, 'blog'));
  const crawled = await runCli(['crawl', '-', '--origin', context.app.url, '--root', context.root, '--json'], { input: '/blog/new\n/blog/x\n/blog/deep/er/page\n/fine\n' });
  assert.is(crawled.code, 0, crawled.stderr);
  const report = JSON.parse(crawled.stdout) as { counts: { stored: number; skipped: number }; skipped: Array<{ reason: string }> };
  assert.is(report.counts.stored, 1);
  assert.is(report.counts.skipped, 3);
  for (const skipped of report.skipped) assert.match(skipped.reason, 'symlink');
  const refreshed = await runCli(['purge', '/blog/x', '--refresh', '--origin', context.app.url, '--root', context.root]);
  assert.is(refreshed.code, 0, refreshed.stderr);
  const swept = await runCli(['sweep', '--refresh', '--origin', context.app.url, '--root', context.root]);
  assert.is(swept.code, 0, swept.stderr);
  await assertVictimUntouched(context, 'crawl/refresh');
});

tree('purge by path, by prefix, by tag and --all delete nothing through it', async (context) => {
  await fs.symlink(context.victim, path.join(context.root, 'blog'));
  // A tag log naming a file behind the link, as a writer of the root could forge.
  await fs.appendFile(tagLog(context.root, 'post'), '\nblog/x/index.html\t' + (await import('node:zlib')).crc32('blog/x/index.html').toString(16) + '\n');
  for (const args of [['/blog/x'], ['/blog/x/index.html'], ['--prefix', '/blog/'], ['--prefix', '/blog'], ['--prefix', '/'], ['--tag', 'post'], ['--all']]) {
    const result = await runCli(['purge', ...args, '--root', context.root, '--json']);
    assert.is(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
    assert.not.match(result.stdout, 'blog/x', args.join(' '));
    await assertVictimUntouched(context, `purge ${args.join(' ')}`);
  }
});

tree('ls and dry runs do not list through it; sweep does not delete through it', async (context) => {
  await fs.symlink(context.victim, path.join(context.root, 'blog'));
  for (const args of [['ls', '--json'], ['ls', '--prefix', '/blog/', '--json'], ['purge', '--prefix', '/blog/', '--dry-run', '--json'], ['sweep']]) {
    const result = await runCli([...args, '--root', context.root]);
    assert.is(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
    assert.not.match(result.stdout, 'blog/', args.join(' '));
  }
  await assertVictimUntouched(context, 'ls/sweep');
});

tree('a symlink in a page\'s place is neither followed by purge nor written through by a store', async (context) => {
  await fs.mkdir(path.join(context.root, 'p'), { recursive: true });
  await fs.symlink(path.join(context.victim, 'secret.txt'), path.join(context.root, 'p', 'index.html'));
  const purged = await runCli(['purge', '/p', '--root', context.root, '--json']);
  assert.is(purged.code, 0, purged.stderr);
  assert.equal((JSON.parse(purged.stdout) as { removed: string[] }).removed, []);
  await assertVictimUntouched(context, 'purge of a linked page');
  // A store renames its file over the link itself.
  await request(context.app.port, '/p');
  await context.cache.idle();
  assert.ok((await fs.lstat(path.join(context.root, 'p', 'index.html'))).isFile());
  await assertVictimUntouched(context, 'store over a linked page');
});

tree.run();

// ---

const state = suite<Context>('symlinks in the state directory');
state.before.each(setUp);
state.after.each(tearDown);

state('a tag log that is a symlink: stores do not append to its target, purge does not delete it', async (context) => {
  const log = tagLog(context.root, 'post');
  await fs.rm(log, { force: true });
  await fs.symlink(path.join(context.victim, 'log.txt'), log);
  await request(context.app.port, '/tagged');
  await context.cache.idle();
  const crawled = await runCli(['crawl', '-', '--origin', context.app.url, '--root', context.root], { input: '/tagged-too\n' });
  assert.ok(crawled.code !== null);
  await assertVictimUntouched(context, 'store with a linked tag log');
  const purged = await runCli(['purge', '--tag', 'post', '--root', context.root]);
  assert.is(purged.code, 0, purged.stderr);
  await assertVictimUntouched(context, 'purge of a linked tag log');
});

state('a tag-log bucket or a meta segment that is a symlink: nothing written, appended or deleted there', async (context) => {
  const bucket = path.dirname(tagLog(context.root, 'post'));
  await fs.rm(bucket, { recursive: true, force: true });
  await fs.symlink(context.victim, bucket);
  const metaDir = path.join(context.root, '.prerender', 'meta');
  for (const name of await fs.readdir(metaDir)) {
    await fs.rm(path.join(metaDir, name), { recursive: true, force: true });
    await fs.symlink(context.victim, path.join(metaDir, name));
  }
  await request(context.app.port, '/kept');
  await request(context.app.port, '/other');
  await context.cache.idle();
  for (const args of [['purge', '--tag', 'post'], ['sweep'], ['ls'], ['purge', '/kept']]) {
    const result = await runCli([...args, '--root', context.root]);
    if (args[1] === '--tag') {
      assert.is(result.code, 2, result.stderr);
      assert.match(result.stderr, 'is a symlink: prerender does not follow symlinks in its state directory');
    }
    await assertVictimUntouched(context, args.join(' '));
  }
});

state('a purge journal that is a symlink: a purge appends nothing to its target and says why', async (context) => {
  const journal = path.join(context.root, '.prerender', 'inval', `${Math.floor(Date.now() / 600_000)}.log`);
  await fs.rm(journal, { force: true });
  await fs.symlink(path.join(context.victim, 'log.txt'), journal);
  const result = await runCli(['purge', '/kept', '--root', context.root]);
  assert.is(result.code, 2, result.stderr);
  assert.match(result.stderr, `${journal} is a symlink`);
  // The app's stores fail closed too (their purge check cannot read the journal): nothing stored.
  await request(context.app.port, '/after-journal');
  await context.cache.idle();
  assert.not.ok((await listFiles(context.root)).includes('after-journal/index.html'));
  await assertVictimUntouched(context, 'purge with a linked journal');
});

state('a symlinked state directory, or one of its directories, is refused with EROOT', async (context) => {
  const other = await tempDir();
  try {
    const root = path.join(other, 'cache');
    await fs.mkdir(root);
    await fs.mkdir(path.join(context.victim, 'state'));
    context.before = await snapshot(context.victim);
    await fs.symlink(path.join(context.victim, 'state'), path.join(root, '.prerender'));
    for (const args of [['ls'], ['purge', '--all'], ['purge', '/x'], ['sweep']]) {
      const result = await runCli([...args, '--root', root]);
      assert.is(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
      assert.match(result.stderr, 'is a symlink: prerender does not follow symlinks in its state directory');
    }
    const crawled = await runCli(['crawl', '-', '--origin', context.app.url, '--root', root], { input: '/x\n' });
    assert.is(crawled.code, 2, crawled.stderr);
    assert.match(crawled.stderr, 'is a symlink');
    await assertVictimUntouched(context, 'symlinked state directory');
    // The middleware too: it stores nothing there.
    const cache = createCache({ root, log: () => undefined });
    const server = await startServer(cache.wrap(app));
    try {
      await request(server.port, '/through-state');
      await cache.idle();
    } finally {
      await server.close();
      await cache.close();
    }
    await assertVictimUntouched(context, 'middleware with a symlinked state directory');
    assert.equal(await listFiles(root), []);
  } finally {
    await removeDir(other);
  }
});

state('the root itself may be a symlink', async (context) => {
  const link = path.join(context.dir, 'link-to-cache');
  await fs.symlink(context.root, link);
  const crawled = await runCli(['crawl', '-', '--origin', context.app.url, '--root', link], { input: '/via-link\n' });
  assert.is(crawled.code, 0, crawled.stderr);
  assert.ok((await listFiles(context.root)).includes('via-link/index.html'));
  const purged = await runCli(['purge', '/via-link', '--root', link, '--json']);
  assert.equal((JSON.parse(purged.stdout) as { removed: string[] }).removed, ['via-link/index.html']);
});

state('the expiry index and the fleet directory as symlinks: nothing is written through them', async (context) => {
  // The whole expiry directory, then an hour's bucket of it, linked to the victim.
  const expiryDir = path.join(context.root, '.prerender', 'expiry');
  await fs.rm(expiryDir, { recursive: true, force: true });
  await fs.symlink(context.victim, expiryDir);
  const expiring = createCache({ root: context.root, log: () => undefined, expiryCheckMs: 0 });
  const expiringApp = await startServer(expiring.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'max-age=600' });
    res.end(`<p>${req.url ?? ''}</p>`);
  }));
  try {
    await request(expiringApp.port, '/expiring');
    await expiring.idle();
    await assertVictimUntouched(context, 'store with a linked expiry directory');
    await fs.rm(expiryDir);
    const second = Math.floor((Date.now() + 600_000) / 1000);
    await fs.mkdir(expiryDir);
    await fs.symlink(context.victim, path.join(expiryDir, String(Math.floor(second / 3600))));
    await request(expiringApp.port, '/expiring-too');
    await expiring.idle();
    await assertVictimUntouched(context, 'store with a linked expiry bucket');
  } finally {
    await expiringApp.close();
    await expiring.close();
  }
  // The fleet agent's directory linked away: the agent refuses it instead of writing its position there.
  const fleetDir = path.join(context.root, '.prerender', 'fleet');
  await fs.symlink(context.victim, fleetDir);
  const agent = await runCli(['agent', '--root', context.root, '--redis', 'redis://127.0.0.1:1']);
  assert.is(agent.code, 2, agent.stderr);
  assert.match(agent.stderr, 'is a symlink: prerender does not follow symlinks in its state directory');
  await assertVictimUntouched(context, 'agent with a linked fleet directory');
});

state.run();

// ---

interface Served extends Context {
  nginx: Nginx;
}

const served = suite<Served>('nginx (disable_symlinks from the root) serves nothing through a planted link');
const hasNginx = nginxAvailable();
if (hasNginx) {
  served.before.each(async (context) => {
    await setUp(context);
    context.nginx = await startNginx({ root: context.root, upstream: context.app.url });
  });
  served.after.each(async (context) => {
    await context.nginx?.stop();
    await tearDown(context);
  });
}
const servedTest = hasNginx ? served : served.skip;

servedTest('a linked directory or page goes to the app; the genuine page is served from disk', async (context) => {
  await fs.symlink(context.victim, path.join(context.root, 'leak'));
  await fs.mkdir(path.join(context.root, 'p'));
  await fs.symlink(path.join(context.victim, 'secret.txt'), path.join(context.root, 'p', 'index.html'));
  for (const target of ['/leak/x', '/leak/x/', '/leak/secret.txt', '/p', '/p/']) {
    const reply = await request(context.nginx.port, target);
    assert.ok(reply.headers['x-cache'] !== 'HIT', `${target}: served from disk`);
    assert.not.match(reply.body.toString(), /^secret$|not prerender/, target);
  }
  assert.is((await request(context.nginx.port, '/kept')).headers['x-cache'], 'HIT');
  await context.cache.idle();
  await assertVictimUntouched(context, 'requests through nginx');
});

servedTest('a root that is itself a symlink (a --swap current) is still served', async (context) => {
  const link = path.join(context.dir, 'current');
  await fs.symlink(context.root, link);
  const nginx = await startNginx({ root: link, upstream: context.app.url });
  try {
    assert.is((await request(nginx.port, '/kept')).headers['x-cache'], 'HIT');
  } finally {
    await nginx.stop();
  }
});

served.run();
