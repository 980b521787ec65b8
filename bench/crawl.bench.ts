/**
 * Crawl speed and memory, through the real CLI (bin/prerender.js, built dist/) in a child process:
 * a. 3,000 distinct pages of a few KB from a loopback nginx origin, `prerender crawl` against
 *    `wget2 -i` on the same URL list, both 8 at a time (goal: ratio <= 1.5). Wall time
 *    includes each program's start-up; median of 5 runs each, taking turns.
 *    Also timed, taking turns with the two: a fresh node process that only fetches the same list 8 at
 *    a time and writes nothing, the floor under any crawler written for Node; and the store floor, the
 *    same fetches with each page flushed and renamed into place and nothing else (STORE_FLOOR_SCRIPT),
 *    the floor under any Node crawler that keeps invariant 3. And the system calls of
 *    each tool's on-disk layout alone, synchronously, to show what one stored page costs the kernel.
 * b. peak RSS of `prerender crawl` over 1k, 10k, 100k and 1M URLs from an nginx that answers every
 *    path at once. Goal: at most 64 bytes more a URL, from 10k to 1M ((rss 1M - rss 10k) / 990,000):
 *    the source is streamed, the report's lists are bounded, and what grows is the seen-set (exact
 *    deduplication, a typed array of hashes). The 1M crawl stores a million pages (three million
 *    inodes) and takes many minutes.
 *
 * `BENCH_CRAWL_CASES=b` runs one case (default `a,b`); `BENCH_CRAWL_SIZES=10000,1000000` picks the
 * sizes of case b. Every run is checked to have stored every URL; a run that did not is an error, not
 * a figure.
 */
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { cliPath, listFiles, removeDir, request, startNginx, tempDir, type Nginx } from '../test/helpers.js';
import { execBounded, median, withCleanup, type Execution } from './exec.js';
import type { BenchRow } from './report.js';

const BENCH = 'crawl';
const PAGES = 3_000;
const RUNS = 5;
const CONCURRENCY = 8;
/** Case a's goal: prerender takes at most this many times wget2's wall time. */
const SPEED_GOAL = 1.5;
const CASES = listFromEnv('BENCH_CRAWL_CASES', ['a', 'b']);
const RSS_SIZES = listFromEnv('BENCH_CRAWL_SIZES', ['1000', '10000', '100000', '1000000']).map(Number);
const RSS_CONCURRENCY = 16;
/** Each crawl is killed past this (case a), or past this much a URL (case b; 1M URLs take many minutes). */
const CRAWL_LIMIT_MS = 600_000;
const CRAWL_LIMIT_MS_A_URL = 6;
/** Case b's goal: peak RSS grows by at most this much a URL, from 10k URLs to 1M. */
const RSS_GOAL_BYTES_A_URL = 64;
const TIME_BIN = '/usr/bin/time';
/** startNginx wants an upstream for the generated block, which these origins replace wholesale. */
const UNUSED_UPSTREAM = 'http://127.0.0.1:9';
const SMALL_PAGE = '<!doctype html><html><head><meta charset=utf-8><title>bench</title></head><body><p>a small page</p></body></html>';

type Defer = (cleanup: () => Promise<void>) => void;
type Tool = 'prerender' | 'wget2' | 'fetch only' | 'store floor';

interface CrawlJson {
  counts: { stored: number; skipped: number; failed: number; total: number };
  durationMs: number;
  failures: Array<{ url: string; error: string }>;
}

export async function run(): Promise<BenchRow[]> {
  return withCleanup(async (defer) => {
    const work = await tempDir('prerender-bench-crawl-');
    defer(() => removeDir(work));
    const speed = CASES.includes('a') ? await speedRows(work, defer) : [];
    const memory = CASES.includes('b') ? await memoryRows(work, defer) : [];
    return [...speed, ...memory];
  });
}

// --- a. speed against wget2 -------------------------------------------------------------------------

