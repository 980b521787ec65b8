/**
 * Hostile crawl sources (DESIGN.md invariant 2: every input is bounded, no fetch leaves the origin):
 * gzip bombs as files and as Content-Encoding, endless tokens, whitespace, huge URL-list lines, sitemap
 * redirects to another loopback host, and an endless link space under --follow. Each spawns the real
 * CLI and reads the peak RSS of that very process, against a baseline crawl measured the same way.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { cliPath, listFiles, removeDir, startServer, tempDir, type Server } from './helpers.js';

interface Measured {
  code: number | null;
  stdout: string;
  stderr: string;
  /** Peak resident set of the CLI process, in MiB (its own getrusage at exit). */
  peakMiB: number;
}

interface Context {
  dir: string;
  root: string;
  preload: string;
  origin: Server;
  /** Peak RSS of a one-page crawl, measured the same way. */
  baselineMiB: number;
}

/** 1 MiB of one byte, gzipped once: a gzip member of about 1 KB, repeated to make a bomb. */
const MEMBER_MIB = 1024 * 1024;
const members = new Map<string, Buffer>();

/**
 * `head`, then `mib` MiB of `fill`, as concatenated gzip members (gunzip reads them as one stream):
 * about 1 KB on disk per MiB it expands to.
 */
function gzipBomb(head: string, fill: string, mib: number): Buffer {
  let member = members.get(fill);
  if (member === undefined) {
    member = gzipSync(Buffer.alloc(MEMBER_MIB, fill), { level: 9 });
    members.set(fill, member);
  }
  return Buffer.concat([gzipSync(Buffer.from(head)), ...Array.from({ length: mib }, () => member as Buffer)]);
}

const bombs = {
  comment: () => gzipBomb('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><!--', 'a', 1024),
  tag: () => gzipBomb('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url', 'a', 1024),
  attribute: () => gzipBomb('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" a="', 'a', 1024),
  loc: () => gzipBomb('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>/', 'a', 1024),
  whitespace: () => gzipBomb('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">', ' ', 1024),
  nested: () => gzipBomb('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">', '<', 0),
};

/** Runs the CLI with its stdin fed from `input` (chunks, with backpressure), measuring its peak RSS. */
function runMeasured(context: Context, args: string[], input?: () => AsyncGenerator<Buffer>): Promise<Measured> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', context.preload, cliPath, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.on('error', reject);
    child.stdin.on('error', () => undefined);
    child.on('close', (code) => {
      const peak = /maxrss-kib=(\d+)/.exec(stderr);
      resolve({ code, stdout, stderr, peakMiB: peak === null ? Number.NaN : Number(peak[1]) / 1024 });
    });
    if (input === undefined) {
      child.stdin.end();
      return;
    }
    void (async () => {
      for await (const chunk of input()) {
        if (!child.stdin.write(chunk)) await new Promise((done) => child.stdin.once('drain', done));
      }
      child.stdin.end();
    })().catch(() => child.stdin.destroy());
  });
}

/** A bomb may cost a crawl this much more than crawling one page: buffers, zlib, one token. */
const HEADROOM_MIB = 64;

function assertBounded(context: Context, result: Measured, what: string): void {
  assert.ok(Number.isFinite(result.peakMiB), `no RSS reading: ${result.stderr}`);
  assert.ok(result.peakMiB < context.baselineMiB + HEADROOM_MIB, `${what}: peak RSS ${result.peakMiB.toFixed(0)} MiB, a one-page crawl ${context.baselineMiB.toFixed(0)} MiB`);
}

function report(result: Measured): { counts: { stored: number; failed: number }; failures: Array<{ url: string; error: string; line?: number }>; stoppedEarly?: string } {
  assert.ok(result.stdout.length < 64 * 1024, `the report quotes inputs whole: ${result.stdout.length} bytes`);
  return JSON.parse(result.stdout) as ReturnType<typeof report>;
}

