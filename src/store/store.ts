/**
 * Everything that touches the cache tree on disk. Writes follow write-file-atomic: a temp file on the
 * same file system (under the state directory, which nginx denies), written, fsynced, chmod 0644 and
 * renamed over the target, so nginx sees the old file or the new one and never a part.
 */
import { constants as fsConstants, type Stats } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PrerenderError, isErrno } from '../errors.js';
import { fileIo, type FileIo } from './file-io.js';
import { NoFollow } from './no-follow.js';
import type { PageBody } from '../page-body.js';
import { STATE_DIR, isBelow, resolveInRoot } from '../url-path.js';
import { inUse, ownedName, ownerOf } from '../owner.js';
import { MetaLog } from './meta-log.js';
import { StateFiles } from './state-files.js';
import { DIR_MODE, FILE_MODE, makeDirectories, placeFile, pruneEmptyDirectories, umaskStrips } from './disk.js';
import { refuseSwapBase, rootError } from './root-checks.js';
import { TempFile, type StagedFile } from './temp-file.js';

/** Precompressed siblings nginx's gzip_static / brotli_static look for; they live and die with the file. */
export const SIBLING_SUFFIXES = ['.gz', '.br'] as const;
/**
 * Space set aside in the state directory (`reserve`) for purge records: on a full disk the purge that
 * would free space must still be able to record itself first (invalidation.ts gives the reserve up).
 */
export const RESERVE_FILE = 'reserve';
const RESERVE_BYTES = 256 * 1024;
/** A temp file older than this is abandoned even if a process with its pid is alive (pid reuse). */
const STALE_TEMP_MS = 60 * 60 * 1000;

export interface StoreOptions {
  /** fsync files before renaming them into place, so a power cut cannot leave an empty page. @default true */
  durable?: boolean;
  /**
   * Whether the root itself may be a symlink (a `--root` the user named, a `current` generation). Not
   * for a multi-site host's root, which is a directory of the base below it.
   * @default true
   */
  rootMayBeLink?: boolean;
}

export type SiblingSuffix = typeof SIBLING_SUFFIXES[number];


/** `replacedSiblings`: the precompressed siblings the version it replaced had (and no longer has). */
export type PlaceResult = { stored: true; absolute: string; inode: number; replacedSiblings: SiblingSuffix[] } | { stored: false; reason: string };

/**
 * Another host's temp files are removed only past this age: its processes cannot be asked whether
 * they are alive, and a write in flight is younger than maxRenderMs (10 minutes by default).
 */
const FOREIGN_TEMP_MS = 30 * 60 * 1000;

export class Store {
  readonly root: string;
  readonly stateDir: string;
  readonly tempDir: string;
  readonly metaDir: string;
  /** The meta records of the files in the tree (meta-log.ts). */
  readonly meta: MetaLog;
  /** The files of the state directory, for the indexes kept there (state-files.ts). */
  readonly state: StateFiles;
  private readonly durable: boolean;
  private readonly io: FileIo;
  /** Checks that no directory below the root is a symlink before it is used (no-follow.ts). */
  readonly noFollow: NoFollow;
  private readonly rootMayBeLink: boolean;
  private ready: Promise<void> | undefined;

  constructor(root: string, options: StoreOptions = {}) {
    this.root = path.resolve(root);
    this.stateDir = path.join(this.root, STATE_DIR);
    this.tempDir = path.join(this.stateDir, 'tmp');
    this.metaDir = path.join(this.stateDir, 'meta');
    this.durable = options.durable ?? true;
    this.io = fileIo;
    this.noFollow = new NoFollow(this.root, this.io);
    this.state = new StateFiles(this.stateDir, this.root);
    this.meta = new MetaLog(this.metaDir, this.state, (file) => this.fileStats(file));
    this.rootMayBeLink = options.rootMayBeLink ?? true;
  }

  /** Creates the root and state directories and removes temp files left by killed processes. */
  init(): Promise<void> {
    this.ready ??= this.initOnce().catch((error: unknown) => {
      this.ready = undefined;
      throw error;
    });
    return this.ready;
  }

