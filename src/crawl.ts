/**
 * `crawl`: regenerates the tree from a URL list or sitemap by fetching each page from the origin, with
 * the same policy, mapping and write protocol as the middleware. The source is streamed and pulled by a
 * fixed pool of workers, so memory does not grow with the list.
 */
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { Readable } from 'node:stream';
import fetch from 'node-fetch';
import { CacheRoot } from './cache-root.js';
import { CRAWL_MARK_HEADER, CRAWL_MARK_VALUE } from './crawl-mark.js';
import { PrerenderError } from './errors.js';
import { fetchPage, type PageOutcome } from './fetch-page.js';
import { createGeneration, currentGenerationDir, discardGeneration, flushGeneration, publishGeneration } from './generations.js';
import { sameOriginLinks } from './links.js';
import { parseOrigin } from './origin.js';
import { SeenSet } from './seen-set.js';
import { refuseSwapBase } from './store.js';
import type { Encoding } from './precompress.js';
import { carryPurges, purge } from './purge.js';
import { quote, type SourceLimits } from './source-limits.js';
import { openSource, type SourceItem } from './sources.js';
import { REFUSAL_MESSAGES, encodePath, splitAbsoluteUrl, toCachePath, type CachePath } from './url-path.js';

export interface CrawlOptions {
  /** A URL-list file, a sitemap file or URL (`.xml`, gzip too), or `-` for stdin. */
  source: string;
  /** Where pages are fetched: `http(s)://host[:port]`. Absolute URLs in the source are fetched here with their own path. */
  origin: string;
  /** Cache root; with `swap`, the directory holding `current`, `previous` and `generations/`. */
  root: string;
  /** @default 8 */
  concurrency?: number;
  /** Extra attempts after a network error, 5xx or 429 (never after another 4xx). @default 2 */
  retries?: number;
  /** Per request, headers and body. @default 30_000 */
  timeoutMs?: number;
  /** Also crawl same-origin links found in stored HTML pages. @default false */
  follow?: boolean;
  /** With `follow`: how many links away from the source a page may be. @default 3 */
  maxDepth?: number;
  /**
   * Pages fetched at most, source entries and followed links together; reaching it ends the crawl
   * with a failure that says so (exit 1; a --swap does not switch). An endless link space (a calendar,
   * a search page linking to more) would otherwise grow the crawl without end.
   * @default 10,000 with `follow`, unbounded without
   */
  maxPages?: number;
  /** Bounds of the source (sitemap bytes, URLs, line and token sizes, nesting). @default DEFAULT_SOURCE_LIMITS */
  sourceLimits?: Partial<SourceLimits>;
  /**
   * Build a new generation and switch `<root>/current` to it atomically when the crawl succeeds (no
   * failures); the previous generation is kept for `rollback`. Files of a generation are not fsynced
   * one by one (nothing serves them yet): the whole generation is flushed to disk once, before the
   * switch, so `current` never points at pages a power cut could empty. @default false
   */
  swap?: boolean;
  /** @default 10 MiB */
  maxBodyBytes?: number;
  /** Write `.gz` / `.br` siblings for nginx's gzip_static / brotli_static. @default [] */
  precompress?: readonly Encoding[];
  /** Stream to read when `source` is `-`. @default process.stdin */
  stdin?: Readable;
  /** Called after each URL is done. */
  onProgress?: (progress: CrawlProgress) => void;
}

export interface CrawlProgress {
  done: number;
  /** Entries known so far: URLs to fetch and source lines or links refused (the source is streamed, so this grows). */
  seen: number;
  stored: number;
  skipped: number;
  failed: number;
  elapsedMs: number;
}

export interface CrawlFailure {
  url: string;
  line?: number;
  status?: number;
  error: string;
  attempts: number;
}

export interface CrawlReport {
  origin: string;
  source: string;
  /** The directory written: the root, or the new generation with `swap`. */
  root: string;
  /** With `swap`: whether `current` now points at the new generation. */
  swapped?: boolean;
  /** With `swap`, when the switch was refused although no URL failed: why. */
  notSwapped?: string;
  /**
   * Why the crawl stopped before the end of its source: the file system refused a write in a way every
   * later page would meet too (full, over quota, read-only). Pages in flight were finished; the rest
   * were not fetched.
   */
  stoppedEarly?: string;
  counts: { stored: number; skipped: number; failed: number; bytes: number; total: number };
  durationMs: number;
  failures: CrawlFailure[];
  /** Pages not stored by design (redirects, policy); the first 1,000. */
  skipped: Array<{ url: string; line?: number; status?: number; reason: string }>;
}