async function speedRows(work: string, defer: Defer): Promise<BenchRow[]> {
  const site = path.join(work, 'site');
  await writeSite(site);
  const origin = await startNginx({ root: site, upstream: UNUSED_UPSTREAM, edit: (server) => staticServer(server, site) });
  defer(() => origin.stop());
  await expectHtml(origin, '/p/0', pageBody(0));
  const list = path.join(work, 'urls.txt');
  await fs.writeFile(list, Array.from({ length: PAGES }, (_, i) => `${origin.url}/p/${i}\n`).join(''));

  const times: Record<Tool, number[]> = { prerender: [], wget2: [], 'fetch only': [], 'store floor': [] };
  const tools = Object.keys(times) as Tool[];
  // Round 0 is a warm-up: nginx's first pass over the files and the tools' first start-up are not timed.
  for (let round = 0; round <= RUNS; round++) {
    // Each tool takes each place in the order in turn, so none always runs right after another.
    const order = tools.map((_, i) => tools[(i + round) % tools.length] as Tool);
    for (const tool of order) {
      const seconds = await timedCrawl(tool, path.join(work, `out-${tool.replace(' ', '-')}-${round}`), list, origin);
      progress(`${tool} ${round === 0 ? 'warm-up' : `run ${round}/${RUNS}`}: ${PAGES} pages in ${seconds.toFixed(2)} s`);
      if (round > 0) times[tool].push(seconds);
    }
  }
  const layout = await layoutRows(work);
  const wget2 = median(times.wget2);
  const ratio = median(times.prerender) / wget2;
  const floorRatio = median(times['fetch only']) / wget2;
  const storeFloor = median(times['store floor']);
  return [
    timeRow('prerender crawl', times.prerender),
    timeRow('wget2 -i', times.wget2),
    timeRow('node:http fetch only, nothing written', times['fetch only']),
    timeRow('node:http fetch + each page stored durably, nothing else', times['store floor']),
    { bench: BENCH, case: `ratio prerender/wget2, ${PAGES} pages`, value: ratio, unit: 'x', note: `goal <= ${SPEED_GOAL}x (issue 15): ${ratio <= SPEED_GOAL ? 'met' : 'NOT met'}` },
    { bench: BENCH, case: 'ratio node:http fetch only/wget2', value: floorRatio, unit: 'x', note: 'no goal: a Node process that only fetches, against wget2 fetching and writing' },
    { bench: BENCH, case: 'ratio store floor/wget2', value: storeFloor / wget2, unit: 'x', note: 'the floor under the goal: a Node process that fetches and stores each page as the contract asks (flushed before its rename), with no policy, index or batching' },
    { bench: BENCH, case: 'ratio prerender/store floor', value: median(times.prerender) / storeFloor, unit: 'x', note: 'no goal: what prerender costs above that floor (policy, records, purge checks, its batching)' },
    ...layout,
  ];
}

/**
 * The system calls each tool's layout needs for PAGES pages, made synchronously in this process with
 * nothing else around them: wget2 creates one file a page; prerender makes the page's directory,
 * writes the page to a temp file (mtime set, inode read) that it renames into place, and appends the
 * index records once for every batch of BATCH pages (one meta append, one tag-log append). No fsync
 * here, in either: the flush is measured by the crawl rows. Fresh directories, nothing deleted; best of 3.
 */