  /**
   * Throws EROOT unless the root exists and is a directory; for commands that must not create it. Also
   * when it is the base of a multi-site cache (`<root>/<host>/` each a root of its own): run on the
   * base, a purge or ls would take the hosts' state directories for pages.
   */
  async checkRoot(): Promise<void> {
    if ((await this.rootStats()) === undefined) {
      throw new PrerenderError('EROOT', `cache root ${this.root} does not exist: check --root or $PRERENDER_ROOT`, { input: this.root });
    }
    await refuseSwapBase(this.root);
    await this.refuseLinkedState();
    if ((await fs.stat(this.stateDir).catch(() => undefined)) !== undefined) return;
    const hosts: string[] = [];
    for (const entry of await fs.readdir(this.root, { withFileTypes: true })) {
      if (entry.isDirectory() && (await fs.stat(path.join(this.root, entry.name, STATE_DIR)).catch(() => undefined))?.isDirectory() === true) hosts.push(entry.name);
    }
    if (hosts.length > 0) {
      throw new PrerenderError('EROOT', `${this.root} holds the cache roots of several hosts (${hosts.slice(0, 5).join(', ')}${hosts.length > 5 ? ', ...' : ''}): give one, e.g. --root ${path.join(this.root, hosts[0] ?? '')}`, { input: this.root });
    }
  }

  /**
   * Throws EROOT when the state directory (or one of its directories) is a symlink: its files would
   * be written, appended to and deleted wherever it points.
   */
  private async refuseLinkedState(): Promise<void> {
    if (!this.rootMayBeLink && (await fs.lstat(this.root).catch(() => undefined))?.isSymbolicLink() === true) {
      throw new PrerenderError('EROOT', `cache root ${this.root} is a symlink inside the multi-site base: prerender does not follow it; make it a directory`, { input: this.root });
    }
    for (const dir of [this.stateDir, this.tempDir, this.metaDir, path.join(this.stateDir, 'tags'), path.join(this.stateDir, 'inval')]) {
      if ((await fs.lstat(dir).catch(() => undefined))?.isSymbolicLink() === true) {
        throw new PrerenderError('EROOT', `${dir} is a symlink: prerender does not follow symlinks in its state directory; remove it (the cache root must be prerender's alone)`, { input: dir });
      }
    }
  }

  private async rootStats(): Promise<Stats | undefined> {
    let stats: Stats;
    try {
      stats = await fs.stat(this.root);
    } catch (error) {
      if (isErrno(error, 'ENOENT')) return undefined;
      throw rootError(this.root, error);
    }
    if (!stats.isDirectory()) {
      throw new PrerenderError('EROOT', `cache root ${this.root} is not a directory: check --root or $PRERENDER_ROOT`, { input: this.root });
    }
    return stats;
  }

  private async initOnce(): Promise<void> {
    await this.rootStats();
    try {
      await makeDirectories(this.root, path.parse(this.root).root);
    } catch (error) {
      throw rootError(this.root, error);
    }
    await this.refuseLinkedState();
    try {
      await this.noFollow.ensureDir(this.tempDir, DIR_MODE, umaskStrips(DIR_MODE));
      await this.noFollow.ensureDir(this.metaDir, DIR_MODE, umaskStrips(DIR_MODE));
    } catch (error) {
      throw rootError(this.root, error);
    }
    await this.removeStaleTemps();
    await this.keepReserve();
  }

  /** Sets the purge records' reserve aside unless it is there; best effort: a full disk leaves none. */
  async keepReserve(): Promise<void> {
    const reserve = path.join(this.stateDir, RESERVE_FILE);
    try {
      await fs.writeFile(reserve, Buffer.alloc(RESERVE_BYTES), { flag: 'wx', mode: FILE_MODE });
    } catch (error) {
      // EEXIST: it is there (or another process is writing it). Anything else leaves no part behind.
      if (!isErrno(error, 'EEXIST')) await fs.rm(reserve, { force: true }).catch(() => undefined);
    }
  }

