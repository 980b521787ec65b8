/**
 * The group commit's protocol step by step (src/commit.ts): a hook stops a batch between any two
 * steps, and the test looks at what nginx serves and what the index holds then; a purge landing at
 * each step wins for every page of the batch; a purge in the very millisecond a render started
 * counts; a process SIGKILLed while it is known to be mid-batch leaves no partial page and no lost
 * record; under strace, every file renamed into a served path was flushed before its rename (the
 * middleware, the crawl and a refresh); pending bodies are bounded in bytes.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import fs from 'node:fs/promises';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import path from 'node:path';
import { CacheRoot } from '../src/cache-root.js';
import { COMMIT_STEPS, setCommitHook, type CommitStep } from '../src/commit.js';
import type { CacheEvent } from '../src/index.js';
import { PENDING_PAGE_BYTES, PageBody } from '../src/page-body.js';
import {
  Gate, cliPath, listFiles, nginxAvailable, removeDir, repoRoot, request, setUpSuite, startCachedSite, startNginx,
  startServer, stopCachedSite, tempDir, waitFor, type CachedSite, type Server,
  holdCommits, readMeta,
} from './helpers.js';

const hasNginx = nginxAvailable();
const html = 'text/html; charset=utf-8';
const PAGES = ['/a', '/b', '/c', '/d'];
const FILES = PAGES.map((page) => `${page.slice(1)}/index.html`);
const bodyOf = (urlPath: string): string => `<!doctype html><p>${urlPath}</p>${'.'.repeat(20_000)}</html>`;

interface Site extends CachedSite {
  /** Holds the renders of PAGES until released, so their stores land in one batch. */
  gate: Gate | undefined;
  events: CacheEvent[];
}

/** Pages tagged `t`; a request with `x-probe` is answered unstorable, so probing a miss stores nothing. */
function app(site: Site) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const urlPath = (req.url ?? '/').split('?')[0] ?? '/';
    if (req.headers['x-probe'] !== undefined) {
      res.writeHead(200, { 'Content-Type': html, 'Cache-Control': 'no-store' });
      res.end('probe');
      return;
    }
    if (PAGES.includes(urlPath)) await site.gate?.pass();
    res.writeHead(200, { 'Content-Type': html, 'Cache-Tag': 't', 'Cache-Control': 'public, max-age=3600' });
    res.end(bodyOf(urlPath));
  };
}

/** What nginx answers for a page now: a hit with its bytes, or a miss. */
async function served(site: Site, urlPath: string): Promise<'hit' | 'miss'> {
  const reply = await request(site.nginx.port, urlPath, { headers: { 'x-probe': '1' } });
  if (reply.headers['x-cache'] !== 'HIT') return 'miss';
  assert.is(reply.body.toString(), bodyOf(urlPath), `${urlPath}: a hit serves the whole page`);
  return 'hit';
}

/** Renders PAGES together (held at a gate, then released at once) and waits until their stores settle. */
async function renderBatch(site: Site): Promise<void> {
  const gate = new Gate();
  site.gate = gate;
  const replies = Promise.all(PAGES.map((page) => request(site.nginx.port, page)));
  await gate.entered;
  // Every render is at the gate (each one awaits the same promise): release them in one turn.
  await new Promise((resolve) => setTimeout(resolve, 100));
  gate.release();
  for (const reply of await replies) assert.is(reply.status, 200);
  site.gate = undefined;
  await site.cache.idle();
}

/** The hook acts on the batch that carries all of PAGES, and only once per step. */
function onBatchStep(act: (step: CommitStep) => Promise<void>): { seen: CommitStep[] } {
  const seen: CommitStep[] = [];
  setCommitHook(async (step, files) => {
    if (!FILES.every((file) => files.includes(file)) || seen.includes(step)) return;
    seen.push(step);
    await act(step);
  });
  return { seen };
}

// ---

const steps = suite<Site>('group commit: what nginx serves and the index holds between the steps');
setUpSuite(steps, async (site) => {
  if (!hasNginx) return;
  site.events = [];
  await startCachedSite(site, app(site), { coalesce: false, onEvent: (event) => site.events.push(event) });
}, async (site) => {
  setCommitHook(undefined);
  await stopCachedSite(site);
});

