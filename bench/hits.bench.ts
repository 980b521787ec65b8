/**
 * Hit-path speed, every side measured with wrk on loopback in one run:
 * a. stored pages (and an asset) served through the generated nginx config vs plain nginx serving the
 *    same files with a minimal config (goal: >= 0.95x): the generated config's checks must cost next
 *    to nothing;
 * b. hits vs the fixture app behind nginx without the cache (goal: >= 20x), for a blog post the app
 *    renders on every request (fixtures/site/posts.ts; its render cost is measured and shown), and for
 *    a constant page the app answers from memory, the least a hit can save (no goal);
 * c. the app wrapped by the middleware, every request a miss that is captured and stored (durable:
 *    true), vs the bare app, both requested directly: what the capture costs a render. For the posts,
 *    wrk cycles through all of them, so each request is a different page from the one before (goal
 *    >= 0.9x); but a post comes round again within the coalescing linger, so some are answered from
 *    memory. The issue-15 figure (throughput >= 0.95x, p99 <= 1.5x) uses a new path for every request
 *    (`/p/<n>`, ~19 KB, bench/burst-app.ts), with each app in a child process of its own.
 *
 * HITS_CASES=c (any of the letters a, b, c; default all) runs only those cases, so the miss path can be
 * measured without the minutes of valgrind that case a' takes.
 *
 * Each side is checked before it is measured (status, body, X-Cache), and a wrk run with any non-2xx
 * response is an error rather than a figure. The two sides of a comparison take turns (A B, B A, ...,
 * 2 s each) because this machine's speed changes by the second, and the ratio shown is the median of
 * the six turns' ratios: a burst of other load spoils one turn, not the figure. (Throughput moved by
 * up to 15% between runs of the same config; nginx worker CPU per request, also tried, moved with it:
 * nginx is CPU-bound under wrk, so it measured the same thing.)
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { pages, siteHandler, type Page } from '../fixtures/site/app.js';
import { POST_COUNT, postPath, renderPost } from '../fixtures/site/posts.js';
import type * as Prerender from '../src/index.js';
import { removeDir, request, startNginx, startServer, tempDir, type Nginx, type Reply, type Server } from '../test/helpers.js';
import { burstPage, PAGE_BYTES, startBurstApp, type BurstApp } from './burst-app.js';
import { execBounded, median, within, withCleanup } from './exec.js';
import { hitCostUnavailable, hitCosts, type CostedPage } from './hit-cost.js';
import type { BenchRow } from './report.js';

type Cache = Prerender.Cache;

const BENCH = 'hits';
const WARMUP_S = 2;
/** Each side of a comparison runs this many times, taking turns with the other. */
const TURNS = 6;
const TURN_S = 2;
const CONNECTIONS = 32;
const DRAIN_LIMIT_MS = 120_000;
const HIT_PAGES = ['/about', '/docs/getting-started', '/style.css'] as const;
const RENDERED = 1;
/** Hits a page in each counted run (costRows); enough that start-up effects are well under 1%. */
const COUNTED_HITS = 1000;
/** wrk asks for every post in turn: each request of the miss-path run is a different page. */
const CYCLE_POSTS = `local i = 0
request = function()
  i = i % ${POST_COUNT} + 1
  return wrk.format(nil, "/posts/" .. i)
end
`;
/**
 * A path never asked for before, every request: the start comes from the clock so that the turns of
 * one run (seconds apart) do not meet, and stays below 1e10 so Lua prints it as an integer.
 */
const NEW_PATHS = `local i = (os.time() % 100000) * 100000
request = function()
  i = i + 1
  return wrk.format(nil, "/p/" .. i)
end
`;

/** One wrk run. */
interface Segment {
  requests: number;
  seconds: number;
  p50Ms: number;
  p99Ms: number;
  socketErrors?: string;
}

/** One thing wrk is pointed at. `check` proves it answers as the case claims before it is timed. */
interface Side {
  label: string;
  url: string;
  /** A wrk Lua script choosing each request's path. */
  script?: string;
  check(): Promise<void>;
  /** Called before each timed run. */
  ready?(): Promise<void>;
  /** Called after each timed run; may throw when the run did not measure what it claims, or add a note. */
  after?(segment: Segment): Promise<string | undefined>;
}

