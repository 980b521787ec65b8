/**
 * Hit-path speed, every side measured with wrk on loopback in one run:
 * a. a stored page served through the generated nginx config vs plain nginx serving the same file
 *    with a minimal config (goal: >= 0.95x): the generated config's checks must cost next to nothing;
 * b. the same hits vs the fixture app behind nginx without the cache (goal: >= 20x);
 * c. the app wrapped by the middleware, every request a miss that is stored again (durable: true), vs
 *    the bare app, both requested directly (goal: >= 0.9x): what the capture costs a render.
 *
 * Each side is checked before it is measured (status, body, X-Cache), and a wrk run with any non-2xx
 * response is an error rather than a figure.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { pages, siteHandler, type Page } from '../fixtures/site/app.js';
import { createCache, type Cache } from '../src/index.js';
import { removeDir, request, startNginx, startServer, tempDir, type Nginx, type Reply, type Server } from '../test/helpers.js';
import { execBounded, within, withCleanup } from './exec.js';
import type { BenchRow } from './report.js';

const BENCH = 'hits';
const WARMUP_S = 2;
const MEASURE_S = 10;
const CONNECTIONS = 32;
const DRAIN_LIMIT_MS = 120_000;
const HIT_PAGES = ['/about', '/docs/getting-started'] as const;

interface WrkResult {
  requests: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  socketErrors?: string;
}

/** One thing wrk is pointed at. `check` proves it answers as the case claims before it is timed. */
interface Side {
  label: string;
  url: string;
  check(): Promise<void>;
  /** Called between warm-up and measurement. */
  ready?(): Promise<void>;
  /** Extra facts for the req/s row, known only after the run (e.g. stores behind the measurement). */
  after?(result: WrkResult): Promise<string | undefined>;
}

interface Measured {
  side: Side;
  result: WrkResult;
  note?: string;
}

interface Comparison {
  label: string;
  subject: Measured;
  baseline: Measured;
  goal: number;
}

interface Rig {
  cacheDir: string;
  cache: Cache;
  stores: { stored: number; skipped: number };
  /** The fixture app wrapped by the middleware; upstream of the generated config. */
  cachedApp: Server;
  /** The fixture app alone. */
  plainApp: Server;
  generated: Nginx;
  plain: Nginx;
  /** Generated config over an empty root in front of the bare app: every request proxied. */
  proxied: Nginx;
}

export async function run(): Promise<BenchRow[]> {
  return withCleanup(async (defer) => {
    const rig = await setUp(defer);
    const comparisons: Comparison[] = [];
    const hits = new Map<string, Measured>();
    for (const target of HIT_PAGES) {
      const page = pageAt(target);
      const hit = await measure(hitSide(rig, page));
      hits.set(target, hit);
      comparisons.push({ label: `a ${target}: generated config / plain nginx`, subject: hit, baseline: await measure(plainSide(rig, page)), goal: 0.95 });
    }
    const about = pageAt('/about');
    const aboutHit = hits.get('/about');
    if (aboutHit === undefined) throw new Error(`${BENCH}: /about was not measured`);
    comparisons.push({ label: 'b /about: hit / app behind nginx', subject: aboutHit, baseline: await measure(proxiedSide(rig, about)), goal: 20 });
    const captured = await measure(capturedSide(rig, about));
    comparisons.push({ label: 'c /about: app+middleware (miss) / app alone', subject: captured, baseline: await measure(bareSide(rig, about)), goal: 0.9 });
    return rows(comparisons);
  });
}

async function setUp(defer: (cleanup: () => Promise<void>) => void): Promise<Rig> {
  const cacheDir = await tempDir('prerender-bench-hits-');
  defer(() => removeDir(cacheDir));
  const emptyRoot = await tempDir('prerender-bench-empty-');
  defer(() => removeDir(emptyRoot));
  const stores = { stored: 0, skipped: 0 };
  // durable is the default; spelled out because the miss-path figure depends on it.
  const cache = createCache({ root: cacheDir, durable: true, onEvent: (event) => void stores[event.type]++ });
  defer(async () => {
    if ((await within(cache.close(), DRAIN_LIMIT_MS)) === undefined) progress('cache.close() did not finish in time');
  });
  const cachedApp = await startServer(cache.wrap(siteHandler));
  defer(() => cachedApp.close());
  const plainApp = await startServer(siteHandler);
  defer(() => plainApp.close());
  const generated = await startNginx({ root: cacheDir, upstream: cachedApp.url });
  defer(() => generated.stop());
  const plain = await startNginx({ root: cacheDir, upstream: cachedApp.url, edit: (server) => minimalServer(server, cacheDir) });
  defer(() => plain.stop());
  const proxied = await startNginx({ root: emptyRoot, upstream: plainApp.url });
  defer(() => proxied.stop());
  const rig = { cacheDir, cache, stores, cachedApp, plainApp, generated, plain, proxied };
  for (const target of HIT_PAGES) await prime(rig, pageAt(target));
  return rig;
}

