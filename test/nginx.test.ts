/**
 * End to end through a real nginx running the generated config in front of a real Node app: what is
 * stored is served from disk with the same bytes and type, and what must not be stored always reaches
 * the app.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { pages, siteHandler } from '../fixtures/site/app.js';
import { postPath, renderPost } from '../fixtures/site/posts.js';
import { parseContentType } from '../src/mime.js';
import { nginxConfig, type NginxConfigOptions } from '../src/nginx-config.js';
import { listFiles, NGINX_BIN, nginxAvailable, rawRequest, removeDir, request, setUpSuite, startCachedSite, stopCachedSite, tempDir, type CachedSite } from './helpers.js';

type Context = CachedSite;

const hasNginx = nginxAvailable();

function setUp(context: Context, handler: (req: IncomingMessage, res: ServerResponse) => void, options: { maxBodyBytes?: number } = {}): Promise<void> {
  return startCachedSite(context, handler, options);
}

const tearDown = stopCachedSite;

/** Same media type, and nginx's charset (if any) decodes the body as the app's declaration did. */
function assertSameType(appType: string, served: string | undefined, body: Buffer): void {
  const app = parseContentType(appType);
  const nginx = parseContentType(served ?? '');
  assert.ok(app && nginx, `types parse: ${appType} / ${served}`);
  if (!app || !nginx) return;
  assert.is(nginx.mediaType, app.mediaType);
  if (app.charset !== undefined) assert.is(nginx.charset, app.charset);
  else if (nginx.charset !== undefined) {
    assert.is(nginx.charset, 'utf-8');
    assert.ok(new TextDecoder('utf-8', { fatal: true }).decode(body) !== undefined);
  }
}

// ---

const mapping = suite<Context>('nginx serves stored pages from disk, byte for byte');
if (hasNginx) setUpSuite(mapping, (context) => setUp(context, siteHandler), tearDown);

const expectedFiles: Record<string, string> = {
  '/': 'index.html',
  '/about': 'about/index.html',
  '/docs/': 'docs/index.html',
  '/docs/getting-started': 'docs/getting-started/index.html',
  '/a..b': 'a..b/index.html',
  '/v1.2': 'v1.2/index.html',
  '/some thing': 'some thing/index.html',
  '/café': 'café/index.html',
  '/snow ☃/': 'snow ☃/index.html',
  '/style.css': 'style.css',
  '/data.json': 'data.json',
  '/sitemap.xml': 'sitemap.xml',
  '/do..ts.txt': 'do..ts.txt',
  '/logo.png': 'logo.png',
  '/big': 'big/index.html',
  '/stream': 'stream/index.html',
};

for (const page of pages) {
  (hasNginx ? mapping : mapping.skip)(`${page.target} is stored as ${expectedFiles[page.path]} and served as a hit`, async (context) => {
    const first = await request(context.nginx.port, page.target);
    assert.is(first.status, 200);
    assert.is(first.headers['x-cache'], 'MISS');
    assert.ok(first.body.equals(page.body), 'miss body');
    assert.is(first.headers['cache-tag'], undefined, 'tag header removed');
    await context.cache.idle();

    const file = path.join(context.root, expectedFiles[page.path] as string);
    assert.ok(existsSync(file), `${file} exists`);
    assert.ok((await fs.readFile(file)).equals(page.body), 'file bytes');
    assert.is((await fs.stat(file)).mode & 0o777, 0o644);

    const second = await request(context.nginx.port, page.target);
    assert.is(second.status, 200);
    assert.is(second.headers['x-cache'], 'HIT');
    assert.is(context.app.hits.get(page.target), 1, 'the app saw only the first request');
    assert.ok(second.body.equals(page.body), 'hit body');
    assertSameType(page.contentType, second.headers['content-type'], second.body);
  });
}

(hasNginx ? mapping : mapping.skip)('another spelling of a stored path is served from the same file', async (context) => {
  const reply = await request(context.nginx.port, '/caf%c3%a9');
  assert.is(reply.headers['x-cache'], 'HIT');
  const page = pages.find((p) => p.path === '/café');
  assert.ok(page && reply.body.equals(page.body));
});

(hasNginx ? mapping : mapping.skip)('a HEAD request for a stored page is answered from disk', async (context) => {
  const before = context.app.hits.get('/about');
  const reply = await request(context.nginx.port, '/about', { method: 'HEAD' });
  assert.is(reply.status, 200);
  assert.is(reply.headers['x-cache'], 'HIT');
  assert.is(context.app.hits.get('/about'), before);
});

