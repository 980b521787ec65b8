/**
 * One cache root: its files (store/store.ts), tag index (tags.ts), invalidation records (invalidation.ts)
 * and expiry index, and the one way pages are written into it (commit.ts, where the write protocol
 * that keeps them consistent across processes is stated).
 */
import { Invalidations } from './invalidation.js';
import { ExpiryIndex } from './expiry-index.js';
import { GroupCommit } from './commit.js';
import type { Encoding } from './precompress.js';
import type { PageBody } from './page-body.js';
import type { StorableResponse } from './policy.js';
import type { EntryMeta } from './store/meta-log.js';
import { Store } from './store/store.js';
import { TagIndex } from './tags.js';
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
  readonly precompress: readonly Encoding[];
  private readonly batches = new GroupCommit(this);

  constructor(root: string, options: CacheRootOptions = {}) {
    this.precompress = options.precompress ?? [];
    this.store = new Store(root, { durable: options.durable ?? true, rootMayBeLink: options.rootMayBeLink ?? true });
    this.tags = new TagIndex(this.store.stateDir, this.store.root);
    this.invalidations = new Invalidations(this.store.stateDir, this.store.root, options.maxRenderMs ?? 600_000);
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

  /**
   * Stores `body` as `meta.file` with the next batch (commit.ts); the body is discarded afterwards
   * either way. Rejects when the file system refused the write.
   */
  commit(body: PageBody, meta: EntryMeta): Promise<CommitResult> {
    return this.batches.submit(body, meta);
  }

  /** Drops a tag log's entries whose files are gone; skipped while another process compacts it. */
  compact(log: string): Promise<void> {
    return this.tags.exclusively(log, () => this.tags.compact(log, (file) => this.store.exists(file)));
  }
}
