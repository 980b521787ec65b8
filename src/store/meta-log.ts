/**
 * The meta records: what ls, sweep and refreshes know of each stored file, appended once a batch to a
 * segment of the writer's own, `.prerender/meta/<owner>-meta-<n>.log` (format: state-files.ts).
 *
 * - A record names the version of the file it describes by identity (inode and birth time) and counts
 *   only while that file is at its path. So a purge never touches the records; one whose rename never
 *   happened (a refused page, a killed process) counts for nothing; of several for one path, the one
 *   for the file there now wins.
 * - Appended before the batch's renames, so a placed page has its record. Not flushed: after a power
 *   cut a lost record costs a file its ls and sweep details, never a page (its tags are in the tag
 *   logs, its expiry in the expiry index, and the page itself was flushed).
 * - Compaction takes every segment aside, keeps the records whose version is still in place, and
 *   appends those to a segment of its own, a segment at a time. A writer whose segment was taken after its append appends again
 *   once its pages are placed (`ensureIndexed`, commit step 7), so no record of a page is lost to it.
 * - Reading is the whole index, a segment at a time, O(cache) in time and O(one segment) in memory:
 *   for ls and sweep, which visit every file anyway, and for refreshing a prefix. Expiry and refresh
 *   by tag carry what they need in their own records.
 */
import type { Stats } from 'node:fs';
import path from 'node:path';
import { ownedName } from '../owner.js';
import { type FileIdentity, type StateFiles, isSameFile } from './state-files.js';

/** What the index keeps about one stored file. */
export interface EntryMeta {
  /** Decoded URL path the file was stored for, e.g. `/café/`. */
  urlPath: string;
  /** File relative to the root, `/`-separated. */
  file: string;
  tags: string[];
  /** Epoch ms when the render that produced it started. */
  renderedAt: number;
  storedAt: number;
  expiresAt: number | null;
  /** `stale-while-revalidate` in ms: past expiresAt, the page is refreshed in place for this long. */
  staleWhileRevalidateMs?: number;
  mediaType: string;
  size: number;
  /** The file's mtime in whole seconds, which nginx turns into Last-Modified and the ETag (validators.ts). */
  mtime: number;
}

/** A meta record: the meta of one version of a file, named by its identity. */
export interface MetaRecord extends EntryMeta, FileIdentity {}

/**
 * A writer starts a new segment past this size, so a compaction never rewrites one without end. It is
 * also what a scan or a compaction holds in memory at once: 4 MiB peaked 15 MB higher in a crawl.
 */
const SEGMENT_BYTES = 1024 * 1024;
/** A writer compacts the index once it has appended this much, and more than the last compaction kept. */
const COMPACT_AFTER_BYTES = 8 * 1024 * 1024;
/** A compaction lock older than this is abandoned whoever holds it. */
const COMPACTION_MAX_MS = 30 * 60 * 1000;
const SEGMENT = /\.log$|\.aside$/;

/** An append, to be made good once its pages are placed. */
export interface MetaAppend {
  log: string;
  identity: FileIdentity;
  payloads: string[];
}

/** The meta records read at one moment, by file. */
export class MetaIndex {
  private readonly byFile = new Map<string, MetaRecord[]>();

  add(record: MetaRecord): void {
    const records = this.byFile.get(record.file);
    if (records === undefined) this.byFile.set(record.file, [record]);
    else records.push(record);
  }

  files(): IterableIterator<string> {
    return this.byFile.keys();
  }

  /** The record of the version of `file` that `stats` describes (the latest, were there several). */
  current(file: string, stats: Stats | undefined): MetaRecord | undefined {
    let found: MetaRecord | undefined;
    for (const record of this.byFile.get(file) ?? []) {
      if (isSameFile(record, stats) && (found === undefined || record.storedAt >= found.storedAt)) found = record;
    }
    return found;
  }

  get size(): number {
    return this.byFile.size;
  }
}

export class MetaLog {
  readonly dir: string;
  private readonly logs: StateFiles;
  private readonly statOf: (file: string) => Promise<Stats | undefined>;
  private segment: string | undefined;
  private segmentBytes = 0;
  private appendedBytes = 0;
  private keptBytes = 0;

  /** `statOf` gives the lstat of a stored file (root-relative), undefined when it is not there. */
  constructor(dir: string, logs: StateFiles, statOf: (file: string) => Promise<Stats | undefined>) {
    this.dir = dir;
    this.logs = logs;
    this.statOf = statOf;
  }