async function layoutRows(work: string): Promise<BenchRow[]> {
  const BATCH = 256;
  const body = Buffer.from(pageBody(0));
  const record = `\n${JSON.stringify({ urlPath: '/p/0', file: 'p/0/index.html', tags: ['t'], renderedAt: 0, storedAt: 0, expiresAt: null, mediaType: 'text/html', size: body.length, mtime: 0, ino: 1, birth: 0 })}\t0\n`;
  const best = { wget2: Infinity, prerender: Infinity };
  for (let round = 0; round < 3; round++) {
    const base = path.join(work, `layout-${round}`);
    for (const dir of ['wget2/p', 'prerender/p', 'prerender/tmp', 'prerender/meta', 'prerender/tags']) await fs.mkdir(path.join(base, dir), { recursive: true });
    await execBounded('sync', [], { timeoutMs: 120_000 });
    const wget2 = (): number => timeSync(() => {
      for (let i = 0; i < PAGES; i++) writeWhole(path.join(base, 'wget2', 'p', String(i)), body);
    });
    const prerender = (): number => timeSync(() => {
      const meta = fsSync.openSync(path.join(base, 'prerender', 'meta', 'segment.log'), 'a', 0o644);
      try {
        for (let i = 0; i < PAGES; i++) {
          if (i % BATCH === 0) {
            const records = Math.min(BATCH, PAGES - i);
            fsSync.writeSync(meta, record.repeat(records));
            fsSync.appendFileSync(path.join(base, 'prerender', 'tags', 't.log'), `\np/${i}/index.html\t0\n`.repeat(records));
          }
          const dir = path.join(base, 'prerender', 'p', String(i));
          fsSync.mkdirSync(dir);
          const temp = path.join(base, 'prerender', 'tmp', `${i}.tmp`);
          const fd = fsSync.openSync(temp, 'wx', 0o644);
          try {
            fsSync.writeSync(fd, body);
            fsSync.futimesSync(fd, 1, 1);
            fsSync.fstatSync(fd);
          } finally {
            fsSync.closeSync(fd);
          }
          fsSync.renameSync(temp, path.join(dir, 'index.html'));
        }
      } finally {
        fsSync.closeSync(meta);
      }
    });
    // Taking turns: whichever goes second also pays for the first one's writeback.
    if (round % 2 === 0) {
      best.wget2 = Math.min(best.wget2, wget2());
      best.prerender = Math.min(best.prerender, prerender());
    } else {
      best.prerender = Math.min(best.prerender, prerender());
      best.wget2 = Math.min(best.wget2, wget2());
    }
  }
  const perPage = (seconds: number): string => `${(seconds / PAGES * 1e6).toFixed(0)} µs a page`;
  return [
    { bench: BENCH, case: `system calls of wget2's layout, ${PAGES} pages`, value: best.wget2, unit: 's', note: `${perPage(best.wget2)}: create, write, close; best of 3` },
    { bench: BENCH, case: `system calls of prerender's layout, ${PAGES} pages`, value: best.prerender, unit: 's', note: `${perPage(best.prerender)}: mkdir; temp created, written, mtime set, inode read, closed, renamed; index records appended once a ${BATCH}-page batch; best of 3` },
    { bench: BENCH, case: 'ratio layouts prerender/wget2', value: best.prerender / best.wget2, unit: 'x', note: 'no goal: the file-system work one stored page costs against one wget2 file, without flushes' },
  ];
}

function writeWhole(file: string, data: Buffer): void {
  const fd = fsSync.openSync(file, 'wx', 0o644);
  try {
    fsSync.writeSync(fd, data);
  } finally {
    fsSync.closeSync(fd);
  }
}

