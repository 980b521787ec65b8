/**
 * The files of a state directory (`<root>/.prerender/`): the one place their bytes are written, read,
 * renamed and deleted, for the indexes kept there (tag logs, meta segments, purge journals, the expiry
 * index) and the fleet agent's files. Every path is checked to lie below the state directory, is opened
 * with O_NOFOLLOW, and its directory is checked for a symlink at every use: a link planted there would
 * turn every store into an append to any file, and a purge into a delete anywhere.
 *
 * Record logs (`append`, `read`): a record is `\n<payload>\t<crc32>\n`, appended with one write(2) to a
 * file opened O_APPEND, which the kernel places whole at the end, so concurrent writers need no lock and
 * never overwrite each other. A record torn by a killed writer fails its checksum and is skipped; the
 * leading newline keeps it from swallowing the next writer's record. Payloads hold no newline.
 * A reader that must not miss a record takes the log aside (`takeAside`) before reading it. A writer
 * whose append raced that rename sees, when it checks afterwards, that the log at the path is not the
 * one it wrote to (`isLive`: inode and birth time, since inode numbers are reused at once), and appends
 * again (`appendUntilLive`).
 *
 * Journals (`appendText`, `readAppended`): lines of the caller's own format, read incrementally from
 * an offset, complete lines only.
 */
