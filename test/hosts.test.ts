/**
 * Host header and X-Forwarded-Host games, in single-site mode (an allowlist) and multi-site mode
 * (`<root>/<host>/`), through nginx and straight to the app; and session cookies in malformed
 * Cookie headers, through nginx.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type { CacheOptions } from '../src/index.js';
import { listFiles, nginxAvailable, rawRequest, request, runCli, startCachedSite, stopCachedSite, type CachedSite } from './helpers.js';

const hasNginx = nginxAvailable();

type Context = CachedSite;

/** The worst app for host games: it renders the Host and X-Forwarded-Host it sees into the page. */
function hostEcho(req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
  res.end(`<a href="//${String(req.headers['x-forwarded-host'] ?? req.headers.host)}/">home</a>`);
}

function setUp(context: Context, options: Omit<CacheOptions, 'root'>, nginxHosts: { hosts?: string[]; multiSite?: boolean }): Promise<void> {
  return startCachedSite(context, hostEcho, options, nginxHosts);
}

const tearDown = stopCachedSite;

/** Pages on disk, leaving out each host's own state directory. */
async function pagesOnDisk(root: string): Promise<string[]> {
  return (await listFiles(root)).filter((file) => !file.includes('/.prerender/'));
}

async function twice(context: Context, target: string, headers: Record<string, string>): Promise<string[]> {
  const results: string[] = [];
  for (let i = 0; i < 2; i++) {
    results.push(String((await request(context.nginx.port, target, { headers })).headers['x-cache']));
    await context.cache.idle();
  }
  return results;
}

// ---

const single = suite<Context>('single-site with a host allowlist');
if (hasNginx) {
  single.before.each((context) => setUp(context, { hosts: ['www.example.com'] }, { hosts: ['www.example.com'] }));
  single.after.each(tearDown);
}
const singleTest = hasNginx ? single : single.skip;

singleTest('an allowlisted Host is stored and served; another spelling of it is not served from disk', async (context) => {
  assert.equal(await twice(context, '/a', { Host: 'www.example.com' }), ['MISS', 'HIT']);
  // Exact host (host-exact.test.ts has the poisoning attempts): other spellings go to the app.
  for (const host of ['WWW.EXAMPLE.COM', 'www.example.com:80', 'www.example.com.']) {
    assert.is((await request(context.nginx.port, '/a', { headers: { Host: host } })).headers['x-cache'], 'MISS', host);
  }
  // The page is on disk now: only nginx's allowlist keeps it from answering for another host.
  for (const host of ['evil.example', 'evil-www.example.com', 'www.example.com.evil.example', 'wwwXexample.com']) {
    assert.is((await request(context.nginx.port, '/a', { headers: { Host: host } })).headers['x-cache'], 'MISS', host);
  }
});

singleTest('another Host never reaches the disk, and its page is never stored', async (context) => {
  for (const host of ['evil.example', 'www.example.com.evil.example', 'localhost', '127.0.0.1', '[::1]']) {
    assert.equal(await twice(context, '/b', { Host: host }), ['MISS', 'MISS'], host);
  }
  assert.equal(await listFiles(context.root), []);
});

singleTest('X-Forwarded-Host cannot poison the stored page: nginx overrides it, the app alone refuses it', async (context) => {
  await request(context.nginx.port, '/c', { headers: { Host: 'www.example.com', 'X-Forwarded-Host': 'evil.example' } });
  await context.cache.idle();
  const hit = await request(context.nginx.port, '/c', { headers: { Host: 'www.example.com' } });
  assert.is(hit.headers['x-cache'], 'HIT');
  assert.is(hit.body.toString(), '<a href="//www.example.com/">home</a>');
  await request(context.app.port, '/d', { headers: { Host: 'www.example.com', 'X-Forwarded-Host': 'evil.example' } });
  await context.cache.idle();
  assert.equal(await listFiles(context.root), ['c/index.html']);
});

