import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { checkRequest, checkResponse, findCookie, parseCacheControl, parseTags } from '../src/policy.js';
import { toCachePath, type CachePath } from '../src/url-path.js';

const target = (p: string): CachePath => {
  const result = toCachePath(p);
  if (!result.ok) throw new Error(result.reason);
  return result.value;
};

// ---

const cookies = suite('bypass cookies: every cookie is parsed, the session cookie is always found');

const found: Array<[header: string | string[], expected: string | undefined]> = [
  ['session=1', 'session'],
  ['a=1; session=2', 'session'],
  ['a=1;session=2', 'session'],
  ['  session  =x', 'session'],
  ['0=zero; session=1', 'session'],
  ['=; ;; session=', 'session'],
  ['session', 'session'],
  ['a="b;c"; session=1', 'session'],
  [['a=1', 'session=2'], 'session'],
  ['x=session', undefined],
  ['sessions=1; mysession=2', undefined],
  ['Session=1', undefined],
  ['', undefined],
];

for (const [header, expected] of found) {
  cookies(`${JSON.stringify(header)} -> ${expected}`, () => {
    assert.is(findCookie(header, ['session', 'sid']), expected);
  });
}

cookies('many cookies with the session cookie last', () => {
  const header = [...Array.from({ length: 2000 }, (_, i) => `c${i}=${i}`), 'sid=abc'].join('; ');
  assert.is(findCookie(header, ['session', 'sid']), 'sid');
});

cookies('a cookie named 0 is a name like any other', () => {
  assert.is(findCookie('a=1; 0=1', ['0']), '0');
});

cookies.run();

// ---

const request = suite('checkRequest');

request('GET of a canonical path is storable; everything else is not', () => {
  const ok = checkRequest({ method: 'GET', url: '/a', headers: {} }, { bypassCookies: [] });
  assert.ok(ok.store);
  for (const [method, url, headers] of [
    ['HEAD', '/a', {}], ['POST', '/a', {}], ['GET', '/a?x', {}], ['GET', '/a/../b', {}],
    ['GET', '/a', { authorization: 'Basic x' }], ['GET', '/a', { authorization: '' }], ['GET', '/a', { cookie: 'sid=1' }],
  ] as const) {
    assert.is(checkRequest({ method, url, headers }, { bypassCookies: ['sid'] }).store, false, `${method} ${url} ${JSON.stringify(headers)}`);
  }
});

request('headers frameworks act on but nginx does not key on are never stored', () => {
  for (const headers of [
    { host: 'a.com', 'x-forwarded-host': 'evil.com' }, { host: 'a.com', 'x-original-url': '/admin' }, { host: 'a.com', 'x-rewrite-url': '/admin' },
    { host: 'a.com', 'x-http-method-override': 'DELETE' }, { host: 'a.com', 'x-method-override': 'PUT' },
  ]) {
    assert.is(checkRequest({ method: 'GET', url: '/a', headers }, { bypassCookies: [] }).store, false, JSON.stringify(headers));
  }
  assert.ok(checkRequest({ method: 'GET', url: '/a', headers: { host: 'A.com:8080', 'x-forwarded-host': 'a.com' } }, { bypassCookies: [] }).store);
});

request('a host allowlist: Host (and X-Forwarded-Host) exactly an entry, any other spelling refused', () => {
  const hosts = new Set(['example.com', 'www.example.com', 'www.example.com:8080']);
  const verdict = (host: string | undefined, forwarded?: string) => checkRequest({
    method: 'GET', url: '/a', headers: { ...(host === undefined ? {} : { host }), ...(forwarded === undefined ? {} : { 'x-forwarded-host': forwarded }) },
  }, { bypassCookies: [], hosts });
  for (const host of ['example.com', 'www.example.com', 'www.example.com:8080']) {
    const result = verdict(host);
    assert.ok(result.store, host);
    if (result.store) assert.is(result.host, host);
    assert.ok(verdict(host, host).store, `${host} forwarded as itself`);
  }
  for (const host of [undefined, '', 'EXAMPLE.COM', 'Example.com', 'example.com:80', 'example.com:1337', 'example.com:99999', 'example.com.', ' www.example.com ',
    'www.example.com:08080', 'evil.com', 'example.com.evil.com', 'example.com/..', '../example.com', 'example.com:80:80', '[::1]', 'exa mple.com', 'example.com\\x', `${'a'.repeat(64)}.com`]) {
    assert.is(verdict(host).store, false, String(host));
  }
  for (const forwarded of ['evil.com', 'EXAMPLE.COM', 'example.com:1337', 'example.com.', 'www.example.com']) {
    assert.is(verdict('example.com', forwarded).store, false, `X-Forwarded-Host ${forwarded}`);
  }
});