interface Measured {
  side: Side;
  segments: Segment[];
  notes: string[];
}

interface Comparison {
  label: string;
  subject: Measured;
  baseline: Measured;
  /** Undefined for a figure shown for context only. */
  goal: number | undefined;
  /** When set, the ratio of p99 latencies (subject / baseline) is shown too, against `goal` if any. */
  p99?: { goal: number | undefined };
  note?: string;
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
  cycleScript: string;
}

/** Which of the cases a, b, c to run (HITS_CASES); all by default. */
function selectedCases(): Set<string> {
  const letters = (process.env.HITS_CASES ?? 'abc').toLowerCase();
  const unknown = [...letters].filter((letter) => !'abc'.includes(letter));
  if (unknown.length > 0 || letters === '') throw new Error(`${BENCH}: HITS_CASES must be letters among a, b, c; got ${JSON.stringify(letters)}`);
  return new Set(letters);
}

export async function run(): Promise<BenchRow[]> {
  const cases = selectedCases();
  return withCleanup(async (defer) => {
    const rig = await setUp(defer);
    const comparisons: Comparison[] = [];
    const about = pageAt('/about');
    const post = postPage(RENDERED);
    const renderUs = renderMicroseconds();
    const renderNote = `a ${(post.body.length / 1024).toFixed(1)} KiB page the app renders in ${renderUs.toFixed(0)} µs (in-process, mean)`;
    if (cases.has('a')) {
      for (const target of HIT_PAGES) {
        const page = pageAt(target);
        const [hit, plain] = await measurePair(hitSide(rig, page), plainSide(rig, page));
        comparisons.push({ label: `a ${target}: generated config / plain nginx`, subject: hit, baseline: plain, goal: 0.95 });
      }
    }
    if (cases.has('b')) {
      // The hit and the app behind nginx take turns, as in a, so drift between runs hits both alike.
      const [postHit, postProxied] = await measurePair(hitSide(rig, post), proxiedSide(rig, post));
      comparisons.push({ label: `b ${post.path}: hit / app behind nginx`, subject: postHit, baseline: postProxied, goal: 20, note: renderNote });
      const [aboutHit, aboutProxied] = await measurePair(hitSide(rig, about), proxiedSide(rig, about));
      comparisons.push({
        label: 'b /about: hit / app behind nginx', subject: aboutHit, baseline: aboutProxied, goal: undefined,
        note: 'a constant page the app answers from memory: the least a hit can save',
      });
    }
    if (cases.has('c')) {
      const [capturedPosts, barePosts] = await measurePair(capturedSide(rig, post, true), bareSide(rig, post, true));
      comparisons.push({
        label: `c /posts/*: app+middleware (miss) / app alone`, subject: capturedPosts, baseline: barePosts, goal: 0.9, p99: { goal: undefined },
        note: `${POST_COUNT} distinct posts; ${renderNote}`,
      });
      const [fresh, alone] = await newPathPair(rig, defer, 'middleware');
      comparisons.push({
        label: 'c /p/<new>: app+middleware (miss) / app alone, each in a child process', subject: fresh, baseline: alone, goal: 0.95, p99: { goal: 1.5 },
        note: `a new ${(PAGE_BYTES / 1024).toFixed(0)} KiB page every request; createCache({ root }) defaults`,
      });
      // The floor under that goal: an app storing each response itself the cheapest way (temp file +
      // rename, no fsync, no index), in its own process, against the same bare app.
      const [plain, alonePlain] = await newPathPair(rig, defer, 'plain');
      comparisons.push({
        label: 'c /p/<new>: app writing each body itself (temp + rename) / app alone: the floor', subject: plain, baseline: alonePlain, goal: undefined, p99: { goal: undefined },
        note: 'what storing every response costs an app at all, prerender or not',
      });
      const [captured, bare] = await measurePair(capturedSide(rig, about, false), bareSide(rig, about, false));
      comparisons.push({ label: 'c /about: app+middleware (miss) / app alone', subject: captured, baseline: bare, goal: undefined, note: 'a constant page: what the capture costs next to a render of nothing' });
    }
    return [
      { bench: BENCH, case: `render ${post.path} in the app`, value: renderUs, unit: 'µs', note: 'mean of 2,000 renders after 500 warm-up, in the bench process' },
      ...rows(comparisons),
      ...(cases.has('a') ? await costRows(rig) : []),
    ];
  });
}

