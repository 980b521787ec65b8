/**
 * No symlink below the root is followed (DESIGN.md invariant 2). Whoever can write the root (the app's
 * user) could otherwise plant `root/blog -> /etc` and have a store write there, or a purge, run by a
 * more privileged CLI (root's cron, CI), delete there. The root itself, and a `current` generation
 * link, may be symlinks: they are what the user named.
 *
 * Node has no openat2(RESOLVE_NO_SYMLINKS), so a directory is checked before it is used: one
 * realpath(3) (a single call, however deep) must land exactly where the path says, below the root's
 * own real path. What is created is created one component at a time with lstat and a plain mkdir,
 * which never follows a link. Files are opened with O_NOFOLLOW. What remains is the race of a link
 * swapped in between a check and its use, by someone who can write the root while it happens.
 */
import { constants, type Stats } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { PrerenderError, isErrno } from '../errors.js';
import type { FileIo } from './file-io.js';
import { STATE_DIR, isBelow } from '../url-path.js';

export const O_NOFOLLOW = constants.O_NOFOLLOW;

export type DirState = 'ok' | 'missing' | 'link';

/** A symlink in prerender's state directory: the root is unusable until it is removed (the CLI exits 2). */
export function stateLinkError(where: string): PrerenderError {
  return new PrerenderError('EROOT', `${where} is a symlink: prerender does not follow symlinks in its state directory; remove it (the cache root must be prerender's alone)`, { input: where });
}

/** The error a symlink on the way gives: ELOOP, as the kernel says for O_NOFOLLOW. */
export function symlinkError(where: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`ELOOP: ${where} is a symlink below the cache root; prerender does not follow it`), { code: 'ELOOP', path: where });
}

export class NoFollow {
  readonly root: string;
  private readonly io: FileIo;
  private realRoot: string | undefined;
  /** Directories found 'ok' during the current `batch`, with how they were found. */
  private verified: Map<string, Promise<DirState>> | undefined;

  constructor(root: string, io: FileIo) {
    this.root = root;
    this.io = io;
  }

  /**
   * Whether `dir` (the root or below it) is reached without a symlink below the root: 'missing' when
   * a component does not exist (nothing there to follow yet), 'link' when one is a symlink or the
   * path leaves the root.
   */
  async check(dir: string): Promise<DirState> {
    const known = this.verified?.get(dir);
    if (known !== undefined) return known;
    const state = this.checkNow(dir);
    if (this.verified !== undefined) {
      this.verified.set(dir, state);
      // Only an 'ok' is kept: a missing directory is made later in the batch, and made through a check.
      state.then((found) => {
        if (found !== 'ok') this.verified?.delete(dir);
      }, () => this.verified?.delete(dir));
    }
    return state;
  }

  /**
   * Runs `work` (a batch of pages placed at once) with each directory checked once for all of them:
   * a batch of 256 pages of one section checks that section once, not 256 times. A link swapped in
   * meanwhile is the race the header describes, over the batch's placing (milliseconds) instead of
   * one page's.
   */
  async batch<T>(work: () => Promise<T>): Promise<T> {
    if (this.verified !== undefined) return work();
    this.verified = new Map();
    try {
      return await work();
    } finally {
      this.verified = undefined;
    }
  }

  /** Drops what `batch` knows: a directory it found may have been removed since (a purge pruned it). */
  forgetChecks(): void {
    this.verified?.clear();
  }

  private async checkNow(dir: string): Promise<DirState> {
    const relative = path.relative(this.root, dir);
    if (relative === '') return 'ok';
    if (!isBelow(this.root, dir)) return 'link';
    const real = await this.io.realpath(dir);
    if (real === undefined) return 'missing';
    for (let attempt = 0; attempt < 2; attempt++) {
      // Cached, and read again on a mismatch: a root reached through `current` changes its real path
      // when a --swap switches generations.
      if (attempt === 1 || this.realRoot === undefined) this.realRoot = await this.io.realpath(this.root);
      if (this.realRoot !== undefined && real === path.join(this.realRoot, relative)) return 'ok';
    }
    return 'link';
  }

  /**
   * `mkdir -p` below the root that never goes through a symlink: throws ELOOP at one, ENOTDIR at a
   * file. Resolves to true when `dir` itself was created by this call (so it is empty).
   */
  async ensureDir(dir: string, mode: number, fixMode: boolean): Promise<boolean> {
    const state = await this.check(dir);
    if (state === 'ok') return false;
    if (state === 'link') throw symlinkError(dir);
    // Most often only the last directory is missing (a new page in a section that exists): once its
    // parent is checked, one mkdir, which never follows a link at its own name, makes it.
    const parent = path.dirname(dir);
    if (parent !== this.root && isBelow(this.root, parent) && (await this.check(parent)) === 'ok' && (await this.io.mkdir(dir, mode))) {
      if (fixMode) await this.io.chmod(dir, mode);
      return true;
    }
    // The root itself is the user's to name, link or not; made as before, with its parents.
    if ((await this.io.stat(this.root)) === undefined) await this.io.mkdirp(this.root, mode);
    let current = this.root;
    let created = false;
    for (const segment of path.relative(this.root, dir).split(path.sep)) {
      current = path.join(current, segment);
      let stats: Stats | undefined = await this.io.lstat(current);
      created = false;
      if (stats === undefined) {
        if (await this.io.mkdir(current, mode)) {
          created = true;
          if (fixMode) await this.io.chmod(current, mode);
          continue;
        }
        // Made by someone else meanwhile: whatever it is, it is checked like any other.
        stats = await this.io.lstat(current);
      }
      if (stats?.isSymbolicLink() === true) throw symlinkError(current);
      if (stats !== undefined && !stats.isDirectory()) throw Object.assign(new Error(`ENOTDIR: ${current} is not a directory`), { code: 'ENOTDIR', path: current });
    }
    return created;
  }

  /** `ensureDir` for a directory of the state directory: a symlink there is EROOT, not one page skipped. */
  async ensureStateDir(dir: string, mode: number, fixMode: boolean): Promise<boolean> {
    try {
      return await this.ensureDir(dir, mode, fixMode);
    } catch (error) {
      if (isErrno(error, 'ELOOP')) throw stateLinkError((error as NodeJS.ErrnoException).path ?? dir);
      throw error;
    }
  }

  /** lstat of a file below the root, or undefined when it is missing or a directory on the way is a symlink. */
  async lstat(file: string): Promise<Stats | undefined> {
    if ((await this.check(path.dirname(file))) !== 'ok') return undefined;
    return this.io.lstat(file);
  }
}

/** Flags that open a state file without following a link at its name. */
export const READ_NO_FOLLOW = constants.O_RDONLY | constants.O_NOFOLLOW;

/** `fs.readFile` of a state file that refuses a symlink at its name (ELOOP) instead of reading through it. */
export async function readStateFile(file: string): Promise<string> {
  const handle = await fsp.open(file, READ_NO_FOLLOW);
  try {
    return await handle.readFile('utf8');
  } finally {
    await handle.close();
  }
}
