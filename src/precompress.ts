/**
 * Precompressed siblings (`<file>.gz`, `<file>.br`) for nginx's gzip_static and brotli_static, written
 * after the file is in place (never on the response path), each through a temp file and a rename. Only
 * where it pays: compressible types, files of at least MIN_BYTES, and only if the result is smaller by
 * a tenth. A sibling is written only while the file is still the version it was made from.
 */
import { constants as fsConstants, createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Writable } from 'node:stream';
import { constants as zlib, createBrotliCompress, createGzip } from 'node:zlib';
import { UTF8_TYPES } from './mime.js';
import type { SiblingSuffix, Store } from './store/store.js';

export type Encoding = 'gzip' | 'br';
export const ENCODINGS: readonly Encoding[] = ['gzip', 'br'];
const SUFFIX: Record<Encoding, SiblingSuffix> = { gzip: '.gz', br: '.br' };

/** The encoding a sibling's suffix stands for. */
export function encodingOf(suffix: SiblingSuffix): Encoding {
  return suffix === '.gz' ? 'gzip' : 'br';
}
const MIN_BYTES = 1024;
/** Types already compressed (images, fonts, archives, media) gain nothing; text-like ones do. */
const COMPRESSIBLE = new Set([...UTF8_TYPES, 'application/wasm', 'image/x-icon', 'image/x-ms-bmp', 'application/postscript', 'application/rtf']);

export function isCompressible(mediaType: string, size: number): boolean {
  return size >= MIN_BYTES && COMPRESSIBLE.has(mediaType);
}

/**
 * Writes the siblings of `file` (currently inode `inode`) with the same mtime, so nginx's validators
 * for each encoding are stable. Returns the encodings written.
 */
export async function writeSiblings(store: Store, file: string, inode: number, mtime: number, encodings: readonly Encoding[]): Promise<Encoding[]> {
  const absolute = store.resolve(file);
  if (absolute === undefined) return [];
  const written: Encoding[] = [];
  for (const encoding of encodings) {
    const handle = await fs.open(absolute, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW).catch(() => undefined);
    if (handle === undefined) return written;
    const temp = store.openTemp();
    try {
      const stats = await handle.stat();
      if (stats.ino !== inode) return written;
      await pipeline(
        createReadStream('', { fd: handle, autoClose: false }),
        compressor(encoding, stats.size),
        new Writable({
          write(chunk: Buffer, _encoding, callback) {
            temp.write(chunk);
            if (temp.backlog > 4 * 1024 * 1024) temp.drained().then(() => callback(), callback);
            else callback();
          },
        }),
      );
      if (temp.bytes > stats.size * 0.9) continue;
      await temp.finish(false, mtime);
      const sibling = absolute + SUFFIX[encoding];
      await store.placeSibling(temp, sibling);
      // A newer version may have replaced the file meanwhile; its writer makes its own siblings.
      if ((await fs.lstat(absolute).catch(() => undefined))?.ino !== inode) {
        await store.unlinkFile(sibling).catch(() => undefined);
        return written;
      }
      written.push(encoding);
    } finally {
      // The temp file's descriptor first: nothing would close it after a failed close of the handle.
      await temp.discard();
      await handle.close();
    }
  }
  return written;
}

function compressor(encoding: Encoding, size: number) {
  if (encoding === 'gzip') return createGzip({ level: 9 });
  return createBrotliCompress({
    params: {
      // Quality 11 is several times slower than 9 for a percent or two; large pages get 9.
      [zlib.BROTLI_PARAM_QUALITY]: size > 256 * 1024 ? 9 : 11,
      [zlib.BROTLI_PARAM_MODE]: zlib.BROTLI_MODE_TEXT,
      [zlib.BROTLI_PARAM_SIZE_HINT]: size,
    },
  });
}
