/**
 * Selecting cached files and removing them. Every path argument goes through the same
 * canonicalization as a write (url-path.ts), so a purge can name exactly the files a write can create
 * and nothing else.
 */
import { PrerenderError } from './errors.js';
import type { Store } from './store.js';
import { REFUSAL_MESSAGES, toCachePath, type CachePath } from './url-path.js';

export interface PurgeSelector {
  /**
   * URL paths (`/blog/post`) or absolute URLs (`https://example.com/blog/post`; only the path counts).
   * `/x/` and `/x/index.html` name the same file.
   */
  paths?: readonly string[];
}

export interface PurgeResult {
  /** Files removed, relative to the root (their `.gz`/`.br` siblings went with them). */
  removed: string[];
}

export async function purge(store: Store, selector: PurgeSelector): Promise<PurgeResult> {
  const targets = (selector.paths ?? []).map(parsePathArgument);
  await store.checkRoot();
  const removed: string[] = [];
  for (const target of targets) {
    if (await store.remove(target.file)) removed.push(target.file);
  }
  return { removed };
}

const absoluteUrl = /^[a-z][a-z0-9+.-]*:\/\/[^/?#]*/i;

/**
 * A user-supplied path or absolute URL, checked like a request path. The path of an absolute URL is
 * taken as written: `new URL` would resolve `..` segments and hide them from the check.
 */
export function parsePathArgument(argument: string): CachePath {
  const scheme = absoluteUrl.exec(argument);
  const target = scheme === null ? argument : argument.slice(scheme[0].length) || '/';
  const mapped = toCachePath(target);
  if (!mapped.ok) {
    throw new PrerenderError('EPATH', `cannot use path ${JSON.stringify(argument)}: ${REFUSAL_MESSAGES[mapped.reason]}`, {
      input: argument,
    });
  }
  return mapped.value;
}
