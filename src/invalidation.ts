/**
 * Invalidation records: when each tag, file, prefix, or the whole cache was last purged. A write
 * checks them before and after it renames its file into place, and gives up (undoing the rename) when
 * a purge began at or after its render started, so a render that read old data never overwrites a
 * purge (DESIGN.md invariant 5).
 *
 * Records are appended, never rewritten (concurrent purges cannot erase each other's), to one journal
 * per 10-minute bucket, `.prerender/inval/<bucket>.log`. A check reads the buckets from its render's
 * start to now: one journal, two when the render straddles a boundary. The bucket length is the same
 * in every process whatever its `maxRenderMs`, or a CLI purge (default settings) would land in a
 * journal an app configured otherwise never reads.
 *
 * A write whose render started more than `maxRenderMs` ago is refused outright, so journals older than
 * that can go, deleted whole with no writer in them. Processes sharing a root may differ in
 * `maxRenderMs`: each declares its own in an empty `retain-<ms>` file before it checks anything, and a
 * prune keeps journals for the longest declared. Each process keeps what it has read of a journal and
 * reads only what was appended since: a check costs one stat while nothing is purged.
 */
import path from 'node:path';
import { inUse, ownedName, ownerOf } from './owner.js';
import { isErrno } from './errors.js';
import { StateFiles, type JournalCursor } from './store/state-files.js';
import { RESERVE_FILE } from './store/store.js';
import { prefixCovers } from './url-path.js';

export interface InvalidationTarget {
  file: string;
  urlPath: string;
  tags: readonly string[];
}

type Kind = 'all' | 'tag' | 'file' | 'prefix';

/** Purges recorded since some time: the latest time of each. */
export interface PurgedSince {
  all: number | undefined;
  tags: Map<string, number>;
  files: Map<string, number>;
  prefixes: Map<string, number>;
}

/** The default maxRenderMs, so that roots written when the bucket followed it keep their journal names. */
const BUCKET_MS = 600_000;
const RETAIN_PREFIX = 'retain-';
/** A `retain-<ms>` file not renewed for this long no longer keeps journals (see declareRetention). */
const RETAIN_MAX_MS = 7 * 24 * 60 * 60 * 1000;
/** How often a process renews its `retain-<ms>` file while it runs. */
const RETAIN_RENEW_MS = 60 * 60 * 1000;
/** `hold-<since>-<owner>-hold-<n>`: journals from `since` on are kept while its owner holds it (see `hold`). */
const HOLD_PREFIX = 'hold-';
/** A hold older than this was left by a process that died: it no longer keeps anything. */
const HOLD_MAX_MS = 24 * 60 * 60 * 1000;

/**
 * What one process has read of one bucket's journal: which file (`dev:ino`) up to which offset. The
 * same path may name another file later: a root reached through a symlink (crawl --swap's `current`)
 * switched to another tree, or a journal deleted and made again.
 */
interface Journal extends JournalCursor {
  all: number;
  tags: Map<string, number>;
  files: Map<string, number>;
  prefixes: Map<string, number>;
  /** The catch-up in progress: reads of one journal run one at a time, each from the offset the last left. */
  reading: Promise<void>;
}

export class Invalidations {
  readonly dir: string;
  readonly maxRenderMs: number;
  private readonly reserve: string;
  private readonly journals = new Map<number, Journal>();
  private readonly files: StateFiles;
  private declared: Promise<void> | undefined;
  private renewedAt = 0;

  constructor(stateDir: string, root: string, maxRenderMs: number) {
    this.dir = path.join(stateDir, 'inval');
    this.reserve = path.join(stateDir, RESERVE_FILE);
    this.maxRenderMs = maxRenderMs;
    this.files = new StateFiles(stateDir, root);
  }

  /** The journal directory, made if need be, never through a symlink. */
  private makeDir(): Promise<boolean> {
    return this.files.directory(this.dir, true);
  }

