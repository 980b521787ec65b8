/**
 * Glob selectors: `purge --glob`, `ls --glob`, `cache.purge({ glob })` over URL paths, through the
 * same canonicalization, containment and no-symlink rules as the other selectors.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { siteHandler } from '../fixtures/site/app.js';
import { createCache, PrerenderError } from '../src/index.js';
import { parseGlobArgument, urlPathsOf } from '../src/glob.js';
import {
  Gate, listFiles, nginxAvailable, removeDir, request, runCli, setUpSuite, startCachedSite, startServer,
  stopCachedSite, tempDir, type CachedSite,
} from './helpers.js';

const hasNginx = nginxAvailable();

const HOSTILE = [
  '../etc/**', 'etc/passwd', '/blog/../../**', '/a/%2e%2e/**', '/a/\\.\\./x', '/a/./b', '//**', '/a//b/*',
  'C:\\Windows\\**', '~/x/**', '/a%2Fb/*', '/a%00/*', '/%ff/*', '/x%zz', '/.prerender/**', '!/**',
  '/{1..100000000}', '/{a..z}/*', '/{a,{b,c}}', '/+(a|aa)+', '/(a|b)', '/a|b', '/{a,b', '/a}',
  `/${'x'.repeat(2000)}`, `/${'*/'.repeat(20)}`, `/${'{a,b}'.repeat(9)}`, `/{${Array.from({ length: 70 }, (_, i) => i).join(',')}}`,
];

const parse = suite('glob: patterns');

parse('hostile patterns are refused with EPATH, naming the pattern', () => {
  for (const pattern of [...HOSTILE, '/a\u0000b', '/a\nb', '']) {
    try {
      parseGlobArgument(pattern);
      assert.unreachable(`accepted ${JSON.stringify(pattern)}`);
    } catch (error) {
      assert.instance(error, PrerenderError, pattern);
      assert.is((error as PrerenderError).code, 'EPATH', pattern);
      assert.match((error as Error).message, '--glob', pattern);
    }
  }
});

parse('URL-path semantics: decoded once, escapes literal, pages answer as /d/ and /d', () => {
  const blog = parseGlobArgument('/blog/**');
  assert.equal(blog.dir, ['blog']);
  assert.is(blog.literalPrefix, '/blog/');
  assert.ok(blog.matches('/blog/'));
  assert.ok(blog.matches('/blog/a/b'));
  assert.not.ok(blog.matches('/blogroll'));
  assert.ok(parseGlobArgument('/caf%C3%A9/*').matches('/café/x'));
  assert.ok(parseGlobArgument('/caf%c3%a9/*').matches('/café/x'));
  const star = parseGlobArgument('/a%2Ab');
  assert.ok(star.matches('/a*b'));
  assert.not.ok(star.matches('/axb'), 'an escaped star is a literal star');
  assert.ok(parseGlobArgument('/*.{css,json}').matches('/style.css'));
  assert.ok(parseGlobArgument('/wiki/Foo_\\(bar\\)').matches('/wiki/Foo_(bar)'));
  assert.ok(parseGlobArgument('/**').matches('/.well-known/x'));
  assert.ok(parseGlobArgument('/te..st*').matches('/te..st.js'), 'two dots inside a name are no dot segment');
  assert.equal(urlPathsOf('index.html'), ['/']);
  assert.equal(urlPathsOf('docs/index.html'), ['/docs/', '/docs']);
  assert.equal(urlPathsOf('style.css'), ['/style.css']);
});

// ---

type Context = CachedSite & { victim: string };
const tree = suite<Context>('glob: purge and ls over a real tree');
setUpSuite(tree, async (context) => {
  await startCachedSite(context, siteHandler);
  for (const target of ['/', '/about', '/docs/', '/docs/getting-started', '/style.css', '/data.json', '/caf%C3%A9', '/posts/1', '/posts/2']) {
    await request(context.app.port, target);
  }
  await context.cache.idle();
  // A victim directory outside the root, reachable through links planted below it.
  context.victim = path.join(context.dir, 'victim');
  await fs.mkdir(path.join(context.victim, 'docs'), { recursive: true });
  for (const file of ['index.html', 'docs/index.html', 'page.html', 'style.css']) await fs.writeFile(path.join(context.victim, file), 'victim\n');
  await fs.symlink(context.victim, path.join(context.root, 'evil'));
  await fs.symlink(path.join(context.victim, 'docs'), path.join(context.root, 'docs', 'more'));
  await fs.symlink(path.join(context.victim, 'page.html'), path.join(context.root, 'docs', 'page.html'));
}, async (context) => stopCachedSite(context));

const victimIntact = async (context: Context): Promise<void> => {
  assert.equal(await listFiles(context.victim), ['docs/index.html', 'index.html', 'page.html', 'style.css']);
  for (const link of ['evil', 'docs/more', 'docs/page.html']) assert.ok((await fs.lstat(path.join(context.root, link))).isSymbolicLink(), link);
};