function origin(context: Context) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const url = req.url ?? '/';
    const bomb = /^\/bomb-(\w+)\.xml$/.exec(url);
    if (bomb !== null) {
      const body = bombs[bomb[1] as keyof typeof bombs]();
      res.writeHead(200, { 'Content-Type': 'application/xml', 'Content-Encoding': 'gzip', 'Content-Length': body.length });
      res.end(body);
      return;
    }
    if (url.startsWith('/page/')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<p>${url}</p>`);
      return;
    }
    res.writeHead(404).end();
    void context;
  };
}

async function setUp(context: Context): Promise<void> {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  context.preload = path.join(context.dir, 'maxrss.mjs');
  await fs.writeFile(context.preload, "import { writeSync } from 'node:fs';\nprocess.on('exit', () => writeSync(2, `\\nmaxrss-kib=${process.resourceUsage().maxRSS}\\n`));\n");
  context.origin = await startServer(origin(context));
  // Once a run: the same CLI, the same machine, moments apart.
  baselineMiB ??= await (async () => {
    const baseline = await runMeasured(context, ['crawl', '-', '--origin', context.origin.url, '--root', context.root, '--json'], async function* () {
      yield Buffer.from('/page/baseline\n');
    });
    assert.is(baseline.code, 0, baseline.stderr);
    return baseline.peakMiB;
  })();
  context.baselineMiB = baselineMiB;
}

let baselineMiB: number | undefined;

async function tearDown(context: Context): Promise<void> {
  await context.origin?.close();
  if (context.dir !== undefined) await removeDir(context.dir);
}

// ---

const sitemaps = suite<Context>('sitemap bombs: bounded memory, a failed source named by its bound, exit 1');
sitemaps.before.each(setUp);
sitemaps.after.each(tearDown);

sitemaps('a .gz file expanding into one endless comment', async (context) => {
  const file = path.join(context.dir, 'sitemap.xml.gz');
  await fs.writeFile(file, bombs.comment());
  assert.ok((await fs.stat(file)).size < 2 * 1024 * 1024, 'a small bomb on disk');
  const result = await runMeasured(context, ['crawl', file, '--origin', context.origin.url, '--root', context.root, '--json']);
  assert.is(result.code, 1, result.stderr);
  const parsed = report(result);
  assert.is(parsed.counts.failed, 1);
  assert.match(parsed.failures[0]?.error ?? '', /over the bound of 1048576 bytes a token .*ESOURCE/);
  assertBounded(context, result, 'comment bomb');
});

sitemaps('Content-Encoding: gzip bodies expanding into an endless tag, attribute or <loc>', async (context) => {
  for (const [name, bound] of [['tag', /bytes a token/], ['attribute', /bytes a token/], ['loc', /8192 bytes a <loc>/]] as const) {
    const result = await runMeasured(context, ['crawl', `${context.origin.url}/bomb-${name}.xml`, '--origin', context.origin.url, '--root', context.root, '--json']);
    assert.is(result.code, 1, `${name}: ${result.stderr}`);
    const parsed = report(result);
    assert.is(parsed.counts.failed, 1, name);
    assert.match(parsed.failures[0]?.error ?? '', bound, name);
    assert.match(parsed.failures[0]?.error ?? '', 'ESOURCE', name);
    assertBounded(context, result, `${name} bomb`);
  }
});

sitemaps('a whitespace bomb stops at 50 MiB decompressed instead of running as long as it expands', async (context) => {
  const file = path.join(context.dir, 'ws.xml.gz');
  await fs.writeFile(file, bombs.whitespace());
  const started = Date.now();
  const result = await runMeasured(context, ['crawl', file, '--origin', context.origin.url, '--root', context.root, '--json']);
  assert.is(result.code, 1, result.stderr);
  assert.match(report(result).failures[0]?.error ?? '', /over the bound of 52428800 bytes decompressed \(50 MiB\) \(ESOURCE\)/);
  assertBounded(context, result, 'whitespace bomb');
  // 1 GiB of whitespace would take far longer than 50 MiB does (timing belongs in benchmarks; this is
  // only a guard against reading it all).
  assert.ok(Date.now() - started < 20_000, `${Date.now() - started} ms`);
});

sitemaps('endlessly nested elements and more than 50,000 URLs in one sitemap', async (context) => {
  const nested = path.join(context.dir, 'nested.xml');
  await fs.writeFile(nested, `<?xml version="1.0"?><urlset>${'<a>'.repeat(100_000)}`);
  const deep = await runMeasured(context, ['crawl', nested, '--origin', context.origin.url, '--root', context.root, '--json']);
  assert.is(deep.code, 1, deep.stderr);
  assert.match(report(deep).failures[0]?.error ?? '', /over the bound of 64 nested elements \(ESOURCE\)/);

  // The URL bound through the library with a small value: 50,000 fetches would make a slow test.
  const { crawl } = await import('../src/index.js');
  const many = path.join(context.dir, 'many.xml.gz');
  const locs = Array.from({ length: 12 }, (_, i) => `<url><loc>/page/${i}</loc></url>`).join('');
  await fs.writeFile(many, gzipSync(`<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">${locs}</urlset>`));
  const over = await crawl({ source: many, origin: context.origin.url, root: context.root, sourceLimits: { maxUrls: 10 } });
  assert.is(over.counts.stored, 10, 'the URLs before the bound were crawled');
  assert.match(over.failures.at(-1)?.error ?? '', /over the bound of 10 URLs a sitemap \(ESOURCE\)/);
});