  /**
   * Declares this process's `maxRenderMs` to every pruner (`retain-<ms>`), once; call before the first
   * check. Renders that started before it cannot miss a record to a prune: a pruner deletes only
   * journals older than its own maxRenderMs plus a 10-minute bucket, far before this process started.
   */
  declareRetention(): Promise<void> {
    this.declared ??= (async () => {
      await this.makeDir();
      if (!(await this.files.createExclusive(this.retainFile))) await this.renewRetention(Date.now());
      this.renewedAt = Date.now();
    })().catch((error: unknown) => {
      this.declared = undefined;
      throw error;
    });
    return this.declared;
  }

  private get retainFile(): string {
    return path.join(this.dir, `${RETAIN_PREFIX}${this.maxRenderMs}`);
  }

  /** A declaration is renewed while its process runs; one left unrenewed for a week expires (prune). */
  private async renewRetention(now: number): Promise<void> {
    this.renewedAt = now;
    await this.files.touch(this.retainFile, new Date(now));
  }

  recordTags(tags: readonly string[], at: number): Promise<void> {
    return this.append(at, tags.map((tag) => ['tag', tag]));
  }

  recordFiles(files: readonly string[], at: number): Promise<void> {
    return this.append(at, files.map((file) => ['file', file]));
  }

  recordPrefix(prefix: string, at: number): Promise<void> {
    return this.append(at, [['prefix', prefix]]);
  }

  recordAll(at: number): Promise<void> {
    return this.append(at, [['all', '']]);
  }

  /**
   * Why a render that started at `renderedAt` may no longer be stored, or undefined when it may. A
   * purge recorded at the very millisecond the render started counts: the render may have read old data.
   */
  async staleReason(renderedAt: number, target: InvalidationTarget, now = Date.now()): Promise<string | undefined> {
    return (await this.staleReasons([{ renderedAt, target }], now))[0];
  }

  /**
   * `staleReason` for many renders at once (a batch of stores), reading each journal they span once.
   */
  async staleReasons(renders: ReadonlyArray<{ renderedAt: number; target: InvalidationTarget }>, now = Date.now()): Promise<Array<string | undefined>> {
    this.forget(now);
    if (this.declared !== undefined && now - this.renewedAt > RETAIN_RENEW_MS) void this.renewRetention(now);
    const reasons: Array<string | undefined> = renders.map(({ renderedAt }) => (now - renderedAt > this.maxRenderMs ? `the render took longer than maxRenderMs (${this.maxRenderMs} ms)` : undefined));
    const open = renders.map((render, index) => ({ ...render, index })).filter(({ index }) => reasons[index] === undefined);
    if (open.length === 0) return reasons;
    const first = Math.min(...open.map(({ renderedAt }) => this.bucketOf(renderedAt)));
    for (let bucket = first; bucket <= this.bucketOf(now); bucket++) {
      const journal = await this.read(bucket);
      for (const { renderedAt, target, index } of open) {
        if (reasons[index] === undefined && bucket >= this.bucketOf(renderedAt)) reasons[index] = purgedSince(journal, renderedAt, target);
      }
    }
    return reasons;
  }

  /**
   * Keeps every journal from `since` on, whatever the retention, until the returned release: for a
   * crawl --swap that will read the purges made during its build (`since`), however long it takes.
   */
  async hold(since: number): Promise<() => Promise<void>> {
    await this.makeDir();
    const file = path.join(this.dir, `${HOLD_PREFIX}${since}-${ownedName('hold')}`);
    if (!(await this.files.createExclusive(file))) throw new Error(`${file} exists: a hold's name is this process's alone`);
    return () => this.files.remove(file);
  }