/** What an nginx user would write to serve the tree by hand: no checks, no headers, no charset. */
function minimalServer(generated: string, root: string): string {
  const listen = /^\s*listen ([^;]+);/m.exec(generated)?.[1];
  if (listen === undefined) throw new Error(`${BENCH}: no listen line in the generated config`);
  return `server {
    listen ${listen};
    root "${root}";
    location / { try_files $uri $uri/index.html =404; }
}
`;
}

/** Stores the page the way production does: a miss through nginx, captured by the middleware. */
async function prime(rig: Rig, page: Page): Promise<void> {
  const miss = await request(rig.generated.port, page.target);
  expectPage(miss, page, 'priming miss', 'MISS');
  await rig.cache.idle();
  const file = path.join(rig.cacheDir, page.path.slice(1), 'index.html');
  await fs.access(file).catch(() => {
    throw new Error(`${BENCH}: ${page.path} was not stored at ${file} (stored ${rig.stores.stored}, skipped ${rig.stores.skipped})`);
  });
}

function hitSide(rig: Rig, page: Page): Side {
  let appHitsBefore = 0;
  return {
    label: `${page.path} hit, generated config`,
    url: rig.generated.url + page.target,
    async check() {
      expectPage(await request(rig.generated.port, page.target), page, 'hit', 'HIT');
      appHitsBefore = rig.cachedApp.hits.get(page.target) ?? 0;
    },
    async after() {
      const leaked = (rig.cachedApp.hits.get(page.target) ?? 0) - appHitsBefore;
      if (leaked > 0) throw new Error(`${BENCH}: ${leaked} requests for ${page.path} reached the app during the hit run`);
      return undefined;
    },
  };
}

function plainSide(rig: Rig, page: Page): Side {
  return {
    label: `${page.path} plain nginx (try_files)`,
    url: rig.plain.url + page.target,
    check: async () => expectPage(await request(rig.plain.port, page.target), page, 'plain nginx', undefined),
  };
}

function proxiedSide(rig: Rig, page: Page): Side {
  return {
    label: `${page.path} app behind nginx, no cache`,
    url: rig.proxied.url + page.target,
    check: async () => expectPage(await request(rig.proxied.port, page.target), page, 'proxied', 'MISS'),
  };
}

/**
 * Requests go straight to the wrapped app, so each is a render the middleware captures and stores.
 * Stores finish after their responses; the drain time shows how far the disk fell behind wrk.
 */
function capturedSide(rig: Rig, page: Page): Side {
  let storedBefore = 0;
  return {
    label: `${page.path} app+middleware, miss (durable)`,
    url: rig.cachedApp.url + page.target,
    check: async () => expectPage(await request(rig.cachedApp.port, page.target), page, 'direct miss', undefined),
    async ready() {
      // Warm-up stores are drained first so that the measured run is not charged for them.
      await within(rig.cache.idle(), DRAIN_LIMIT_MS);
      storedBefore = rig.stores.stored;
    },
    async after(result) {
      const started = Date.now();
      const drained = await within(rig.cache.idle().then(() => true), DRAIN_LIMIT_MS);
      const drainS = ((Date.now() - started) / 1000).toFixed(1);
      const stored = rig.stores.stored - storedBefore;
      if (drained === undefined) return `durable: true; stores still pending after ${drainS} s`;
      return `durable: true; ${stored} stored for ${result.requests} requests, drain after run ${drainS} s`;
    },
  };
}

function bareSide(rig: Rig, page: Page): Side {
  return {
    label: `${page.path} app alone`,
    url: rig.plainApp.url + page.target,
    check: async () => expectPage(await request(rig.plainApp.port, page.target), page, 'bare app', undefined),
  };
}