  /** Appends the records of a batch in one write to this writer's segment. */
  async append(records: readonly MetaRecord[]): Promise<MetaAppend> {
    const payloads = records.map((record) => JSON.stringify(record));
    const bytes = payloads.reduce((sum, payload) => sum + payload.length + 12, 0);
    if (this.segment === undefined || this.segmentBytes > SEGMENT_BYTES) {
      this.segment = path.join(this.dir, `${ownedName('meta')}.log`);
      this.segmentBytes = 0;
    }
    const log = this.segment;
    const identity = await this.logs.append(log, payloads);
    this.segmentBytes += bytes;
    this.appendedBytes += bytes;
    return { log, identity, payloads };
  }

  /** Appends again if a compaction or `purge --all` took the segment aside since `append`. */
  ensureIndexed(appended: MetaAppend): Promise<void> {
    return this.logs.appendUntilLive(appended.log, appended.payloads, appended.identity);
  }

  /** True once this writer has appended enough since the last compaction to make one worth its cost. */
  needsCompaction(): boolean {
    return this.appendedBytes > Math.max(COMPACT_AFTER_BYTES, this.keptBytes);
  }

  /**
   * Calls `visit` with every record, one segment at a time (memory: one segment, not the index). A
   * segment listed and then gone was taken aside or compacted meanwhile, its records now in a file the
   * listing did not have: the scan starts over, so `visit` may see a record twice.
   */
  async scan(visit: (record: MetaRecord) => void): Promise<void> {
    if (!(await this.logs.directory(this.dir, false))) return;
    for (let attempt = 0; ; attempt++) {
      let complete = true;
      for (const name of await this.segmentNames()) {
        const payloads = await this.logs.readIfThere(path.join(this.dir, name));
        if (payloads === undefined) complete = false;
        else for (const payload of payloads) {
          const record = parseRecord(payload);
          if (record !== undefined) visit(record);
        }
      }
      if (complete || attempt >= 8) return;
    }
  }

  /** The records of `files` (of every file, without it), by file. */
  async load(files?: ReadonlySet<string>): Promise<MetaIndex> {
    const index = new MetaIndex();
    await this.scan((record) => {
      if (files === undefined || files.has(record.file)) index.add(record);
    });
    return index;
  }

  /**
   * Rewrites the index with only the records of files still in place, a segment at a time; skipped
   * while another process compacts. Resolves to how many records were dropped.
   */
  async compact(): Promise<number> {
    let dropped = 0;
    if (!(await this.logs.directory(this.dir, false))) return dropped;
    await this.logs.exclusively(path.join(this.dir, 'compacting.lock'), COMPACTION_MAX_MS, async () => {
      const taken: string[] = [];
      for (const name of await this.segmentNames()) {
        const file = path.join(this.dir, name);
        // Aside already: a compaction that died, or what a purge --all left. Taken as they are.
        if (name.endsWith('.aside')) taken.push(file);
        else {
          const aside = await this.logs.takeAside(file);
          if (aside !== undefined) taken.push(aside);
        }
      }
      this.appendedBytes = 0;
      let keptBytes = 0;
      for (const segment of taken) {
        const kept: MetaRecord[] = [];
        for (const payload of await this.logs.read(segment)) {
          const record = parseRecord(payload);
          if (record !== undefined && isSameFile(record, await this.statOf(record.file))) kept.push(record);
          else dropped++;
        }
        for (let i = 0; i < kept.length; i += 512) {
          const appended = await this.append(kept.slice(i, i + 512));
          await this.ensureIndexed(appended);
        }
        keptBytes += this.appendedBytes;
        this.appendedBytes = 0;
        await this.logs.remove(segment);
      }
      this.keptBytes = keptBytes;
    });
    return dropped;
  }

  private async segmentNames(): Promise<string[]> {
    return (await this.logs.names(this.dir)).filter((name) => SEGMENT.test(name));
  }
}

function parseRecord(payload: string): MetaRecord | undefined {
  try {
    const record: unknown = JSON.parse(payload);
    return isMetaRecord(record) ? record : undefined;
  } catch {
    return undefined;
  }
}

function isMetaRecord(value: unknown): value is MetaRecord {
  if (typeof value !== 'object' || value === null) return false;
  const record = value as Partial<MetaRecord>;
  return typeof record.file === 'string' && typeof record.ino === 'number' && typeof record.birth === 'number' && typeof record.storedAt === 'number' && Array.isArray(record.tags);
}