sitemaps('sitemaps a crawl reads, nested indexes and gzip inside gzip are bounded too', async (context) => {
  const { crawl } = await import('../src/index.js');
  const server = await startServer((req, res) => {
    const url = req.url ?? '/';
    const index = /^\/index-(\d+)\.xml$/.exec(url);
    res.writeHead(200, { 'Content-Type': 'application/xml' });
    // Each index lists two more: an endless tree of sitemaps.
    if (index !== null) {
      const n = Number(index[1]);
      res.end(`<?xml version="1.0"?><sitemapindex><sitemap><loc>http://x.test/index-${2 * n}.xml</loc></sitemap><sitemap><loc>http://x.test/index-${2 * n + 1}.xml</loc></sitemap></sitemapindex>`);
    } else res.end('<?xml version="1.0"?><urlset></urlset>');
  });
  try {
    const wide = await crawl({ source: `${server.url}/index-1.xml`, origin: server.url, root: context.root, sourceLimits: { maxSitemaps: 5, maxSitemapDepth: 100 } });
    assert.is(server.hits.size, 5, 'five sitemaps read, no more');
    assert.ok(wide.failures.some((failure) => /over the bound of 5 sitemaps a crawl \(ESOURCE\)/.test(failure.error)), JSON.stringify(wide.failures));
    const deep = await crawl({ source: `${server.url}/index-1.xml`, origin: server.url, root: context.root });
    assert.ok(deep.failures.some((failure) => /over the bound of 4 nested sitemap indexes \(ESOURCE\)/.test(failure.error)));
  } finally {
    await server.close();
  }
  const layered = path.join(context.dir, 'layers.xml.gz');
  await fs.writeFile(layered, gzipSync(gzipSync(gzipSync('<?xml version="1.0"?><urlset><url><loc>/page/a</loc></url></urlset>'))));
  const result = await crawl({ source: layered, origin: context.origin.url, root: context.root });
  assert.match(result.failures[0]?.error ?? '', /over the bound of 2 gzip layers \(ESOURCE\)/);
});

sitemaps('sitemap indexes that list each other (and themselves) are each read once', async (context) => {
  const { crawl } = await import('../src/index.js');
  const server = await startServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/xml' });
    if (req.url === '/a.xml' || req.url === '/b.xml') {
      res.end('<?xml version="1.0"?><sitemapindex><sitemap><loc>http://x.test/a.xml</loc></sitemap><sitemap><loc>http://x.test/b.xml</loc></sitemap><sitemap><loc>http://x.test/pages.xml</loc></sitemap></sitemapindex>');
    } else res.end('<?xml version="1.0"?><urlset><url><loc>/page/a</loc></url></urlset>');
  });
  try {
    const result = await crawl({ source: `${server.url}/a.xml`, origin: server.url, root: context.root });
    assert.equal([server.hits.get('/a.xml'), server.hits.get('/b.xml'), server.hits.get('/pages.xml')], [1, 1, 1], 'each sitemap fetched once');
    assert.equal(result.failures, [], 'a loop is no failure');
  } finally {
    await server.close();
  }
});

sitemaps.run();

// ---

const lists = suite<Context>('URL lists: huge lines cost neither memory nor quadratic time, reports truncate them');
lists.before.each(setUp);
lists.after.each(tearDown);

