/**
 * Sweeping: removes (or refreshes) expired files, and keeps the state directory bounded: metas of
 * files that are gone, tag-log entries of removed files, old invalidation records, expiry-index logs
 * of seconds past, abandoned temp files. Running processes act on expiry by themselves (expiry.ts);
 * a sweep from cron covers the time none runs.
 */
import type { CacheRoot } from './cache-root.js';
import { parseOrigin } from './origin.js';
import { refreshFiles, type PurgeResult, type RefreshOptions } from './purge.js';
import type { MetaRecord } from './store/meta-log.js';
import { isSameFile } from './store/state-files.js';

export interface SweepOptions {
  /** Fetch expired pages again instead of deleting them; a failed refresh deletes. */
  refresh?: RefreshOptions;
}

export interface SweepResult extends PurgeResult {
  /** Meta records dropped because the version of the file they describe was gone (or never placed). */
  orphans: number;
}

export async function sweep(root: CacheRoot, options: SweepOptions = {}): Promise<SweepResult> {
  const refresh = options.refresh === undefined ? undefined : { ...options.refresh, origin: parseOrigin(options.refresh.origin) };
  await root.store.checkRoot();
  await root.store.init();
  const now = Date.now();
  const result: SweepResult = { removed: [], refreshed: [], failed: [], orphans: 0 };

  // The records that say their version has expired; of those, the ones whose version is in place.
  const due: MetaRecord[] = [];
  await root.store.meta.scan((record) => {
    if (record.expiresAt !== null && record.expiresAt <= now) due.push(record);
  });
  const byFile = new Map<string, MetaRecord>();
  for (const record of due) if (isSameFile(record, await root.store.fileStats(record.file))) byFile.set(record.file, record);
  const expired = [...byFile.values()];
  const files = expired.map((meta) => meta.file);

  // Like a purge: a render that started before this sweep must not put an expired page back.
  await root.invalidations.recordFiles(files, now);
  if (refresh !== undefined) {
    await refreshFiles(root, files, refresh, result, now, new Map(expired.map((meta) => [meta.file, meta.urlPath])));
  } else {
    // Only the version found expired: one stored since (by a render that began after `now`) stays.
    for (const meta of expired) if (await root.store.unplace(meta.file, meta.ino)) result.removed.push(meta.file);
  }

  // The records of files that are gone, or never arrived (a killed writer's), are dropped.
  result.orphans = await root.store.meta.compact();
  for (const log of await root.tags.allLogs()) await root.compact(log);
  await root.invalidations.prune(now);
  // Every page those logs name that had expired by now was found above, by its meta.
  await root.expiry.prune(now);
  await root.store.removeStaleTemps();
  // Its records may have used the reserve on a full disk (invalidation.ts); set it aside again.
  await root.store.keepReserve();
  return result;
}
