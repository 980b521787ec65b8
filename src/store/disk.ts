/**
 * Modes and directories of the tree: files 0644 and directories 0755 whatever the umask (nginx's
 * worker must read them), `mkdir -p` that fixes modes, the rename into place, and pruning the
 * directories a removal leaves empty.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from '../errors.js';
import { fileIo, type FileIo } from './file-io.js';
import type { NoFollow } from './no-follow.js';

export const FILE_MODE = 0o644;
export const DIR_MODE = 0o755;

/**
 * Creates `dir` and any missing parents below `stopAt` with mode 0755 whatever the umask. Throws ENOTDIR
 * or EEXIST when a file stands where a directory is needed. Resolves to true when `dir` itself was
 * created by this call (so it is empty).
 */
export async function makeDirectories(dir: string, stopAt: string, io: FileIo = fileIo): Promise<boolean> {
  const first = await io.mkdirp(dir, DIR_MODE);
  if (first === undefined) return false;
  if (!umaskStrips(DIR_MODE)) return true;
  // mkdir's mode is masked by the umask; fix every directory this call created, from the top down.
  let current = dir;
  const created: string[] = [];
  while (current.length >= first.length && current !== stopAt) {
    created.push(current);
    current = path.dirname(current);
  }
  for (const createdDir of created.reverse()) await io.chmod(createdDir, DIR_MODE);
  return true;
}

/**
 * True when the process umask clears bits of `mode`, so a file or directory created with it needs a
 * chmod to end up with exactly `mode`. With the usual umask (022) nothing is cleared and the chmod
 * (one system call through the thread pool per file) is skipped. Read at each use: umask can change.
 */
export function umaskStrips(mode: number): boolean {
  return (process.umask() & mode) !== 0;
}

/** `beforeRename` runs once the parent exists, told whether this attempt created it. */
export async function placeFile(io: FileIo, noFollow: NoFollow, source: string, target: string, beforeRename: (freshDirectory: boolean) => Promise<void>): Promise<{ ok: true } | { ok: false; reason: string }> {
  // A concurrent purge may prune the parent directory between mkdir and rename; try again then.
  for (let attempt = 0; ; attempt++) {
    try {
      // rename(2) replaces a symlink at the target itself, never what it points at; the directories
      // on the way are the ones that must not be links.
      await beforeRename(await noFollow.ensureDir(path.dirname(target), DIR_MODE, umaskStrips(DIR_MODE)));
      await io.rename(source, target);
      return { ok: true };
    } catch (error) {
      if (isErrno(error, 'ENOTDIR', 'EEXIST')) return { ok: false, reason: 'a file stands where a directory is needed' };
      if (isErrno(error, 'EISDIR', 'ENOTEMPTY')) return { ok: false, reason: 'a directory stands where the file goes' };
      if (isErrno(error, 'ENAMETOOLONG')) return { ok: false, reason: 'name too long for the file system' };
      if (isErrno(error, 'ELOOP')) return { ok: false, reason: `a symlink stands on the way to the file (${error.message.replace(/^ELOOP: /, '')})` };
      if (!isErrno(error, 'ENOENT') || attempt >= 3) throw error;
      noFollow.forgetChecks();
    }
  }
}

export async function pruneEmptyDirectories(dir: string, root: string): Promise<void> {
  let current = dir;
  while (current !== root && current.startsWith(root + path.sep)) {
    try {
      await fs.rmdir(current);
    } catch {
      return;
    }
    current = path.dirname(current);
  }
}
