/**
 * Invalidation after unsafe methods (RFC 9111 §4.4): a request whose method is not known to be safe,
 * answered with a non-error status (2xx, 3xx), invalidates its target URI and the URIs in the
 * response's `Location` and `Content-Location` when they are same-origin. nginx sends every such
 * request to the app, so the middleware sees it; this module only says which paths it names.
 */
import type { OutgoingHttpHeader } from 'node:http';
import { normalizeHost } from './policy.js';
import { splitAbsoluteUrl, toCachePath } from './url-path.js';

/** RFC 9110 §9.2.1. Any other method, known or not, counts as unsafe. */
export const DEFAULT_SAFE_METHODS: readonly string[] = ['GET', 'HEAD', 'OPTIONS', 'TRACE'];

export function invalidates(statusCode: number): boolean {
  return statusCode >= 200 && statusCode < 400;
}

/**
 * The request-targets (paths as sent, still encoded) a response to an unsafe request invalidates: those
 * of the request itself and of `Location` / `Content-Location`, resolved against the request's URL,
 * when they name the request's host. Paths prerender never stores (a query string, a non-canonical
 * spelling) are left out: no file holds them.
 */
export function invalidationTargets(requestUrl: string | undefined, hostHeader: string | undefined, location: OutgoingHttpHeader | undefined, contentLocation: OutgoingHttpHeader | undefined): string[] {
  const host = normalizeHost(hostHeader);
  const targets = new Set<string>();
  const add = (path: string | undefined): void => {
    if (path !== undefined && toCachePath(path).ok) targets.add(path);
  };
  const requestPath = ownPath(requestUrl ?? '', host);
  add(requestPath);
  // A relative reference resolves against the request's path (RFC 3986 §5); the base's origin is a
  // stand-in that only same-origin references keep.
  const base = new URL(requestPath ?? '/', 'http://request.invalid');
  for (const header of [location, contentLocation]) {
    if (header === undefined || typeof header === 'number') continue;
    const value = (Array.isArray(header) ? header[0] : header) ?? '';
    const absolute = splitAbsoluteUrl(value.trim());
    if (absolute !== undefined) {
      add(ownPath(value.trim(), host));
      continue;
    }
    if (value.trim().startsWith('//')) {
      // A network-path reference names its own host.
      add(ownPath(`http:${value.trim()}`, host));
      continue;
    }
    let resolved: URL;
    try {
      resolved = new URL(value.trim(), base);
    } catch {
      continue;
    }
    if (resolved.origin === base.origin && resolved.search === '' && resolved.hash === '') add(resolved.pathname);
  }
  return [...targets];
}

/** The path of a request-target or absolute URL when it is on `host` (relative ones always are). */
function ownPath(target: string, host: string | undefined): string | undefined {
  const absolute = splitAbsoluteUrl(target);
  if (absolute === undefined) return target.startsWith('/') ? target : undefined;
  if (absolute.scheme !== 'http' && absolute.scheme !== 'https') return undefined;
  if (host === undefined || normalizeHost(absolute.authority) !== host) return undefined;
  return absolute.path;
}
