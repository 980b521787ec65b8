/**
 * The tag index: one append-only log per tag, `.prerender/tags/<hh>/<sha1(tag)>.log`, listing the files
 * stored under that tag (the log format, and how no record is lost to a concurrent purge, are in
 * store/state-files.ts).
 *
 * - A purge of one tag reads and deletes one log: O(files under that tag), whatever the cache size.
 * - A record is the file, and the URL path it was stored for where the file name does not imply it
 *   (`/x` stored as `x/index.html`), so a refresh by tag fetches the right page without another index.
 * - Purge and compaction take the log aside before reading it; leftover aside logs of dead processes
 *   are picked up by the next purge or compaction of that tag.
 * Files are recorded, not URLs: `/x/` and `/x/index.html` are one file, and one entry.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';
import { StateFiles, type FileIdentity } from './store/state-files.js';
import { impliedUrlPath } from './url-path.js';

/** Logs larger than this are compacted by the writer that notices (entries of removed files dropped). */
const COMPACT_BYTES = 256 * 1024;
/** A compaction lock older than this is abandoned whoever holds it: compacting one log takes seconds. */
const COMPACTION_MAX_MS = 10 * 60 * 1000;

/** A file stored under a tag, and the URL path it was stored for. */
export interface TagEntry {
  file: string;
  urlPath: string;
}

/** What a purge took of a tag's index. */
export interface TakenTag {
  files: string[];
  /** The URL path each file was stored for, where its record says. */
  urlPaths: Map<string, string>;
  /** Deletes what was taken. */
  release: () => Promise<void>;
}

export class TagIndex {
  readonly dir: string;
  private readonly compactedSizes = new Map<string, number>();
  private readonly logs: StateFiles;

  constructor(stateDir: string, root: string) {
    this.dir = path.join(stateDir, 'tags');
    this.logs = new StateFiles(stateDir, root);
  }

  logPath(tag: string): string {
    const hash = createHash('sha1').update(tag).digest('hex');
    return path.join(this.dir, hash.slice(0, 2), `${hash}.log`);
  }

  /**
   * Appends a record for each entry and returns the identity of the log it landed in, for
   * `appendUntilIndexed`.
   */
  append(tag: string, entries: readonly TagEntry[]): Promise<FileIdentity> {
    return this.logs.append(this.logPath(tag), entries.map(payloadOf));
  }

  /**
   * Appends records until they are seen in the live log: a purge or compaction that takes the log
   * aside between our open and our write would otherwise read it before our records land, and lose
   * them. `from` is the identity of an earlier append of the same records, if any.
   */
  appendUntilIndexed(log: string, entries: readonly TagEntry[], from?: FileIdentity): Promise<void> {
    return this.logs.appendUntilLive(log, entries.map(payloadOf), from);
  }

  size(log: string): Promise<number> {
    return this.logs.size(log);
  }

  /** Files recorded under a tag, deduplicated, without taking the log. */
  async files(tag: string): Promise<string[]> {
    const log = this.logPath(tag);
    if (!(await this.logs.directory(path.dirname(log), false))) return [];
    const entries = new Map<string, TagEntry>();
    for (const file of [log, ...(await this.logs.asides(log))]) await this.readInto(file, entries);
    return [...entries.keys()];
  }

  /**
   * Takes a tag's log (and any aside logs) out of the writers' way and returns the files it listed.
   * Records appended from now on go to a new log.
   */
  async take(tag: string): Promise<TakenTag> {
    const { entries, release } = await this.takeLog(this.logPath(tag));
    const urlPaths = new Map<string, string>();
    for (const entry of entries.values()) if (entry.urlPath !== impliedUrlPath(entry.file)) urlPaths.set(entry.file, entry.urlPath);
    return { files: [...entries.keys()], urlPaths, release };
  }

  private async takeLog(log: string): Promise<{ entries: Map<string, TagEntry>; release: () => Promise<void> }> {
    const entries = new Map<string, TagEntry>();
    if (!(await this.logs.directory(path.dirname(log), false))) return { entries, release: async () => undefined };
    const aside = await this.logs.takeAside(log);
    // Every aside log, not only abandoned ones: a compaction in flight holds entries this purge must see.
    const taken = [...(aside === undefined ? [] : [aside]), ...(await this.logs.asides(log)).filter((file) => file !== aside)];
    for (const file of taken) await this.readInto(file, entries);
    return {
      entries,
      release: async () => {
        for (const file of taken) await this.logs.remove(file);
      },
    };
  }

  /** Later records win: the last store of a file says which URL path it answers now. */
  private async readInto(log: string, entries: Map<string, TagEntry>): Promise<void> {
    for (const payload of await this.logs.read(log)) {
      const entry = entryOf(payload);
      entries.delete(entry.file);
      entries.set(entry.file, entry);
    }
  }

  /**
   * Rewrites a tag's log without the entries whose files are gone. Safe against concurrent writers:
   * the log is taken aside and the survivors appended to whatever log is live by then.
   */
  async compact(log: string, exists: (file: string) => Promise<boolean>): Promise<void> {
    const { entries, release } = await this.takeLog(log);
    const survivors: TagEntry[] = [];
    for (const entry of entries.values()) if (await exists(entry.file)) survivors.push(entry);
    this.compactedSizes.set(log, survivors.reduce((bytes, entry) => bytes + Buffer.byteLength(payloadOf(entry)) + 12, 0));
    for (let i = 0; i < survivors.length; i += 512) {
      await this.appendUntilIndexed(log, survivors.slice(i, i + 512));
    }
    await release();
  }

  /**
   * A log is worth compacting once it is large and has at least doubled since this process last
   * compacted it, so a tag with many live files is not rewritten on every write.
   */
  needsCompaction(log: string, size: number): boolean {
    return size > Math.max(COMPACT_BYTES, 2 * (this.compactedSizes.get(log) ?? 0));
  }

  /** Every tag-log path in the index, for sweeps that visit them all. */
  async allLogs(): Promise<string[]> {
    const logs: string[] = [];
    // A symlinked bucket is not entered: a compaction would rename and delete logs wherever it points.
    for (const bucket of await this.logs.subdirectories(this.dir)) {
      for (const name of await this.logs.names(bucket)) if (name.endsWith('.log')) logs.push(path.join(bucket, name));
    }
    return logs;
  }

  /**
   * Runs `task` unless another process is already compacting this tag. Best effort: two compactions
   * at once are safe, only wasteful.
   */
  exclusively(log: string, task: () => Promise<void>): Promise<void> {
    return this.logs.exclusively(`${log}.compacting`, COMPACTION_MAX_MS, task);
  }
}

/** `<file>`, or `<file>\t<urlPath>` when the file name does not imply the URL path. */
function payloadOf(entry: TagEntry): string {
  return entry.urlPath === impliedUrlPath(entry.file) ? entry.file : `${entry.file}\t${entry.urlPath}`;
}

function entryOf(payload: string): TagEntry {
  const tab = payload.indexOf('\t');
  if (tab < 0) return { file: payload, urlPath: impliedUrlPath(payload) };
  return { file: payload.slice(0, tab), urlPath: payload.slice(tab + 1) };
}