/**
 * Case a counted instead of timed (hit-cost.ts): what a hit costs nginx in instructions and system
 * calls, through the generated config (as the bench runs it, and with `pcre_jit on`, which the README
 * recommends) and through the plain one. Immune to the VM's noise, so a config change shows here first.
 */
async function costRows(rig: Rig): Promise<BenchRow[]> {
  const missing = await hitCostUnavailable();
  if (missing !== undefined) {
    progress(`SKIPPED the counted cost of a hit: ${missing}`);
    return [];
  }
  const hit = (target: string): CostedPage => ({
    target,
    expect: (status, headers) => (status === 200 && headers['x-cache'] === 'HIT' ? undefined : `status ${status}, X-Cache ${String(headers['x-cache'])}`),
  });
  const plain = (target: string): CostedPage => ({ target, expect: (status) => (status === 200 ? undefined : `status ${status}`) });
  progress(`counting instructions and system calls of ${COUNTED_HITS} hits a page under valgrind and strace`);
  const generated = await hitCosts(rig.generated.config, HIT_PAGES.map(hit), COUNTED_HITS);
  const jit = await hitCosts(rig.generated.config.replace(/^daemon off;$/m, 'daemon off;\npcre_jit on;'), HIT_PAGES.map(hit), COUNTED_HITS);
  const bare = await hitCosts(rig.plain.config, HIT_PAGES.map(plain), COUNTED_HITS);
  const out: BenchRow[] = [];
  const how = `valgrind callgrind, nginx as one process, user space only; (${COUNTED_HITS} hits - none) / ${COUNTED_HITS}`;
  for (const target of HIT_PAGES) {
    const [ours, withJit, theirs] = [generated.get(target), jit.get(target), bare.get(target)];
    if (ours === undefined || withJit === undefined || theirs === undefined) throw new Error(`${BENCH}: no counted cost for ${target}`);
    const count = (value: number): string => Math.round(value).toLocaleString('en-US');
    out.push({
      bench: BENCH, case: `a' ${target}: instructions per hit, generated config / plain nginx`, value: ours.instructions / theirs.instructions, unit: 'x',
      note: `${count(ours.instructions)} vs ${count(theirs.instructions)}; ${how}`,
    }, {
      bench: BENCH, case: `a' ${target}: the same with pcre_jit on`, value: withJit.instructions / theirs.instructions, unit: 'x',
      note: `${count(withJit.instructions)} vs ${count(theirs.instructions)}`,
    });
    if (ours.syscalls !== undefined && theirs.syscalls !== undefined) {
      out.push({
        bench: BENCH, case: `a' ${target}: system calls per hit, generated config / plain nginx`, value: ours.syscalls / theirs.syscalls, unit: 'x',
        note: `${ours.syscalls.toFixed(1)} vs ${theirs.syscalls.toFixed(1)} (strace -c)`,
      });
    }
  }
  return out;
}

/** The post the app renders, as a fixture page: what a hit must serve byte for byte. */
function postPage(id: number): Page {
  return { path: postPath(id), target: postPath(id), contentType: 'text/html; charset=utf-8', body: Buffer.from(renderPost(id)) };
}

function renderMicroseconds(): number {
  for (let i = 0; i < 500; i++) renderPost((i % POST_COUNT) + 1);
  const started = process.hrtime.bigint();
  const renders = 2000;
  for (let i = 0; i < renders; i++) renderPost((i % POST_COUNT) + 1);
  return Number(process.hrtime.bigint() - started) / renders / 1000;
}

