/**
 * The file-system calls of the write path (store/, invalidation.ts) behind one interface, each
 * through libuv's thread pool. A missing file is an answer, not an error: `stat`/`lstat` resolve
 * `undefined` for ENOENT and ENOTDIR.
 */
import fs, { type Stats } from 'node:fs';
import { isErrno } from '../errors.js';

export interface FileIo {
  open(file: string, flags: number, mode: number): Promise<number>;
  /** Writes all of `data` (looping over short writes). */
  write(fd: number, data: Uint8Array): Promise<void>;
  /** Writes all of `chunks` in order, in one call when the kernel takes them whole. */
  writev(fd: number, chunks: readonly Uint8Array[]): Promise<void>;
  fstat(fd: number): Promise<Stats>;
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

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    fs.fdatasync(fd, (error) => (error === null ? resolve() : reject(error)));
  });
}

function missingAsUndefined(error: unknown): undefined {
  if (isErrno(error, 'ENOENT', 'ENOTDIR')) return undefined;
  throw error;
}

/** Every call through libuv's thread pool, so a stalled disk never stalls the event loop. */
export const fileIo: FileIo = {
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
  writev: async (fd, chunks) => {
    let pending = chunks.filter((chunk) => chunk.byteLength > 0);
    while (pending.length > 0) {
      // writev(2) takes at most IOV_MAX (1024) buffers; a short write leaves the rest for the next call.
      const batch = pending.slice(0, 1024);
      let written = await new Promise<number>((resolve, reject) => {
        fs.writev(fd, batch, (error, bytes) => (error === null ? resolve(bytes) : reject(error)));
      });
      const rest: Uint8Array[] = [];
      for (const chunk of pending) {
        if (written >= chunk.byteLength) written -= chunk.byteLength;
        else {
          rest.push(written === 0 ? chunk : chunk.subarray(written));
          written = 0;
        }
      }
      pending = rest;
    }
  },
  fstat: (fd) => new Promise((resolve, reject) => {
    fs.fstat(fd, (error, stats) => (error === null ? resolve(stats) : reject(error)));
  }),
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