(hasNginx ? mapping : mapping.skip)('a POST to a stored path reaches the app, not a 405 from nginx', async (context) => {
  const reply = await request(context.nginx.port, '/about', { method: 'POST' });
  assert.is(reply.status, 200);
  assert.is(reply.headers['x-cache'], 'MISS');
});

/**
 * Requests whose response the middleware would never store, aimed at a page that IS on disk: nginx must
 * still send each to the app (invariant 4). Without the file the app answers anyway, so only a stored
 * page shows whether nginx's own checks work.
 */
const bypassing: Array<{ why: string; lines: string[] }> = [
  ...['POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'].map((method) => ({ why: method, lines: [`${method} /about HTTP/1.1`] })),
  { why: 'query string', lines: ['GET /about?x=1 HTTP/1.1'] },
  { why: 'empty query string', lines: ['GET /about? HTTP/1.1'] },
  { why: 'fragment sent raw', lines: ['GET /about#top HTTP/1.1'] },
  { why: 'bearer credentials', lines: ['GET /about HTTP/1.1', 'Authorization: Bearer secret'] },
  { why: 'basic credentials', lines: ['GET /about HTTP/1.1', 'authorization: Basic eDp5'] },
  ...['connect.sid', 'session', 'session.sig', 'sid', 'sessionid'].map((name) => ({ why: `session cookie ${name}`, lines: ['GET /about HTTP/1.1', `Cookie: theme=dark; ${name}=abc`] })),
  { why: 'merged slashes', lines: ['GET //about HTTP/1.1'] },
  { why: 'dot segment', lines: ['GET /./about HTTP/1.1'] },
  { why: 'dot-dot segment', lines: ['GET /x/../about HTTP/1.1'] },
  { why: 'encoded dot segment', lines: ['GET /x/%2E%2e/about HTTP/1.1'] },
  { why: 'encoded slash', lines: ['GET /about%2F HTTP/1.1'] },
];
/** The same page, asked for in ways the middleware would store: nginx answers them from disk. */
const served: Array<{ why: string; lines: string[] }> = [
  { why: 'plain GET', lines: ['GET /about HTTP/1.1'] },
  { why: 'another spelling of a letter', lines: ['GET /%61bout HTTP/1.1'] },
  { why: 'cookies that are not session cookies', lines: ['GET /about HTTP/1.1', 'Cookie: theme=dark; sessions_seen=3; my_sid=1'] },
  { why: 'an empty Authorization header', lines: ['GET /about HTTP/1.1', 'Authorization: '] },
];

(hasNginx ? mapping : mapping.skip)('requests the middleware never stores reach the app even when the page is on disk', async (context) => {
  await request(context.nginx.port, '/about');
  await context.cache.idle();
  for (const { why, lines } of served) {
    const reply = await rawRequest(context.nginx.port, [...lines.slice(0, 1), 'Host: localhost', ...lines.slice(1)]);
    assert.is(reply.xCache, 'HIT', why);
    assert.is(reply.status, 200, why);
  }
  for (const { why, lines } of bypassing) {
    const reply = await rawRequest(context.nginx.port, [...lines.slice(0, 1), 'Host: localhost', ...lines.slice(1)]);
    assert.is(reply.xCache, 'MISS', `${why}: must reach the app`);
  }
});

(hasNginx ? mapping : mapping.skip)('a directory with pages below it but no index.html falls through to the app', async (context) => {
  // /docs/getting-started is stored; remove /docs/ so docs/ is a directory without index.html.
  await context.cache.purge({ paths: ['/docs/'] });
  assert.ok(existsSync(path.join(context.root, 'docs', 'getting-started', 'index.html')));
  const reply = await request(context.nginx.port, '/docs/');
  assert.is(reply.status, 200);
  assert.is(reply.headers['x-cache'], 'MISS');
  const plain = await request(context.nginx.port, '/docs');
  assert.is(plain.status, 404, '/docs is not a page of the fixture site');
  assert.is(plain.headers['x-cache'], 'MISS');
});

(hasNginx ? mapping : mapping.skip)('a page the app renders on every request is served from disk as rendered', async (context) => {
  const target = postPath(7);
  const miss = await request(context.nginx.port, target);
  assert.is(miss.headers['x-cache'], 'MISS');
  await context.cache.idle();
  const hit = await request(context.nginx.port, target);
  assert.is(hit.headers['x-cache'], 'HIT');
  assert.is(hit.body.toString(), renderPost(7));
  assert.ok(miss.body.equals(hit.body));
  assert.is(await fs.readFile(path.join(context.root, 'posts', '7', 'index.html'), 'utf8'), renderPost(7));
  assert.is(context.app.hits.get(target), 1, 'the hit never reached the app');
});

