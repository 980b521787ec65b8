/**
 * Freshness (RFC 9111 §4.2) and the choice of governing field (RFC 9213), as pure functions.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import type { OutgoingHttpHeaders } from 'node:http';
import { governingDirectives } from '../src/cache-control.js';
import { MAX_DELTA_SECONDS, freshnessOf, parseAge } from '../src/freshness.js';
import { parseDictionary } from '../src/structured-field.js';
import fs from 'node:fs/promises';
import path from 'node:path';
import { crawl } from '../src/crawl/crawl.js';
import { toCachePath } from '../src/url-path.js';
import { nginxAvailable, request, setUpSuite, startCachedSite, stopCachedSite, type CachedSite, type Reply } from './helpers.js';

const hasNginx = nginxAvailable();

const now = Date.UTC(2026, 11, 2, 12);
const httpDate = (ms: number): string => new Date(ms).toUTCString();

function expiry(headers: OutgoingHttpHeaders, requestTime = now): number | null | string {
  const result = freshnessOf(governingDirectives(headers), headers, now, requestTime);
  return result.storable ? result.expiresAt : 'stale';
}

// ---

const age = suite('Age');

age('Age counts against max-age; a response already older than it is stale on arrival', () => {
  assert.is(expiry({ 'cache-control': 'max-age=3600', age: '600' }), now + 3000_000);
  assert.is(expiry({ 'cache-control': 'max-age=3600', age: '7200' }), 'stale');
  assert.is(expiry({ 'cache-control': 'max-age=3600', age: '3600' }), 'stale');
  assert.is(expiry({ 'cache-control': 'max-age=60, s-maxage=7200', age: '3600' }), now + 3600_000);
});

age('malformed Age: the first member of a list, anything but digits ignored, huge values capped at 2^31', () => {
  assert.is(parseAge('10, 7200'), 10);
  assert.is(parseAge(['10', '7200']), 10);
  assert.is(parseAge('7200s'), undefined);
  assert.is(parseAge('-5'), undefined);
  assert.is(parseAge('1.5'), undefined);
  assert.is(parseAge(''), undefined);
  assert.is(parseAge('99999999999999999999999'), MAX_DELTA_SECONDS);
  assert.is(parseAge('2147483649'), MAX_DELTA_SECONDS);
  assert.is(expiry({ 'cache-control': 'max-age=60', age: '7200s' }), now + 60_000);
  assert.is(expiry({ 'cache-control': 'max-age=60', age: ['10', '7200'] as unknown as string }), now + 50_000);
  assert.is(expiry({ 'cache-control': 'max-age=99999999999', age: '99999999999' }), 'stale');
});

age('the request-to-response delay and the apparent age from Date count too', () => {
  assert.is(expiry({ 'cache-control': 'max-age=60' }, now - 2000), now + 58_000);
  assert.is(expiry({ 'cache-control': 'max-age=60', date: httpDate(now - 20_000) }), now + 40_000);
  // A Date in the future is no negative age.
  assert.is(expiry({ 'cache-control': 'max-age=60', date: httpDate(now + 20_000) }), now + 60_000);
  // A Date that is no HTTP-date is ignored.
  assert.is(expiry({ 'cache-control': 'max-age=60', date: 'yesterday' }), now + 60_000);
});

age.run();

// ---

const lifetime = suite('freshness lifetime');

lifetime('s-maxage beats max-age beats Expires - Date; none means no expiry', () => {
  assert.is(expiry({}), null);
  assert.is(expiry({ 'cache-control': 'max-age=100, s-maxage=10' }), now + 10_000);
  assert.is(expiry({ 'cache-control': 'public', expires: httpDate(now + 30_000), date: httpDate(now) }), now + 30_000);
  assert.is(expiry({ 'cache-control': 'max-age=5', expires: 'garbage' }), now + 5000);
});

lifetime('invalid and obsolete Expires: invalid is already expired, RFC 850 and asctime are read', () => {
  for (const bad of ['0', '-1', 'garbage', 'Sun, 06 Nov 2094 08:49:37 UTC', `${httpDate(now + 60_000)}, ${httpDate(now + 60_000)}`]) {
    assert.is(expiry({ expires: bad }), 'stale', bad);
  }
  // 18-Aug-50 is 2050 (RFC 9110 5.6.7): far in the future, so fresh.
  assert.is(expiry({ expires: 'Thursday, 18-Aug-50 10:00:00 GMT', date: httpDate(now) }), Date.UTC(2050, 7, 18, 10));
  assert.is(expiry({ expires: 'Wed Dec  2 12:01:00 2026', date: httpDate(now) }), now + 60_000);
});

lifetime('invalid max-age or s-maxage makes the response stale', () => {
  for (const bad of ['max-age=abc', 'max-age=-1', 'max-age=1.5', 'max-age=', 's-maxage=x, max-age=60']) {
    assert.is(expiry({ 'cache-control': bad }), 'stale', bad);
  }
  assert.is(expiry({ 'cache-control': 'max-age="60"' }), now + 60_000);
  assert.is(expiry({ 'cache-control': 'max-age=99999999999' }), now + MAX_DELTA_SECONDS * 1000);
});

lifetime('stale-while-revalidate is kept in ms', () => {
  const result = freshnessOf(governingDirectives({ 'cache-control': 'max-age=1, stale-while-revalidate=30' }), {}, now);
  assert.ok(result.storable && result.staleWhileRevalidateMs === 30_000);
  // Not where serving stale is forbidden (RFC 9111 4.2.4).
  for (const forbidding of ['must-revalidate', 'proxy-revalidate', 's-maxage=5']) {
    const forbidden = freshnessOf(governingDirectives({ 'cache-control': `max-age=1, stale-while-revalidate=30, ${forbidding}` }), {}, now);
    assert.ok(forbidden.storable && forbidden.staleWhileRevalidateMs === 0, forbidding);
  }
});

lifetime.run();

// ---

const targeted = suite('targeted fields (RFC 9213)');

targeted('Prerender-Cache-Control beats CDN-Cache-Control beats Cache-Control; the winner also silences Expires', () => {
  const cc = { 'cache-control': 'max-age=10', expires: httpDate(now + 99_000) };
  assert.is(expiry(cc), now + 10_000);
  assert.is(expiry({ ...cc, 'cdn-cache-control': 'max-age=20' }), now + 20_000);
  assert.is(expiry({ ...cc, 'cdn-cache-control': 'max-age=20', 'prerender-cache-control': 'max-age=30' }), now + 30_000);
  assert.is(expiry({ expires: httpDate(now + 99_000), 'cdn-cache-control': 'public' }), null);
  assert.is(governingDirectives({ 'cache-control': 'private', 'cdn-cache-control': 'max-age=60' }).directives.has('private'), false);
  assert.ok(governingDirectives({ 'cache-control': 'max-age=60', 'cdn-cache-control': 'no-store' }).directives.has('no-store'));
});

targeted('an invalid targeted field is ignored whole; a wrong-typed max-age in a valid one is stale', () => {
  const invalid = governingDirectives({ 'cache-control': 'max-age=10', 'cdn-cache-control': 'max-age=20, ,' });
  assert.is(invalid.field, 'cache-control');
  assert.is(governingDirectives({ 'cache-control': 'max-age=10', 'cdn-cache-control': 'Max-Age=20' }).field, 'cache-control');
  assert.is(governingDirectives({ 'cache-control': 'private', 'cdn-cache-control': '' }).field, 'cache-control');
  assert.is(expiry({ 'cache-control': 'max-age=10', 'cdn-cache-control': 'max-age="20"' }), 'stale');
  assert.is(expiry({ 'cache-control': 'max-age=10', 'cdn-cache-control': 'max-age=20.5' }), 'stale');
  assert.is(expiry({ 'cache-control': 'no-store', 'cdn-cache-control': 'no-store=?0, max-age=5' }), now + 5000);
});

targeted('Dictionary parsing (RFC 8941)', () => {
  assert.equal([...(parseDictionary('a=1, b, c=?0, d="x y";p=1, e=(1 2), f=tok/en, g=:AQI=:') ?? new Map()).keys()], ['a', 'b', 'c', 'd', 'e', 'f', 'g']);
  assert.is(parseDictionary('a=1, a=2')?.get('a'), 2);
  for (const bad of ['A=1', 'a=1,', 'a=1 b=2', 'a="x', 'a=1234567890123456', 'a=(1', 'a=?2', '1a']) {
    assert.is(parseDictionary(bad), null, bad);
  }
  assert.equal(parseDictionary('')?.size, 0);
});

targeted.run();

// ---

interface Site extends CachedSite {
  headers: Map<string, Record<string, string | string[]>>;
}

const future = new Date(Date.now() + 3600_000);
/** Path -> [headers the app sends, whether nginx serves it from disk afterwards]. */
const cases: Array<[string, Record<string, string | string[]>, boolean]> = [
  ['/age-over', { 'Cache-Control': 'max-age=3600', Age: '7200' }, false],
  ['/age-under', { 'Cache-Control': 'max-age=3600', Age: '600' }, true],
  ['/age-suffix', { 'Cache-Control': 'max-age=3600', Age: '7200s' }, true],
  ['/age-lines', { 'Cache-Control': 'max-age=3600', Age: ['10', '7200'] }, true],
  ['/age-huge', { 'Cache-Control': 'max-age=3600', Age: '99999999999999999999' }, false],
  ['/s-maxage-age', { 'Cache-Control': 'max-age=60, s-maxage=7200', Age: '3600' }, true],
  ['/expires-zero', { Expires: '0' }, false],
  ['/expires-garbage', { Expires: 'tomorrow' }, false],
  ['/expires-utc', { Expires: future.toUTCString().replace('GMT', 'UTC') }, false],
  ['/expires-lowercase', { Expires: future.toUTCString().toLowerCase() }, false],
  ['/expires-one-digit-hour', { Expires: 'Thu, 01 Jan 2099 1:00:00 GMT' }, false],
  ['/expires-two-lines', { Expires: [future.toUTCString(), future.toUTCString()] }, false],
  ['/expires-iso', { Expires: future.toISOString() }, false],
  ['/expires-imf', { Expires: future.toUTCString() }, true],
  ['/expires-rfc850-50', { Expires: 'Thursday, 18-Aug-50 10:00:00 GMT' }, true],
  ['/expires-rfc850-94', { Expires: 'Sunday, 06-Nov-94 08:49:37 GMT' }, false],
  ['/expires-asctime', { Expires: 'Fri Jan  1 00:00:00 2099' }, true],
  ['/cdn-over-private', { 'Cache-Control': 'private', 'CDN-Cache-Control': 'max-age=60' }, true],
  ['/cdn-over-no-store', { 'Cache-Control': 'no-store', 'CDN-Cache-Control': 'max-age=60' }, true],
  ['/cdn-no-store', { 'Cache-Control': 'public, max-age=60', 'CDN-Cache-Control': 'no-store' }, false],
  ['/cdn-max-age-0', { 'Cache-Control': 'max-age=60', 'CDN-Cache-Control': 'max-age=0' }, false],
  ['/cdn-age', { 'Cache-Control': 'max-age=99999', 'CDN-Cache-Control': 'max-age=3600', Age: '7200' }, false],
  ['/cdn-ignores-expires', { 'CDN-Cache-Control': 'max-age=60', Expires: '0' }, true],
  ['/cdn-invalid', { 'Cache-Control': 'private', 'CDN-Cache-Control': 'max-age=60,,' }, false],
  ['/cdn-set-cookie', { 'CDN-Cache-Control': 'max-age=60', 'Set-Cookie': 'a=b' }, false],
  ['/own-over-cdn', { 'CDN-Cache-Control': 'no-store', 'Prerender-Cache-Control': 'max-age=60' }, true],
  ['/own-no-store', { 'CDN-Cache-Control': 'max-age=60', 'Prerender-Cache-Control': 'no-store' }, false],
];

