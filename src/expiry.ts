/**
 * Acting on expiry while a process runs: each record the expiry index hands out (expiry-index.ts)
 * names one version of a file, and while that version is in place it is removed like a purge removes
 * it: the removal is recorded first (invalidation.ts), so a render that started before it, with the
 * old data, cannot put the page back. A page stored again since (another version, with a later expiry
 * or none) is left alone. `prerender sweep` covers the time no process runs.
 *
 * A page stored with `stale-while-revalidate=N` (RFC 5861) is instead fetched again from the app, when
 * the cache knows where the app is (`refreshOrigin`), and replaced in place while nginx goes on serving
 * the old file. A refresh that fails is retried every RETRY_MS through the index (so any process may
 * take it up) until N seconds past the expiry; then the page is removed as any other.
 */
import pLimit from 'p-limit';
import type { CacheRoot } from './cache-root.js';
import { fetchPage } from './crawl/fetch-page.js';
import type { ExpiryRecord } from './expiry-index.js';
import { targetFor } from './purge.js';
import { isSameFile } from './store/state-files.js';

/** Pages checked and removed at once (libuv's thread pool has 4 threads by default). */
const REMOVE_CONCURRENCY = 8;
/** How soon a failed stale-while-revalidate refresh is tried again. */
const RETRY_MS = 1000;
/** Refreshes in flight at once per cache; the app serves its clients meanwhile. */
const REFRESH_CONCURRENCY = 4;
const REFRESH_TIMEOUT_MS = 30_000;
const REFRESH_MAX_BODY_BYTES = 10 * 1024 * 1024;

export interface ExpireResult {
  removed: string[];
  /** Expired pages still within their stale-while-revalidate window: to be refreshed, not removed. */
  stale: Array<{ record: ExpiryRecord; deadline: number }>;
}

/**
 * Removes the pages of `records` that have expired by `now` and are still the version the record
 * names; with `revalidate`, pages within a stale-while-revalidate window are returned in `stale` instead.
 */
export async function expireFiles(root: CacheRoot, records: Iterable<ExpiryRecord>, now = Date.now(), revalidate = false): Promise<ExpireResult> {
  const result: ExpireResult = { removed: [], stale: [] };
  const expired: ExpiryRecord[] = [];
  const versions = new Map<string, ExpiryRecord>();
  for (const record of records) versions.set(`${record.file}\u0000${record.ino}\u0000${record.birth}`, record);
  // A few at a time: a burst of pages expiring in one second must be gone within that second too.
  const limit = pLimit(REMOVE_CONCURRENCY);
  await Promise.all([...versions.values()].map((record) => limit(async () => {
    if (record.expiresAt > now || !(await isInPlace(root, record))) return;
    const deadline = record.expiresAt + record.staleWhileRevalidateMs;
    if (revalidate && deadline > now) result.stale.push({ record, deadline });
    else expired.push(record);
  })));
  if (expired.length === 0) return result;
  await root.invalidations.recordFiles(expired.map((record) => record.file), now);
  await Promise.all(expired.map((record) => limit(async () => {
    // Again after the record: a write that began after `now` may have replaced the page since.
    if ((await isInPlace(root, record)) && (await root.store.unplace(record.file, record.ino))) result.removed.push(record.file);
  })));
  return result;
}

async function isInPlace(root: CacheRoot, record: ExpiryRecord): Promise<boolean> {
  return isSameFile(record, await root.store.fileStats(record.file));
}

export interface ExpiryTimerOptions {
  intervalMs: number;
  /** Where stale-while-revalidate refreshes are fetched; without it such pages are removed. */
  refreshOrigin?: string;
  warn(error: unknown): void;
}

/**
 * The check a running cache makes every `intervalMs`: the records due in each root's index, acted on.
 * One check at a time; refreshes run beside the checks (a slow app must not hold other pages' expiry
 * up). A check that fails (a root deleted under the process) goes to `warn`; the next one tries again.
 */
export function expiryTimer(roots: ReadonlyArray<readonly [host: string | undefined, root: CacheRoot]>, options: ExpiryTimerOptions): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const refreshing = new Map<string, Promise<void>>();
  const limit = pLimit(REFRESH_CONCURRENCY);
  const origin = options.refreshOrigin;

  const refresh = (root: CacheRoot, host: string | undefined, { record, deadline }: ExpireResult['stale'][number]): void => {
    const key = `${root.root}\u0000${record.file}`;
    if (origin === undefined || refreshing.has(key)) return;
    const task = limit(async () => {
      // First, so that a process that dies while refreshing still leaves the page to go at the deadline.
      await root.expiry.record({ ...record, at: deadline });
      const target = targetFor(record.file, record.urlPath);
      const timeoutMs = Math.max(1, Math.min(REFRESH_TIMEOUT_MS, deadline - Date.now()));
      const outcome = target === undefined
        ? { outcome: 'skipped' as const }
        : await fetchPage(root, target, { origin, timeoutMs, maxBodyBytes: REFRESH_MAX_BODY_BYTES, ...(host === undefined ? {} : { host }) });
      // Stored: a new version, with records of its own; this one's no longer match. Otherwise try
      // again soon; a record at the deadline removes the page (expireFiles sees its window has passed).
      if (outcome.outcome !== 'stored') await root.expiry.record({ ...record, at: Math.min(Date.now() + RETRY_MS, deadline) });
    }).catch(options.warn).finally(() => refreshing.delete(key));
    refreshing.set(key, task);
  };

  const check = async (): Promise<void> => {
    for (const [host, root] of roots) {
      const now = Date.now();
      const due = await root.expiry.due(now);
      if (due.length === 0) continue;
      const result = await expireFiles(root, due, now, origin !== undefined);
      for (const stale of result.stale) refresh(root, host, stale);
    }
  };
  const timer = setInterval(() => {
    running ??= check().catch(options.warn).finally(() => {
      running = undefined;
    });
  }, options.intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
      await Promise.allSettled([...refreshing.values()]);
    },
  };
}
