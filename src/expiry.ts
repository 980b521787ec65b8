/**
 * Acting on expiry while a process runs: the records the expiry index hands out (expiry-index.ts) are
 * checked against each page's meta, and the pages still expired are removed like a purge removes them:
 * the removal is recorded first (invalidation.ts), so a render that started before it, with the old
 * data, cannot put the page back. A page stored again since with a later expiry (or none) is left
 * alone: its meta says so. `prerender sweep` covers the time no process runs.
 */
import type { CacheRoot } from './cache-root.js';

export interface ExpireResult {
  removed: string[];
}

/** Removes the pages among `files` whose meta says they have expired by `now`. */
export async function expireFiles(root: CacheRoot, files: Iterable<string>, now = Date.now()): Promise<ExpireResult> {
  const result: ExpireResult = { removed: [] };
  const expired: string[] = [];
  for (const file of new Set(files)) if (await isExpired(root, file, now)) expired.push(file);
  if (expired.length === 0) return result;
  await root.invalidations.recordFiles(expired, now);
  for (const file of expired) {
    const inode = await root.store.inodeOf(file);
    // Read again after the record: a write that began after `now` may have replaced the page since.
    if (inode === undefined || !(await isExpired(root, file, now))) continue;
    if (await root.store.unplace(file, inode)) result.removed.push(file);
  }
  return result;
}

async function isExpired(root: CacheRoot, file: string, now: number): Promise<boolean> {
  const meta = await root.store.readMeta(file);
  return meta !== undefined && meta.file === file && meta.expiresAt !== null && meta.expiresAt <= now;
}

/**
 * The check a running cache makes every `expiryCheckMs`: the records due in each root's index, acted
 * on. One check at a time; a check that fails (a root deleted under the process) is reported to `warn`
 * and the next one tries again.
 */
export function expiryTimer(roots: readonly CacheRoot[], intervalMs: number, warn: (error: unknown) => void): { stop(): Promise<void> } {
  let running: Promise<void> | undefined;
  const check = async (): Promise<void> => {
    for (const root of roots) {
      const now = Date.now();
      const due = await root.expiry.due(now);
      if (due.length > 0) await expireFiles(root, due.map((record) => record.file), now);
    }
  };
  const timer = setInterval(() => {
    running ??= check().catch(warn).finally(() => {
      running = undefined;
    });
  }, intervalMs);
  timer.unref();
  return {
    async stop() {
      clearInterval(timer);
      await running;
    },
  };
}