lists('three dozen 3 MB lines among good ones: the good ones are stored, each bad one reported truncated', async (context) => {
  const bad = Buffer.alloc(3 * 1024 * 1024, 'x');
  const result = await runMeasured(context, ['crawl', '-', '--origin', context.origin.url, '--root', context.root, '--json'], async function* () {
    for (let i = 0; i < 36; i++) {
      yield Buffer.from(`/page/good-${i}\n/`);
      yield bad;
      yield Buffer.from('\n');
    }
  });
  assert.is(result.code, 1, result.stderr);
  const parsed = report(result);
  assert.is(parsed.counts.stored, 36);
  assert.is(parsed.counts.failed, 36);
  for (const failure of parsed.failures) {
    assert.match(failure.error, /over the bound of 8192 bytes a line \(ESOURCE\)/);
    assert.match(failure.url, /\.\.\. \(3145729 bytes\)$/);
    assert.ok(failure.url.length < 300);
  }
  assert.equal(parsed.failures.map((failure) => failure.line), Array.from({ length: 36 }, (_, i) => 2 * i + 2));
  assertBounded(context, result, 'huge lines');
});

lists('one 64 MB line without a newline is read in linear time and fails as one line', async (context) => {
  const piece = Buffer.alloc(64 * 1024, 'y');
  const started = Date.now();
  const result = await runMeasured(context, ['crawl', '-', '--origin', context.origin.url, '--root', context.root, '--json'], async function* () {
    yield Buffer.from('/');
    for (let i = 0; i < 1024; i++) yield piece;
  });
  assert.is(result.code, 1, result.stderr);
  const parsed = report(result);
  assert.is(parsed.counts.failed, 1);
  assert.match(parsed.failures[0]?.url ?? '', /\(67108865 bytes\)$/);
  assertBounded(context, result, 'one endless line');
  // Quadratic reading of 64 MB in 64 KiB chunks took minutes; a guard, not a timing target.
  assert.ok(Date.now() - started < 20_000, `${Date.now() - started} ms`);
});

lists.run();

// ---

interface Hosts extends Context {
  /** The host a redirect points at: on another loopback address, counting what it receives. */
  other: http.Server;
  otherUrl: string;
  otherRequests: string[];
}

const redirects = suite<Hosts>('sitemap fetches stay on the origin: a redirect elsewhere is reported, not followed');
redirects.before.each(async (context) => {
  context.otherRequests = [];
  context.other = http.createServer((req, res) => {
    context.otherRequests.push(req.url ?? '');
    res.writeHead(200, { 'Content-Type': 'application/xml' });
    res.end('<?xml version="1.0"?><urlset><url><loc>/page/from-the-other-host</loc></url></urlset>');
  });
  // Another loopback host where the system has one (Linux routes all of 127/8), else another port.
  const address = await new Promise<string>((resolve) => {
    context.other.once('error', () => context.other.listen(0, '127.0.0.1', () => resolve('127.0.0.1')));
    context.other.listen(0, '127.0.0.2', () => resolve('127.0.0.2'));
  });
  context.otherUrl = `http://${address}:${(context.other.address() as AddressInfo).port}`;
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  context.preload = path.join(context.dir, 'maxrss.mjs');
  await fs.writeFile(context.preload, "import { writeSync } from 'node:fs';\nprocess.on('exit', () => writeSync(2, `\\nmaxrss-kib=${process.resourceUsage().maxRSS}\\n`));\n");
  context.origin = await startServer((req, res) => {
    const url = req.url ?? '/';
    if (url === '/away.xml') res.writeHead(302, { Location: `${context.otherUrl}/sitemap.xml` }).end();
    else if (url === '/away-relative-host.xml') res.writeHead(301, { Location: `//${new URL(context.otherUrl).host}/sitemap.xml` }).end();
    else if (url === '/here.xml') res.writeHead(302, { Location: '/moved.xml' }).end();
    else if (url === '/moved.xml') {
      res.writeHead(200, { 'Content-Type': 'application/xml' });
      res.end('<?xml version="1.0"?><urlset><url><loc>/page/moved</loc></url></urlset>');
    } else if (url === '/index.xml') {
      res.writeHead(200, { 'Content-Type': 'application/xml' });
      res.end(`<?xml version="1.0"?><sitemapindex><sitemap><loc>https://www.example.com/away.xml</loc></sitemap><sitemap><loc>https://www.example.com/here.xml</loc></sitemap></sitemapindex>`);
    } else if (url.startsWith('/page/')) {
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      res.end(`<p>${url}</p>`);
    } else res.writeHead(404).end();
  });
});
redirects.after.each(async (context) => {
  await new Promise((resolve) => {
    context.other.closeAllConnections();
    context.other.close(resolve);
  });
  await tearDown(context);
});