singleTest('absolute-form targets, a missing Host, HTTP/1.0, duplicated Host headers', async (context) => {
  // Stored first: only a page on disk shows whether nginx would serve it to these requests.
  assert.equal(await twice(context, '/e', { Host: 'www.example.com' }), ['MISS', 'HIT']);
  const replies = [
    await rawRequest(context.nginx.port, ['GET http://evil.example/e HTTP/1.1', 'Host: www.example.com']),
    await rawRequest(context.nginx.port, ['GET /e HTTP/1.0']),
    await rawRequest(context.nginx.port, ['GET /e HTTP/1.1', 'Host: www.example.com', 'Host: evil.example']),
    await rawRequest(context.nginx.port, ['GET /e HTTP/1.1', 'Host: ../../etc']),
    await rawRequest(context.nginx.port, ['GET /e HTTP/1.1', 'Host: www.example.com/../x']),
  ];
  await context.cache.idle();
  // The app may answer these however it likes (a request for another host is that host's business);
  // what matters is that none is a disk hit and none is stored.
  for (const reply of replies) assert.ok(reply.xCache !== 'HIT', JSON.stringify(reply));
  assert.equal(await listFiles(context.root), ['e/index.html']);
  assert.is(await fs.readFile(path.join(context.root, 'e/index.html'), 'utf8'), '<a href="//www.example.com/">home</a>', 'not overwritten');
});

singleTest('direct to the app: forwarded and override headers are never stored', async (context) => {
  const cases: Array<Record<string, string>> = [
    { Host: 'evil.example' }, { Host: 'www.example.com', 'X-Original-URL': '/admin' }, { Host: 'www.example.com', 'X-Rewrite-URL': '/admin' },
    { Host: 'www.example.com', 'X-HTTP-Method-Override': 'DELETE' }, { Host: 'www.example.com', 'X-Forwarded-Host': 'evil.example' },
  ];
  for (const headers of cases) await request(context.app.port, '/f', { headers });
  await context.cache.idle();
  assert.equal(await listFiles(context.root), []);
});

single.run();

// ---

const multi = suite<Context>('multi-site: <root>/<host>/ for allowlisted hosts only');
if (hasNginx) {
  multi.before.each((context) => setUp(context, { hosts: ['a.test', 'b.test'], multiSite: true }, { hosts: ['a.test', 'b.test'], multiSite: true }));
  multi.after.each(tearDown);
}
const multiTest = hasNginx ? multi : multi.skip;

multiTest('each host gets its own tree and nginx serves each its own page', async (context) => {
  assert.equal(await twice(context, '/page', { Host: 'a.test' }), ['MISS', 'HIT']);
  assert.equal(await twice(context, '/page', { Host: 'b.test' }), ['MISS', 'HIT']);
  assert.equal(await twice(context, '/page', { Host: 'B.TEST:8080' }), ['MISS', 'MISS'], 'another spelling is neither stored nor served');
  assert.equal(await pagesOnDisk(context.root), ['a.test/page/index.html', 'b.test/page/index.html']);
  assert.is((await request(context.nginx.port, '/page', { headers: { Host: 'a.test' } })).body.toString(), '<a href="//a.test/">home</a>');
  assert.is((await request(context.nginx.port, '/page', { headers: { Host: 'b.test' } })).body.toString(), '<a href="//b.test/">home</a>');
});

multiTest('unknown and hostile hosts: never stored, never served from another host\'s tree', async (context) => {
  await twice(context, '/page', { Host: 'a.test' });
  // A tree left by a host no longer on the allowlist: only nginx's allowlist keeps it from being served.
  await fs.mkdir(path.join(context.root, 'c.test', 'page'), { recursive: true });
  await fs.writeFile(path.join(context.root, 'c.test', 'page', 'index.html'), '<p>stale</p>');
  for (const host of ['c.test', 'a.test.evil', '..', 'a.test/..', '.a.test']) {
    const reply = await rawRequest(context.nginx.port, ['GET /page HTTP/1.1', `Host: ${host}`]);
    assert.ok(reply.xCache !== 'HIT', `${host}: ${JSON.stringify(reply)}`);
  }
  const noHost = await rawRequest(context.nginx.port, ['GET /a.test/page HTTP/1.0']);
  assert.ok(noHost.xCache !== 'HIT', 'a tree is never reachable as a path of the bare root');
  await context.cache.idle();
  assert.equal(await pagesOnDisk(context.root), ['a.test/page/index.html', 'c.test/page/index.html']);
});