const viaNginx = suite<Site>('freshness and targeted fields through nginx');
setUpSuite(viaNginx, async (site) => {
  if (!hasNginx) return;
  site.headers = new Map(cases.map(([target, headers]) => [target, headers]));
  await startCachedSite(site, (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', ...(site.headers.get(req.url ?? '') ?? {}) });
    res.end(`<p>${req.url}</p>`);
  });
}, stopCachedSite);

viaNginx('each header set is stored or not as RFC 9111 and RFC 9213 say', async (site) => {
  if (!hasNginx) return;
  const first = new Map<string, Reply>();
  for (const [target] of cases) first.set(target, await request(site.nginx.port, target));
  await site.cache.idle();
  for (const [target, , stored] of cases) {
    const reply = await request(site.nginx.port, target);
    assert.is(reply.headers['x-cache'], stored ? 'HIT' : 'MISS', target);
    assert.is(reply.body.toString(), `<p>${target}</p>`);
  }
  // Cache-Control still governs browsers: the app's reaches the client; prerender's own field does not.
  assert.is(first.get('/cdn-over-private')?.headers['cache-control'], 'private');
  assert.is(first.get('/cdn-over-private')?.headers['cdn-cache-control'], 'max-age=60');
  assert.is(first.get('/own-over-cdn')?.headers['prerender-cache-control'], undefined);
});

viaNginx('a crawl reads the same header lines the same way: it stores exactly the pages the middleware stores', async (site) => {
  if (!hasNginx) return;
  const origin = site.app.url;
  const list = path.join(site.dir, 'freshness-urls.txt');
  await fs.writeFile(list, cases.map(([target]) => `${target}\n`).join(''));
  const root = path.join(site.dir, 'crawled');
  const report = await crawl({ source: list, origin, root });
  assert.is(report.counts.failed, 0);
  for (const [target, , stored] of cases) {
    const mapped = toCachePath(target);
    if (!mapped.ok) throw new Error(`${target} does not map to a file`);
    const found = await fs.stat(path.join(root, mapped.value.file)).then(() => true, () => false);
    assert.is(found, stored, target);
  }
});

viaNginx.run();