function timeSync(work: () => void): number {
  const started = process.hrtime.bigint();
  work();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

/**
 * The floor under any crawler written for Node: a fresh `node` (no loader, like bin/prerender.js)
 * fetching the same list 8 at a time over keep-alive, bodies read and dropped. Argument: port, pages,
 * concurrency; prints the bytes read.
 */
const FETCH_ONLY_SCRIPT = `
const [port, pages, concurrency] = process.argv.slice(1).map(Number);
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
let next = 0;
let bytes = 0;
const fetchOne = (target) => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, path: target, agent }, (response) => {
    let received = 0;
    response.on('data', (chunk) => { received += chunk.length; });
    response.on('end', () => (response.statusCode === 200 ? resolve(received) : reject(new Error(target + ': ' + response.statusCode))));
    response.on('error', reject);
  }).on('error', reject);
});
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < pages) {
    const received = await fetchOne('/p/' + next++);
    bytes += received;
  }
}));
agent.destroy();
process.stdout.write(String(bytes));
`;

/**
 * The floor under the goal for any Node crawler that keeps the contract's write rule (invariant 3: a
 * file renamed into a served path was flushed first): the fetch above, and each page stored the
 * cheapest way that rule allows, in prerender's layout (a directory a page, mtime set, inode read),
 * every call through libuv's thread pool as Node's async fs makes them. No policy, no index records,
 * no purge checks, no batching. Arguments: port, pages, concurrency, output directory.
 */
const STORE_FLOOR_SCRIPT = `
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
const [port, pages, concurrency] = process.argv.slice(1, 4).map(Number);
const out = process.argv[4];
const call = (f, ...args) => new Promise((resolve, reject) => f(...args, (error, value) => (error ? reject(error) : resolve(value))));
const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
fs.mkdirSync(path.join(out, 'tmp'), { recursive: true });
fs.mkdirSync(path.join(out, 'p'), { recursive: true });
const fetchOne = (target) => new Promise((resolve, reject) => {
  http.get({ host: '127.0.0.1', port, path: target, agent }, (response) => {
    const chunks = [];
    response.on('data', (chunk) => chunks.push(chunk));
    response.on('end', () => (response.statusCode === 200 ? resolve(chunks) : reject(new Error(target + ': ' + response.statusCode))));
    response.on('error', reject);
  }).on('error', reject);
});
const store = async (i, chunks) => {
  const temp = path.join(out, 'tmp', i + '.tmp');
  const fd = await call(fs.open, temp, fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_WRONLY, 0o644);
  await call(fs.writev, fd, chunks);
  await call(fs.futimes, fd, 1e9, 1e9);
  await call(fs.fstat, fd);
  await call(fs.fdatasync, fd);
  await call(fs.close, fd);
  await call(fs.mkdir, path.join(out, 'p', String(i)), 0o755);
  await call(fs.rename, temp, path.join(out, 'p', String(i), 'index.html'));
};
let next = 0;
const storing = [];
await Promise.all(Array.from({ length: concurrency }, async () => {
  while (next < pages) {
    const i = next++;
    storing.push(store(i, await fetchOne('/p/' + i)));
  }
}));
await Promise.all(storing);
agent.destroy();
`;

/** Distinct pages of about 4 KB, as a site's HTML would be, as extensionless files nginx serves as HTML. */
async function writeSite(site: string): Promise<void> {
  const dir = path.join(site, 'p');
  await fs.mkdir(dir, { recursive: true, mode: 0o755 });
  for (let i = 0; i < PAGES; i++) await fs.writeFile(path.join(dir, String(i)), pageBody(i), { mode: 0o644 });
}

function pageBody(i: number): string {
  const paragraph = `<p>Page ${i}: the quick brown fox jumps over the lazy dog, and every page says so in its own words.</p>\n`;
  return `<!doctype html>\n<html><head><meta charset="utf-8"><title>Page ${i}</title></head><body><h1>Page ${i}</h1>\n${paragraph.repeat(36)}</body></html>\n`;
}

function staticServer(generated: string, root: string): string {
  return `server {
    listen ${listenOf(generated)};
    root "${root}";
    default_type text/html;
    charset utf-8;
    location / { try_files $uri =404; }
}
`;
}

/**
 * One crawl into a fresh directory. The previous run's files are synced to disk first, so that neither
 * tool is charged for the other's writeback (prerender fsyncs each file; wget2 does not). No output is
 * deleted before the last run (they go with `work`): this VM's ext4 runs without a journal, and in
 * that mode it will not reuse an inode freed in the last minute (five when its block is dirty), so
 * every file created after a large deletion scans past the freed inodes one by one (perf: 27% of a
 * crawl's samples in find_inode_bit -> recently_deleted). A tool that creates three inodes a page
 * (prerender: directory, page, index record) pays three times what wget2 pays for one. Deletions made
 * before the bench (the test suite's) still count: run it on a quiet file system.
 */
async function timedCrawl(tool: Tool, out: string, list: string, origin: Nginx): Promise<number> {
  await fs.mkdir(out, { mode: 0o755 });
  await execBounded('sync', [], { timeoutMs: 120_000 });
  if (tool === 'prerender') {
    const run = await execBounded(process.execPath, crawlArgs(list, origin, out, CONCURRENCY), { timeoutMs: CRAWL_LIMIT_MS });
    expectCrawl(run, PAGES, 'prerender crawl');
    return run.ms / 1000;
  }
  if (tool === 'store floor') {
    // The thread pool as bin/prerender.js sizes it, so the flushes overlap alike.
    const run = await execBounded(process.execPath, ['--input-type=module', '-e', STORE_FLOOR_SCRIPT, String(origin.port), String(PAGES), String(CONCURRENCY), out], { timeoutMs: CRAWL_LIMIT_MS, env: { ...process.env, UV_THREADPOOL_SIZE: '16' } });
    const files = run.code === 0 ? (await listFiles(path.join(out, 'p'))).length : 0;
    if (files !== PAGES) throw new Error(`${BENCH}: the store floor exited ${run.code ?? run.signal} with ${files} of ${PAGES} pages: ${run.stderr.slice(0, 2000)}`);
    return run.ms / 1000;
  }
  if (tool === 'fetch only') {
    const run = await execBounded(process.execPath, ['--input-type=module', '-e', FETCH_ONLY_SCRIPT, String(origin.port), String(PAGES), String(CONCURRENCY)], { timeoutMs: CRAWL_LIMIT_MS });
    const expected = PAGES * pageBody(0).length;
    if (run.code !== 0 || Number(run.stdout) < expected) {
      throw new Error(`${BENCH}: fetch only exited ${run.code ?? run.signal} after ${run.stdout || 0} of at least ${expected} bytes: ${run.stderr.slice(0, 2000)}`);
    }
    return run.ms / 1000;
  }
  const run = await execBounded('wget2', [
    '--max-threads', String(CONCURRENCY), '--input-file', list, '--directory-prefix', out,
    '--quiet', '--no-robots', '--force-directories', '--no-host-directories', '--tries', '1',
  ], { timeoutMs: CRAWL_LIMIT_MS });
  if (run.code !== 0) throw new Error(`${BENCH}: wget2 exited ${run.code ?? run.signal}: ${run.stderr.slice(0, 2000)}`);
  const files = (await listFiles(out)).length;
  if (files !== PAGES) throw new Error(`${BENCH}: wget2 wrote ${files} files, expected ${PAGES}`);
  return run.ms / 1000;
}

function timeRow(label: string, seconds: readonly number[]): BenchRow {
  const value = median(seconds);
  return {
    bench: BENCH,
    case: `${label}, ${PAGES} pages`,
    value,
    unit: 's',
    note: `median of ${seconds.map((s) => s.toFixed(2)).join(', ')} s; ${Math.round(PAGES / value)} pages/s; concurrency ${CONCURRENCY}; incl. start-up`,
  };
}

// --- b. peak RSS over 1k to 1M URLs --------------------------------------------------------------------

async function memoryRows(work: string, defer: Defer): Promise<BenchRow[]> {
  await fs.access(TIME_BIN).catch(() => {
    throw new Error(`${BENCH}: ${TIME_BIN} is missing (apt-get install -y time)`);
  });
  const origin = await startNginx({ root: work, upstream: UNUSED_UPSTREAM, edit: fixedPageServer });
  defer(() => origin.stop());
  await expectHtml(origin, '/r/0', SMALL_PAGE);

  const peaks = new Map<number, number>();
  const out: BenchRow[] = [];
  for (const size of RSS_SIZES) {
    const list = path.join(work, `paths-${label(size)}.txt`);
    await writeList(list, size);
    const load = (await fs.readFile('/proc/loadavg', 'utf8').catch(() => '?')).split(' ').slice(0, 3).join(' ');
    const { peakBytes, report } = await measuredCrawl(list, size, origin, work);
    await fs.rm(list, { force: true });
    progress(`${label(size)} URLs: peak RSS ${(peakBytes / 1e6).toFixed(1)} MB, crawl ${(report.durationMs / 1000).toFixed(1)} s, load before ${load}`);
    peaks.set(size, peakBytes);
    out.push({
      bench: BENCH,
      case: `peak RSS, ${label(size)} URLs`,
      value: peakBytes / 1e6,
      unit: 'MB',
      note: `${size} stored in ${(report.durationMs / 1000).toFixed(1)} s (${Math.round(size / (report.durationMs / 1000))}/s); concurrency ${RSS_CONCURRENCY}; /usr/bin/time -v; load average before: ${load}`,
    });
  }
  const growth = (from: number, to: number): BenchRow | undefined => {
    const low = peaks.get(from);
    const high = peaks.get(to);
    if (low === undefined || high === undefined) return undefined;
    const perUrl = (high - low) / (to - from);
    const goal = from === 10_000 && to === 1_000_000;
    return {
      bench: BENCH,
      case: `peak RSS growth a URL, ${label(to)} vs ${label(from)}`,
      value: perUrl,
      unit: 'B',
      note: goal ? `goal <= ${RSS_GOAL_BYTES_A_URL} bytes a URL: ${perUrl <= RSS_GOAL_BYTES_A_URL ? 'met' : 'NOT met'}` : `(${(high / 1e6).toFixed(1)} - ${(low / 1e6).toFixed(1)} MB) / ${to - from} URLs`,
    };
  };
  for (const [from, to] of [[10_000, 1_000_000], [1_000, 100_000], [10_000, 100_000], [100_000, 1_000_000]] as const) {
    const row = growth(from, to);
    if (row !== undefined) out.push(row);
  }
  return out;
}

/** The list of case b, written in pieces: a million lines need not be one string. */
async function writeList(file: string, size: number): Promise<void> {
  const handle = await fs.open(file, 'w');
  try {
    for (let start = 0; start < size; start += 10_000) {
      await handle.write(Array.from({ length: Math.min(10_000, size - start) }, (_, i) => `/r/${start + i}\n`).join(''));
    }
  } finally {
    await handle.close();
  }
}

/** An origin that costs next to nothing per request, so the crawler's own memory is what is measured. */
function fixedPageServer(generated: string): string {
  return `server {
    listen ${listenOf(generated)};
    default_type text/html;
    charset utf-8;
    location / { return 200 "${SMALL_PAGE}"; }
}
`;
}

async function measuredCrawl(list: string, size: number, origin: Nginx, work: string): Promise<{ peakBytes: number; report: CrawlJson }> {
  const out = path.join(work, `rss-${label(size)}`);
  try {
    const limit = Math.max(CRAWL_LIMIT_MS, size * CRAWL_LIMIT_MS_A_URL);
    const run = await execBounded(TIME_BIN, ['-v', process.execPath, ...crawlArgs(list, origin, out, RSS_CONCURRENCY)], { timeoutMs: limit });
    const report = expectCrawl(run, size, `prerender crawl of ${label(size)}`);
    const peak = /Maximum resident set size \(kbytes\):\s*(\d+)/.exec(run.stderr)?.[1];
    if (peak === undefined) throw new Error(`${BENCH}: no peak RSS in the output of ${TIME_BIN} -v:\n${run.stderr.slice(-2000)}`);
    return { peakBytes: Number(peak) * 1024, report };
  } finally {
    // rm -r, not fs.rm: a million directories go faster, and no JS array of their names is built.
    await execBounded('rm', ['-rf', out], { timeoutMs: CRAWL_LIMIT_MS * 3 });
  }
}

// --- shared -----------------------------------------------------------------------------------------------

function crawlArgs(list: string, origin: Nginx, root: string, concurrency: number): string[] {
  return [cliPath, 'crawl', list, '--origin', origin.url, '--concurrency', String(concurrency), '--root', root, '--json'];
}

function expectCrawl(run: Execution, expected: number, what: string): CrawlJson {
  if (run.code !== 0) throw new Error(`${BENCH}: ${what} exited ${run.code ?? run.signal}:\n${run.stderr.slice(-2000)}\n${run.stdout.slice(0, 2000)}`);
  const report = JSON.parse(run.stdout) as CrawlJson;
  if (report.counts.stored !== expected) {
    throw new Error(`${BENCH}: ${what} stored ${report.counts.stored} of ${expected} (failed ${report.counts.failed}, skipped ${report.counts.skipped}): ${JSON.stringify(report.failures.slice(0, 3))}`);
  }
  return report;
}

async function expectHtml(origin: Nginx, target: string, body: string): Promise<void> {
  const reply = await request(origin.port, target);
  const type = reply.headers['content-type'];
  if (reply.status !== 200 || type !== 'text/html; charset=utf-8' || reply.body.toString() !== body) {
    throw new Error(`${BENCH}: origin ${target} answered ${reply.status} ${String(type)} with ${reply.body.length} bytes, not the page`);
  }
}

function listenOf(generated: string): string {
  const listen = /^\s*listen ([^;]+);/m.exec(generated)?.[1];
  if (listen === undefined) throw new Error(`${BENCH}: no listen line in the generated config`);
  return listen;
}

function label(size: number): string {
  if (size >= 1_000_000) return `${size / 1_000_000}M`;
  return size >= 1000 ? `${size / 1000}k` : String(size);
}

/** A comma-separated list from the environment, or `fallback`. */
function listFromEnv(name: string, fallback: readonly string[]): string[] {
  const value = process.env[name]?.trim();
  return value === undefined || value === '' ? [...fallback] : value.split(',').map((item) => item.trim());
}

function progress(message: string): void {
  process.stderr.write(`${BENCH}: ${message}\n`);
}
