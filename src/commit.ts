/**
 * Group commit: the one write path of pages into a cache root, for the middleware, the crawl and
 * refreshes alike. Pages submitted while a batch is being written wait for the next one, and a batch
 * goes through the protocol below step by step for all of its pages at once, so it costs a few
 * appends to the index and about one device wait, whatever its size.
 *
 * A batch of pages F (each with tags T, rendered from time S):
 * 1. `indexed`: F appended to the tag logs of T, one append a tag for the whole batch (a process
 *    killed after the rename cannot leave a file the index does not know);
 * 2. `written`: each body written to a temp file of its own in the state directory;
 * 3. `flushed`: every temp file flushed, all flushes issued together; nothing is renamed before all
 *    of its batch's flushes have returned;
 * 4. `checked`: pages for which a purge of T, F, a prefix of F's path or everything was recorded at or
 *    after S are dropped (one read of the purge journals); expiries noted (expiry-index.ts). Last
 *    before the rename, so the slow part (writing, flushing) is not a window for purges to slip into;
 * 5. `placed`: the batch's meta records appended (one write, store/meta-log.ts), then each temp file
 *    renamed over F;
 * 6. `rechecked`: the purge check again; a page a purge slipped in front of (between step 4 and its
 *    rename) is removed, only if it is still our inode; a page that expired meanwhile has its expiry
 *    noted again;
 * 7. `done`: F appended to the live tag log again if a purge or compaction took the log aside since
 *    step 1, and the meta records to the live segment if one took theirs since step 5; precompressed
 *    siblings written.
 */
import fs from 'node:fs';
import type { CacheRoot, CommitResult } from './cache-root.js';
import { isErrno } from './errors.js';
import { encodingOf, isCompressible, writeSiblings } from './precompress.js';
import type { PageBody } from './page-body.js';
import type { ExpiryRecord } from './expiry-index.js';
import type { EntryMeta, MetaRecord } from './store/meta-log.js';
import type { FileIdentity } from './store/state-files.js';
import type { StagedFile } from './store/temp-file.js';

export const COMMIT_STEPS = ['indexed', 'written', 'flushed', 'checked', 'placed', 'rechecked', 'done'] as const;
export type CommitStep = typeof COMMIT_STEPS[number];

/**
 * Called after each step of each batch with the files the batch still carries; a promise holds the
 * batch there. For tests: they stop a batch between two steps and look at what nginx serves then.
 */
export type CommitHook = (step: CommitStep, files: readonly string[], root: string) => void | Promise<void>;

/** Pages a batch takes at most; a burst larger than this is written as several batches. */
const MAX_BATCH_PAGES = 256;
/** Body bytes a batch takes at most (a batch always takes its first page, whatever its size). */
const MAX_BATCH_BYTES = 32 * 1024 * 1024;

let commitHook: CommitHook | undefined = pauseHookFromEnv();

/** Sets (or, with undefined, clears) the hook every batch of this process reports its steps to. */
export function setCommitHook(hook: CommitHook | undefined): void {
  commitHook = hook;
}

interface Pending {
  body: PageBody;
  meta: EntryMeta;
  resolve: (result: CommitResult) => void;
  reject: (error: unknown) => void;
}

export class GroupCommit {
  private readonly root: CacheRoot;
  private queue: Pending[] = [];
  private draining = false;

  constructor(root: CacheRoot) {
    this.root = root;
  }

  /**
   * Stores `body` as `meta.file` in a coming batch. The body is discarded (its bytes given back to
   * its budget) once the page is stored or refused.
   */
  submit(body: PageBody, meta: EntryMeta): Promise<CommitResult> {
    return new Promise<CommitResult>((resolve, reject) => {
      this.queue.push({ body, meta, resolve, reject });
      if (this.draining) return;
      this.draining = true;
      // After the current turn of the event loop: pages finishing together go in one batch.
      setImmediate(() => void this.drain());
    });
  }

  /**
   * One batch at a time: a second beside it would split the pages waiting into smaller batches, each
   * with a flush of its own, for no more work done in the same time.
   */
  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) await commitBatch(this.root, this.take());
    } finally {
      this.draining = false;
    }
  }

  /** The next batch: in submission order, and never two pages for one file (the later waits its turn). */
  private take(): Pending[] {
    const batch: Pending[] = [];
    const rest: Pending[] = [];
    const taken = new Set<string>();
    const held = new Set<string>();
    let bytes = 0;
    for (const page of this.queue) {
      const file = page.meta.file;
      const fits = batch.length < MAX_BATCH_PAGES && (batch.length === 0 || bytes + page.body.bytes <= MAX_BATCH_BYTES);
      if (fits && !taken.has(file) && !held.has(file)) {
        batch.push(page);
        taken.add(file);
        bytes += page.body.bytes;
      } else {
        rest.push(page);
        held.add(file);
      }
    }
    this.queue = rest;
    return batch;
  }
}