function expectPage(reply: Reply, page: Page, what: string, xCache: string | undefined): void {
  const problems: string[] = [];
  if (reply.status !== 200) problems.push(`status ${reply.status}`);
  if (!reply.body.equals(page.body)) problems.push(`body of ${reply.body.length} bytes differs from the page's ${page.body.length}`);
  if (reply.headers['x-cache'] !== xCache) problems.push(`X-Cache ${String(reply.headers['x-cache'])}, expected ${String(xCache)}`);
  if (problems.length > 0) throw new Error(`${BENCH}: ${what} ${page.path}: ${problems.join('; ')}`);
}

async function measure(side: Side): Promise<Measured> {
  await side.check();
  await wrk(side.url, WARMUP_S);
  await side.ready?.();
  progress(`${side.label}: measuring ${MEASURE_S} s`);
  const result = await wrk(side.url, MEASURE_S);
  const note = await side.after?.(result);
  progress(`${side.label}: ${result.rps.toFixed(0)} req/s, p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms${note === undefined ? '' : `; ${note}`}`);
  return { side, result, ...(note === undefined ? {} : { note }) };
}

async function wrk(url: string, seconds: number): Promise<WrkResult> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', url];
  const run = await execBounded('wrk', args, { timeoutMs: (seconds + 30) * 1000 });
  if (run.code !== 0) throw new Error(`${BENCH}: wrk ${args.join(' ')} exited ${run.code}: ${run.stderr}${run.stdout}`);
  return parseWrk(run.stdout);
}

function parseWrk(output: string): WrkResult {
  const number = (pattern: RegExp, what: string): RegExpExecArray => {
    const match = pattern.exec(output);
    if (match === null) throw new Error(`${BENCH}: no ${what} in wrk output:\n${output}`);
    return match;
  };
  const non2xx = /Non-2xx or 3xx responses:\s*(\d+)/.exec(output);
  if (non2xx !== null) throw new Error(`${BENCH}: ${non2xx[1]} non-2xx responses; the figures would not be of the page:\n${output}`);
  const socketErrors = /Socket errors:\s*(.+)$/m.exec(output)?.[1]?.trim();
  return {
    requests: Number(number(/^\s*(\d+) requests in /m, 'request count')[1]),
    rps: Number(number(/^Requests\/sec:\s*([\d.]+)/m, 'Requests/sec')[1]),
    p50Ms: latencyMs(number(/^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$/m, '50% latency')),
    p99Ms: latencyMs(number(/^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$/m, '99% latency')),
    ...(socketErrors === undefined ? {} : { socketErrors }),
  };
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function latencyMs(match: RegExpExecArray): number {
  return Number(match[1]) * (UNIT_MS[match[2] ?? ''] ?? Number.NaN);
}

function rows(comparisons: readonly Comparison[]): BenchRow[] {
  const out: BenchRow[] = [];
  const shown = new Set<Measured>();
  for (const comparison of comparisons) {
    for (const measured of [comparison.subject, comparison.baseline]) {
      if (shown.has(measured)) continue;
      shown.add(measured);
      out.push(...sideRows(measured));
    }
    const ratio = comparison.subject.result.rps / comparison.baseline.result.rps;
    out.push({ bench: BENCH, case: `ratio ${comparison.label}`, value: ratio, unit: 'x', note: `goal >= ${comparison.goal}x: ${ratio >= comparison.goal ? 'met' : 'NOT met'}` });
  }
  return out;
}

function sideRows({ side, result, note }: Measured): BenchRow[] {
  const notes = [note, result.socketErrors === undefined ? undefined : `socket errors: ${result.socketErrors}`, `wrk -t1 -c${CONNECTIONS} ${MEASURE_S}s`]
    .filter((text) => text !== undefined);
  return [
    { bench: BENCH, case: `${side.label}: throughput`, value: result.rps, unit: 'req/s', note: notes.join('; ') },
    { bench: BENCH, case: `${side.label}: p50`, value: result.p50Ms, unit: 'ms' },
    { bench: BENCH, case: `${side.label}: p99`, value: result.p99Ms, unit: 'ms' },
  ];
}

function pageAt(target: string): Page {
  const page = pages.find((candidate) => candidate.target === target);
  if (page === undefined) throw new Error(`${BENCH}: the fixture has no page ${target}`);
  return page;
}

function progress(message: string): void {
  process.stderr.write(`${BENCH}: ${message}\n`);
}