  async removeStaleTemps(): Promise<number> {
    let removed = 0;
    for (const name of await fs.readdir(this.tempDir).catch(() => [] as string[])) {
      const file = path.join(this.tempDir, name);
      const stats = await fs.stat(file).catch(() => undefined);
      if (stats === undefined) continue;
      if (inUse(ownerOf(name), Date.now() - stats.mtimeMs, { maxAgeMs: STALE_TEMP_MS, foreignMaxAgeMs: FOREIGN_TEMP_MS })) continue;
      await fs.rm(file, { force: true, recursive: true }).then(() => removed++, () => undefined);
    }
    return removed;
  }

  /**
   * Starts a temp file without waiting for the disk: writes queue behind the open, so the caller (a
   * response in flight) never waits.
   */
  openTemp(): TempFile {
    const file = this.tempName();
    const opening = this.init().then(() =>
      this.io.open(file, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, FILE_MODE)).catch((error: unknown) => {
      // The root (or its state directory) was deleted under us: set it up again for the next write.
      if (isErrno(error, 'ENOENT')) this.ready = undefined;
      throw error;
    });
    return new TempFile(file, opening, this.io);
  }

  /** A name in the temp directory that `removeStaleTemps` can tell is this process's (owner.ts). */
  private tempName(): string {
    return path.join(this.tempDir, `${ownedName('tmp')}.tmp`);
  }

  /** Absolute path of a root-relative file, or undefined when it cannot be stored there. */
  resolve(file: string): string | undefined {
    return resolveInRoot(this.root, file);
  }

  /**
   * Writes a page's body into a temp file of its own (one write), with its mode and mtime; not yet
   * flushed. The staged file is this process's until `place` moves it or `unstage` removes it.
   */
  async stage(body: PageBody, mtime: number): Promise<StagedFile> {
    await this.init();
    const file = this.tempName();
    const fd = await this.io.open(file, fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY, FILE_MODE).catch((error: unknown) => {
      // The root (or its state directory) was deleted under us: set it up again for the next batch.
      if (isErrno(error, 'ENOENT')) this.ready = undefined;
      throw error;
    });
    const staged: StagedFile = { temp: file, fd, inode: 0, birth: 0, placed: false };
    try {
      await this.io.writev(fd, body.chunks);
      if (umaskStrips(FILE_MODE)) await this.io.fchmod(fd, FILE_MODE);
      await this.io.futimes(fd, mtime);
      const stats = await this.io.fstat(fd);
      staged.inode = stats.ino;
      staged.birth = stats.birthtimeMs;
      return staged;
    } catch (error) {
      await this.unstage(staged);
      throw error;
    }
  }

  /**
   * Flushes staged files to the device and closes them. The flushes are issued together, so their
   * waits overlap (the file system commits them in one or a few journal transactions): a batch costs
   * about one device wait, not one a file. Resolves to each file's error, or undefined.
   */
  async flush(staged: readonly StagedFile[]): Promise<Array<unknown>> {
    return Promise.all(staged.map(async (file) => {
      try {
        if (this.durable && file.fd !== undefined) await this.io.fdatasync(file.fd);
        await this.closeStaged(file);
        return undefined;
      } catch (error) {
        await this.unstage(file);
        return error;
      }
    }));
  }

  private async closeStaged(file: StagedFile): Promise<void> {
    const fd = file.fd;
    if (fd === undefined) return;
    // Cleared before the close is awaited: a descriptor number closed twice may by then be another file's.
    file.fd = undefined;
    await this.io.close(fd);
  }

  /** Closes and removes a staged file that was not placed; safe to call more than once. */
  async unstage(file: StagedFile): Promise<void> {
    await this.closeStaged(file).catch(() => undefined);
    if (!file.placed) await this.io.unlink(file.temp).catch(() => undefined);
  }

  /** Runs `work` (a batch's `place` calls) with each directory on the way checked once for all of them (NoFollow.batch). */
  batch<T>(work: () => Promise<T>): Promise<T> {
    return this.noFollow.batch(work);
  }

