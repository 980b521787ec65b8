/**
 * The crawl's workers: a fixed pool pulls tasks (followed links first, then the source) until both
 * are dry, fetches and stores each page with retries, and queues the links of stored HTML pages. What
 * is admitted is deduplicated and bounded (maxPages, the follow queue's bytes), so a crawl's memory
 * does not grow with its source.
 */
import type { Agent as HttpAgent } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import type { CacheRoot } from '../cache-root.js';
import { encodePath, toCachePath, type CachePath } from '../url-path.js';
import { PENDING_PAGE_BYTES } from '../page-body.js';
import { fetchAndSubmit, type PageOutcome } from './fetch-page.js';
import { sameOriginLinks } from './links.js';
import type { CrawlSettings } from './options.js';
import type { ReportBuilder } from './report.js';
import { SeenSet } from './seen-set.js';
import { quote } from './source-limits.js';
import { parseEntry, type SourceItem } from './sources.js';

/**
 * Bytes of fetched pages waiting for the store's next batch, at most, before the workers wait; each
 * page counts PENDING_PAGE_BYTES besides its body, so tiny pages cannot pile up by the hundred thousand.
 * Enough to fill the next batch while one is written (512 pages of 4 KB): 16 MiB crawled no faster and
 * peaked 30 MB higher over 100k tiny pages.
 */
export const MAX_STORING_BYTES = 4 * 1024 * 1024;

export interface PoolContext {
  settings: CrawlSettings;
  source: AsyncIterator<SourceItem>;
  report: ReportBuilder;
  /** Where pages are stored, and its directory (for the report). */
  root: CacheRoot;
  dir: string;
  agent: HttpAgent | HttpsAgent;
}

interface Task {
  url: string;
  line?: number;
  target: CachePath;
  /** The page's public URL, against which its links resolve. */
  pageUrl: string;
  depth: number;
}

/** Links longer than a request line nginx accepts by default (8 KiB) are skipped, not queued. */
const MAX_LINK_CHARS = 8 * 1024;
/** The follow queue's memory: past it the crawl stops with a report, as at maxPages. */
const MAX_QUEUE_BYTES = 64 * 1024 * 1024;
const MAX_BACKOFF_MS = 30_000;

/** A queued task's memory, roughly: its strings (two bytes a character at worst) and the objects. */
function queuedSize(task: Task): number {
  return 2 * (task.url.length + task.pageUrl.length + task.target.urlPath.length + task.target.file.length) + 200;
}