interface Item extends Pending {
  staged?: StagedFile;
  inode?: number;
  replacedSiblings?: string[];
  settled: boolean;
}

async function commitBatch(root: CacheRoot, pages: readonly Pending[]): Promise<void> {
  const items: Item[] = pages.map((page) => ({ ...page, settled: false }));
  const settle = (item: Item, outcome: CommitResult | { error: unknown }): void => {
    if (item.settled) return;
    item.settled = true;
    item.body.discard();
    const answer = (): void => {
      if ('error' in outcome) item.reject(outcome.error);
      else item.resolve(outcome);
    };
    // A refused page's temp file is gone before its store is answered, so that `idle()` leaves none.
    if (item.staged !== undefined && !item.staged.placed) void root.store.unstage(item.staged).finally(answer);
    else answer();
  };
  const live = (): Item[] => items.filter((item) => !item.settled);
  /** Runs `work` on every live item at once; an item whose work throws is settled with the error. */
  const each = async (work: (item: Item) => Promise<void>, of: readonly Item[] = live()): Promise<void> => {
    await Promise.all(of.map((item) => work(item).catch((error: unknown) => settle(item, { error }))));
  };
  const step = async (name: CommitStep): Promise<void> => {
    if (commitHook !== undefined) await commitHook(name, live().map((item) => item.meta.file), root.root);
  };

  try {
    await root.init();
    for (const item of items) {
      if (root.store.resolve(item.meta.file) === undefined) settle(item, { stored: false, reason: 'path outside the root or too long' });
    }

    const identities = new Map<string, FileIdentity>();
    await eachTag(live(), async (tag, tagged) => {
      identities.set(tag, await root.tags.append(tag, tagged.map(tagEntryOf)));
    }, settle);
    await step('indexed');

    await each(async (item) => {
      item.staged = await root.store.stage(item.body, item.meta.mtime);
      // On disk now: the bytes go back to the budget before the slow part, the flush.
      item.body.discard();
    });
    await step('written');

    const staged = live();
    const errors = await root.store.flush(staged.map((item) => item.staged as StagedFile));
    staged.forEach((item, index) => {
      if (errors[index] !== undefined) settle(item, { error: errors[index] });
    });
    await step('flushed');

    await purgeCheck(root, live(), settle);
    const expiring = live().filter((item) => item.meta.expiresAt !== null);
    // Before the page is placed, so a process killed in between leaves no page the index misses.
    if (expiring.length > 0) {
      await root.expiry.recordAll(expiring.map(expiryRecordOf))
        .catch((error: unknown) => expiring.forEach((item) => settle(item, { error })));
    }
    await step('checked');

    const described = live();
    let metaAppend;
    try {
      metaAppend = await root.store.meta.append(described.map(metaRecordOf));
    } catch (error) {
      for (const item of described) settle(item, { error });
    }
    await root.store.batch(() => each(async (item) => {
      const placed = await root.store.place(item.staged as StagedFile, item.meta.file);
      if (!placed.stored) return settle(item, placed);
      item.inode = placed.inode;
      item.replacedSiblings = placed.replacedSiblings;
    }));
    await step('placed');

    await purgeCheck(root, live(), async (item, refused) => {
      await root.store.unplace(item.meta.file, item.inode as number);
      settle(item, refused);
    });
    // Expired while it was written: a reader may have acted on its expiry record before the page
    // was there (expiry.ts found no meta). Noted again, in the current second, for readers to act on
    // now; not removed here, which would leave a miss where a stale-while-revalidate refresh had
    // replaced a page nginx was serving.
    const expired = live().filter((item) => item.meta.expiresAt !== null && item.meta.expiresAt <= Date.now());
    if (expired.length > 0) await root.expiry.recordAll(expired.map(expiryRecordOf));
    await step('rechecked');

    await eachTag(live(), async (tag, tagged) => {
      const log = root.tags.logPath(tag);
      await root.tags.appendUntilIndexed(log, tagged.map(tagEntryOf), identities.get(tag));
      if (root.tags.needsCompaction(log, await root.tags.size(log))) await root.compact(log);
    }, settle);
    // A purge --all or a compaction of the meta index may have taken the segment between the append
    // and the renames, and judged these pages' records by a tree that did not have them yet.
    if (metaAppend !== undefined && live().length > 0) {
      await root.store.meta.ensureIndexed(metaAppend).catch((error: unknown) => live().forEach((item) => settle(item, { error })));
      if (root.store.meta.needsCompaction()) await root.store.meta.compact().catch(() => undefined);
    }
    await each(async (item) => {
      // A page replaced in place (a refresh, a crawl over the live tree) keeps the encodings its old
      // version had, so gzip and brotli clients do not lose them to a writer configured without.
      const encodings = [...new Set([...root.precompress, ...(item.replacedSiblings ?? []).map((suffix) => encodingOf(suffix as '.gz' | '.br'))])];
      if (encodings.length > 0 && isCompressible(item.meta.mediaType, item.meta.size)) {
        // Siblings are an optimisation: without them nginx serves the plain file, so a failure here
        // (disk full, say) does not undo the store.
        await writeSiblings(root.store, item.meta.file, item.inode as number, item.meta.mtime, encodings).catch(() => undefined);
      }
    });
    await step('done');
    for (const item of live()) settle(item, { stored: true });
  } catch (error) {
    for (const item of live()) settle(item, { error });
  }
}