import { constants as fsConstants, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { crc32 } from 'node:zlib';
import { isErrno } from '../errors.js';
import { fileIo } from './file-io.js';
import { NoFollow, O_NOFOLLOW, stateLinkError } from './no-follow.js';
import { OWNER, inUse, ownedName, ownerOf } from '../owner.js';
import { isBelow } from '../url-path.js';
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

/** How far a reader has read a journal: the file (`dev:ino`) and the offset. */
export interface JournalCursor {
  identity: string | undefined;
  offset: number;
}

const ASIDE_SUFFIX = '.aside';
const APPEND_FLAGS = fsConstants.O_WRONLY | fsConstants.O_APPEND | fsConstants.O_CREAT | O_NOFOLLOW;
const CREATE_FLAGS = fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL | O_NOFOLLOW;
const READ_FLAGS = fsConstants.O_RDONLY | O_NOFOLLOW;

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

export class StateFiles {
  readonly dir: string;
  private readonly noFollow: NoFollow;

  /** The state directory `stateDir` of the cache root `root` (the root itself may be a symlink). */
  constructor(stateDir: string, root: string) {
    this.dir = path.resolve(stateDir);
    this.noFollow = new NoFollow(path.resolve(root), fileIo);
  }

  /** Throws unless `file` lies below the state directory: nothing here writes anywhere else. */
  private inside(file: string): string {
    const resolved = path.resolve(file);
    if (!isBelow(this.dir, resolved)) throw new Error(`${file} is not in the state directory ${this.dir}`);
    return resolved;
  }

  /**
   * Whether `dir` is a directory of the state tree, creating it with `create`. Checked at every use,
   * not once a process: a link can be put in a directory's place at any time.
   */
  async directory(dir: string, create: boolean): Promise<boolean> {
    const resolved = path.resolve(dir) === this.dir ? this.dir : this.inside(dir);
    if (create) {
      await this.noFollow.ensureStateDir(resolved, DIR_MODE, umaskStrips(DIR_MODE));
      return true;
    }
    const state = await this.noFollow.check(resolved);
    if (state === 'link') throw stateLinkError(resolved);
    return state === 'ok';
  }

  /** Appends `payloads` as records in one write and returns the identity of the log they landed in. */
  append(log: string, payloads: readonly string[]): Promise<FileIdentity> {
    return this.appendBytes(log, Buffer.from(frame(payloads)));
  }

  /** Appends `text` as it is (a journal's own lines) in one write; the directory is made if need be. */
  async appendText(file: string, text: string): Promise<void> {
    await this.appendBytes(file, Buffer.from(text));
  }

  private async appendBytes(file: string, bytes: Buffer): Promise<FileIdentity> {
    const target = this.inside(file);
    let handle;
    try {
      if (!(await this.directory(path.dirname(target), false))) throw Object.assign(new Error(`ENOENT: ${target}`), { code: 'ENOENT' });
      handle = await fs.open(target, APPEND_FLAGS, FILE_MODE);
    } catch (error) {
      if (isErrno(error, 'ELOOP')) throw stateLinkError(target);
      if (!isErrno(error, 'ENOENT')) throw error;
      await this.directory(path.dirname(target), true);
      handle = await fs.open(target, APPEND_FLAGS, FILE_MODE).catch((again: unknown) => {
        throw isErrno(again, 'ELOOP') ? stateLinkError(target) : again;
      });
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
    return isSameFile(identity, await this.lstat(log));
  }

  async size(file: string): Promise<number> {
    return (await this.lstat(file))?.size ?? 0;
  }

  /** lstat of a state file, or undefined when it is missing. */
  lstat(file: string): Promise<Stats | undefined> {
    return fileIo.lstat(this.inside(file));
  }

  /** The payloads of a log; none when it is missing, or a symlink (what it points at is no log of ours). */
  async read(log: string): Promise<string[]> {
    return (await this.readIfThere(log)) ?? [];
  }

  /** `read`, but undefined when the log is missing (taken aside or deleted since it was listed). */
  async readIfThere(log: string): Promise<string[] | undefined> {
    try {
      return unframe(await fs.readFile(this.inside(log), { encoding: 'utf8', flag: READ_FLAGS }));
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
      if (isErrno(error, 'ELOOP')) return [];
      throw error;
    }
  }

  /** A state file's text; undefined when it is missing. A symlink at its name is EROOT, not read through. */
  async readText(file: string): Promise<string | undefined> {
    const target = this.inside(file);
    try {
      return await fs.readFile(target, { encoding: 'utf8', flag: READ_FLAGS });
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
      if (isErrno(error, 'ELOOP')) throw stateLinkError(target);
      throw error;
    }
  }

  /**
   * The complete lines appended to a journal since `cursor` (advanced past them), up to `size` bytes
   * if given; none when it is missing. Another file at the path (a new `dev:ino`) is read from its
   * start. Counted in bytes, not decoded text: a line torn inside a multi-byte character decodes to a
   * replacement character of another length, and the offset would land inside the next line.
   */
  async readAppended(file: string, cursor: JournalCursor, size?: number): Promise<string> {
    const target = this.inside(file);
    let handle;
    try {
      handle = await fs.open(target, READ_FLAGS);
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return '';
      throw isErrno(error, 'ELOOP') ? stateLinkError(target) : error;
    }
    try {
      const stats = await handle.stat();
      const identity = `${stats.dev}:${stats.ino}`;
      if (cursor.identity !== identity) {
        cursor.identity = identity;
        cursor.offset = 0;
      }
      const end = Math.min(stats.size, size ?? stats.size);
      if (end <= cursor.offset) return '';
      const buffer = Buffer.alloc(end - cursor.offset);
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, cursor.offset);
      // Up to the last newline: a line being appended right now is read next time.
      const complete = buffer.subarray(0, bytesRead === 0 ? 0 : buffer.lastIndexOf(0x0a, bytesRead - 1) + 1);
      cursor.offset += complete.length;
      return complete.toString('utf8');
    } finally {
      await handle.close();
    }
  }

  /**
   * Writes `text` to `file` through a temp file and a rename, so a reader sees the old file or the new
   * one; with `durable`, flushed, and the directory entry too.
   */
  async writeAtomically(file: string, text: string | Uint8Array, durable: boolean): Promise<void> {
    const target = this.inside(file);
    await this.directory(path.dirname(target), true);
    const temp = path.join(path.dirname(target), `.${path.basename(target)}.${ownedName('tmp')}.tmp`);
    const handle = await fs.open(temp, CREATE_FLAGS, FILE_MODE);
    try {
      await handle.writeFile(text);
      if (durable) await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await fs.rename(temp, target);
    } catch (error) {
      await fs.rm(temp, { force: true });
      throw error;
    }
    if (durable) {
      const directory = await fs.open(path.dirname(target), fsConstants.O_RDONLY | fsConstants.O_DIRECTORY | O_NOFOLLOW);
      try {
        await directory.sync();
      } finally {
        await directory.close();
      }
    }
  }

  /** Opens an existing state file for writing in place (the fleet's position); the caller closes it. */
  openForUpdate(file: string): Promise<fs.FileHandle> {
    const target = this.inside(file);
    return fs.open(target, fsConstants.O_RDWR | O_NOFOLLOW).catch((error: unknown) => {
      throw isErrno(error, 'ELOOP') ? stateLinkError(target) : error;
    });
  }

  /** Creates `file` with `text` unless something is there already: false then. */
  async createExclusive(file: string, text = ''): Promise<boolean> {
    const target = this.inside(file);
    try {
      await fs.writeFile(target, text, { flag: CREATE_FLAGS, mode: FILE_MODE });
      return true;
    } catch (error) {
      if (isErrno(error, 'EEXIST')) return false;
      throw error;
    }
  }

  /** Sets a marker's mtime (its liveness, for owner.ts's rule); no error when it is gone. */
  async touch(file: string, when: Date): Promise<void> {
    await fs.lutimes(this.inside(file), when, when).catch(() => undefined);
  }

  /**
   * Renames `log` aside under a name this process owns (`<log>.<owned>.aside`); undefined when there
   * was no log. Appends from now on go to a new log at the path.
   */
  async takeAside(log: string): Promise<string | undefined> {
    const source = this.inside(log);
    const aside = `${source}.${ownedName('aside')}${ASIDE_SUFFIX}`;
    try {
      await fs.rename(source, aside);
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

  /** Names in a directory of the state tree; none when it is missing. */
  async names(dir: string): Promise<string[]> {
    const resolved = path.resolve(dir) === this.dir ? this.dir : this.inside(dir);
    return fs.readdir(resolved).catch(() => [] as string[]);
  }

  /** Subdirectories of a state directory, never a symlink to one. */
  async subdirectories(dir: string): Promise<string[]> {
    const resolved = path.resolve(dir) === this.dir ? this.dir : this.inside(dir);
    if ((await this.noFollow.check(resolved)) !== 'ok') return [];
    const entries = await fs.readdir(resolved, { withFileTypes: true }).catch(() => []);
    return entries.filter((entry) => entry.isDirectory()).map((entry) => path.join(resolved, entry.name));
  }

  /** Deletes a state file (a symlink itself, never its target); no error when it is gone. */
  async remove(file: string): Promise<void> {
    await fs.rm(this.inside(file), { force: true });
  }

  /** Deletes a directory of the state tree if it is empty; false when it is not (or is gone). */
  async removeEmptyDirectory(dir: string): Promise<boolean> {
    return fs.rmdir(this.inside(dir)).then(() => true, () => false);
  }

  /**
   * Runs `task` unless another live process holds `lock`; a lock older than `maxAgeMs` is abandoned
   * whoever holds it. Best effort: for work that is safe twice at once, only wasteful.
   */
  async exclusively(lock: string, maxAgeMs: number, task: () => Promise<void>): Promise<void> {
    if (!(await this.createExclusive(lock, OWNER))) {
      const owner = ownerOf((await this.readText(lock).catch(() => undefined)) ?? '');
      const age = Date.now() - ((await this.lstat(lock))?.mtimeMs ?? 0);
      if (inUse(owner, age, { maxAgeMs })) return;
      await this.remove(lock);
      return this.exclusively(lock, maxAgeMs, task);
    }
    try {
      await task();
    } finally {
      await this.remove(lock);
    }
  }
}
