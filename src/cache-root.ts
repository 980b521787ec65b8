/**
 * One cache root: its files (store.ts), tag index (tags.ts) and invalidation records
 * (invalidation.ts), and the write protocol that keeps the three consistent across processes.
 *
 * A write of file F with tags T, rendered from time S:
 * 1. append F to each tag log in T (so a crash after step 3 cannot leave an unindexed file);
 * 2. refuse if a purge of T, F, a prefix of F's path or everything was recorded at or after S;
 *    note F's expiry in the expiry index (expiry-index.ts), if it has one;
 * 3. record F's meta and rename the temp file over F;
 * 4. check again; if a purge slipped in between, remove F again (only if it is still our inode); if
 *    F expired meanwhile, note its expiry again for readers that looked before F was there;
 * 5. if a purge or compaction took a tag log aside since step 1, append F to the live log again.
 */
import { fileIo } from './file-io.js';
import { Invalidations } from './invalidation.js';
import { ExpiryIndex } from './expiry-index.js';
import { encodingOf, isCompressible, writeSiblings, type Encoding } from './precompress.js';
import type { StorableResponse } from './policy.js';
import { Store, type EntryMeta, type TempFile } from './store.js';
import { TagIndex, type LogIdentity } from './tags.js';
import type { CachePath } from './url-path.js';
import { mtimeSeconds } from './validators.js';

export interface CacheRootOptions {
  /** fsync before rename. @default true */
  durable?: boolean;
  /**
   * A render that took longer than this is not stored. Bounds how long invalidation records must be
   * kept.
   * @default 600_000 (10 minutes)
   */
  maxRenderMs?: number;
  /** Write `.gz` / `.br` siblings for nginx's gzip_static / brotli_static. @default [] */
  precompress?: readonly Encoding[];
  /** Whether the root itself may be a symlink (not for a multi-site host's root). @default true */
  rootMayBeLink?: boolean;
}

/** The index record for a response about to be stored. */
export function entryFor(target: CachePath, response: StorableResponse, renderedAt: number, size: number): EntryMeta {
  return {
    urlPath: target.urlPath,
    file: target.file,
    tags: response.tags,
    renderedAt,
    storedAt: Date.now(),
    expiresAt: response.expiresAt,
    ...(response.staleWhileRevalidateMs > 0 ? { staleWhileRevalidateMs: response.staleWhileRevalidateMs } : {}),
    mediaType: target.mediaType,
    size,
    mtime: mtimeSeconds(response.lastModified, renderedAt),
  };
}

export type CommitResult = { stored: true } | { stored: false; reason: string };

export class CacheRoot {
  readonly store: Store;
  readonly tags: TagIndex;
  readonly invalidations: Invalidations;
  readonly expiry: ExpiryIndex;
  private readonly precompress: readonly Encoding[];

  constructor(root: string, options: CacheRootOptions = {}) {
    this.precompress = options.precompress ?? [];
    this.store = new Store(root, { durable: options.durable ?? true, rootMayBeLink: options.rootMayBeLink ?? true });
    this.tags = new TagIndex(this.store.stateDir, this.store.root);
    this.invalidations = new Invalidations(this.store.stateDir, this.store.root, options.maxRenderMs ?? 600_000, fileIo);
    this.expiry = new ExpiryIndex(this.store.stateDir, this.store.root);
  }

  get root(): string {
    return this.store.root;
  }

  /**
   * Sets the root up for writing (state directories, stale temp files, this process's maxRenderMs
   * declared to pruners); once, however often it is called.
   */
  async init(): Promise<void> {
    await this.store.init();
    await this.invalidations.declareRetention();
  }

  /** Stores a finished temp file as `meta.file`; the temp file is gone afterwards either way. */
  async commit(temp: TempFile, meta: EntryMeta): Promise<CommitResult> {
    try {
      await this.init();
      if (this.store.resolve(meta.file) === undefined) return { stored: false, reason: 'path outside the root or too long' };
      const logs = new Map<string, LogIdentity>();
      for (const tag of meta.tags) logs.set(tag, await this.tags.append(tag, meta.file));

      const staleBefore = await this.invalidations.staleReason(meta.renderedAt, meta);
      if (staleBefore !== undefined) return { stored: false, reason: staleBefore };
      // Before the page is placed, so a process killed in between leaves no page the index misses.
      if (meta.expiresAt !== null) await this.expiry.record(meta.file, meta.expiresAt);

      const placed = await this.store.place(temp, meta);
      if (!placed.stored) return placed;

      const staleAfter = await this.invalidations.staleReason(meta.renderedAt, meta);
      if (staleAfter !== undefined) {
        await this.store.unplace(meta.file, placed.inode);
        return { stored: false, reason: staleAfter };
      }
      // Expired while it was written: a reader may have acted on its expiry record before the page
      // was there (expiry.ts found no meta). Noted again, in the current second, for readers to act on
      // now; not removed here, which would leave a miss where a stale-while-revalidate refresh had
      // replaced a page nginx was serving.
      if (meta.expiresAt !== null && meta.expiresAt <= Date.now()) await this.expiry.record(meta.file, meta.expiresAt);

      for (const [tag, first] of logs) {
        const log = this.tags.logPath(tag);
        await this.tags.appendUntilIndexed(log, [meta.file], first);
        if (this.tags.needsCompaction(log, await this.tags.size(log))) await this.compact(log);
      }
      // A purge that began before this render started (so it does not refuse it) may have taken the
      // record between its write and the rename; the tag records were made good just above.
      await this.store.restoreMeta(meta, placed.inode);
      // A page replaced in place (a refresh, a crawl over the live tree) keeps the encodings its old
      // version had, so gzip and brotli clients do not lose them to a writer configured without.
      const encodings = [...new Set([...this.precompress, ...placed.replacedSiblings.map(encodingOf)])];
      if (encodings.length > 0 && isCompressible(meta.mediaType, meta.size)) {
        // Siblings are an optimisation: without them nginx serves the plain file, so a failure here
        // (disk full, say) does not undo the store.
        await writeSiblings(this.store, meta.file, placed.inode, meta.mtime, encodings).catch(() => undefined);
      }
      return { stored: true };
    } finally {
      await temp.discard();
    }
  }

  /** Drops a tag log's entries whose files are gone; skipped while another process compacts it. */
  compact(log: string): Promise<void> {
    return this.tags.exclusively(log, () => this.tags.compact(log, (file) => this.store.exists(file)));
  }
}