function tagEntryOf(item: Item): { file: string; urlPath: string } {
  return { file: item.meta.file, urlPath: item.meta.urlPath };
}

function metaRecordOf(item: Item): MetaRecord {
  const staged = item.staged as StagedFile;
  return { ...item.meta, ino: staged.inode, birth: staged.birth };
}

function expiryRecordOf(item: Item): ExpiryRecord {
  const staged = item.staged as StagedFile;
  const expiresAt = item.meta.expiresAt as number;
  return { file: item.meta.file, at: expiresAt, ino: staged.inode, birth: staged.birth, urlPath: item.meta.urlPath, expiresAt, staleWhileRevalidateMs: item.meta.staleWhileRevalidateMs ?? 0 };
}

/** Runs `work` once a tag with the live items carrying it; a failure settles those items. */
async function eachTag(items: readonly Item[], work: (tag: string, tagged: Item[]) => Promise<void>, settle: (item: Item, outcome: { error: unknown }) => void): Promise<void> {
  const byTag = new Map<string, Item[]>();
  for (const item of items) {
    for (const tag of item.meta.tags) {
      const tagged = byTag.get(tag);
      if (tagged === undefined) byTag.set(tag, [item]);
      else tagged.push(item);
    }
  }
  await Promise.all([...byTag].map(([tag, tagged]) => work(tag, tagged).catch((error: unknown) => {
    for (const item of tagged) settle(item, { error });
  })));
}

async function purgeCheck(root: CacheRoot, items: readonly Item[], refuse: (item: Item, result: { stored: false; reason: string }) => void | Promise<void>): Promise<void> {
  if (items.length === 0) return;
  const reasons = await root.invalidations.staleReasons(items.map((item) => ({ renderedAt: item.meta.renderedAt, target: item.meta })));
  await Promise.all(items.map(async (item, index) => {
    const reason = reasons[index];
    if (reason !== undefined) await refuse(item, { stored: false, reason });
  }));
}

/**
 * `PRERENDER_TEST_PAUSE_AT=<step>` with `PRERENDER_TEST_PAUSE_FILE=<path>`: the first batch of the
 * process reaching that step writes its files to the path and waits there for good, so a test can
 * SIGKILL a process that is known to be in the middle of a batch. Ignored unless both are set.
 */
function pauseHookFromEnv(): CommitHook | undefined {
  const at = process.env['PRERENDER_TEST_PAUSE_AT'];
  const file = process.env['PRERENDER_TEST_PAUSE_FILE'];
  if (at === undefined || file === undefined || !(COMMIT_STEPS as readonly string[]).includes(at)) return undefined;
  let paused = false;
  return (step, files) => {
    if (step !== at || paused || files.length === 0) return;
    paused = true;
    try {
      fs.writeFileSync(file, JSON.stringify({ step, files, pid: process.pid }));
    } catch (error) {
      if (!isErrno(error)) throw error;
    }
    return new Promise<void>(() => undefined);
  };
}
