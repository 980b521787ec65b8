/**
 * Hit ratio and metrics: `cache.stats()`, the Prometheus exposition, and `prerender stats` over an
 * access log a real nginx wrote with the format `prerender nginx --access-log` sets up.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { siteHandler } from '../fixtures/site/app.js';
import { METRICS_CONTENT_TYPE, type AccessLogStats } from '../src/index.js';
import { classifyReason } from '../src/stats.js';
import {
  nginxAvailable, request, runCli, setUpSuite, startCachedSite, startNginx, startServer, stopCachedSite,
  type CachedSite, type Nginx,
} from './helpers.js';

const hasNginx = nginxAvailable();

function app(req: IncomingMessage, res: ServerResponse): void {
  if (req.url === '/cookie' || req.url === '/slow-cookie') {
    setTimeout(() => {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Set-Cookie': 'a=1' });
      res.end('<p>cookie</p>');
    }, req.url === '/cookie' ? 0 : 50);
    return;
  }
  if (req.url === '/private') {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Control': 'private' });
    res.end('<p>private</p>');
    return;
  }
  siteHandler(req, res);
}

const counters = suite<CachedSite>('stats: cache.stats() and the Prometheus exposition');
setUpSuite(counters, async (context) => {
  await startCachedSite(context, app, { coalesce: true });
}, async (context) => stopCachedSite(context));

counters('counts stores, skips by reason, purges and refreshes; the handler serves text format 0.0.4', async (context) => {
  const port = context.app.port;
  for (const target of ['/', '/about', '/docs/', '/style.css', '/missing', '/cookie', '/private', '/private']) await request(port, target);
  await context.cache.idle();
  let stats = context.cache.stats();
  assert.is(stats.stored, 4);
  assert.ok(stats.bytes > 0);
  assert.equal(stats.skipped, { status: 1, 'set-cookie': 1, 'cache-control': 2 });
  assert.equal(stats.dropped, {});
  assert.is(stats.pending, 0);

  await context.cache.purge({ tags: ['docs'] });
  await context.cache.purge({ paths: ['/about'] }, { refresh: { origin: context.app.url } });
  await context.cache.purge({ paths: ['/'] }, { dryRun: true });
  stats = context.cache.stats();
  assert.is(stats.purges, 2, 'a dry run is not a purge');
  assert.is(stats.purgedFiles, 1);
  assert.is(stats.refreshes, 1);
  assert.is(stats.refreshFailures, 0);

  const metrics = await startServer(context.cache.metricsHandler());
  try {
    const reply = await request(metrics.port, '/metrics');
    assert.is(reply.headers['content-type'], METRICS_CONTENT_TYPE);
    const text = reply.body.toString();
    assert.match(text, /^# HELP prerender_stored_total .+\n# TYPE prerender_stored_total counter\nprerender_stored_total 4\n/);
    assert.match(text, /\nprerender_skipped_total\{reason="cache-control"\} 2\n/);
    assert.match(text, /\nprerender_skipped_total\{reason="set-cookie"\} 1\n/);
    assert.match(text, /\nprerender_purges_total 2\n/);
    assert.match(text, /\nprerender_refreshes_total 1\n/);
    assert.match(text, /\n# TYPE prerender_pending_stores gauge\nprerender_pending_stores 0\n# HELP prerender_pending_bytes [^\n]*\n# TYPE prerender_pending_bytes gauge\nprerender_pending_bytes 0\n$/);
    // Every sample line is `name{labels} value`, every metric has HELP and TYPE (the format's grammar).
    for (const line of text.trimEnd().split('\n')) {
      assert.ok(/^# (HELP|TYPE) prerender_[a-z_]+ .+$/.test(line) || /^prerender_[a-z_]+(\{[a-z]+="[a-z-]+"\})? \d+$/.test(line), line);
    }
    assert.is(text, context.cache.metrics());
  } finally {
    await metrics.close();
  }
  await Promise.all(Array.from({ length: 5 }, () => request(port, '/big')));
  await Promise.all(Array.from({ length: 3 }, () => request(port, '/slow-cookie')));
  stats = context.cache.stats();
  assert.is(stats.coalesced, 4, 'four requests answered with the first one\'s response');
  assert.is(stats.coalesceFallbacks, 2, 'two waiters sent on to the app (Set-Cookie)');
  assert.match(context.cache.metrics(), /\nprerender_coalesced_total\{outcome="shared"\} 4\nprerender_coalesced_total\{outcome="fallback"\} 2\n/);
});

counters('reason classes are a small fixed set', () => {
  assert.equal(classifyReason('pending stores hold maxPendingBytes'), { name: 'busy', dropped: true });
  assert.equal(classifyReason('Content-Type text/css where nginx would serve text/html'), { name: 'content-type', dropped: false });
  assert.equal(classifyReason('tag feed was purged while it rendered'), { name: 'purged', dropped: true });
  assert.equal(classifyReason('store failed: ENOSPC'), { name: 'store-failed', dropped: true });
  assert.equal(classifyReason('something new'), { name: 'other', dropped: false });
});

// ---

type LogContext = CachedSite & { log: string; logged: Nginx };
const logs = suite<LogContext>('stats: prerender stats over an access log nginx wrote');
setUpSuite(logs, async (context) => {
  await startCachedSite(context, app);
  context.log = path.join(context.dir, 'access.log');
  if (hasNginx) context.logged = await startNginx({ root: context.root, upstream: context.app.url, accessLog: context.log });
}, async (context) => {
  await context.logged?.stop();
  await stopCachedSite(context);
});

(hasNginx ? logs : logs.skip)('hit ratio overall and by prefix, the most requested misses with what to do', async (context) => {
  const port = context.logged.port;
  assert.match(context.logged.config, /log_format prerender_log_[0-9a-f]+ escape=json/);
  await request(port, '/about');
  await request(port, '/docs/getting-started');
  await context.cache.idle();
  for (let i = 0; i < 3; i++) await request(port, '/about');
  await request(port, '/docs/getting-started');
  for (let i = 0; i < 4; i++) await request(port, '/private');
  for (let i = 0; i < 2; i++) await request(port, '/missing');
  await request(port, '/about?ref=mail');
  await request(port, '/about', { method: 'POST' });
  await request(port, '/.prerender/meta');

  const result = await runCli(['stats', '--access-log', context.log, '--json', '--top', '3']);
  assert.is(result.code, 0, result.stderr);
  const stats = JSON.parse(result.stdout) as AccessLogStats;
  assert.is(stats.requests, 15);
  assert.is(stats.hits, 4);
  assert.is(stats.misses, 10);
  assert.is(stats.other, 1, 'the state directory: nginx answered 404 itself');
  assert.is(stats.malformed, 0);
  assert.is(stats.hitRatio, 4 / 14);
  const about = stats.prefixes.find((prefix) => prefix.prefix === '/about');
  assert.equal(about && { hits: about.hits, misses: about.misses }, { hits: 3, misses: 3 });
  const docs = stats.prefixes.find((prefix) => prefix.prefix === '/docs/');
  assert.equal(docs && { hits: docs.hits, misses: docs.misses, hitRatio: docs.hitRatio }, { hits: 1, misses: 1, hitRatio: 0.5 });
  assert.equal(stats.topMisses.map((miss) => [miss.path, miss.count]), [['/private', 4], ['/about', 3], ['/missing', 2]]);
  assert.match(stats.topMisses[0]?.hint ?? '', /crawl it|why it is not stored/);
  assert.equal(stats.topMisses[1], { path: '/about', count: 3, statuses: { 200: 3 }, withQuery: 1, otherMethod: 1, hint: stats.topMisses[1]?.hint ?? '' });
  assert.match(stats.topMisses[2]?.hint ?? '', /status 404/);

  const text = await runCli(['stats', '--access-log', context.log, '--prefix-depth', '0']);
  assert.is(text.code, 0, text.stderr);
  assert.match(text.stdout, /^15 requests: 4 hits, 10 misses, 1 other; hit ratio 28\.6%\n/);
  assert.match(text.stdout, /\n {7}4  200x4 {3}  \/private  \(/);
  assert.match(text.stdout, /\n {4}28\.6% +4 +10  \/\n/);
});

logs('malformed and over-long lines are counted, not held; bad arguments exit 2', async (context) => {
  const file = path.join(context.dir, 'junk.log');
  const good = JSON.stringify({ time: 't', method: 'GET', request_uri: '/a', status: '200', bytes: '1', cache: 'HIT', host: 'h', request_time: '0' });
  await fs.writeFile(file, `${good}\nnot json\n${'x'.repeat(200 * 1024)}\n{"method":1}\n${good}`);
  const result = await runCli(['stats', '--access-log', file, '--json']);
  assert.is(result.code, 0, result.stderr);
  const stats = JSON.parse(result.stdout) as AccessLogStats;
  assert.is(stats.requests, 2);
  assert.is(stats.hits, 2);
  assert.is(stats.malformed, 3);
  assert.is((await runCli(['stats', '--access-log', path.join(context.dir, 'none.log')])).code, 2);
  assert.is((await runCli(['stats', '--access-log', file, '--top', '-1'])).code, 2);
  assert.is((await runCli(['stats'])).code, 2);
  assert.is((await runCli(['nginx', '--root', context.root, '--upstream', context.app.url, '--access-log', '/tmp/a;b'])).code, 2);
});

counters.run();
logs.run();
