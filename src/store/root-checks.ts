/** What a directory must be before prerender uses it as a cache root. */
import fs from 'node:fs/promises';
import path from 'node:path';
import { PrerenderError, isErrno } from '../errors.js';

export function rootError(root: string, cause: unknown): PrerenderError {
  const reason = isErrno(cause) ? cause.code : 'error';
  return new PrerenderError('EROOT', `cannot use cache root ${root} (${reason}): --root (or $PRERENDER_ROOT, or createCache({ root })) must be a writable directory`, {
    cause,
    input: root,
  });
}

/**
 * The base of crawl --swap generations holds whole trees, each with its own state, and `current` is
 * the one nginx serves: pages read, purged or written in the base itself would never be served. (A
 * page directory is never a symlink, so a `current` symlink beside `generations/` is no site.)
 */
export async function refuseSwapBase(root: string): Promise<void> {
  const current = path.join(root, 'current');
  if ((await fs.lstat(current).catch(() => undefined))?.isSymbolicLink() !== true) return;
  if ((await fs.stat(path.join(root, 'generations')).catch(() => undefined))?.isDirectory() !== true) return;
  throw new PrerenderError('EROOT', `${root} is the base of crawl --swap generations: give the live tree, --root ${current} (or crawl with --swap)`, { input: root });
}
