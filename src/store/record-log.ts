/**
 * Append-only record logs of the state directory (tag logs, meta segments), the one place their
 * bytes are written, read, taken aside and locked.
 *
 * - A record is `\n<payload>\t<crc32>\n`, appended with one write(2) to a file opened O_APPEND, which
 *   the kernel places whole at the end: concurrent writers need no lock and never overwrite each
 *   other. A record torn by a killed writer fails its checksum and is skipped; the leading newline
 *   keeps it from swallowing the next writer's record. Payloads hold no newline.
 * - A reader that must not miss a record takes the log aside (`rename`) before reading it. A writer
 *   whose append raced that rename sees, when it checks afterwards, that the log at the path is not
 *   the one it wrote to (`isLive`: inode and birth time, since inode numbers are reused at once), and
 *   appends again (`appendUntilLive`).
 * - O_NOFOLLOW everywhere, and a log's directory is checked for a symlink at every use: a link planted
 *   there would turn every store into an append to any file, and a purge into a delete anywhere.
 */
import { constants as fsConstants, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { isErrno } from '../errors.js';
import { type NoFollow, O_NOFOLLOW, stateLinkError } from '../no-follow.js';
import { OWNER, inUse, ownedName, ownerOf } from '../owner.js';
import { DIR_MODE, FILE_MODE, umaskStrips } from './disk.js';

/** Which file a path held at some moment: the inode and its birth time (0 where the kernel gives none). */
export interface FileIdentity {
  ino: number;
  birth: number;
}

export function identityOf(stats: Stats): FileIdentity {
  return { ino: stats.ino, birth: stats.birthtimeMs };
}

/** True when `stats` is the file `identity` was taken of (by inode alone where birth times are missing). */
export function isSameFile(identity: FileIdentity, stats: Stats | undefined): boolean {
  if (stats === undefined || stats.ino !== identity.ino) return false;
  return identity.birth === 0 || stats.birthtimeMs === 0 || stats.birthtimeMs === identity.birth;
}

const ASIDE_SUFFIX = '.aside';
const APPEND_FLAGS = fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | O_NOFOLLOW;

export function frame(payloads: readonly string[]): string {
  return payloads.map((payload) => `\n${payload}\t${crc32(payload).toString(16)}\n`).join('');
}

/** The payloads of `text` whose checksums hold, in order. */
export function unframe(text: string): string[] {
  const payloads: string[] = [];
  for (const line of text.split('\n')) {
    const tab = line.lastIndexOf('\t');
    if (tab <= 0) continue;
    const payload = line.slice(0, tab);
    if (line.slice(tab + 1) === crc32(payload).toString(16)) payloads.push(payload);
  }
  return payloads;
}

export class RecordLogs {
  private readonly noFollow: NoFollow;

  constructor(noFollow: NoFollow) {
    this.noFollow = noFollow;
  }

  /**
   * Whether a log's directory is a directory of the state tree (creating it with `create`). Checked at
   * every use, not once a process: a link can be put in a directory's place at any time.
   */
  async directory(dir: string, create: boolean): Promise<boolean> {
    if (create) {
      await this.noFollow.ensureStateDir(dir, DIR_MODE, umaskStrips(DIR_MODE));
      return true;
    }
    const state = await this.noFollow.check(dir);
    if (state === 'link') throw stateLinkError(dir);
    return state === 'ok';
  }

  /** Appends `payloads` in one write and returns the identity of the log they landed in. */
  async append(log: string, payloads: readonly string[]): Promise<FileIdentity> {
    const bytes = Buffer.from(frame(payloads));
    let handle;
    try {
      if (!(await this.directory(path.dirname(log), false))) throw Object.assign(new Error(`ENOENT: ${log}`), { code: 'ENOENT' });
      handle = await fs.open(log, APPEND_FLAGS, FILE_MODE);
    } catch (error) {
      if (isErrno(error, 'ELOOP')) throw stateLinkError(log);
      if (!isErrno(error, 'ENOENT')) throw error;
      await this.directory(path.dirname(log), true);
      handle = await fs.open(log, APPEND_FLAGS, FILE_MODE);
    }
    try {
      await handle.write(bytes);
      return identityOf(await handle.stat());
    } finally {
      await handle.close();
    }
  }

  /**
   * Appends until the records are seen in the live log; `from` is the identity of an earlier append of
   * the same records, if any. Readers keep the last copy of a record that counts, so a second copy costs
   * bytes, never correctness.
   */
  async appendUntilLive(log: string, payloads: readonly string[], from?: FileIdentity): Promise<void> {
    let identity = from ?? (await this.append(log, payloads));
    for (let attempt = 0; attempt < 8; attempt++) {
      if (await this.isLive(log, identity)) return;
      identity = await this.append(log, payloads);
      // Without birth times the log's identity cannot be proven; one more append is the best we can do.
      if (identity.birth === 0) return;
    }
  }

  /** True while the log at `log` is the one `identity` was taken of; false when that cannot be proven. */
  async isLive(log: string, identity: FileIdentity): Promise<boolean> {
    if (identity.birth === 0) return false;
    return isSameFile(identity, await fs.stat(log).catch(() => undefined));
  }

  async size(log: string): Promise<number> {
    return (await fs.stat(log).catch(() => undefined))?.size ?? 0;
  }

  /** The payloads of a log; none when it is missing, or a symlink (what it points at is no log of ours). */
  async read(log: string): Promise<string[]> {
    return (await this.readIfThere(log)) ?? [];
  }

  /** `read`, but undefined when the log is missing (taken aside or deleted since it was listed). */
  async readIfThere(log: string): Promise<string[] | undefined> {
    try {
      return unframe(await fs.readFile(log, { encoding: 'utf8', flag: fsConstants.O_RDONLY | O_NOFOLLOW }));
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      if (isErrno(error, 'ELOOP')) return [];
      throw error;
    }
  }

  /**
   * Renames `log` aside under a name this process owns (`<log>.<owned>.aside`); undefined when there
   * was no log. Appends from now on go to a new log at the path.
   */
  async takeAside(log: string): Promise<string | undefined> {
    const aside = `${log}.${ownedName('aside')}${ASIDE_SUFFIX}`;
    try {
      await fs.rename(log, aside);
      return aside;
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw error;
    }
  }

  /** The aside copies of `log` in its directory (a compaction in flight, or one a dead process left). */
  async asides(log: string): Promise<string[]> {
    const base = `${path.basename(log)}.`;
    return (await this.names(path.dirname(log))).filter((name) => name.startsWith(base) && name.endsWith(ASIDE_SUFFIX)).map((name) => path.join(path.dirname(log), name));
  }

  /** Names in a state directory; none when it is missing. */
  async names(dir: string): Promise<string[]> {
    return fs.readdir(dir).catch(() => [] as string[]);
  }

  /** Subdirectories of a state directory, never a symlink to one. */
  async subdirectories(dir: string): Promise<string[]> {
    if ((await this.noFollow.check(dir)) !== 'ok') return [];
    const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
    return entries.filter((entry) => entry.isDirectory()).map((entry) => path.join(dir, entry.name));
  }

  async remove(file: string): Promise<void> {
    await fs.rm(file, { force: true });
  }

  /**
   * Runs `task` unless another live process holds `lock`; a lock older than `maxAgeMs` is abandoned
   * whoever holds it. Best effort: for work that is safe twice at once, only wasteful.
   */
  async exclusively(lock: string, maxAgeMs: number, task: () => Promise<void>): Promise<void> {
    try {
      await fs.writeFile(lock, OWNER, { flag: fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | O_NOFOLLOW, mode: FILE_MODE });
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
      const owner = ownerOf(await fs.readFile(lock, { encoding: 'utf8', flag: fsConstants.O_RDONLY | O_NOFOLLOW }).catch(() => ''));
      const age = Date.now() - ((await fs.lstat(lock).catch(() => undefined))?.mtimeMs ?? 0);
      if (inUse(owner, age, { maxAgeMs })) return;
      await fs.rm(lock, { force: true });
      return this.exclusively(lock, maxAgeMs, task);
    }
    try {
      await task();
    } finally {
      await fs.rm(lock, { force: true });
    }
  }
}
