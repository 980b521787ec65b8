/**
 * Sweeping: removes (or refreshes) expired files, and keeps the state directory bounded: metas of
 * files that are gone, tag-log entries of removed files, old invalidation records, expiry-index logs
 * of seconds past, abandoned temp files. Running processes act on expiry by themselves (expiry.ts);
 * a sweep from cron covers the time none runs.
 */
import { constants } from 'node:fs';
import fs from 'node:fs/promises';
import { O_NOFOLLOW } from './no-follow.js';
import path from 'node:path';
import type { CacheRoot } from './cache-root.js';
import { parseOrigin } from './origin.js';
import { refreshFiles, type PurgeResult, type RefreshOptions } from './purge.js';
import type { EntryMeta } from './store/store.js';

export interface SweepOptions {
  /** Fetch expired pages again instead of deleting them; a failed refresh deletes. */
  refresh?: RefreshOptions;
}

export interface SweepResult extends PurgeResult {
  /** Index records dropped because their file was gone. */
  orphans: number;
}

export async function sweep(root: CacheRoot, options: SweepOptions = {}): Promise<SweepResult> {
  const refresh = options.refresh === undefined ? undefined : { ...options.refresh, origin: parseOrigin(options.refresh.origin) };
  await root.store.checkRoot();
  await root.store.init();
  const now = Date.now();
  const result: SweepResult = { removed: [], refreshed: [], failed: [], orphans: 0 };

  const expired: string[] = [];
  for (const entry of await fs.readdir(root.store.metaDir, { withFileTypes: true }).catch(() => [])) {
    // A symlinked bucket is not entered: the sweep would delete what it takes for stray records there.
    if (!entry.isDirectory()) continue;
    const bucket = entry.name;
    for (const name of await fs.readdir(path.join(root.store.metaDir, bucket)).catch(() => [] as string[])) {
      const metaPath = path.join(root.store.metaDir, bucket, name);
      const meta = await readJson(metaPath);
      if (meta === undefined || typeof meta.file !== 'string') {
        await root.store.removeMetaRecord(metaPath);
        result.orphans++;
      } else if (!(await root.store.exists(meta.file))) {
        // A writer records the meta just before renaming its file in; leave young ones alone.
        if (now - meta.storedAt > root.invalidations.maxRenderMs) {
          await root.store.removeMetaRecord(metaPath);
          result.orphans++;
        }
      } else if (meta.expiresAt !== null && meta.expiresAt <= now) {
        expired.push(meta.file);
      }
    }
  }

  // Like a purge: a render that started before this sweep must not put an expired page back.
  await root.invalidations.recordFiles(expired, now);
  if (refresh !== undefined) {
    await refreshFiles(root, expired, refresh, result, now);
  } else {
    for (const file of expired) if (await root.store.remove(file)) result.removed.push(file);
  }

  for (const log of await root.tags.allLogs()) await root.compact(log);
  await root.invalidations.prune(now);
  // Every page those logs name that had expired by now was found above, by its meta.
  await root.expiry.prune(now);
  await root.store.removeStaleTemps();
  // Its records may have used the reserve on a full disk (invalidation.ts); set it aside again.
  await root.store.keepReserve();
  return result;
}

async function readJson(file: string): Promise<EntryMeta | undefined> {
  try {
    return JSON.parse(await fs.readFile(file, { encoding: 'utf8', flag: constants.O_RDONLY | O_NOFOLLOW })) as EntryMeta;
  } catch {
    return undefined;
  }
}