steps('nothing is served before the batch is renamed into place, the whole page after; the tag log lists it from the first step', async (site) => {
  if (!hasNginx) return;
  const root = new CacheRoot(site.root);
  const observed = new Map<CommitStep, { served: string[]; tagged: string[]; meta: number; temps: number }>();
  const { seen } = onBatchStep(async (step) => {
    const tagged = await root.tags.files('t');
    const meta = (await Promise.all(FILES.map((file) => readMeta(root, file)))).filter((entry) => entry !== undefined).length;
    const temps = (await fs.readdir(root.store.tempDir)).length;
    observed.set(step, { served: await Promise.all(PAGES.map((page) => served(site, page))), tagged, meta, temps });
  });
  await renderBatch(site);
  assert.equal(seen, [...COMMIT_STEPS], 'the batch carrying all four pages went through every step');
  for (const step of COMMIT_STEPS) {
    const state = observed.get(step);
    assert.ok(state !== undefined);
    const placed = COMMIT_STEPS.indexOf(step) >= COMMIT_STEPS.indexOf('placed');
    assert.equal(state.served, PAGES.map(() => (placed ? 'hit' : 'miss')), `${step}: what nginx serves`);
    for (const file of FILES) assert.ok(state.tagged.includes(file), `${step}: the tag log lists ${file}`);
    assert.is(state.meta, placed ? 4 : 0, `${step}: meta records`);
    if (step === 'written' || step === 'flushed') assert.is(state.temps, 4, `${step}: the bodies are in temp files, not yet in the tree`);
  }
  assert.is(site.events.filter((event) => event.type === 'stored').length, 4);
  assert.equal(await fs.readdir(root.store.tempDir), [], 'no temp file left once the batch is done');
});

steps('a compaction of the tag log in the middle of the batch loses none of its records', async (site) => {
  if (!hasNginx) return;
  await site.cache.purge({ all: true });
  const root = new CacheRoot(site.root);
  // Compaction drops records whose files are not there yet: these, before the rename.
  const { seen } = onBatchStep(async (step) => {
    if (step === 'checked') await root.compact(root.tags.logPath('t'));
  });
  await renderBatch(site);
  assert.ok(seen.includes('checked') && seen.includes('done'));
  assert.equal((await root.tags.files('t')).filter((file) => FILES.includes(file)).sort(), FILES, 'every page is in the tag log');
  const result = await site.cache.purge({ tags: ['t'] });
  assert.equal(result.removed.filter((file) => FILES.includes(file)).sort(), FILES, 'so a purge by tag removes every page');
});

steps('meta records taken between their append and the renames are appended again, while the batch\'s files are in place', async (site) => {
  if (!hasNginx) return;
  await site.cache.purge({ all: true });
  const root = new CacheRoot(site.root);
  // What a compaction of the meta index (or a purge --all) does when it takes the segments between the
  // batch's append and its renames: it judges the records by a tree without the pages, and drops them.
  // Its effect, made at the step after the renames, since the hook cannot stop a batch inside placed.
  const { seen } = onBatchStep(async (step) => {
    if (step !== 'rechecked') return;
    for (const name of await fs.readdir(root.store.metaDir)) await fs.rm(path.join(root.store.metaDir, name));
    for (const file of FILES) assert.is(await readMeta(root, file), undefined);
  });
  await renderBatch(site);
  assert.ok(seen.includes('rechecked') && seen.includes('done'));
  for (const file of FILES) assert.ok((await readMeta(root, file)) !== undefined, `${file} has its meta record again`);
  for (const page of PAGES) assert.is(await served(site, page), 'hit');
});

steps.run();

// ---

const purged = suite<Site>('group commit: a purge landing at any step wins for every page of the batch');
setUpSuite(purged, async () => undefined, async () => {
  setCommitHook(undefined);
});