request.run();

// ---

const response = suite('checkResponse');
const now = Date.UTC(2026, 0, 1);
const html = { 'content-type': 'text/html; charset=utf-8' };

response('expiry: s-maxage beats max-age beats Expires; none means no expiry', () => {
  const verdict = (headers: Record<string, string>) => checkResponse(200, { ...html, ...headers }, target('/a'), now);
  const expires = (headers: Record<string, string>) => {
    const result = verdict(headers);
    return result.store ? result.expiresAt : 'refused';
  };
  assert.is(expires({}), null);
  assert.is(expires({ 'cache-control': 'max-age=60' }), now + 60_000);
  assert.is(expires({ 'cache-control': 'max-age=60, s-maxage=120' }), now + 120_000);
  assert.is(expires({ 'cache-control': 'max-age=0, s-maxage=120' }), now + 120_000);
  assert.is(expires({ expires: new Date(now + 30_000).toUTCString() }), now + 30_000);
  // Expires - Date is the lifetime, and the 10 s since Date are its apparent age (RFC 9111 4.2.3).
  assert.is(expires({ expires: new Date(now + 30_000).toUTCString(), date: new Date(now - 10_000).toUTCString() }), now + 30_000);
  assert.is(expires({ 'cache-control': 'max-age=60', expires: 'Thu, 01 Jan 1970 00:00:00 GMT' }), now + 60_000);
  assert.is(expires({ 'cache-control': 'max-age=abc' }), 'refused');
  assert.is(expires({ expires: 'garbage' }), 'refused');
});

response('a type nginx would serve differently is refused', () => {
  assert.is(checkResponse(200, { 'content-type': 'text/javascript' }, target('/app.js'), now).store, false);
  assert.ok(checkResponse(200, { 'content-type': 'application/javascript' }, target('/app.js'), now).store);
  assert.is(checkResponse(200, { 'content-type': 'image/png; charset=utf-8' }, target('/a.png'), now).store, false);
  assert.is(checkResponse(200, { 'content-type': 'text/plain' }, target('/a'), now).store, false);
});

response('a text type without a charset must have its body checked as UTF-8', () => {
  const verdict = checkResponse(200, { 'content-type': 'text/css' }, target('/a.css'), now);
  assert.ok(verdict.store && verdict.mustBeUtf8);
  const declared = checkResponse(200, { 'content-type': 'text/css; charset=UTF-8' }, target('/a.css'), now);
  assert.ok(declared.store && !declared.mustBeUtf8);
});

response.run();

// ---

const tags = suite('tags');

tags('Cache-Tag is comma-separated, Surrogate-Key space-separated; lowercased and deduplicated', () => {
  const result = parseTags('Post:1, feed ,,FEED', 'author:7  post:1');
  assert.ok(result.ok);
  if (result.ok) assert.equal(result.tags.sort(), ['author:7', 'feed', 'post:1']);
});

tags('UTF-8 bytes in a header are decoded', () => {
  const result = parseTags(Buffer.from('Café').toString('latin1'), undefined);
  assert.ok(result.ok);
  if (result.ok) assert.equal(result.tags, ['café']);
});

tags('control characters, over-long tags and too many tags are errors', () => {
  for (const [cacheTag, surrogateKey] of [
    ['a\tb', undefined], [undefined, 'x'.repeat(1025)], [Array.from({ length: 1001 }, (_, i) => `t${i}`).join(','), undefined],
  ]) {
    const result = parseTags(cacheTag, surrogateKey);
    assert.is(result.ok, false);
    if (!result.ok) assert.is(result.error.code, 'ETAG');
  }
  assert.ok(parseTags('x'.repeat(1024), undefined).ok);
});

tags('Cache-Control parsing keeps the first of duplicate directives', () => {
  const parsed = parseCacheControl('Max-Age=5, max-age=0, private="x", s-maxage="7"');
  assert.is(parsed.get('max-age'), '5');
  assert.is(parsed.get('s-maxage'), '7');
  assert.ok(parsed.has('private'));
  const quoted = parseCacheControl('no-cache="set-cookie, x-a", max-age=9');
  assert.is(quoted.get('no-cache'), 'set-cookie, x-a');
  assert.is(quoted.get('max-age'), '9');
});

tags.run();