tree('ls --glob lists what matches in URL-path space, never through a symlink', async (context) => {
  const ls = async (...globs: string[]) => {
    const result = await runCli(['ls', '--json', '--root', context.root, ...globs.flatMap((glob) => ['--glob', glob])]);
    assert.is(result.code, 0, result.stderr);
    return (JSON.parse(result.stdout) as { entries: Array<{ file: string }> }).entries.map((entry) => entry.file);
  };
  assert.equal(await ls('/docs/**'), ['docs/getting-started/index.html', 'docs/index.html']);
  assert.equal(await ls('/*.{css,json}'), ['data.json', 'style.css']);
  assert.equal(await ls('/caf%C3%A9', '/about'), ['about/index.html', 'café/index.html']);
  assert.equal(await ls('/evil/**'), []);
  assert.not.ok((await ls('/**')).some((file) => file.startsWith('evil') || file.includes('more/') || file === 'docs/page.html'));
});

tree('hostile patterns exit 2 and remove nothing; an absolute path outside selects nothing there', async (context) => {
  const before = await listFiles(context.root);
  for (const pattern of HOSTILE) {
    try {
      await context.cache.purge({ glob: pattern });
      assert.unreachable(`purged with ${JSON.stringify(pattern)}`);
    } catch (error) {
      assert.is((error as PrerenderError).code, 'EPATH', pattern);
    }
  }
  // The CLI's exit code for a sample (each spawn costs a process start).
  for (const pattern of ['../etc/**', '/a/%2e%2e/**', '//**', 'C:\\Windows\\**', '/{1..100000000}', '/+(a|aa)+']) {
    const result = await runCli(['purge', '--glob', pattern, '--root', context.root]);
    assert.is(result.code, 2, `${pattern}: ${result.stdout}${result.stderr}`);
    assert.match(result.stderr, /--glob/);
  }
  assert.is((await runCli(['ls', '--glob', '../**', '--root', context.root])).code, 2);
  const outside = await runCli(['purge', '--glob', `${context.victim}/**`, '--root', context.root]);
  assert.is(outside.code, 0, outside.stderr);
  assert.match(outside.stdout, /removed 0 files/);
  assert.equal(await listFiles(context.root), before);
  await victimIntact(context);
});

(hasNginx ? tree : tree.skip)('--dry-run shows what a glob takes; the purge takes it, through the links nothing', async (context) => {
  const dry = await runCli(['purge', '--glob', '/docs/**', '--glob', '/evil/**', '--dry-run', '--root', context.root]);
  assert.is(dry.code, 0, dry.stderr);
  assert.is(dry.stdout, 'would remove 2 files\n  docs/getting-started/index.html\n  docs/index.html\n');
  assert.is((await request(context.nginx.port, '/docs/')).headers['x-cache'], 'HIT');

  const purged = await runCli(['purge', '--glob', '/docs/**', '--glob', '/**/*.html', '--json', '--root', context.root]);
  assert.is(purged.code, 0, purged.stderr);
  assert.equal((JSON.parse(purged.stdout) as { removed: string[] }).removed.sort(), ['docs/getting-started/index.html', 'docs/index.html']);
  assert.is((await request(context.nginx.port, '/docs/')).headers['x-cache'], 'MISS');
  assert.is((await request(context.nginx.port, '/about')).headers['x-cache'], 'HIT', 'other pages stay');

  const all = await runCli(['purge', '--glob', '/**', '--root', context.root]);
  assert.is(all.code, 0, all.stderr);
  const left = await listFiles(context.root);
  assert.ok(left.every((file) => file.startsWith('docs/') || file.startsWith('evil') || file.startsWith('.')), left.join(' '));
  await victimIntact(context);
});

// ---

const inflight = suite('glob: cache.purge({ glob }) and renders in flight');

inflight('a render that started before a glob purge does not store its page', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  const cache = createCache({ root, log: () => undefined });
  const gate = new Gate();
  const app = await startServer(cache.wrap((req: IncomingMessage, res: ServerResponse) => {
    const send = () => {
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end(`<p>${req.url}</p>`);
    };
    if (req.url === '/news/slow') void gate.pass().then(send);
    else send();
  }));
  try {
    await request(app.port, '/news/old');
    await cache.idle();
    const slow = request(app.port, '/news/slow');
    // The render must have begun before the purge, or a stored page would be right, not a failure.
    await gate.entered;
    const result = await cache.purge({ glob: '/news/*' });
    assert.equal(result.removed, ['news/old/index.html']);
    gate.release();
    assert.is((await slow).status, 200);
    await cache.idle();
    assert.equal(await listFiles(root), [], 'the in-flight render read old data: not stored');
    await request(app.port, '/news/fresh');
    await cache.idle();
    assert.equal(await listFiles(root), ['news/fresh/index.html']);
  } finally {
    await app.close();
    await removeDir(dir);
  }
});

parse.run();
tree.run();
inflight.run();