for (const at of COMMIT_STEPS.filter((step) => step !== 'done')) {
  purged(`a purge by tag at step "${at}"`, async () => {
    if (!hasNginx) return;
    const site = { events: [] } as unknown as Site;
    try {
      await startCachedSite(site, app(site), { coalesce: false, onEvent: (event) => site.events.push(event) });
      // From the purge on, at every later step too, nginx must not serve a page of the batch.
      const servedAfter: string[] = [];
      let purgedYet = false;
      const { seen } = onBatchStep(async (step) => {
        if (step === at) {
          await site.cache.purge({ tags: ['t'] });
          purgedYet = true;
        }
        if (!purgedYet) return;
        for (const page of PAGES) if ((await served(site, page)) === 'hit') servedAfter.push(`${page} at ${step}`);
      });
      await renderBatch(site);
      assert.ok(seen.includes(at), `the batch reached ${at}`);
      // A purge between the last check and the rename is the one window left: the pages are served
      // from their rename until the check after it removes them, and never again.
      const window = at === 'checked' ? PAGES.map((page) => `${page} at placed`) : [];
      assert.equal(servedAfter, window, 'no page of the batch served once the purge returned, but in the window');
      for (const page of PAGES) assert.is(await served(site, page), 'miss', `${page} is not served after the purge`);
      assert.equal((await listFiles(site.root)).filter((file) => FILES.includes(file)), [], 'no page of the batch on disk');
      const root = new CacheRoot(site.root);
      for (const file of FILES) assert.is(await readMeta(root, file), undefined, `no meta record left for ${file}`);
      // A refused page's temp file is removed as it is refused (not awaited by idle(): waited for here).
      await waitFor(async () => (await fs.readdir(root.store.tempDir)).length === 0, 5000, 'the refused pages\' temp files to be removed');
      // Up to the rename the batch refuses its pages; after it, the purge itself removes them.
      const refused = site.events.filter((event) => event.type === 'skipped' && /purged/.test(event.reason));
      if (at !== 'rechecked') assert.is(refused.length, 4, `each page refused: ${JSON.stringify(site.events)}`);
    } finally {
      setCommitHook(undefined);
      await stopCachedSite(site);
    }
  });
}

purged('a purge between the check and the rename: the recheck removes this batch\'s pages, not a newer version stored over one meanwhile', async () => {
  if (!hasNginx) return;
  const site = { events: [] } as unknown as Site;
  try {
    await startCachedSite(site, app(site), { coalesce: false, onEvent: (event) => site.events.push(event) });
    const other = new CacheRoot(site.root);
    const newer = '<!doctype html><p>/a rendered after the purge</p></html>';
    let replaced: unknown;
    const { seen } = onBatchStep(async (step) => {
      if (step === 'checked') await site.cache.purge({ tags: ['t'] });
      if (step !== 'placed') return;
      // Another writer (here, another root over the same tree) stores /a, rendered after the purge,
      // over this batch's /a before the batch rechecks: that page is not the one the purge refuses.
      const body = new PageBody();
      body.write(Buffer.from(newer));
      const renderedAt = Date.now();
      replaced = await other.commit(body, {
        urlPath: '/a', file: 'a/index.html', tags: [], renderedAt, storedAt: renderedAt, expiresAt: null,
        mediaType: 'text/html', size: Buffer.byteLength(newer), mtime: Math.floor(renderedAt / 1000),
      });
    });
    await renderBatch(site);
    assert.ok(seen.includes('placed'), 'the batch was renamed into place');
    assert.equal(replaced, { stored: true }, 'the newer /a was stored over the batch\'s');
    assert.equal((await listFiles(site.root)).filter((file) => FILES.includes(file)), ['a/index.html'], 'only the newer /a is on disk');
    assert.is(await fs.readFile(path.join(site.root, 'a/index.html'), 'utf8'), newer);
    assert.ok((await readMeta(other, 'a/index.html')) !== undefined, 'and its meta record');
  } finally {
    setCommitHook(undefined);
    await stopCachedSite(site);
  }
});

purged.run();

// ---

const sameMillisecond = suite('group commit: a purge in the millisecond a render started');