multiTest('the CLI refuses the multi-site base as a root: its hosts\' state directories are not pages', async (context) => {
  await twice(context, '/x', { Host: 'a.test' });
  for (const args of [['ls', '--json'], ['purge', '--prefix', '/', '--dry-run'], ['purge', '--all'], ['sweep']]) {
    const result = await runCli([...args, '--root', context.root]);
    assert.is(result.code, 2, `${args.join(' ')}: ${result.stdout}`);
    assert.match(result.stderr, `give one, e.g. --root ${path.join(context.root, 'a.test')}`);
  }
  assert.equal(await pagesOnDisk(context.root), ['a.test/x/index.html']);
  const one = await runCli(['ls', '--json', '--root', path.join(context.root, 'a.test')]);
  assert.is(one.code, 0, one.stderr);
  assert.match(one.stdout, 'x/index.html');
});

multiTest('purge applies to every host, or to the host of an absolute URL', async (context) => {
  await twice(context, '/x', { Host: 'a.test' });
  await twice(context, '/x', { Host: 'b.test' });
  const one = await context.cache.purge({ paths: ['http://a.test/x'] });
  assert.equal(one.removed, ['a.test/x/index.html']);
  const all = await context.cache.purge({ paths: ['/x'] });
  assert.equal(all.removed, ['b.test/x/index.html']);
});

multi.run();

// ---

const cookies = suite<Context>('session cookies in malformed Cookie headers, through nginx');
if (hasNginx) {
  cookies.before.each((context) => setUp(context, {}, {}));
  cookies.after.each(tearDown);
}
const cookieTest = hasNginx ? cookies : cookies.skip;

const cookieHeaders: string[][] = [
  ['Cookie: 0=1; session=x'],
  ['Cookie: ;;; session=x'],
  ['Cookie: session'],
  ['Cookie: a=1;session=x'],
  ['Cookie: session =x'],
  ['Cookie: =; session=; ='],
  ['Cookie: a=1', 'Cookie: connect.sid=s%3Ax'],
  [`Cookie: ${Array.from({ length: 300 }, (_, i) => `c${i}=${i}`).join('; ')}; sid=1`],
  ['Cookie: a="b;session=c"'],
];

cookieTest('the session cookie is always found: every request reaches the app, nothing is stored', async (context) => {
  // A page on disk: nginx's cookie rule alone decides whether these requests get it.
  await rawRequest(context.nginx.port, ['GET /cookie/stored HTTP/1.1', 'Host: localhost']);
  await context.cache.idle();
  assert.is((await rawRequest(context.nginx.port, ['GET /cookie/stored HTTP/1.1', 'Host: localhost'])).xCache, 'HIT');
  for (const headers of cookieHeaders) {
    const reply = await rawRequest(context.nginx.port, ['GET /cookie/stored HTTP/1.1', 'Host: localhost', ...headers]);
    assert.is(reply.xCache, 'MISS', `stored page: ${headers.join(' | ')}`);
  }
  for (const [index, headers] of cookieHeaders.entries()) {
    for (let i = 0; i < 2; i++) {
      const reply = await rawRequest(context.nginx.port, [`GET /cookie/${index} HTTP/1.1`, 'Host: localhost', ...headers]);
      assert.is(reply.xCache, 'MISS', headers.join(' | '));
      await context.cache.idle();
    }
  }
  assert.equal(await listFiles(context.root), ['cookie/stored/index.html']);
  await rawRequest(context.nginx.port, ['GET /cookie/none HTTP/1.1', 'Host: localhost', 'Cookie: theme=dark; _ga=1']);
  await context.cache.idle();
  assert.equal(await listFiles(context.root), ['cookie/none/index.html', 'cookie/stored/index.html'], 'control: other cookies do not bypass');
});

cookies.run();
