/**
 * The real `bin/prerender.js` in a child process: output, exit codes, and that bad arguments touch
 * nothing.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { listFiles, removeDir, repoRoot, runCli, tempDir } from './helpers.js';

// ---

const nginx = suite('prerender nginx');

nginx('prints the annotated config kept in nginx/prerender.conf', async () => {
  const result = await runCli(['nginx', '--root', '/srv/www/cache', '--upstream', 'http://127.0.0.1:3000', '--brotli', 'on']);
  assert.is(result.code, 0, result.stderr);
  assert.is(result.stdout, await fs.readFile(path.join(repoRoot, 'nginx', 'prerender.conf'), 'utf8'));
});

nginx('options reach the config', async () => {
  const result = await runCli(['nginx', '--root', '/srv/c', '--upstream', 'http://10.0.0.5:8080/', '--listen', '127.0.0.1:8081',
    '--server-name', 'example.com', '--bypass-cookie', 'my_session', '--bypass-cookie', 'remember.me']);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, 'listen 127.0.0.1:8081;');
  assert.match(result.stdout, 'server_name example.com;');
  assert.match(result.stdout, 'root "/srv/c";');
  assert.match(result.stdout, 'proxy_pass http://10.0.0.5:8080;');
  assert.match(result.stdout, '(my_session|remember\\.me)');
});

const badNginx: Array<[args: string[], mentions: string]> = [
  [['--root', '/srv/c'], '--upstream'],
  [['--root', '/srv/c', '--upstream', 'ftp://x'], '--upstream'],
  [['--root', '/srv/c', '--upstream', 'http://x/app'], '--upstream'],
  [['--root', '/srv/c', '--upstream', 'not a url'], '--upstream'],
  [['--root', '/srv/c', '--upstream', 'http://x', '--listen', '80; include /etc/passwd'], '--listen'],
  [['--root', '/srv/c', '--upstream', 'http://x', '--server-name', 'a b'], '--server-name'],
  [['--root', '/srv/c', '--upstream', 'http://x', '--bypass-cookie', 'a"b'], '--bypass-cookie'],
  [['--root', '/srv/$host', '--upstream', 'http://x'], '--root'],
  [['--root', '/srv/a"; deny all; "', '--upstream', 'http://x'], '--root'],
  [['--root', '/srv/a\nb', '--upstream', 'http://x'], '--root'],
  [['--root', '/srv/c', '--upstream', 'http://x', '--bogus'], 'unknown option'],
  [['--root', '/srv/c', '--upstream', 'http://x', '--brotli', 'maybe'], '--brotli'],
];

for (const [args, mentions] of badNginx) {
  nginx(`exit 2 for ${JSON.stringify(args.slice(2).join(' ') || args.join(' '))}`, async () => {
    const result = await runCli(['nginx', ...args]);
    assert.is(result.code, 2);
    assert.is(result.stdout, '', 'no config printed');
    assert.match(result.stderr, mentions);
  });
}

nginx.run();

// ---

interface PurgeContext {
  dir: string;
  root: string;
}

const purge = suite<PurgeContext>('prerender purge <path>');

const seeded = ['about/index.html', 'about/index.html.br', 'about/index.html.gz', 'blog/a/index.html', 'blog/b/index.html', 'index.html', 'style.css', 'style.css.gz'];

purge.before.each(async (context) => {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  for (const file of seeded) {
    await fs.mkdir(path.dirname(path.join(context.root, file)), { recursive: true });
    await fs.writeFile(path.join(context.root, file), file);
  }
  await fs.writeFile(path.join(context.dir, 'outside.html'), 'outside');
});
purge.after.each(async (context) => removeDir(context.dir));

purge('removes files with their siblings and empty directories, never the root', async (context) => {
  const result = await runCli(['purge', '/about', 'https://example.com/style.css', '/blog/a/', '/', '--root', context.root]);
  assert.is(result.code, 0, result.stderr);
  assert.match(result.stdout, 'removed 4 files');
  assert.equal(await listFiles(context.root), ['blog/b/index.html']);
  assert.ok((await fs.stat(context.root)).isDirectory());
  const after = await runCli(['purge', '/blog/b', '--root', context.root]);
  assert.is(after.code, 0);
  assert.equal(await fs.readdir(context.root), ['.prerender'], 'only the state directory (invalidation records) is left');
  assert.ok((await fs.stat(context.root)).isDirectory(), 'the root survives becoming empty');
});

purge('--json reports the removed files; /x/index.html and /x/ are one file', async (context) => {
  const result = await runCli(['purge', '/about/index.html', '/missing', '--json', '--root', context.root]);
  assert.is(result.code, 0, result.stderr);
  assert.equal(JSON.parse(result.stdout), {
    dryRun: false, counts: { removed: 1, refreshed: 0, failed: 0 }, removed: ['about/index.html'], refreshed: [], failed: [],
  });
});

purge('$PRERENDER_ROOT is the default root', async (context) => {
  const result = await runCli(['purge', '/about'], { env: { PRERENDER_ROOT: context.root } });
  assert.is(result.code, 0, result.stderr);
  assert.equal(await listFiles(context.root), seeded.filter((file) => !file.startsWith('about/')));
});

const badPaths = ['../outside.html', '/../outside.html', '/a/../../outside.html', '/%2e%2e/outside.html', '/a%2Fb', '/a%00', '/a\nb',
  '/about?x=1', '/a//b', '/.prerender/meta', 'about', 'https://example.com/../outside.html'];

for (const bad of badPaths) {
  purge(`exit 2 and nothing deleted for ${JSON.stringify(bad)}`, async (context) => {
    // A good path next to the bad one proves nothing at all is deleted when any argument is bad.
    const result = await runCli(['purge', '/about', bad, '--root', context.root]);
    assert.is(result.code, 2);
    assert.match(result.stderr, 'cannot use path');
    assert.equal(await listFiles(context.root), seeded);
    assert.is(await fs.readFile(path.join(context.dir, 'outside.html'), 'utf8'), 'outside');
  });
}

purge('a root that does not exist or is a file: exit 2, nothing created', async (context) => {
  const missing = await runCli(['purge', '/about', '--root', path.join(context.dir, 'nope')]);
  assert.is(missing.code, 2);
  assert.match(missing.stderr, 'does not exist');
  assert.equal((await fs.readdir(context.dir)).sort(), ['cache', 'outside.html']);
  const file = await runCli(['purge', '/about', '--root', path.join(context.dir, 'outside.html')]);
  assert.is(file.code, 2);
  assert.match(file.stderr, 'not a directory');
});

purge('usage errors exit 2; --help exits 0', async () => {
  assert.is((await runCli(['purge'])).code, 2);
  assert.is((await runCli(['purge', '/a', '--nope'])).code, 2);
  assert.is((await runCli(['frobnicate'])).code, 2);
  const help = await runCli(['--help']);
  assert.is(help.code, 0);
  assert.match(help.stdout, 'purge');
});

purge.run();