interface Task {
  url: string;
  line?: number;
  target: CachePath;
  /** The page's public URL, against which its links resolve. */
  pageUrl: string;
  depth: number;
}

const MAX_LISTED = 1000;
const DEFAULT_MAX_PAGES = 10_000;
const MAX_SITEMAP_REDIRECTS = 5;
/** Links longer than a request line nginx accepts by default (8 KiB) are skipped, not queued. */
const MAX_LINK_CHARS = 8 * 1024;
/** The follow queue's memory: past it the crawl stops with a report, as at --max-pages. */
const MAX_QUEUE_BYTES = 64 * 1024 * 1024;

/** A queued task's memory, roughly: its strings (two bytes a character at worst) and the objects. */
function queuedSize(task: Task): number {
  return 2 * (task.url.length + task.pageUrl.length + task.target.urlPath.length + task.target.file.length) + 200;
}

/**
 * Where a sitemap redirect leads, as an absolute URL, when it stays on the origin or on the sitemap's
 * own public origin (both are fetched from the origin); undefined when it leaves them.
 */
function redirectOnOrigin(location: string | null, from: string, origin: string): string | undefined {
  if (location === null) return undefined;
  let base: URL;
  let url: URL;
  try {
    base = new URL(from, origin);
    url = new URL(location, base);
  } catch {
    return undefined;
  }
  if (url.origin !== origin && url.origin !== base.origin) return undefined;
  return url.href;
}
const MAX_BACKOFF_MS = 30_000;