  /**
   * Every purge recorded at or after `at` (up to `now`): what a tree built elsewhere meanwhile (a crawl
   * --swap generation) must drop before it replaces this one.
   */
  async since(at: number, now = Date.now()): Promise<PurgedSince> {
    const purged: PurgedSince = { all: undefined, tags: new Map(), files: new Map(), prefixes: new Map() };
    const keep = (into: Map<string, number>, from: Map<string, number>): void => {
      for (const [key, when] of from) if (when >= at) into.set(key, Math.max(into.get(key) ?? -Infinity, when));
    };
    for (let bucket = this.bucketOf(at); bucket <= this.bucketOf(now); bucket++) {
      const journal = await this.read(bucket);
      if (journal.all >= at) purged.all = Math.max(purged.all ?? -Infinity, journal.all);
      keep(purged.tags, journal.tags);
      keep(purged.files, journal.files);
      keep(purged.prefixes, journal.prefixes);
    }
    return purged;
  }

  /**
   * Deletes journals no render can still be checked against, in any process that declared its
   * maxRenderMs here.
   */
  async prune(now = Date.now()): Promise<void> {
    const names = await this.files.names(this.dir);
    /**
     * A marker's value while it is in force; a marker left unrenewed past `maxAgeMs`, or a hold whose
     * owner is gone (owner.ts), is deleted.
     */
    const inForce = async (name: string, prefix: string, maxAgeMs: number): Promise<number | undefined> => {
      const [head, ...rest] = name.startsWith(prefix) ? name.slice(prefix.length).split('-') : [];
      const value = Number(head);
      if (!Number.isSafeInteger(value)) return undefined;
      const renewed = (await this.files.lstat(path.join(this.dir, name)))?.mtimeMs;
      if (renewed === undefined) return undefined;
      const alive = prefix === HOLD_PREFIX ? inUse(ownerOf(rest.join('-')), now - renewed, { maxAgeMs }) : now - renewed <= maxAgeMs;
      if (alive) return value;
      await this.files.remove(path.join(this.dir, name));
      return undefined;
    };
    let retainMs = this.maxRenderMs;
    // A declaration no process has renewed for a week is of processes long gone (or reconfigured); a
    // day-old hold, of a crawl that died.
    for (const name of names) retainMs = Math.max(retainMs, (await inForce(name, RETAIN_PREFIX, RETAIN_MAX_MS)) ?? -Infinity);
    let oldest = this.bucketOf(now - retainMs) - 1;
    for (const name of names) {
      const since = await inForce(name, HOLD_PREFIX, HOLD_MAX_MS);
      if (since !== undefined) oldest = Math.min(oldest, this.bucketOf(since));
    }
    for (const name of names) {
      if (!name.endsWith('.log')) continue;
      const bucket = Number(name.slice(0, -'.log'.length));
      if (!Number.isSafeInteger(bucket)) continue;
      if (bucket < oldest) {
        await this.files.remove(path.join(this.dir, name));
        this.journals.delete(bucket);
      }
    }
  }

  /**
   * Drops what this process has read of journals no check of its own can reach any more: renders
   * older than maxRenderMs are refused before any journal is read. Without this a long-lived app
   * would keep every purge record it ever read, whoever prunes the files.
   */
  private forget(now: number): void {
    const oldest = this.bucketOf(now - this.maxRenderMs);
    for (const bucket of this.journals.keys()) if (bucket < oldest) this.journals.delete(bucket);
  }

  /** Buckets whose records this process holds in memory; for tests. */
  get bucketsHeld(): number {
    return this.journals.size;
  }

  private bucketOf(at: number): number {
    return Math.floor(at / BUCKET_MS);
  }

  private journalPath(bucket: number): string {
    return path.join(this.dir, `${bucket}.log`);
  }