sameMillisecond('counts as after the render began: the page is refused; one millisecond later it is stored', async () => {
  const dir = await tempDir();
  try {
    const root = new CacheRoot(path.join(dir, 'cache'));
    await root.init();
    const at = Date.now();
    await root.invalidations.recordFiles(['same/index.html', 'later/index.html'], at);
    await root.invalidations.recordTags(['same-ms'], at);
    const commit = (urlPath: string, renderedAt: number, tags: string[] = []) => {
      const body = new PageBody();
      body.write(Buffer.from('<p>x</p>'));
      return root.commit(body, {
        urlPath, file: `${urlPath.slice(1)}/index.html`, tags, renderedAt, storedAt: Date.now(), expiresAt: null,
        mediaType: 'text/html', size: 8, mtime: Math.floor(renderedAt / 1000),
      });
    };
    const [same, later, sameTag, laterTag] = await Promise.all([
      commit('/same', at), commit('/later', at + 1), commit('/same-tag', at, ['same-ms']), commit('/later-tag', at + 1, ['same-ms']),
    ]);
    assert.equal(same, { stored: false, reason: 'its path was purged while it rendered' });
    assert.equal(later, { stored: true });
    assert.equal(sameTag, { stored: false, reason: 'tag same-ms was purged while it rendered' }, 'a tag purge in the same millisecond counts too');
    assert.equal(laterTag, { stored: true });
    assert.equal((await listFiles(root.root)).sort(), ['later-tag/index.html', 'later/index.html'].sort());
  } finally {
    await removeDir(dir);
  }
});

sameMillisecond.run();

// ---

interface Killed {
  dir: string;
  root: string;
}

const killed = suite<Killed>('group commit: SIGKILL while a batch is between two steps');
setUpSuite(killed, async (context) => {
  context.dir = await tempDir();
}, async (context) => {
  await removeDir(context.dir);
});

/** The fault tests' app (test/workers/app.ts) with the commit pause hook armed at `step`. */
function startPausingApp(root: string, step: CommitStep, mark: string): Promise<{ child: ChildProcess; port: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/workers/app.ts', root], {
      cwd: repoRoot,
      env: { ...process.env, PRERENDER_TEST_PAUSE_AT: step, PRERENDER_TEST_PAUSE_FILE: mark },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    child.on('error', reject);
    child.stdout?.once('data', (chunk: Buffer) => resolve({ child, port: Number(chunk.toString().trim()) }));
  });
}

function get(port: number, target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: target, agent: false }, (res) => {
      res.resume();
      res.on('end', resolve);
    }).on('error', reject);
  });
}

for (const step of ['checked', 'written', 'flushed', 'placed', 'rechecked'] as const) {
  killed(`killed after "${step}": no partial page, every page on disk is in its tag logs, temps are cleaned up`, async (context) => {
    const root = path.join(context.dir, step);
    const mark = path.join(context.dir, `${step}.paused`);
    const { child, port } = await startPausingApp(root, step, mark);
    let paused: { step: string; files: string[] } = { step: '', files: [] };
    try {
      const pages = Array.from({ length: 12 }, (_, i) => `/page/${30_000 + i}/p${i}`);
      await Promise.all(pages.map((page) => get(port, page)));
      await waitFor(() => existsSync(mark), 10_000, `the app to pause at ${step}`);
      paused = JSON.parse(await fs.readFile(mark, 'utf8')) as { step: string; files: string[] };
      assert.is(paused.step, step);
      assert.ok(paused.files.length > 0, 'the process was mid-batch when it was killed');
    } finally {
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('close', resolve));
    }
    const cacheRoot = new CacheRoot(root);
    const files = await listFiles(root);
    const placed = step === 'placed' || step === 'rechecked';
    // Only the paused batch is known to be at that step; a batch beside it may have gone further.
    const inTree = paused.files.filter((file) => files.includes(file));
    if (!placed) assert.equal(inTree, [], 'nothing of the batch is in the tree before it was renamed');
    else assert.equal(inTree, paused.files, 'the batch was renamed into place before the kill');
    for (const file of files) {
      const size = Number(/^page\/(\d+)\//.exec(file)?.[1]);
      const bytes = await fs.readFile(path.join(root, file));
      assert.is(bytes.length, size, `${file} is whole`);
      assert.ok(bytes.toString().endsWith('</html>'), `${file} ends where the page ends`);
      assert.ok((await cacheRoot.tags.files(`size:${size}`)).includes(file), `${file} is in its tag log`);
    }
    // A restarted process removes what the killed one left in its temp directory.
    await cacheRoot.init();
    assert.equal(await fs.readdir(cacheRoot.store.tempDir), [], 'the dead process\'s temp files are removed');
  });
}