export async function crawl(options: CrawlOptions): Promise<CrawlReport> {
  const origin = parseOrigin(options.origin);
  const concurrency = wholeNumber(options.concurrency ?? 8, 'concurrency', 1);
  const retries = wholeNumber(options.retries ?? 2, 'retries', 0);
  const timeoutMs = wholeNumber(options.timeoutMs ?? 30_000, 'timeout', 1);
  const maxDepth = wholeNumber(options.maxDepth ?? 3, 'max-depth', 0);
  const maxBodyBytes = wholeNumber(options.maxBodyBytes ?? 10 * 1024 * 1024, 'maxBodyBytes', 1);
  const maxPages = options.maxPages === undefined ? (options.follow === true ? DEFAULT_MAX_PAGES : Infinity) : wholeNumber(options.maxPages, 'max-pages', 1);
  if (options.swap !== true) await refuseSwapBase(path.resolve(options.root));
  const agentOptions = { keepAlive: true, maxSockets: concurrency };
  const agent = origin.startsWith('https:') ? new https.Agent(agentOptions) : new http.Agent(agentOptions);

  // Sitemaps have an agent of their own: a sitemap is read only as fast as the crawl goes, and on the
  // pages' agent its response would hold one of `concurrency` sockets for the whole crawl (all of
  // them at --concurrency 1: a deadlock).
  const sitemapAgent = origin.startsWith('https:') ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  const source = await openSource(options.source, {
    stdin: options.stdin ?? process.stdin,
    ...(options.sourceLimits === undefined ? {} : { limits: options.sourceLimits }),
    fetchStream: async (url) => {
      let response;
      // Redirects are followed here, one hop at a time, and only while they stay on the origin (or on
      // the sitemap's own public origin, which is fetched from the origin too): node-fetch would follow
      // them to any host, and the crawl would then fetch what that host lists.
      for (let target = url, hops = 0; ; hops++) {
        // The timeout covers the wait for the headers only, for the same reason: the body is read as
        // the crawl goes, which may take far longer than any timeout.
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), timeoutMs);
        try {
          response = await fetch(origin + (splitAbsoluteUrl(target)?.path ?? target), {
            agent: sitemapAgent, signal: controller.signal, redirect: 'manual', headers: { [CRAWL_MARK_HEADER]: CRAWL_MARK_VALUE },
          });
        } finally {
          clearTimeout(timer);
        }
        if (response.status < 300 || response.status >= 400) break;
        response.body?.resume();
        const location = response.headers.get('location');
        const next = redirectOnOrigin(location, target, origin);
        if (next === undefined) throw new Error(`redirect (${response.status}) to ${quote(location ?? '?')}, off the origin ${origin}: not followed`);
        if (hops >= MAX_SITEMAP_REDIRECTS) throw new Error(`more than ${MAX_SITEMAP_REDIRECTS} redirects: not followed`);
        target = next;
      }
      if (response.status !== 200 || response.body === null) {
        response.body?.resume();
        throw new Error(`status ${response.status}`);
      }
      return Readable.from(idleLimited(response.body as Readable, timeoutMs));
    },
  });

  const dir = options.swap === true ? await createGeneration(options.root) : path.resolve(options.root);
  // With swap, the purges made in the live tree during the build are carried over at the switch: its
  // journals must outlive their usual retention until then, however long the build takes.
  const liveAtStart = options.swap === true ? await currentGenerationDir(options.root) : undefined;
  const buildStarted = Date.now();
  const releaseHold = liveAtStart === undefined ? async () => undefined : await new CacheRoot(liveAtStart).invalidations.hold(buildStarted);
  // With swap, nothing in the generation is visible until `current` switches to it, so files are not
  // fsynced one by one: the whole generation is flushed once before the switch (flushGeneration).
  const root = new CacheRoot(dir, { precompress: options.precompress ?? [], durable: options.swap !== true });
  try {
    await root.init();
  } catch (error) {
    agent.destroy();
    sitemapAgent.destroy();
    await releaseHold();
    throw error;
  }

  const started = Date.now();
  const report: CrawlReport = {
    origin,
    source: options.source,
    root: dir,
    counts: { stored: 0, skipped: 0, failed: 0, bytes: 0, total: 0 },
    durationMs: 0,
    failures: [],
    skipped: [],
  };
  const seen = new SeenSet();
  // Source lines and links refused before they became a task: counted as done (failed or skipped), so
  // they count as known too, or progress would read 6/5.
  let refused = 0;
  const followQueue: Task[] = [];
  /** What the follow queue holds, roughly, in bytes: bounded by MAX_QUEUE_BYTES. */
  let queuedBytes = 0;
  /** Tasks handed out: bounded by maxPages. */
  let admitted = 0;
  /** A bound reached: nothing more is admitted, what was admitted still runs. */
  let capped = false;
  /** The disk refused a write every later page would meet too: nothing more runs. */
  let halted = false;
  const stopAt = (reason: string, url: string): void => {
    if (capped) return;
    capped = true;
    report.stoppedEarly ??= reason;
    fail({ url: quote(url), error: `${reason} (ESOURCE)`, attempts: 0 });
  };
  let inFlight = 0;
  // Workers with nothing to do wait here until a running task finishes (and may have queued links).
  let waiters: Array<() => void> = [];
  const progress = (): void => options.onProgress?.({
    done: report.counts.stored + report.counts.skipped + report.counts.failed,
    seen: seen.size + refused,
    stored: report.counts.stored,
    skipped: report.counts.skipped,
    failed: report.counts.failed,
    elapsedMs: Date.now() - started,
  });
  const fail = (failure: CrawlFailure): void => {
    report.counts.failed++;
    if (report.failures.length < 10 * MAX_LISTED) report.failures.push(failure);
  };

  /** Turns a source line (or a followed link) into a task, or records why it cannot be one. */
  const admit = (item: SourceItem, depth: number): Task | undefined => {
    if (item.kind === 'error') {
      refused++;
      // Sources quote (truncate) what they report themselves.
      fail({ url: item.text, ...(item.line === undefined ? {} : { line: item.line }), error: item.reason, attempts: 0 });
      return undefined;
    }
    if (capped) return undefined;
    const entry = parseEntry(item.text, origin);
    if (!entry.ok) {
      refused++;
      if (depth > 0) {
        // A link the site's own markup holds (`/a//b`, `/x%zz`) is not a failure of the crawl, and must
        // not block a --swap: it is skipped, with the page it was found on.
        report.counts.skipped++;
        if (report.skipped.length < MAX_LISTED) report.skipped.push({ url: item.text, reason: `${entry.reason} (linked from ${item.from})` });
        return undefined;
      }
      fail({ url: quote(item.text), ...(item.line === undefined ? {} : { line: item.line }), error: entry.reason, attempts: 0 });
      return undefined;
    }
    if (!seen.add(entry.target.file)) return undefined;
    if (admitted >= maxPages) {
      stopAt(`reached --max-pages ${maxPages}: the crawl stops here, later pages and links were not fetched`, item.text);
      return undefined;
    }
    admitted++;
    return { url: item.text, ...(item.line === undefined ? {} : { line: item.line }), target: entry.target, pageUrl: entry.pageUrl, depth };
  };

  /** Next task: followed links first (keeps that queue short), then the source; ends when both are dry. */
  let sourceDone = false;
  const nextTask = async (): Promise<Task | undefined> => {
    for (;;) {
      if (halted) return undefined;
      const followed = followQueue.shift();
      if (followed !== undefined) {
        queuedBytes -= queuedSize(followed);
        return followed;
      }
      if (!sourceDone && !capped) {
        const next = await source.next();
        if (next.done === true) {
          sourceDone = true;
          continue;
        }
        const task = admit(next.value, 0);
        if (task !== undefined) return task;
        progress();
        continue;
      }
      if (inFlight === 0) return undefined;
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
      });
    }
  };

  const runTask = async (task: Task): Promise<void> => {
    let attempts = 0;
    let outcome: PageOutcome;
    let target = task.target;
    let pageUrl = task.pageUrl;
    for (;;) {
      attempts++;
      outcome = await fetchPage(root, target, { origin, timeoutMs, maxBodyBytes, agent });
      // A redirect to another spelling of the same file (/docs -> /docs/, the usual trailing-slash
      // redirect) is followed once: its target is this very file, and skipping it would leave the page
      // out of the tree, since the other spelling is deduplicated away.
      const sameFile = outcome.outcome === 'skipped' && target === task.target ? sameFileRedirect(outcome.location, task, origin) : undefined;
      if (sameFile !== undefined) {
        target = sameFile;
        // Its links resolve against where the page really is.
        pageUrl = new URL(sameFile.urlPath === '/' ? '/' : encodePath(sameFile.urlPath), task.pageUrl).href;
        attempts--;
        continue;
      }
      if (outcome.outcome === 'failed' && outcome.unwritable === true) {
        halted = true;
        report.stoppedEarly ??= `writing ${task.target.file} under ${dir} failed (${outcome.reason}); later pages were not fetched`;
      }
      if (outcome.outcome !== 'failed' || !outcome.retryable || attempts > retries || halted) break;
      const backoff = outcome.retryAfterMs ?? 250 * 2 ** (attempts - 1) * (0.5 + Math.random());
      await new Promise((resolve) => setTimeout(resolve, Math.min(backoff, MAX_BACKOFF_MS)));
    }
    const where = task.line === undefined ? {} : { line: task.line };
    if (outcome.outcome === 'stored') {
      report.counts.stored++;
      report.counts.bytes += outcome.bytes;
      if (options.follow === true && task.depth < maxDepth && task.target.mediaType === 'text/html') {
        const absolute = root.store.resolve(task.target.file);
        const links = absolute === undefined ? [] : await sameOriginLinks(absolute, pageUrl).catch(() => [] as string[]);
        for (const link of links) {
          if (link.length > MAX_LINK_CHARS) {
            report.counts.skipped++;
            if (report.skipped.length < MAX_LISTED) report.skipped.push({ url: quote(link), reason: `a link longer than ${MAX_LINK_CHARS} characters (linked from ${quote(pageUrl)})` });
            continue;
          }
          const linked = admit({ kind: 'url', text: new URL(link, pageUrl).href, from: pageUrl }, task.depth + 1);
          if (linked === undefined) continue;
          if (queuedBytes + queuedSize(linked) > MAX_QUEUE_BYTES) {
            stopAt(`the queue of links to follow reached ${MAX_QUEUE_BYTES / 1024 / 1024} MiB: the crawl stops here, later pages and links were not fetched`, linked.url);
            break;
          }
          queuedBytes += queuedSize(linked);
          followQueue.push(linked);
        }
      }
    } else if (outcome.outcome === 'skipped') {
      report.counts.skipped++;
      if (report.skipped.length < MAX_LISTED) {
        report.skipped.push({ url: task.url, ...where, ...(outcome.status === undefined ? {} : { status: outcome.status }), reason: outcome.reason });
      }
    } else {
      fail({ url: task.url, ...where, ...(outcome.status === undefined ? {} : { status: outcome.status }), error: outcome.reason, attempts });
    }
  };

  try {
    await Promise.all(Array.from({ length: concurrency }, async () => {
      for (;;) {
        const task = await nextTask();
        if (task === undefined) return;
        inFlight++;
        try {
          await runTask(task);
        } finally {
          inFlight--;
          progress();
          const waiting = waiters;
          waiters = [];
          for (const resolve of waiting) resolve();
        }
      }
    }));
  } catch (error) {
    await releaseHold();
    throw error;
  } finally {
    agent.destroy();
    sitemapAgent.destroy();
  }

  report.counts.total = report.counts.stored + report.counts.skipped + report.counts.failed;
  try {
    if (options.swap === true) await finishSwap();
  } finally {
    await releaseHold();
  }
  report.durationMs = Date.now() - started;
  return report;

  async function finishSwap(): Promise<void> {
    // A source that named no page (an empty list, an HTML page where the sitemap was) must not
    // replace the site with an empty tree.
    report.swapped = report.counts.failed === 0 && report.counts.stored > 0;
    if (report.swapped) {
      await flushGeneration(dir);
      // Purges made in the live tree while this one was built may select pages rendered here before
      // them (invariant 5): they are carried over before the switch, and once more after it for any
      // that landed in between. (Later ones land in the new tree itself.)
      const live = await currentGenerationDir(options.root);
      // Usually the tree current when the build began; another crawl may have switched since.
      const sources = [...new Set([liveAtStart, live].filter((tree): tree is string => tree !== undefined))].map((tree) => new CacheRoot(tree));
      const carry = async (since: number): Promise<boolean> => {
        for (const tree of sources) if (!(await carryPurges(tree, root, since))) return false;
        return true;
      };
      if (!(await carry(buildStarted))) {
        report.swapped = false;
        report.notSwapped = 'the whole cache was purged while this crawl built its tree: run it again';
        await discardGeneration(dir);
      } else {
        try {
          await publishGeneration(options.root, dir);
        } catch (error) {
          if (!(error instanceof PrerenderError) || error.code !== 'EROOT') throw error;
          report.swapped = false;
          report.notSwapped = error.message;
          await discardGeneration(dir);
        }
        // From the build's start again, not from the first carry: a purge stamped before it may have
        // been appended after it read. Carrying one twice changes nothing.
        if (report.swapped && !(await carry(buildStarted))) await purge(root, { all: true });
      }
    } else {
      await discardGeneration(dir);
    }
  }
}