(hasNginx ? mapping : mapping.skip)('misses reuse idle connections to the app instead of opening one each', async (context) => {
  const before = context.app.connections();
  for (let i = 0; i < 20; i++) {
    const reply = await request(context.nginx.port, `/about?visit=${i}`);
    assert.is(reply.headers['x-cache'], 'MISS');
  }
  const opened = context.app.connections() - before;
  assert.ok(opened <= 2, `20 sequential misses opened ${opened} connections to the app`);
});

(hasNginx ? mapping : mapping.skip)('the state directory is never served', async (context) => {
  await context.cache.idle();
  const [segment] = await fs.readdir(path.join(context.root, '.prerender', 'meta'));
  const tagsDir = path.join(context.root, '.prerender', 'tags');
  const [tagBucket] = await fs.readdir(tagsDir);
  const [tagLog] = await fs.readdir(path.join(tagsDir, tagBucket ?? ''));
  // Files that exist, not only directories: without the deny rule nginx would serve these from disk
  // (a directory falls through to the app, which answers 404 anyway).
  const files = [`/.prerender/meta/${segment}`, `/.prerender/tags/${tagBucket}/${tagLog}`, '/.prerender/reserve'];
  for (const target of ['/.prerender', '/.prerender/', '/.prerender/meta/', `/.prerender/tags/${tagBucket}/`, '/.prerender/tmp/', ...files]) {
    const reply = await request(context.nginx.port, target);
    assert.is(reply.status, 404, target);
    assert.is(reply.headers['x-cache'], undefined, `${target}: answered by the deny rule, not from disk or the app`);
  }
});

mapping.run();

// ---

interface Rule {
  name: string;
  /** Headers the client sends. */
  requestHeaders?: Record<string, string>;
  method?: string;
  query?: string;
  status?: number;
  headers?: Record<string, string | string[]>;
  body?: Buffer;
}

const ok = Buffer.from('<!doctype html><p>hello</p>');

const rules: Rule[] = [
  { name: 'POST', method: 'POST' },
  { name: 'PUT', method: 'PUT' },
  { name: 'DELETE', method: 'DELETE' },
  { name: 'status 404', status: 404 },
  { name: 'status 500', status: 500 },
  { name: 'status 203', status: 203 },
  { name: 'status 206', status: 206 },
  { name: 'query string', query: '?page=2' },
  { name: 'empty query string', query: '?' },
  { name: 'Authorization', requestHeaders: { Authorization: 'Bearer secret' } },
  { name: 'session cookie', requestHeaders: { Cookie: 'connect.sid=s%3Aabc' } },
  { name: 'session cookie among others', requestHeaders: { Cookie: 'theme=dark; _ga=GA1.2; session=xyz; lang=en' } },
  { name: 'session cookie with no value', requestHeaders: { Cookie: 'a=1; sid=' } },
  { name: 'Set-Cookie', headers: { 'Set-Cookie': 'a=1; Path=/' } },
  { name: 'Cache-Control: private', headers: { 'Cache-Control': 'private, max-age=60' } },
  { name: 'Cache-Control: no-store', headers: { 'Cache-Control': 'no-store' } },
  { name: 'Cache-Control: no-cache', headers: { 'Cache-Control': 'public, no-cache' } },
  { name: 'Cache-Control: no-cache="Set-Cookie"', headers: { 'Cache-Control': 'no-cache="Set-Cookie"' } },
  { name: 'Cache-Control: max-age=0', headers: { 'Cache-Control': 'max-age=0' } },
  { name: 'Cache-Control: s-maxage=0 beats max-age', headers: { 'Cache-Control': 'max-age=600, s-maxage=0' } },
  { name: 'Expires in the past', headers: { Expires: 'Thu, 01 Jan 1970 00:00:00 GMT' } },
  { name: 'Expires unparseable', headers: { Expires: '0' } },
  { name: 'Vary: Cookie', headers: { Vary: 'Cookie' } },
  { name: 'Vary: *', headers: { Vary: '*' } },
  { name: 'Vary: Accept-Encoding, Origin', headers: { Vary: 'Accept-Encoding, Origin' } },
  { name: 'Content-Encoding: gzip', headers: { 'Content-Encoding': 'gzip' } },
  { name: 'charset iso-8859-1', headers: { 'Content-Type': 'text/html; charset=iso-8859-1' } },
  { name: 'no charset and invalid UTF-8', headers: { 'Content-Type': 'text/html' }, body: Buffer.from([0x3c, 0x70, 0x3e, 0xe9, 0x74, 0xe9]) },
  { name: 'media type nginx would not serve here', headers: { 'Content-Type': 'application/json' } },
  { name: 'Content-Type with extra parameters', headers: { 'Content-Type': 'text/html; charset=utf-8; profile=x' } },
  { name: 'no Content-Type', headers: { 'Content-Type': '' } },
  { name: 'body over maxBodyBytes', body: Buffer.alloc(64 * 1024 + 1, 0x61) },
  { name: 'tag with a control character (tab)', headers: { 'Cache-Tag': 'ok, bad\ttag' } },
  { name: 'tag over 1024 bytes', headers: { 'Surrogate-Key': 'x'.repeat(1025) } },
];