/** Runs the crawl's tasks to the end of its source (or to a bound, or to a disk that refuses writes). */
export async function runPool(context: PoolContext): Promise<void> {
  const { settings, source, report, root, dir, agent } = context;
  const { origin, maxPages } = settings;
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
  let sourceDone = false;
  let inFlight = 0;
  // Workers with nothing to do wait here until a running task finishes (and may have queued links).
  let waiters: Array<() => void> = [];

  const progress = (): void => report.progress(seen.size + refused);
  const stopAt = (reason: string, url: string): void => {
    if (capped) return;
    capped = true;
    report.stopEarly(reason);
    report.fail({ url: quote(url), error: `${reason} (ESOURCE)`, attempts: 0 });
  };

  /** Turns a source line (or a followed link) into a task, or records why it cannot be one. */
  const admit = (item: SourceItem, depth: number): Task | undefined => {
    if (item.kind === 'error') {
      refused++;
      // Sources quote (truncate) what they report themselves.
      report.fail({ url: item.text, ...(item.line === undefined ? {} : { line: item.line }), error: item.reason, attempts: 0 });
      return undefined;
    }
    if (capped) return undefined;
    const entry = parseEntry(item.text, origin);
    if (!entry.ok) {
      refused++;
      if (depth > 0) {
        // A link the site's own markup holds (`/a//b`, `/x%zz`) is not a failure of the crawl, and must
        // not block a --swap: it is skipped, with the page it was found on.
        report.skip({ url: item.text, reason: `${entry.reason} (linked from ${item.from})` });
        return undefined;
      }
      report.fail({ url: quote(item.text), ...(item.line === undefined ? {} : { line: item.line }), error: entry.reason, attempts: 0 });
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

  /** Queues the same-origin links of a stored HTML page, as far as the bounds allow. */
  const follow = async (task: Task, pageUrl: string): Promise<void> => {
    const absolute = root.store.resolve(task.target.file);
    const links = absolute === undefined ? [] : await sameOriginLinks(absolute, pageUrl).catch(() => [] as string[]);
    for (const link of links) {
      if (link.length > MAX_LINK_CHARS) {
        report.skip({ url: quote(link), reason: `a link longer than ${MAX_LINK_CHARS} characters (linked from ${quote(pageUrl)})` });
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
  };

  /**
   * Pages fetched and handed to the store, not yet written: a worker fetches on meanwhile, so the
   * store's batches hold more than the pages in flight; bounded in bytes.
   */
  const storing = new Set<Promise<void>>();
  let storingBytes = 0;
  /**
   * Workers waiting for room below MAX_STORING_BYTES, woken as stores settle. Not `Promise.race` over
   * `storing`: each call attaches a reaction to every pending store, thousands a call, kept until
   * those settle (a crawl of 100k tiny pages grew to 2.6 GB that way).
   */
  let roomWaiters: Array<() => void> = [];
  /** An error a store threw that is not a write refused (a bug): the crawl stops and throws it. */
  let storeFailure: { error: unknown } | undefined;
  const wakeForRoom = (): void => {
    if (storingBytes > MAX_STORING_BYTES) return;
    const waiting = roomWaiters;
    roomWaiters = [];
    for (const resolve of waiting) resolve();
  };
  const noteUnwritable = (task: Task, outcome: PageOutcome): void => {
    if (outcome.outcome !== 'failed' || outcome.unwritable !== true) return;
    halted = true;
    report.stopEarly(`writing ${task.target.file} under ${dir} failed (${outcome.reason}); later pages were not fetched`);
  };
  const record = (task: Task, outcome: PageOutcome, attempts: number): void => {
    const where = task.line === undefined ? {} : { line: task.line };
    if (outcome.outcome === 'stored') report.stored(outcome.bytes);
    else if (outcome.outcome === 'skipped') {
      report.skip({ url: task.url, ...where, ...(outcome.status === undefined ? {} : { status: outcome.status }), reason: outcome.reason });
    } else {
      report.fail({ url: task.url, ...where, ...(outcome.status === undefined ? {} : { status: outcome.status }), error: outcome.reason, attempts });
    }
  };

  const backoff = (outcome: PageOutcome & { outcome: 'failed' }, attempts: number): Promise<void> => {
    const ms = outcome.retryAfterMs ?? 250 * 2 ** (attempts - 1) * (0.5 + Math.random());
    return new Promise((resolve) => setTimeout(resolve, Math.min(ms, MAX_BACKOFF_MS)));
  };

  const runTask = async (task: Task, attemptsBefore = 0): Promise<void> => {
    let attempts = attemptsBefore;
    let outcome: PageOutcome;
    let target = task.target;
    let pageUrl = task.pageUrl;
    // Links are read from the stored file, so a page to follow waits for its store.
    const toFollow = settings.follow && task.depth < settings.maxDepth && task.target.mediaType === 'text/html';
    for (;;) {
      attempts++;
      const fetched = await fetchAndSubmit(root, target, { origin, timeoutMs: settings.timeoutMs, maxBodyBytes: settings.maxBodyBytes, agent });
      if (fetched.outcome === 'storing' && !toFollow) {
        const bytes = fetched.bytes + PENDING_PAGE_BYTES;
        storingBytes += bytes;
        const settledAttempts = attempts;
        const done: Promise<void> = fetched.settled.then(async (result) => {
          storingBytes -= bytes;
          wakeForRoom();
          noteUnwritable(task, result);
          // A write that may pass next time (a root deleted under the crawl is set up again) is tried
          // again as a whole, as a failed fetch is.
          if (result.outcome === 'failed' && result.retryable && settledAttempts <= settings.retries && !halted) {
            await backoff(result, settledAttempts);
            return runTask(task, settledAttempts);
          }
          record(task, result, settledAttempts);
          progress();
        }).catch((error: unknown) => {
          storeFailure ??= { error };
          halted = true;
        }).finally(() => {
          storing.delete(done);
        });
        storing.add(done);
        while (storingBytes > MAX_STORING_BYTES) {
          await new Promise<void>((resolve) => {
            roomWaiters.push(resolve);
          });
        }
        return;
      }
      outcome = fetched.outcome === 'storing' ? await fetched.settled : fetched;
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
      noteUnwritable(task, outcome);
      if (outcome.outcome !== 'failed' || !outcome.retryable || attempts > settings.retries || halted) break;
      await backoff(outcome, attempts);
    }
    record(task, outcome, attempts);
    if (outcome.outcome === 'stored' && toFollow) await follow(task, pageUrl);
  };

  await Promise.all(Array.from({ length: settings.concurrency }, async () => {
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
  while (storing.size > 0) await Promise.all([...storing]);
  if (storeFailure !== undefined) throw storeFailure.error;
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