redirects('the source itself redirecting to another host: exit 2 naming the redirect, the other host saw nothing', async (context) => {
  for (const source of ['/away.xml', '/away-relative-host.xml']) {
    const result = await runMeasured(context, ['crawl', `${context.origin.url}${source}`, '--origin', context.origin.url, '--root', context.root]);
    assert.is(result.code, 2, result.stderr);
    assert.match(result.stderr, /redirect \(30[12]\) to .*off the origin .*not followed/);
  }
  assert.equal(context.otherRequests, []);
  assert.equal(await listFiles(context.root), []);
});

redirects('a child of a sitemap index redirecting away: reported, not followed; one staying on the origin is followed', async (context) => {
  const result = await runMeasured(context, ['crawl', `${context.origin.url}/index.xml`, '--origin', context.origin.url, '--root', context.root, '--json']);
  assert.is(result.code, 1, result.stderr);
  const parsed = report(result);
  assert.equal(context.otherRequests, [], 'the other host received no request');
  assert.is(parsed.counts.stored, 1);
  assert.equal(await listFiles(context.root), ['page/moved/index.html']);
  assert.is(parsed.failures.length, 1);
  assert.is(parsed.failures[0]?.url, 'https://www.example.com/away.xml');
  assert.match(parsed.failures[0]?.error ?? '', `redirect (302) to ${context.otherUrl}/sitemap.xml, off the origin`);
});

redirects.run();

// ---

const follow = suite<Context>('--follow in an endless link space ends at --max-pages');
follow.before.each(async (context) => {
  context.dir = await tempDir();
  context.root = path.join(context.dir, 'cache');
  context.preload = path.join(context.dir, 'maxrss.mjs');
  await fs.writeFile(context.preload, "import { writeSync } from 'node:fs';\nprocess.on('exit', () => writeSync(2, `\\nmaxrss-kib=${process.resourceUsage().maxRSS}\\n`));\n");
  // Every page links to twenty new ones, forever.
  context.origin = await startServer((req, res) => {
    const id = (req.url ?? '/').replace(/\/$/, '');
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(Array.from({ length: 20 }, (_, i) => `<a href="${id}/${i}">${i}</a>`).join(''));
  });
});
follow.after.each(tearDown);

follow('the crawl stops at the cap with a report that says so, exit 1', async (context) => {
  const result = await runMeasured(context, ['crawl', '-', '--origin', context.origin.url, '--root', context.root, '--json', '--follow', '--max-depth', '100', '--max-pages', '300'], async function* () {
    yield Buffer.from('/s\n');
  });
  assert.is(result.code, 1, result.stderr);
  const parsed = report(result);
  assert.is(parsed.counts.stored, 300);
  assert.match(parsed.stoppedEarly ?? '', 'reached --max-pages 300');
  assert.match(result.stderr, 'crawl stopped early: reached --max-pages 300');
  assert.match(parsed.failures.at(-1)?.error ?? '', /reached --max-pages 300.*ESOURCE/);
  assert.is((await listFiles(context.root)).length, 300);
});

follow('without --max-pages, --follow is capped at 10,000 pages by default', async (context) => {
  const { crawl } = await import('../src/index.js');
  const source = path.join(context.dir, 'list.txt');
  await fs.writeFile(source, '/s\n');
  const { Readable } = await import('node:stream');
  // Through the library, to count without a 10,000-page run: a cap of 10,000 accepts --max-pages 10000.
  const capped = await crawl({ source, origin: context.origin.url, root: context.root, follow: true, maxDepth: 1, concurrency: 8, stdin: Readable.from([]) });
  assert.is(capped.counts.stored, 21, 'depth 1 ends first: 1 + 20 pages');
  assert.is(capped.stoppedEarly, undefined);
  const tiny = await crawl({ source, origin: context.origin.url, root: path.join(context.dir, 'other'), follow: true, maxDepth: 100, maxPages: 5 });
  assert.is(tiny.counts.stored, 5);
  assert.match(tiny.stoppedEarly ?? '', 'reached --max-pages 5');
});

follow.run();