const policy = suite<Context>('responses the policy refuses always reach the app and leave no file');
if (hasNginx) setUpSuite(policy, (context) => setUp(context, (req, res) => {
    const name = decodeURIComponent((req.url ?? '').split('?')[0]?.slice('/rule/'.length) ?? '');
    const rule = rules.find((r) => r.name.replaceAll(' ', '-') === name);
    res.statusCode = rule?.status ?? 200;
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    for (const [header, value] of Object.entries(rule?.headers ?? {})) {
      if (value === '') res.removeHeader(header);
      else res.setHeader(header, value);
    }
    res.end(rule?.body ?? ok);
  }, { maxBodyBytes: 64 * 1024 }), tearDown);

for (const rule of rules) {
  (hasNginx ? policy : policy.skip)(rule.name, async (context) => {
    const target = `/rule/${encodeURIComponent(rule.name.replaceAll(' ', '-'))}${rule.query ?? ''}`;
    for (let attempt = 1; attempt <= 2; attempt++) {
      const reply = await request(context.nginx.port, target, { method: rule.method ?? 'GET', headers: rule.requestHeaders ?? {} });
      assert.is(reply.headers['x-cache'], 'MISS', `request ${attempt} reached the app`);
      assert.is(reply.headers['cache-tag'], undefined);
      assert.is(reply.headers['surrogate-key'], undefined);
      await context.cache.idle();
    }
    assert.is(context.app.hits.get(target), 2);
    assert.equal(await listFiles(context.root), []);
  });
}

(hasNginx ? policy : policy.skip)('control: the same handler with no rule is stored and then served from disk', async (context) => {
  const target = '/rule/none';
  await request(context.nginx.port, target);
  await context.cache.idle();
  const second = await request(context.nginx.port, target);
  assert.is(second.headers['x-cache'], 'HIT');
  assert.equal(await listFiles(context.root), ['rule/none/index.html']);
});

policy.run();

// ---

const syntax = suite('nginx -t accepts the generated config without a warning');

(hasNginx ? syntax : syntax.skip)('every variant of the generated config passes nginx -t with nothing on stderr but its two ok lines', async () => {
  const dir = await tempDir('prerender-nginx-t-');
  try {
    const variants: Array<Omit<NginxConfigOptions, 'listen'>> = [
      { root: path.join(dir, 'cache'), upstream: 'http://127.0.0.1:3000' },
      { root: path.join(dir, 'cache'), upstream: 'http://127.0.0.1:3000', hosts: ['a.example', 'b.example'], multiSite: true, bypassCookies: ['my_session'] },
      { root: path.join(dir, 'cache'), upstream: 'https://127.0.0.1:3443', brotli: false },
    ];
    for (const options of variants) {
      const file = path.join(dir, 'nginx.conf');
      const server = nginxConfig({ ...options, listen: '127.0.0.1:1' });
      await fs.writeFile(file, `pid ${dir}/nginx.pid;\nerror_log stderr warn;\nevents { }\nhttp {\n    include /etc/nginx/mime.types;\n${server}\n}\n`);
      const result = spawnSync(NGINX_BIN ?? 'nginx', ['-t', '-e', 'stderr', '-p', dir, '-c', file], { encoding: 'utf8' });
      assert.is(result.status, 0, result.stderr);
      const other = result.stderr.split('\n').filter((line) => line !== '' && !/^nginx: (the )?configuration file .* (syntax is ok|test is successful)$/.test(line));
      assert.equal(other, [], `nginx -t said more for ${JSON.stringify(options)}`);
    }
  } finally {
    await removeDir(dir);
  }
});

syntax.run();
