/**
 * Validators that match nginx's. nginx derives a file's ETag from its mtime and size
 * (`"<hex mtime>-<hex size>"`) and its Last-Modified from the mtime. prerender sets the stored file's
 * mtime to the response's Last-Modified (or, without one, the second the render started), so the ETag
 * and Last-Modified the app sends on a miss are the very ones nginx sends for the stored file on every
 * later hit: a client can revalidate against either and get a 304.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** The stored file's mtime, in whole seconds. */
export function mtimeSeconds(lastModified: number | null, renderedAt: number): number {
  return Math.floor((lastModified ?? renderedAt) / 1000);
}

export function nginxEtag(mtime: number, size: number): string {
  return `"${mtime.toString(16)}-${size.toString(16)}"`;
}

export function httpDate(mtime: number): string {
  return new Date(mtime * 1000).toUTCString();
}

/**
 * Whether a conditional GET may be answered 304 (RFC 9110 13.1): If-None-Match wins when present
 * (weak comparison, `*` matches); otherwise If-Modified-Since at or after the Last-Modified.
 */
export function notModified(headers: IncomingHttpHeaders, etag: string | undefined, mtime: number): boolean {
  const ifNoneMatch = headers['if-none-match'];
  if (ifNoneMatch !== undefined) {
    if (etag === undefined) return false;
    const opaque = etag.replace(/^W\//, '');
    return ifNoneMatch.split(',').some((candidate) => {
      const trimmed = candidate.trim();
      return trimmed === '*' || trimmed.replace(/^W\//, '') === opaque;
    });
  }
  const since = Date.parse(headers['if-modified-since'] ?? '');
  return !Number.isNaN(since) && Math.floor(since / 1000) >= mtime;
}
