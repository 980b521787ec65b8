/**
 * The tag index: one append-only log per tag, `.prerender/tags/<hh>/<sha1(tag)>.log`, listing the files
 * stored under that tag.
 *
 * Why this format:
 * - Appends need no lock: each record is one write(2) to a file opened O_APPEND, which the kernel
 *   places whole at the end, so concurrent writers (cluster workers, a crawl, a CLI) never overwrite
 *   each other.
 * - A purge of one tag reads and deletes one log: O(files under that tag), whatever the cache size.
 * - Each record is `\n<file>\t<crc32>\n`. A record torn by a killed writer fails its checksum and is
 *   skipped, and the leading newline keeps it from swallowing the next writer's record.
 * - Purge and compaction `rename` the log aside before reading it. A writer whose append raced the
 *   rename finds, when it re-checks after placing its file, that the live log is not the one it wrote
 *   to (inode and birth time: inode numbers are reused at once), and appends again, so no entry is
 *   lost (`appendUntilIndexed`). Leftover aside logs of dead processes are picked up by the next purge
 *   or compaction of that tag.
 * Files are recorded, not URLs: `/x/` and `/x/index.html` are one file, and one entry.
 */
import { createHash } from 'node:crypto';
import { constants as fsConstants, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { isErrno } from './errors.js';
import { fileIo } from './file-io.js';
import { NoFollow, O_NOFOLLOW, stateLinkError } from './no-follow.js';
import { DIR_MODE, FILE_MODE } from './store/disk.js';
import { OWNER, inUse, ownedName, ownerOf } from './owner.js';

/** Logs larger than this are compacted by the writer that notices (entries of removed files dropped). */
const COMPACT_BYTES = 256 * 1024;
const ASIDE = '.aside';
/** A compaction lock older than this is abandoned whoever holds it: compacting one log takes seconds. */
const COMPACTION_MAX_MS = 10 * 60 * 1000;

function hashName(value: string): string {
  return createHash('sha1').update(value).digest('hex');
}

export class TagIndex {
  readonly dir: string;
  private readonly compactedSizes = new Map<string, number>();
  private readonly noFollow: NoFollow;

  constructor(stateDir: string, root: string) {
    this.dir = path.join(stateDir, 'tags');
    this.noFollow = new NoFollow(root, fileIo);
  }

  /**
   * Makes sure a log's bucket is a directory of the tree and not a symlink: appends, renames and
   * deletes there would otherwise land wherever it points. Checked at every use, not once a process:
   * a link can be put in a bucket's place at any time. False when it does not exist (and `create` is off).
   */
  private async bucketFor(log: string, create: boolean): Promise<boolean> {
    const bucket = path.dirname(log);
    if (create) {
      await this.noFollow.ensureStateDir(bucket, DIR_MODE, (process.umask() & DIR_MODE) !== 0);
      return true;
    }
    const state = await this.noFollow.check(bucket);
    if (state === 'link') throw stateLinkError(bucket);
    return state === 'ok';
  }

  logPath(tag: string): string {
    const hash = hashName(tag);
    return path.join(this.dir, hash.slice(0, 2), `${hash}.log`);
  }

  /**
   * Appends a record for each file and returns the identity of the log it landed in, for `stillIndexed`. The
   * identity is the inode and its birth time: a log taken aside and deleted frees its inode number, and
   * the next log created often gets the same one.
   */
  append(tag: string, files: readonly string[]): Promise<LogIdentity> {
    return this.appendTo(this.logPath(tag), files);
  }

  /**
   * Appends records until they are seen in the live log: a purge or compaction that takes the log
   * aside between our open and our write would otherwise read it before our records land, and lose
   * them. `from` is the identity of an earlier append of the same records, if any.
   */
  async appendUntilIndexed(log: string, files: readonly string[], from?: LogIdentity): Promise<void> {
    let identity = from ?? (await this.appendTo(log, files));
    for (let attempt = 0; attempt < 8; attempt++) {
      if (await this.isLive(log, identity)) return;
      identity = await this.appendTo(log, files);
      // Without birth times the log's identity cannot be proven; one more append is the best we can do.
      if (identity.birth === 0) return;
    }
  }

  private async appendTo(log: string, files: readonly string[]): Promise<LogIdentity> {
    const record = Buffer.from(files.map((file) => `\n${file}\t${checksum(file)}\n`).join(''));
    // O_NOFOLLOW: a symlink planted at a log's path would turn every store into an append to any file.
    const flags = fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | O_NOFOLLOW;
    let handle;
    try {
      if (!(await this.bucketFor(log, false))) throw Object.assign(new Error(`ENOENT: ${log}`), { code: 'ENOENT' });
      handle = await fs.open(log, flags, FILE_MODE);
    } catch (error) {
      if (isErrno(error, 'ELOOP')) throw stateLinkError(log);
      if (!isErrno(error, 'ENOENT')) throw error;
      await this.bucketFor(log, true);
      handle = await fs.open(log, flags, FILE_MODE);
    }
    try {
      await handle.write(record);
      return identityOf(await handle.stat());
    } finally {
      await handle.close();
    }
  }

  /** True while the log is still the one a record was appended to; false when that cannot be proven. */
  private async isLive(log: string, identity: LogIdentity): Promise<boolean> {
    if (identity.birth === 0) return false;
    const stats = await fs.stat(log).catch(() => undefined);
    return stats !== undefined && stats.ino === identity.ino && stats.birthtimeMs === identity.birth;
  }

  async size(log: string): Promise<number> {
    return (await fs.stat(log).catch(() => undefined))?.size ?? 0;
  }

  /** Files recorded under a tag, deduplicated, without taking the log. */
  async files(tag: string): Promise<string[]> {
    if (!(await this.bucketFor(this.logPath(tag), false))) return [];
    const logs = [this.logPath(tag), ...(await this.asideLogs(this.logPath(tag)))];
    const files = new Set<string>();
    for (const log of logs) for (const file of await readRecords(log)) files.add(file);
    return [...files];
  }

  /**
   * Takes a tag's log (and any abandoned aside logs) out of the writers' way and returns the files it
   * listed, plus a `release` that deletes what was taken. Records appended from now on go to a new log.
   */
  take(tag: string): Promise<{ files: string[]; release: () => Promise<void> }> {
    return this.takeLog(this.logPath(tag));
  }

  private async takeLog(log: string): Promise<{ files: string[]; release: () => Promise<void> }> {
    if (!(await this.bucketFor(log, false))) return { files: [], release: async () => undefined };
    const aside = `${log}.${ownedName('aside')}${ASIDE}`;
    const taken: string[] = [];
    try {
      await fs.rename(log, aside);
      taken.push(aside);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
    }
    // Every aside log, not only abandoned ones: a compaction in flight holds entries this purge must see.
    taken.push(...(await this.asideLogs(log)).filter((file) => file !== aside));
    const files = new Set<string>();
    for (const file of taken) for (const record of await readRecords(file)) files.add(record);
    return {
      files: [...files],
      release: async () => {
        for (const file of taken) await fs.rm(file, { force: true });
      },
    };
  }

  /**
   * Rewrites a tag's log without the entries whose files are gone. Safe against concurrent writers:
   * the log is taken aside and the survivors appended to whatever log is live by then.
   */
  async compact(log: string, exists: (file: string) => Promise<boolean>): Promise<void> {
    const { files, release } = await this.takeLog(log);
    const survivors: string[] = [];
    for (const file of files) if (await exists(file)) survivors.push(file);
    this.compactedSizes.set(log, survivors.reduce((bytes, file) => bytes + Buffer.byteLength(file) + 12, 0));
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
    if ((await this.noFollow.check(this.dir)) !== 'ok') return logs;
    for (const entry of await fs.readdir(this.dir, { withFileTypes: true }).catch(() => [])) {
      // A symlinked bucket is not entered: a compaction would rename and delete logs wherever it points.
      if (!entry.isDirectory()) continue;
      const bucket = entry.name;
      for (const name of await fs.readdir(path.join(this.dir, bucket)).catch(() => [] as string[])) {
        if (name.endsWith('.log')) logs.push(path.join(this.dir, bucket, name));
      }
    }
    return logs;
  }

  private async asideLogs(log: string): Promise<string[]> {
    const base = `${path.basename(log)}.`;
    const names = await fs.readdir(path.dirname(log)).catch(() => [] as string[]);
    return names.filter((name) => name.startsWith(base) && name.endsWith(ASIDE)).map((name) => path.join(path.dirname(log), name));
  }

  /**
   * Runs `task` unless another process is already compacting this tag. Best effort: two compactions
   * at once are safe, only wasteful.
   */
  async exclusively(log: string, task: () => Promise<void>): Promise<void> {
    const lock = `${log}.compacting`;
    try {
      await fs.writeFile(lock, OWNER, { flag: 'wx' });
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
      const owner = ownerOf(await fs.readFile(lock, 'utf8').catch(() => ''));
      const age = Date.now() - ((await fs.stat(lock).catch(() => undefined))?.mtimeMs ?? 0);
      if (inUse(owner, age, { maxAgeMs: COMPACTION_MAX_MS })) return;
      await fs.rm(lock, { force: true });
      return this.exclusively(log, task);
    }
    try {
      await task();
    } finally {
      await fs.rm(lock, { force: true });
    }
  }
}

export interface LogIdentity {
  ino: number;
  birth: number;
}

function identityOf(stats: Stats): LogIdentity {
  return { ino: stats.ino, birth: stats.birthtimeMs };
}

function checksum(file: string): string {
  return crc32(file).toString(16);
}

async function readRecords(log: string): Promise<string[]> {
  let text: string;
  try {
    text = await fs.readFile(log, { encoding: 'utf8', flag: fsConstants.O_RDONLY | O_NOFOLLOW });
  } catch (error) {
    // A symlink in a log's place lists nothing: what it points at is no index of ours.
    if (isErrno(error, 'ENOENT', 'ELOOP')) return [];
    throw error;
  }
  const files: string[] = [];
  for (const line of text.split('\n')) {
    const tab = line.lastIndexOf('\t');
    if (tab <= 0) continue;
    const file = line.slice(0, tab);
    if (line.slice(tab + 1) === checksum(file)) files.push(file);
  }
  return files;
}
