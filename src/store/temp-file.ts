/**
 * Temp files of the state directory: a streamed one (`TempFile`, for precompressed siblings and
 * doctor's probes), and a page body written whole on its way into the tree (`StagedFile`, commit.ts).
 */
import type { FileIo } from './file-io.js';
import { FILE_MODE, umaskStrips } from './disk.js';

/** A page body written to a temp file of the state directory, on its way into the tree. */
export interface StagedFile {
  readonly temp: string;
  /** Open until `flush` closes it. */
  fd: number | undefined;
  inode: number;
  /** Its birth time (ms), with the inode the identity its meta and expiry records name it by. */
  birth: number;
  /** Renamed into the tree: nothing left to remove. */
  placed: boolean;
}

/**
 * The body of one response on its way to disk. Writes are queued so the response never waits for the
 * disk; `backlog` tells the caller how far the disk is behind, so it can give up instead of buffering.
 */
export class TempFile {
  readonly path: string;
  /** The descriptor, once open; the temp file owns it until `finish` or `discard` closes it. */
  private readonly opening: Promise<number>;
  private readonly io: FileIo;
  private chain: Promise<unknown>;
  private closed = false;
  private renamed = false;
  /** Bytes handed to `write` so far. */
  bytes = 0;
  /** Bytes handed to `write` that have not reached the file yet. */
  backlog = 0;
  /** The first error from opening or writing; `finish` throws it. */
  error: unknown;

  constructor(file: string, opening: Promise<number>, io: FileIo) {
    this.path = file;
    this.opening = opening;
    this.io = io;
    this.chain = opening.catch((error: unknown) => {
      this.error ??= error;
    });
  }

  write(chunk: Uint8Array): void {
    const length = chunk.byteLength;
    this.bytes += length;
    this.backlog += length;
    this.chain = this.chain.then(async () => {
      if (this.error !== undefined) return;
      // Its descriptor number may belong to another file by now.
      if (this.closed) throw Object.assign(new Error(`EBADF: write to ${this.path} after it was closed`), { code: 'EBADF' });
      await this.io.write(await this.opening, chunk);
    }).catch((error: unknown) => {
      this.error ??= error;
    }).finally(() => {
      this.backlog -= length;
    });
  }

  /** Resolves once every write queued so far has reached the file (or failed). */
  async drained(): Promise<void> {
    await this.chain;
  }

  /**
   * Waits for every queued write, fixes the mode whatever the umask, sets the mtime (seconds) when
   * given, optionally fsyncs, closes.
   */
  async finish(durable: boolean, mtime?: number): Promise<void> {
    await this.chain;
    if (this.error !== undefined) throw this.error;
    const fd = await this.opening;
    if (umaskStrips(FILE_MODE)) await this.io.fchmod(fd, FILE_MODE);
    if (mtime !== undefined) await this.io.futimes(fd, mtime);
    if (durable) await this.io.fdatasync(fd);
    this.closed = true;
    await this.io.close(fd);
  }

  /** Call after renaming the file into place: `discard` then has nothing to unlink. */
  moved(): void {
    this.renamed = true;
  }

  /** Closes and unlinks the temp file; safe to call more than once and after a rename. */
  async discard(): Promise<void> {
    await this.chain;
    if (!this.closed) {
      // Set before the close is awaited: a descriptor number closed twice may by then be another file's.
      this.closed = true;
      const fd = await this.opening.catch(() => undefined);
      if (fd !== undefined) await this.io.close(fd).catch(() => undefined);
    }
    if (!this.renamed) await this.io.unlink(this.path).catch(() => undefined);
  }
}
