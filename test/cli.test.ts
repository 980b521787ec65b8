/**
 * The real `bin/prerender.js` in a child process: output, exit codes, and that bad arguments touch
 * nothing.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { exitCodeFor, optionMessage } from '../src/cli/arguments.js';
import { OptionError } from '../src/options.js';
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
  // Misses go through an upstream block (idle connections reused), named after this site's options.
  const upstreamName = /^upstream (prerender_[0-9a-f]{12}) \{\n {4}server 10\.0\.0\.5:8080;$/m.exec(result.stdout)?.[1];
  assert.ok(upstreamName, 'an upstream block for the app');
  assert.match(result.stdout, `proxy_pass http://${upstreamName};`);
  assert.match(result.stdout, '(my_session|remember\\.me)');
});

nginx('each location pattern takes the names it is written for', async () => {
  // The patterns are nginx's (PCRE), read here as JavaScript regular expressions, which agree on them.
  // An extension pattern that takes every name changes no answer, so only this test sees it: every
  // page hit would pay a wasted stat.
  const result = await runCli(['nginx', '--root', '/srv/c', '--upstream', 'http://127.0.0.1:3000']);
  const patterns = [...result.stdout.matchAll(/^ {4}location ~ (?:"(.+)"|(\S+)) \{$/gm)].map((match) => new RegExp(match[1] ?? match[2] ?? ''));
  assert.is(patterns.length, 2);
  const taken = (uri: string): number => patterns.findIndex((pattern) => pattern.test(uri));
  for (const page of ['/about', '/docs/getting-started', '/a.b/c', '/caf\u00e9']) assert.is(taken(page), -1, `${page}: location /`);
  for (const file of ['/style.css', '/a/b.json', '/v1.2', '/a..b']) assert.is(taken(file), 0, `${file}: the extension location`);
  for (const dir of ['/', '/docs/', '/a.b/']) assert.is(taken(dir), 1, `${dir}: the trailing-slash location`);
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

// ---

interface BadContext {
  dir: string;
  snapshot: () => Promise<string[]>;
}

const everyCommand = suite<BadContext>('every command with bad values: exit 2, the argument named, nothing touched');
everyCommand.before.each(async (context) => {
  context.dir = await tempDir();
  await fs.mkdir(path.join(context.dir, 'cache', 'page'), { recursive: true });
  await fs.writeFile(path.join(context.dir, 'cache', 'page', 'index.html'), 'page');
  await fs.writeFile(path.join(context.dir, 'a-file'), 'not a directory');
  await fs.mkdir(path.join(context.dir, 'swapped', 'current'), { recursive: true });
  await fs.writeFile(path.join(context.dir, 'list.txt'), '/page\n');
  context.snapshot = async () => listFiles(context.dir, { includeState: true });
});
everyCommand.after.each(async (context) => removeDir(context.dir));

const rootCases = (dir: string): Array<[string, string]> => [
  [path.join(dir, 'a-file'), 'not a directory'],
  [path.join(dir, 'a-file', 'below'), 'root'],
];

everyCommand('a root that is a file (or below one)', async (context) => {
  const before = await context.snapshot();
  for (const [root, mentions] of rootCases(context.dir)) {
    for (const args of [
      ['purge', '/page'], ['purge', '--all'], ['sweep'], ['ls'], ['rollback'], ['doctor', '--url', 'http://127.0.0.1:1'],
      ['crawl', path.join(context.dir, 'list.txt'), '--origin', 'http://127.0.0.1:1'],
    ]) {
      const result = await runCli([...args, '--root', root]);
      assert.is(result.code, 2, `${args.join(' ')} --root ${root}: ${result.stderr}`);
      assert.match(result.stderr, mentions);
      assert.match(result.stderr, /--root|root/);
    }
  }
  assert.equal(await context.snapshot(), before);
});

everyCommand('a root that does not exist: commands that read it refuse; none creates it', async (context) => {
  const missing = path.join(context.dir, 'missing');
  for (const args of [['purge', '/page'], ['sweep'], ['ls'], ['rollback'], ['doctor', '--url', 'http://127.0.0.1:1']]) {
    const result = await runCli([...args, '--root', missing]);
    assert.is(result.code, 2, `${args.join(' ')}: ${result.stderr}`);
    assert.match(result.stderr, missing);
  }
  assert.not.ok((await fs.readdir(context.dir)).includes('missing'));
});

everyCommand('bad values for each option', async (context) => {
  const root = path.join(context.dir, 'cache');
  const list = path.join(context.dir, 'list.txt');
  const before = await context.snapshot();
  const cases: Array<[string[], string]> = [
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--concurrency', 'many'], '--concurrency'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--concurrency', '-1'], '--concurrency'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--retries', '1.5'], '--retries'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--timeout', '0'], '--timeout'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--follow', '--max-depth', 'deep'], '--max-depth'],
    [['crawl', list, '--origin', 'javascript:alert(1)'], '--origin'],
    [['crawl', list, '--origin', 'http://user:pw@127.0.0.1:1'], '--origin'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1/app'], '--origin'],
    [['crawl', path.join(context.dir, 'no\nsuch'), '--origin', 'http://127.0.0.1:1'], 'cannot read source'],
    [['crawl', path.join(context.dir, 'cache'), '--origin', 'http://127.0.0.1:1'], 'cannot read source'],
    [['crawl', '/dev/null/x', '--origin', 'http://127.0.0.1:1'], 'cannot read source'],
    [['purge', '--prefix', '/../..'], '--prefix'],
    [['purge', '--tag', 'a\nb'], '--tag'],
    [['purge', '/page\n/x'], 'cannot use path'],
    [['purge', '../../etc/passwd'], 'cannot use path'],
    [['purge', '--all', '--refresh', '--origin', 'http://127.0.0.1:1', '--concurrency', '1e3'], '--concurrency'],
    [['ls', '--prefix', '/a/../..'], '--prefix'],
    [['ls', '--tag', 'x'.repeat(2000)], '--tag'],
    [['sweep', '--refresh', '--origin', 'ftp://x'], '--origin'],
    [['doctor', '--url', 'file:///etc/passwd'], '--url'],
    [['rollback', '--bogus'], 'unknown option'],
  ];
  for (const [args, mentions] of cases) {
    const result = await runCli([...args, '--root', root]);
    assert.is(result.code, 2, `${JSON.stringify(args)}: ${result.stderr}`);
    assert.match(result.stderr, mentions, JSON.stringify(args));
  }
  assert.equal(await context.snapshot(), before);
});

everyCommand('a value only the library refuses is reported with its flag, not the API\'s name', async (context) => {
  const root = path.join(context.dir, 'cache');
  const list = path.join(context.dir, 'list.txt');
  const before = await context.snapshot();
  // Spelled as numbers, so the CLI passes them on: crawl() and exportSite() check the ranges.
  const cases: Array<[string[], string, string]> = [
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--timeout', '0'], '--timeout', 'timeoutMs'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--concurrency', '0'], '--concurrency', '`concurrency`'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--retries', '-1'], '--retries', '`retries`'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--follow', '--max-depth', '-1'], '--max-depth', 'maxDepth'],
    [['crawl', list, '--origin', 'http://127.0.0.1:1', '--max-pages', '0'], '--max-pages', 'maxPages'],
    [['export', ''], '<dir>', '`target`'],
  ];
  for (const [args, flag, apiName] of cases) {
    const result = await runCli([...args, '--root', root]);
    assert.is(result.code, 2, `${JSON.stringify(args)}: ${result.stderr}`);
    assert.match(result.stderr, flag, JSON.stringify(args));
    assert.not.match(result.stderr, apiName, `${JSON.stringify(args)}: the API's name stays out of the CLI's words`);
    assert.not.match(result.stderr, '    at ', `${JSON.stringify(args)}: no stack trace`);
  }
  assert.equal(await context.snapshot(), before);
});

everyCommand('rollback refuses to replace a real directory named current', async (context) => {
  const result = await runCli(['rollback', '--root', path.join(context.dir, 'swapped')]);
  assert.is(result.code, 2);
  assert.match(result.stderr, 'not a symlink');
  const crawl = await runCli(['crawl', path.join(context.dir, 'list.txt'), '--swap', '--origin', 'http://127.0.0.1:1', '--root', path.join(context.dir, 'swapped')]);
  assert.is(crawl.code, 2);
  assert.ok((await fs.stat(path.join(context.dir, 'swapped', 'current'))).isDirectory());
});

everyCommand.run();

// ---

const version = suite('prerender --version');

version('prints the version in package.json, exit 0, from any directory', async () => {
  const manifest = JSON.parse(await fs.readFile(path.join(repoRoot, 'package.json'), 'utf8')) as { name: string; version: string };
  assert.is(manifest.name, 'nginx-prerender');
  const dir = await tempDir();
  try {
    for (const flag of ['--version', '-V']) {
      const result = await runCli([flag], { cwd: dir });
      assert.is(result.code, 0, result.stderr);
      assert.is(result.stdout, `${manifest.version}\n`);
    }
    assert.match((await runCli(['--help'])).stdout, '--version');
  } finally {
    await removeDir(dir);
  }
});

version.run();

// ---

const mapping = suite('OptionError to flag (src/cli/arguments.ts)');

mapping('each option the CLI sets is worded with its flag; exit 2', () => {
  const flags: Array<[option: string, flag: string]> = [
    ['concurrency', '--concurrency'], ['retries', '--retries'], ['timeoutMs', '--timeout'], ['maxDepth', '--max-depth'],
    ['maxPages', '--max-pages'], ['origin', '--origin'], ['root', '--root'], ['prefixDepth', '--prefix-depth'], ['top', '--top'],
    ['retentionMs', '--retention'], ['bypassCookies', '--bypass-cookie'], ['hosts', '--host'],
  ];
  for (const [option, flag] of flags) {
    const error = new OptionError(option, 'a whole number from 1 up', 0);
    assert.is(optionMessage(error), `${flag} must be a whole number from 1 up, not 0`, option);
    let stderr = '';
    const io = { stdout: () => undefined, stderr: (text: string) => { stderr += text; }, stderrIsTTY: false, stdin: Readable.from([]), env: {} };
    assert.is(exitCodeFor(error, io), 2, option);
    assert.is(stderr, `prerender: ${flag} must be a whole number from 1 up, not 0\n`);
  }
  // An option no flag sets keeps the library's words, which name it.
  assert.is(optionMessage(new OptionError('maxBodyBytes', 'a whole number from 1 up', 0)), 'Expected `maxBodyBytes` to be a whole number from 1 up, not 0');
  // So is another option its expectation names.
  assert.is(optionMessage(new OptionError('multiSite', 'used with `hosts`')), '--multi-site must be used with --host');
  assert.is(optionMessage(new OptionError('root', 'used with `maxBodyBytes`')), '--root must be used with `maxBodyBytes`');
});

mapping.run();