  private async append(at: number, records: ReadonlyArray<readonly [Kind, string]>): Promise<void> {
    if (records.length === 0) return;
    await this.makeDir();
    // One write: the records of one purge land together. Leading newlines keep a record torn by a
    // killed purge from running into the next one (that purge never returned, so nothing relied on it).
    const text = records.map(([kind, key]) => `\n${at} ${kind} ${JSON.stringify(key)}\n`).join('');
    const journal = this.journalPath(this.bucketOf(at));
    try {
      await this.files.appendText(journal, text);
    } catch (error) {
      // A full disk must not block the purge that would free it: give up the space set aside for this
      // (Store.keepReserve) and try once more. A record torn by the first attempt is skipped on read.
      if (!isErrno(error, 'ENOSPC', 'EDQUOT')) throw error;
      if ((await this.files.lstat(this.reserve)) === undefined) throw error;
      await this.files.remove(this.reserve);
      await this.files.appendText(journal, text);
    }
  }

  /** The journal of a bucket as far as it has been written, reading only what is new. */
  private async read(bucket: number): Promise<Journal> {
    const fresh = (identity: string | undefined): Journal => {
      const made: Journal = { identity, offset: 0, all: -Infinity, tags: new Map(), files: new Map(), prefixes: new Map(), reading: Promise.resolve() };
      this.journals.set(bucket, made);
      return made;
    };
    let journal = this.journals.get(bucket) ?? fresh(undefined);
    const file = this.journalPath(bucket);
    // lstat: a symlink in a journal's place is not read through (the open below refuses it, and the
    // check fails rather than pass on records it could not read).
    const stats = await this.files.lstat(file);
    if (stats === undefined) return journal;
    const identity = `${stats.dev}:${stats.ino}`;
    // Another file at this path: what was read of the old one says nothing about it.
    if (journal.identity === undefined) journal.identity = identity;
    else if (journal.identity !== identity) journal = fresh(identity);
    const { size } = stats;
    if (size <= journal.offset) return journal;
    // Concurrent checks in this process must not read the same bytes twice (the offset would then
    // skip records) or from an offset that moved under them: catch-ups queue, and each reads on from
    // wherever the previous one stopped, up to the size this check saw.
    const reading = journal;
    const catchUp = reading.reading.then(() => this.readFrom(file, reading, size));
    reading.reading = catchUp.catch(() => undefined);
    await catchUp;
    return reading;
  }

  private async readFrom(file: string, journal: Journal, size: number): Promise<void> {
    if (size <= journal.offset) return;
    for (const line of (await this.files.readAppended(file, journal, size)).split('\n')) apply(journal, line);
  }
}

/** Why a journal's records forbid storing a render that started at `renderedAt`, if they do. */
function purgedSince(journal: Journal, renderedAt: number, target: InvalidationTarget): string | undefined {
  if (journal.all >= renderedAt) return 'the whole cache was purged while it rendered';
  if ((journal.files.get(target.file) ?? -Infinity) >= renderedAt) return 'its path was purged while it rendered';
  for (const tag of target.tags) {
    if ((journal.tags.get(tag) ?? -Infinity) >= renderedAt) return `tag ${tag} was purged while it rendered`;
  }
  for (const [prefix, at] of journal.prefixes) {
    // A prefix covers a page by its URL or by its file: purging /blog/ removes blog/index.html,
    // which also serves /blog.
    if (at >= renderedAt && (target.urlPath.startsWith(prefix) || prefixCovers(prefix, target.file))) {
      return `prefix ${prefix} was purged while it rendered`;
    }
  }
  return undefined;
}

function apply(journal: Journal, line: string): void {
  const match = /^(\d+) (all|tag|file|prefix) (".*")$/.exec(line);
  if (match === null) return;
  const at = Number(match[1]);
  let key: unknown;
  try {
    key = JSON.parse(match[3] as string);
  } catch {
    return;
  }
  if (typeof key !== 'string') return;
  const kind = match[2] as Kind;
  if (kind === 'all') journal.all = Math.max(journal.all, at);
  else {
    const map = kind === 'tag' ? journal.tags : kind === 'file' ? journal.files : journal.prefixes;
    map.set(key, Math.max(map.get(key) ?? -Infinity, at));
  }
}