/**
 * The chunks of a body, failing when one is awaited for longer than `ms`: a stalled server. Only
 * waits that are asked for count, so a body read slowly because the crawl is busy never times out.
 */
async function* idleLimited(body: Readable, ms: number): AsyncGenerator<Buffer> {
  const iterator = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<'stalled'>((resolve) => {
        timer = setTimeout(() => resolve('stalled'), ms);
      });
      const next = await Promise.race([iterator.next(), stalled]).finally(() => clearTimeout(timer));
      if (next === 'stalled') throw new Error(`no data for ${ms} ms`);
      if (next.done === true) return;
      yield Buffer.from(next.value as Uint8Array);
    }
  } finally {
    // Not iterator.return(): it would wait for the read still pending on a stalled body.
    body.destroy();
  }
}

/** The target of a redirect whose Location (on the page's own origin) names the same file, if it does. */
function sameFileRedirect(location: string | undefined, task: Task, origin: string): CachePath | undefined {
  if (location === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(location, task.pageUrl);
  } catch {
    return undefined;
  }
  // The page's public origin (an absolute URL in the list), or the origin it is fetched from.
  if (![new URL(task.pageUrl).origin, origin].includes(url.origin) || url.search !== '' || url.hash !== '') return undefined;
  const mapped = toCachePath(url.pathname);
  if (!mapped.ok || mapped.value.file !== task.target.file || mapped.value.urlPath === task.target.urlPath) return undefined;
  return mapped.value;
}

/** A source line: a path, or an absolute http(s) URL fetched from the origin with its own path. */
function parseEntry(text: string, origin: string): { ok: true; target: CachePath; pageUrl: string } | { ok: false; reason: string } {
  let pathPart = text;
  let pageBase = origin;
  if (!text.startsWith('/')) {
    const url = splitAbsoluteUrl(text);
    if (url === undefined || (url.scheme !== 'http' && url.scheme !== 'https')) {
      return { ok: false, reason: 'not a path (/...) or an absolute http(s) URL' };
    }
    try {
      pageBase = new URL(text).origin;
    } catch {
      return { ok: false, reason: 'not a valid URL' };
    }
    pathPart = url.path;
  }
  const mapped = toCachePath(pathPart);
  if (!mapped.ok) return { ok: false, reason: `not cacheable: ${REFUSAL_MESSAGES[mapped.reason]}` };
  return { ok: true, target: mapped.value, pageUrl: pageBase + pathPart };
}

function wholeNumber(value: number, name: string, minimum: number): number {
  if (!Number.isSafeInteger(value) || value < minimum) {
    throw new PrerenderError('EUSAGE', `--${name} must be a whole number from ${minimum} up, not ${value}`, { input: String(value) });
  }
  return value;
}