killed.run();

// ---

/** strace shows the system calls themselves; .ci/run installs it, and CI must not skip what needs it. */
const hasStrace = spawnSync('strace', ['-V']).status === 0;
if (!hasStrace) {
  if (process.env.CI === 'true') throw new Error('strace is not installed, and CI=true: the flush-before-rename tests must not be skipped (.ci/run installs it)');
  process.stderr.write('\n!!  strace is NOT installed: the flush-before-rename tests are SKIPPED (apt-get install -y strace)  !!\n\n');
}

/**
 * Every rename of a temp file into the tree (outside the state directory) in an `strace -f -y` log,
 * and whether an fdatasync of that very temp file came before it. `-y` prints the path behind each
 * descriptor, so a call is matched by file, whatever thread made it and however descriptors are reused.
 */
function renamesIntoTree(lines: readonly string[], root: string): Array<{ temp: string; target: string; flushed: boolean }> {
  const flushedTemps = new Set<string>();
  const renames: Array<{ temp: string; target: string; flushed: boolean }> = [];
  for (const line of lines) {
    const sync = /\bf(?:data)?sync\(\d+<([^>]+)>/.exec(line);
    if (sync !== null) flushedTemps.add(sync[1] as string);
    const rename = /\brename\("([^"]+)", "([^"]+)"/.exec(line);
    if (rename === null) continue;
    const [, temp, target] = rename as unknown as [string, string, string];
    if (!temp.includes('/.prerender/tmp/') || target.includes('/.prerender/') || !target.startsWith(root)) continue;
    renames.push({ temp, target, flushed: flushedTemps.has(temp) });
  }
  return renames;
}

function traced(args: string[], trace: string, env: Record<string, string> = {}): ChildProcess {
  return spawn('strace', ['-f', '-qq', '-y', '-e', 'trace=fsync,fdatasync,rename', '-o', trace, process.execPath, ...args], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

async function exited(child: ChildProcess): Promise<{ code: number | null; stderr: string }> {
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  return { code, stderr };
}

interface Traced {
  dir: string;
  origin: Server;
  nginx: Awaited<ReturnType<typeof startNginx>> | undefined;
}

const flushes = suite<Traced>('every file renamed into a served path was flushed before its rename (strace)');
setUpSuite(flushes, async (context) => {
  context.dir = await tempDir();
  let version = 1;
  context.origin = await startServer((req, res) => {
    if (req.url === '/bump') version++;
    res.writeHead(200, { 'Content-Type': html, 'Cache-Tag': 'all' });
    res.end(`<p>${req.url} v${version}</p>`);
  });
}, async (context) => {
  await context.origin?.close();
  await removeDir(context.dir);
});

(hasStrace ? flushes : flushes.skip)('the middleware: each page of a burst', async (context) => {
  const root = path.join(context.dir, 'middleware');
  const trace = path.join(context.dir, 'middleware.trace');
  const child = traced(['--import', 'tsx', 'test/workers/app.ts', root], trace);
  const port = await new Promise<number>((resolve, reject) => {
    child.on('error', reject);
    child.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
  });
  const done = exited(child);
  const pages = Array.from({ length: 20 }, (_, i) => `/page/2000/m${i}`);
  await Promise.all(pages.map((page) => get(port, page)));
  await waitFor(async () => (await listFiles(root)).length === pages.length, 20_000, 'every page stored');
  // The app, not strace: strace then writes out its trace and exits with its tracee.
  const app = spawnSync('pgrep', ['-P', String(child.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0];
  assert.ok(app !== undefined && app !== '', 'the traced app is running');
  process.kill(Number(app), 'SIGTERM');
  await done;
  const renames = renamesIntoTree((await fs.readFile(trace, 'utf8')).split('\n'), root);
  assert.is(renames.length, pages.length, 'one rename into the tree a page');
  assert.equal(renames.filter((rename) => !rename.flushed), [], 'each flushed before its rename');
});

(hasStrace ? flushes : flushes.skip)('the crawl, and a refresh of what it stored', async (context) => {
  const root = path.join(context.dir, 'crawl');
  const list = path.join(context.dir, 'urls.txt');
  await fs.writeFile(list, Array.from({ length: 20 }, (_, i) => `/c/${i}`).join('\n'));
  const crawlTrace = path.join(context.dir, 'crawl.trace');
  const crawl = await exited(traced([cliPath, 'crawl', list, '--origin', context.origin.url, '--root', root], crawlTrace));
  assert.is(crawl.code, 0, crawl.stderr);
  const crawled = renamesIntoTree((await fs.readFile(crawlTrace, 'utf8')).split('\n'), root);
  assert.is(crawled.length, 20, 'one rename into the tree a page');
  assert.equal(crawled.filter((rename) => !rename.flushed), [], 'crawl: each flushed before its rename');

  await request(Number(new URL(context.origin.url).port), '/bump');
  const refreshTrace = path.join(context.dir, 'refresh.trace');
  const refresh = await exited(traced([cliPath, 'purge', '--tag', 'all', '--refresh', '--origin', context.origin.url, '--root', root], refreshTrace));
  assert.is(refresh.code, 0, refresh.stderr);
  const refreshed = renamesIntoTree((await fs.readFile(refreshTrace, 'utf8')).split('\n'), root);
  assert.is(refreshed.length, 20, 'one rename into the tree a page');
  assert.equal(refreshed.filter((rename) => !rename.flushed), [], 'refresh: each flushed before its rename');
  assert.match(await fs.readFile(path.join(root, 'c/0/index.html'), 'utf8'), /v2/);
});

(hasStrace ? flushes : flushes.skip)('a batch appends its index records once: one write to the meta index, the tag log and the expiry log each', async (context) => {
  const root = path.join(context.dir, 'batch');
  const trace = path.join(context.dir, 'batch.trace');
  const child = spawn('strace', ['-f', '-qq', '-y', '-e', 'trace=write,writev,pwrite64,rename', '-o', trace, process.execPath, '--import', 'tsx', 'test/workers/batch.ts', root, '64'], {
    cwd: repoRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
  });
  const { code, stderr } = await exited(child);
  assert.is(code, 0, stderr);
  assert.equal(JSON.parse(stdout), { batches: 1, stored: 64 }, 'the 64 pages went as one batch');
  const lines = (await fs.readFile(trace, 'utf8')).split('\n');
  const writesTo = (part: string): number => lines.filter((line) => new RegExp(`\\b(?:write|writev|pwrite64)\\(\\d+<[^>]*/\\.prerender/${part}/`).test(line)).length;
  assert.is(writesTo('meta'), 1, 'one write of the 64 meta records');
  assert.is(writesTo('tags'), 1, 'one append to the tag log');
  assert.is(writesTo('expiry'), 1, 'one append to the second\'s expiry log');
  assert.is(lines.filter((line) => /\brename\("[^"]+", "[^"]*\/\.prerender\/meta\//.test(line)).length, 0, 'no meta file renamed in a page');
  const index = await new CacheRoot(root).store.meta.load();
  assert.is(index.size, 64, 'and the index knows every page');
});

flushes.run();

// ---

const bounded = suite('pending stores are bounded in bytes');

bounded('a flood of large slow bodies: at most maxPendingBytes held, the rest dropped and counted, every client served whole', async () => {
  const dir = await tempDir();
  const events: CacheEvent[] = [];
  const { createCache } = await import('../src/index.js');
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  const cache = createCache({ root: path.join(dir, 'cache'), maxPendingBytes: 1024 * 1024, log: () => undefined, onEvent: (event) => events.push(event) });
  let peak = 0;
  const server = await startServer(cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain; charset=utf-8' });
    let sent = 0;
    const next = (): void => {
      peak = Math.max(peak, cache.stats().pendingBytes);
      if (sent++ === 4) return void res.end();
      res.write(chunk);
      setTimeout(next, 20);
    };
    next();
  }));
  try {
    // Each body is 256 KiB: four fit in the budget, not twelve.
    const replies = await Promise.all(Array.from({ length: 12 }, (_, i) => request(server.port, `/large/${i}.txt`)));
    for (const reply of replies) assert.is(reply.body.length, 4 * chunk.length);
    await cache.idle();
    const stored = events.filter((event) => event.type === 'stored').length;
    const dropped = events.filter((event) => event.type === 'dropped').length;
    assert.is(stored + dropped, 12, JSON.stringify(events));
    assert.ok(stored >= 3 && stored <= 4, `${stored} stored`);
    assert.ok(peak <= 1024 * 1024, `pending bodies peaked at ${peak} bytes`);
    assert.is(cache.stats().dropped.busy, dropped, 'stats() counts the drops');
    assert.is(cache.stats().pendingBytes, 0);
  } finally {
    await server.close();
    await cache.close();
    await removeDir(dir);
  }
});

bounded('a flood of tiny pages while the store is held: each counts PENDING_PAGE_BYTES, so at most maxPendingBytes / that wait', async () => {
  const dir = await tempDir();
  const events: CacheEvent[] = [];
  const { createCache } = await import('../src/index.js');
  const room = 32;
  const cache = createCache({ root: path.join(dir, 'cache'), maxPendingBytes: room * PENDING_PAGE_BYTES, coalesce: false, log: () => undefined, onEvent: (event) => events.push(event) });
  const hold = holdCommits();
  let peak = 0;
  const server = await startServer(cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': html });
    res.end(`<p>${req.url}</p>`);
    peak = Math.max(peak, cache.stats().pending);
  }));
  try {
    const replies = await Promise.all(Array.from({ length: 200 }, (_, i) => request(server.port, `/tiny/${i}`)));
    for (const [i, reply] of replies.entries()) assert.is(reply.body.toString(), `<p>/tiny/${i}</p>`);
    assert.ok(hold.batches >= 1, 'a batch was held while the flood came');
    assert.ok(peak <= room, `${peak} pages pending at once, room for ${room}`);
    const dropped = events.filter((event) => event.type === 'dropped').length;
    assert.ok(dropped >= 200 - room, `${dropped} dropped`);
    hold.release();
    await cache.idle();
    const stored = events.filter((event) => event.type === 'stored').length;
    assert.is(stored + dropped, 200);
    assert.ok(stored > 0 && stored <= room, `${stored} stored`);
    assert.is(cache.stats().pendingBytes, 0);
  } finally {
    hold.stop();
    await server.close();
    await cache.close();
    await removeDir(dir);
  }
});

bounded('a burst of small pages fits: every one is stored', async () => {
  const dir = await tempDir();
  const events: CacheEvent[] = [];
  const { createCache } = await import('../src/index.js');
  const cache = createCache({ root: path.join(dir, 'cache'), log: () => undefined, onEvent: (event) => events.push(event) });
  const server = await startServer(cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': html });
    res.end(`<p>${req.url}</p>${'.'.repeat(2000)}`);
  }));
  try {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    await Promise.all(Array.from({ length: 600 }, (_, i) => new Promise<void>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: server.port, path: `/burst/${i}`, agent }, (res) => {
        res.resume();
        res.on('end', resolve);
      }).on('error', reject);
    })));
    agent.destroy();
    await cache.idle();
    assert.is(events.filter((event) => event.type === 'stored').length, 600, JSON.stringify(events.filter((event) => event.type !== 'stored').slice(0, 3)));
    assert.is((await listFiles(path.join(dir, 'cache'))).length, 600);
  } finally {
    await server.close();
    await cache.close();
    await removeDir(dir);
  }
});

bounded.run();