async function setUp(defer: (cleanup: () => Promise<void>) => void): Promise<Rig> {
  const cacheDir = await tempDir('prerender-bench-hits-');
  defer(() => removeDir(cacheDir));
  const emptyRoot = await tempDir('prerender-bench-empty-');
  defer(() => removeDir(emptyRoot));
  const stores = { stored: 0, skipped: 0, dropped: 0 };
  const { createCache } = await loadBuilt();
  // durable is the default; spelled out because the miss-path figure depends on it.
  const cache = createCache({ root: cacheDir, durable: true, onEvent: (event) => void stores[event.type]++ });
  defer(async () => {
    if ((await within(cache.close().then(() => true), DRAIN_LIMIT_MS)) === undefined) progress('cache.close() did not finish in time');
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
  const cycleScript = path.join(cacheDir, '..', `${path.basename(cacheDir)}-cycle.lua`);
  await fs.writeFile(cycleScript, CYCLE_POSTS);
  defer(() => fs.rm(cycleScript, { force: true }));
  const rig = { cacheDir, cache, stores, cachedApp, plainApp, generated, plain, proxied, cycleScript };
  for (const target of HIT_PAGES) await prime(rig, pageAt(target));
  await prime(rig, postPage(RENDERED));
  return rig;
}

/**
 * The middleware as users run it: dist/, which `npm run bench` has just built. Through tsx, src/ gets
 * esbuild's keepNames helper around every closure the middleware creates per request, which made the
 * miss path 10-20% slower in a quick A/B on this machine: a cost users never pay.
 */
async function loadBuilt(): Promise<typeof Prerender> {
  const url = new URL('../dist/index.js', import.meta.url);
  try {
    return (await import(url.href)) as typeof Prerender;
  } catch (error) {
    throw new Error(`${BENCH}: cannot load ${url.pathname} (run \`npm run build\`, or use \`npm run bench\`, which builds first)`, { cause: error });
  }
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
  const file = path.join(rig.cacheDir, page.path.slice(1), page.contentType.startsWith('text/html') ? 'index.html' : '');
  await fs.access(file).catch(() => {
    throw new Error(`${BENCH}: ${page.path} was not stored at ${file} (stored ${rig.stores.stored}, skipped ${rig.stores.skipped})`);
  });
}

function hitSide(rig: Rig, page: Page): Side {
  let appHitsBefore = 0;
  const appHits = (): number => rig.cachedApp.hits.get(page.target) ?? 0;
  return {
    label: `${page.path} hit, generated config`,
    url: rig.generated.url + page.target,
    check: async () => expectPage(await request(rig.generated.port, page.target), page, 'hit', 'HIT'),
    async ready() {
      appHitsBefore = appHits();
    },
    async after() {
      const leaked = appHits() - appHitsBefore;
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
function capturedSide(rig: Rig, page: Page, cycle: boolean): Side {
  let storedBefore = 0;
  return {
    label: `${cycle ? '/posts/*' : page.path} app+middleware, miss (durable)`,
    url: rig.cachedApp.url + page.target,
    ...(cycle ? { script: rig.cycleScript } : {}),
    check: async () => expectPage(await request(rig.cachedApp.port, page.target), page, 'direct miss', undefined),
    async ready() {
      // Stores left over from the warm-up are drained first so that this run is not charged for them.
      await within(rig.cache.idle().then(() => true), DRAIN_LIMIT_MS);
      storedBefore = rig.stores.stored;
    },
    async after(segment) {
      const started = Date.now();
      const drained = await within(rig.cache.idle().then(() => true), DRAIN_LIMIT_MS);
      const drainS = ((Date.now() - started) / 1000).toFixed(1);
      if (drained === undefined) throw new Error(`${BENCH}: stores still pending ${drainS} s after the run`);
      return `${rig.stores.stored - storedBefore} of ${segment.requests} stored, drained ${drainS} s after`;
    },
  };
}

/** Case c with a new path every request: the middleware app and the bare app, each in its own process. */
async function newPathPair(rig: Rig, defer: (cleanup: () => Promise<void>) => void, mode: 'middleware' | 'plain'): Promise<[Measured, Measured]> {
  const script = path.join(rig.cacheDir, '..', `${path.basename(rig.cacheDir)}-new-paths.lua`);
  await fs.writeFile(script, NEW_PATHS);
  defer(() => fs.rm(script, { force: true }));
  const roots = await tempDir('prerender-bench-new-paths-');
  defer(() => removeDir(roots));
  const cached = await startBurstApp(mode, path.join(roots, 'cache'));
  defer(() => cached.stop());
  const alone = await startBurstApp('alone', path.join(roots, 'unused'));
  defer(() => alone.stop());
  const what = mode === 'middleware' ? 'app+middleware, miss (defaults)' : 'app writing each body (temp + rename)';
  return measurePair(newPathSide(cached, what, script, true), newPathSide(alone, 'app alone', script, false));
}

function newPathSide(app: BurstApp, what: string, script: string, captured: boolean): Side {
  let storedBefore = 0;
  const side: Side = {
    label: `/p/<new> ${what}`,
    url: `http://127.0.0.1:${app.port}/p/0`,
    script,
    async check() {
      const reply = await request(app.port, '/p/1');
      if (reply.status !== 200 || !reply.body.equals(burstPage(1))) throw new Error(`${BENCH}: ${what} /p/1: status ${reply.status}, ${reply.body.length} bytes`);
    },
  };
  if (!captured) return side;
  return {
    ...side,
    async ready() {
      // Stores left from the warm-up or the turn before are drained first, so this turn is not charged for them.
      storedBefore = (await app.idle()).stored;
    },
    async after(segment) {
      const started = performance.now();
      const { stored } = await app.idle();
      return `${stored - storedBefore} of ${segment.requests} stored, drained ${((performance.now() - started) / 1000).toFixed(1)} s after`;
    },
  };
}

function bareSide(rig: Rig, page: Page, cycle: boolean): Side {
  return {
    label: `${cycle ? '/posts/*' : page.path} app alone`,
    url: rig.plainApp.url + page.target,
    ...(cycle ? { script: rig.cycleScript } : {}),
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

/**
 * Both sides warm up, then take turns in A B B A order, half the measuring time each turn, so a change
 * in the machine's load during the comparison hits both sides alike.
 */
async function measurePair(subject: Side, baseline: Side): Promise<[Measured, Measured]> {
  const a = await warmUp(subject);
  const b = await warmUp(baseline);
  for (let turn = 0; turn < TURNS; turn++) {
    for (const measured of turn % 2 === 0 ? [a, b] : [b, a]) await segment(measured);
  }
  return [a, b];
}

async function warmUp(side: Side): Promise<Measured> {
  await side.check();
  await wrk(side, WARMUP_S);
  return { side, segments: [], notes: [] };
}

async function segment(measured: Measured): Promise<void> {
  const { side } = measured;
  await side.ready?.();
  const result = await wrk(side, TURN_S);
  const note = await side.after?.(result);
  measured.segments.push(result);
  if (note !== undefined) measured.notes.push(note);
  const rps = result.requests / result.seconds;
  progress(`${side.label}: ${rps.toFixed(0)} req/s, p50 ${result.p50Ms.toFixed(2)} ms, p99 ${result.p99Ms.toFixed(2)} ms${note === undefined ? '' : `; ${note}`}`);
}

async function wrk(side: Side, seconds: number): Promise<Segment> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${seconds}s`, '--latency', ...(side.script === undefined ? [] : ['-s', side.script]), side.url];
  const run = await execBounded('wrk', args, { timeoutMs: (seconds + 30) * 1000 });
  if (run.code !== 0) throw new Error(`${BENCH}: wrk ${args.join(' ')} exited ${run.code}: ${run.stderr}${run.stdout}`);
  return parseWrk(run.stdout);
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 };

function parseWrk(output: string): Segment {
  const number = (pattern: RegExp, what: string): RegExpExecArray => {
    const match = pattern.exec(output);
    if (match === null) throw new Error(`${BENCH}: no ${what} in wrk output:\n${output}`);
    return match;
  };
  const non2xx = /Non-2xx or 3xx responses:\s*(\d+)/.exec(output);
  if (non2xx !== null) throw new Error(`${BENCH}: ${non2xx[1]} non-2xx responses; the figures would not be of the page:\n${output}`);
  const socketErrors = /Socket errors:\s*(.+)$/m.exec(output)?.[1]?.trim();
  const total = number(/^\s*(\d+) requests in ([\d.]+)(us|ms|s|m),/m, 'request count');
  return {
    requests: Number(total[1]),
    seconds: Number(total[2]) * (UNIT_MS[total[3] ?? ''] ?? Number.NaN) / 1000,
    p50Ms: latencyMs(number(/^\s*50%\s+([\d.]+)(us|ms|s|m)\s*$/m, '50% latency')),
    p99Ms: latencyMs(number(/^\s*99%\s+([\d.]+)(us|ms|s|m)\s*$/m, '99% latency')),
    ...(socketErrors === undefined ? {} : { socketErrors }),
  };
}

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
    const turns = comparison.subject.segments.map((run, i) => {
      const other = comparison.baseline.segments[i];
      return other === undefined ? Number.NaN : rate(run) / rate(other);
    });
    const ratio = median(turns);
    const pooled = throughput(comparison.subject) / throughput(comparison.baseline);
    const verdict = comparison.goal === undefined ? 'no goal' : `goal >= ${comparison.goal}x: ${ratio >= comparison.goal ? 'met' : 'NOT met'}`;
    const spread = `median of ${turns.length} turns (${turns.map((r) => r.toFixed(2)).join(', ')}); all requests pooled: ${pooled.toFixed(2)}x`;
    out.push({ bench: BENCH, case: `ratio ${comparison.label}`, value: ratio, unit: 'x', note: [verdict, spread, comparison.note].filter(Boolean).join('; ') });
    if (comparison.p99 !== undefined) out.push(p99Row(comparison, comparison.p99.goal));
  }
  return out;
}

/** Turn by turn, as the throughput ratio: a burst of other load spoils one turn's p99, not the figure. */
function p99Row(comparison: Comparison, goal: number | undefined): BenchRow {
  const turns = comparison.subject.segments.map((run, i) => {
    const other = comparison.baseline.segments[i];
    return other === undefined ? Number.NaN : run.p99Ms / other.p99Ms;
  });
  const ratio = median(turns);
  return {
    bench: BENCH, case: `ratio ${comparison.label}: p99`, value: ratio, unit: 'x',
    note: `${goal === undefined ? 'no goal' : `goal <= ${goal}x: ${ratio <= goal ? 'met' : 'NOT met'}`}; median of ${turns.length} turns (${turns.map((r) => r.toFixed(2)).join(', ')})`,
  };
}

function sideRows(measured: Measured): BenchRow[] {
  const { side, segments, notes } = measured;
  const errors = segments.flatMap((run) => (run.socketErrors === undefined ? [] : [`socket errors: ${run.socketErrors}`]));
  const how = `wrk -t1 -c${CONNECTIONS}, ${segments.length} runs of ${TURN_S} s`;
  const mean = (pick: (run: Segment) => number): number => segments.reduce((sum, run) => sum + pick(run), 0) / segments.length;
  const latencyNote = `mean of ${segments.length} runs`;
  return [
    { bench: BENCH, case: `${side.label}: throughput`, value: throughput(measured), unit: 'req/s', note: [how, ...notes, ...errors].join('; ') },
    { bench: BENCH, case: `${side.label}: p50`, value: mean((run) => run.p50Ms), unit: 'ms', note: latencyNote },
    { bench: BENCH, case: `${side.label}: p99`, value: mean((run) => run.p99Ms), unit: 'ms', note: latencyNote },
  ];
}

function rate(run: Segment): number {
  return run.requests / run.seconds;
}

/** All requests over all time, so a turn disturbed by other load counts for no more than its share. */
function throughput({ segments }: Measured): number {
  const requests = segments.reduce((sum, run) => sum + run.requests, 0);
  const seconds = segments.reduce((sum, run) => sum + run.seconds, 0);
  return requests / seconds;
}

function pageAt(target: string): Page {
  const page = pages.find((candidate) => candidate.target === target);
  if (page === undefined) throw new Error(`${BENCH}: the fixture has no page ${target}`);
  return page;
}

function progress(message: string): void {
  process.stderr.write(`${BENCH}: ${message}\n`);
}
