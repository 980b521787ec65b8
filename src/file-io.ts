/**
 * The file-system calls of the write path (store.ts, invalidation.ts), in two flavours behind one
 * interface, so the write protocol exists once.
 *
 * - `threadPool`: each call goes through libuv's thread pool, so a stalled disk never stalls the event
 *   loop, and the kernel's share of each call (creating an inode, renaming) runs on another core. What
 *   a server needs: with the middleware's stores made blocking, a busy app serving a constant page fell
 *   from 0.77x to 0.41x of the bare app's throughput (hits bench, case c, one A/B on this VM).
 * - `blocking`: the same calls made synchronously on the calling thread. A metadata call (open,
 *   rename, mkdir, stat) on cached directories costs ~4 µs that way, against ~25 µs of the loop's
 *   own time to hand it to the pool and take the answer back (node 20, this project's 2-core VM), and
 *   no thread wake-ups. For a process whose loop serves nothing else: `prerender crawl`.
 *
 * fdatasync goes through the pool in both: it waits for the device (milliseconds), not for the kernel's
 * caches, and blocking on it would stop every fetch in flight.
 *
 * A missing file is an answer, not an error: `stat`/`lstat` resolve `undefined` for ENOENT and
 * ENOTDIR. In the blocking flavour that also spares an exception for ENOENT (`throwIfNoEntry`), in
 * checks that usually find nothing (the invalidation journal of a quiet cache).
 *
 * Only the calls of writing a page go through here (temp file, index record, placing, purge checks);
 * tag logs, purge records, precompressed siblings and removals use the thread pool in both.
 */
import fs, { type Stats } from 'node:fs';
import { isErrno } from './errors.js';

export interface FileIo {
  open(file: string, flags: number, mode: number): Promise<number>;
  /** Writes all of `data` (looping over short writes). */
  write(fd: number, data: Uint8Array): Promise<void>;
  fchmod(fd: number, mode: number): Promise<void>;
  /** Sets atime and mtime, whole seconds. */
  futimes(fd: number, seconds: number): Promise<void>;
  fdatasync(fd: number): Promise<void>;
  close(fd: number): Promise<void>;
  stat(file: string): Promise<Stats | undefined>;
  lstat(file: string): Promise<Stats | undefined>;
  rename(from: string, to: string): Promise<void>;
  /** `mkdir -p` with `mode`; resolves to the first directory created, or undefined when all existed. */
  mkdirp(dir: string, mode: number): Promise<string | undefined>;
  chmod(file: string, mode: number): Promise<void>;
  unlink(file: string): Promise<void>;
  /** realpath(3); undefined when a component is missing. */
  realpath(file: string): Promise<string | undefined>;
  /** One directory, never through a symlink; false when something already stands there. */
  mkdir(dir: string, mode: number): Promise<boolean>;
}

export type IoMode = 'threadPool' | 'blocking';

export function fileIo(mode: IoMode): FileIo {
  return mode === 'blocking' ? blocking : threadPool;
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fdatasync(fd, (error) => (error === null ? resolve() : reject(error)));
  });
}

function missingAsUndefined(error: unknown): undefined {
  if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
  throw error;
}

const threadPool: FileIo = {
  open: (file, flags, mode) => new Promise((resolve, reject) => {
    fs.open(file, flags, mode, (error, fd) => (error === null ? resolve(fd) : reject(error)));
  }),
  write: async (fd, data) => {
    for (let offset = 0; offset < data.byteLength;) {
      offset += await new Promise<number>((resolve, reject) => {
        fs.write(fd, data, offset, data.byteLength - offset, null, (error, written) => (error === null ? resolve(written) : reject(error)));
      });
    }
  },
  fchmod: (fd, mode) => new Promise((resolve, reject) => {
    fs.fchmod(fd, mode, (error) => (error === null ? resolve() : reject(error)));
  }),
  futimes: (fd, seconds) => new Promise((resolve, reject) => {
    fs.futimes(fd, seconds, seconds, (error) => (error === null ? resolve() : reject(error)));
  }),
  fdatasync,
  close: (fd) => new Promise((resolve, reject) => {
    fs.close(fd, (error) => (error === null ? resolve() : reject(error)));
  }),
  stat: (file) => fs.promises.stat(file).catch(missingAsUndefined),
  lstat: (file) => fs.promises.lstat(file).catch(missingAsUndefined),
  rename: (from, to) => fs.promises.rename(from, to),
  mkdirp: (dir, mode) => fs.promises.mkdir(dir, { recursive: true, mode }),
  chmod: (file, mode) => fs.promises.chmod(file, mode),
  unlink: (file) => fs.promises.unlink(file),
  realpath: (file) => new Promise((resolve, reject) => {
    fs.realpath.native(file, (error, resolved) => {
      if (error === null) resolve(resolved);
      else if (isErrno(error, 'ENOENT', 'ENOTDIR')) resolve(undefined);
      else reject(error);
    });
  }),
  mkdir: (dir, mode) => fs.promises.mkdir(dir, { mode }).then(() => true, existing),
};

function existing(error: unknown): false {
  if (isErrno(error, 'EEXIST')) return false;
  throw error;
}

const blocking: FileIo = {
  open: async (file, flags, mode) => fs.openSync(file, flags, mode),
  write: async (fd, data) => {
    for (let offset = 0; offset < data.byteLength;) offset += fs.writeSync(fd, data, offset, data.byteLength - offset);
  },
  fchmod: async (fd, mode) => fs.fchmodSync(fd, mode),
  futimes: async (fd, seconds) => fs.futimesSync(fd, seconds, seconds),
  fdatasync,
  close: async (fd) => fs.closeSync(fd),
  stat: async (file) => {
    try {
      return fs.statSync(file, { throwIfNoEntry: false });
    } catch (error) {
      return missingAsUndefined(error);
    }
  },
  lstat: async (file) => {
    try {
      return fs.lstatSync(file, { throwIfNoEntry: false });
    } catch (error) {
      return missingAsUndefined(error);
    }
  },
  rename: async (from, to) => fs.renameSync(from, to),
  mkdirp: async (dir, mode) => fs.mkdirSync(dir, { recursive: true, mode }),
  chmod: async (file, mode) => fs.chmodSync(file, mode),
  unlink: async (file) => fs.unlinkSync(file),
  realpath: async (file) => {
    try {
      return fs.realpathSync.native(file);
    } catch (error) {
      return missingAsUndefined(error);
    }
  },
  mkdir: async (dir, mode) => {
    try {
      fs.mkdirSync(dir, { mode });
      return true;
    } catch (error) {
      return existing(error);
    }
  },
};