  /**
   * Moves a flushed staged file into place at `file` (its meta was recorded with its batch). A file
   * standing where a directory is needed, or a directory where the file goes, is left alone and the
   * entry skipped (the staged file is then removed).
   */
  async place(staged: StagedFile, file: string): Promise<PlaceResult> {
    const absolute = this.resolve(file);
    if (absolute === undefined) {
      await this.unstage(staged);
      return { stored: false, reason: 'path outside the root or too long' };
    }
    // Precompressed siblings of the old version must not outlive it: nginx would serve them to
    // clients that accept gzip while others get the new page.
    // A new file has none (only a version in place can), which spares two failing unlinks per write;
    // in a directory this write just created there is no old version, which spares the lstat too.
    const replacedSiblings: SiblingSuffix[] = [];
    const unlinkSiblings = async (): Promise<void> => {
      for (const suffix of SIBLING_SUFFIXES) {
        await this.io.unlink(absolute + suffix).then(() => {
          if (!replacedSiblings.includes(suffix)) replacedSiblings.push(suffix);
        }, () => undefined);
      }
    };
    let replacing = false;
    let placed;
    try {
      placed = await placeFile(this.io, this.noFollow, staged.temp, absolute, async (freshDirectory) => {
        replacing = !freshDirectory && (await this.io.lstat(absolute)) !== undefined;
        if (replacing) await unlinkSiblings();
      });
    } catch (error) {
      await this.unstage(staged);
      throw error;
    }
    if (!placed.ok) {
      await this.unstage(staged);
      return { stored: false, reason: placed.reason };
    }
    staged.placed = true;
    // Again after the rename: another writer compressing the old version may have renamed its sibling
    // in between, and checked the file's inode while it was still the old one (precompress.ts). Only
    // while the file is still this version: a newer one's siblings are its own.
    if (replacing && (await this.io.lstat(absolute))?.ino === staged.inode) await unlinkSiblings();
    return { stored: true, absolute, inode: staged.inode, replacedSiblings };
  }

  /**
   * Writes a file named `name` (one segment) at the top of the tree, or of the state directory with
   * `state`, through a temp file and a rename: for files prerender puts there outside the write path
   * (doctor's probes). Resolves to its absolute path.
   */
  async writeFile(name: string, body: string, options: { state?: boolean } = {}): Promise<string> {
    if (!/^[\w.-]+$/.test(name) || name.startsWith('.')) throw new Error(`${JSON.stringify(name)} is not a plain file name`);
    await this.init();
    const target = path.join(options.state === true ? this.stateDir : this.root, name);
    const temp = this.openTemp();
    try {
      temp.write(Buffer.from(body));
      await temp.finish(false);
      await this.io.rename(temp.path, target);
      temp.moved();
      return target;
    } finally {
      await temp.discard();
    }
  }

  /** Unlinks one file prerender put in the tree or its state directory; no error when it is gone. */
  async unlinkFile(absolute: string): Promise<void> {
    if (!isBelow(this.root, absolute)) throw new Error(`${absolute} is not under ${this.root}`);
    await this.io.unlink(absolute).catch((error: unknown) => {
      if (!isErrno(error, 'ENOENT')) throw error;
    });
  }

  /** Renames a finished temp file over a precompressed sibling of a stored file. */
  async placeSibling(temp: TempFile, sibling: string): Promise<void> {
    if (!SIBLING_SUFFIXES.some((suffix) => sibling.endsWith(suffix)) || !isBelow(this.root, sibling)) throw new Error(`${sibling} is not a sibling under ${this.root}`);
    await this.io.rename(temp.path, sibling);
    temp.moved();
  }

  /**
   * Removes the whole tree and `indexDirs` (the index): each is moved aside into the temp directory,
   * then deleted there, so nginx sees each subtree go at once, never a half-deleted one. Resolves to
   * the files that were stored.
   */
  async removeAll(indexDirs: readonly string[]): Promise<string[]> {
    await this.init();
    const trash = this.tempName();
    await fs.mkdir(trash);
    const removed = await this.list();
    // The index first, then the pages. A write that began after this purge (so may store) and lands in
    // between is then whole either way: its page goes with the tree, or it is placed after the tree
    // moved, and then its index records, taken with the index, are seen to be gone and written again
    // (commit.ts, step 7). The other order could take a new page's records with
    // the index after that write had checked them, and leave the page unindexed.
    for (const index of [this.metaDir, ...indexDirs]) {
      await fs.rename(index, path.join(trash, `.${path.basename(index)}`)).catch(() => undefined);
    }
    for (const name of await fs.readdir(this.root)) {
      if (name === STATE_DIR) continue;
      try {
        await fs.rename(path.join(this.root, name), path.join(trash, name));
      } catch (error) {
        // Gone meanwhile (a path purge pruned its empty directory): nothing left to move.
        if (!isErrno(error, 'ENOENT')) throw error;
      }
    }
    await fs.rm(trash, { recursive: true, force: true });
    return removed;
  }

  /** Removes a placed file again, only if it is still the inode `place` put there. */
  async unplace(file: string, inode: number): Promise<boolean> {
    return (await this.inodeOf(file)) === inode && this.remove(file);
  }

  /** The inode of the regular file stored at `file`, or undefined when there is none. */
  async inodeOf(file: string): Promise<number | undefined> {
    const absolute = this.resolve(file);
    if (absolute === undefined) return undefined;
    const stats = await this.noFollow.lstat(absolute).catch(() => undefined);
    return stats?.isFile() === true ? stats.ino : undefined;
  }

  /**
   * Stored files (root-relative) under directory `dir` whose first segment below it starts with
   * `namePrefix`; precompressed siblings and the state directory are left out.
   */
  async list(dir: string[] = [], namePrefix = ''): Promise<string[]> {
    const files: string[] = [];
    // The directory a prefix names is entered only if no symlink leads there; below it, a symlink is
    // a Dirent that is neither a file nor a directory, so the walk never enters one either.
    if ((await this.noFollow.check(path.join(this.root, ...dir))) === 'link') return files;
    const walk = async (segments: string[], prefix: string): Promise<void> => {
      let entries;
      try {
        entries = await fs.readdir(path.join(this.root, ...segments), { withFileTypes: true });
      } catch (error) {
        if (isErrno(error, 'ENOENT', 'ENOTDIR')) return;
        throw error;
      }
      for (const entry of entries) {
        if (!entry.name.startsWith(prefix)) continue;
        // A directory's index.html answers for the directory's URL, which a name prefix below it does
        // not cover (url-path.ts prefixCovers), unless it names the file whole.
        if (prefix !== '' && entry.name === 'index.html' && prefix !== 'index.html') continue;
        if (segments.length === 0 && entry.name === STATE_DIR) continue;
        const inner = [...segments, entry.name];
        if (entry.isDirectory()) await walk(inner, '');
        else if (entry.isFile() && !SIBLING_SUFFIXES.some((suffix) => entry.name.endsWith(suffix))) files.push(inner.join('/'));
      }
    };
    await walk(dir, namePrefix);
    return files;
  }

  /** True when a regular file is stored at this root-relative path. */
  async exists(file: string): Promise<boolean> {
    return (await this.fileStats(file))?.isFile() ?? false;
  }

  /** lstat of a stored file, or undefined when it is missing or a directory on its way is a symlink. */
  async fileStats(file: string): Promise<Stats | undefined> {
    const absolute = this.resolve(file);
    if (absolute === undefined) return undefined;
    return this.noFollow.lstat(absolute).catch(() => undefined);
  }

  /**
   * Removes a stored file with its precompressed siblings, then the directories it leaves empty
   * (never the root); its meta records count for nothing once it is gone (meta-log.ts). Returns false
   * when there was no such file.
   */
  async remove(file: string): Promise<boolean> {
    const absolute = this.resolve(file);
    if (absolute === undefined) return false;
    let existed = false;
    // Only regular files of the tree, reached without a symlink: a purge never deletes through a link,
    // nor a link someone put in a page's place (it is not a page prerender stored).
    if ((await this.noFollow.check(path.dirname(absolute))) !== 'ok') return false;
    for (const candidate of [absolute, ...SIBLING_SUFFIXES.map((suffix) => absolute + suffix)]) {
      if ((await this.io.lstat(candidate))?.isFile() !== true) continue;
      try {
        await fs.unlink(candidate);
        existed = true;
      } catch (error) {
        if (!isErrno(error, 'ENOENT', 'ENOTDIR', 'EISDIR')) throw error;
      }
    }
    await pruneEmptyDirectories(path.dirname(absolute), this.root);
    return existed;
  }
}
