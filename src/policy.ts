/**
 * What a shared cache may store (DESIGN.md invariants 1 and 4), as pure functions of the request and
 * response headers. The middleware and the crawler ask the same questions here, and the generated nginx
 * config routes the same requests to the app, so a stored page is never served where the app would
 * have answered differently.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { governingDirectives, parseCacheControl } from './cache-control.js';
import { PrerenderError } from './errors.js';
import { freshnessOf } from './freshness.js';
import { parseHttpDate } from './http-date.js';
import { exactHostRefusal } from './host.js';
import { isUtf8Charset, isUtf8Type, parseContentType } from './mime.js';
import { REFUSAL_MESSAGES, toCachePath, type CachePath } from './url-path.js';

/**
 * Cookie names that mark a personalised request when no list is configured: the defaults of
 * express-session, cookie-session and the usual hand-rolled names. `prerender nginx` bypasses the same.
 */
export const DEFAULT_BYPASS_COOKIES: readonly string[] = ['connect.sid', 'session', 'session.sig', 'sid', 'sessionid'];

export const MAX_TAG_BYTES = 1024;
export const MAX_TAGS = 1000;

export type Verdict<T> = ({ store: true } & T) | { store: false; reason: string };

export interface RequestFacts {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
}

/**
 * Request headers that common frameworks act on (routing, method, absolute URLs) but that nginx does not
 * key its files on: a response shaped by one of them would be served to everyone (cache poisoning).
 * The generated nginx config clears them; a request that still carries one is never stored.
 */
export const UNKEYED_HEADERS: readonly string[] = ['x-original-url', 'x-rewrite-url', 'x-http-method-override', 'x-http-method', 'x-method-override'];

export interface RequestRules {
  bypassCookies: readonly string[];
  /** When set, only requests whose Host (and any X-Forwarded-Host) is exactly one of these are stored. */
  hosts?: ReadonlySet<string>;
}

/** Whether a request may have its response stored, and under which file (and host). */
export function checkRequest(request: RequestFacts, rules: RequestRules): Verdict<{ target: CachePath; host: string | undefined }> {
  if (request.method !== 'GET') return { store: false, reason: `method ${request.method ?? '?'}` };
  if (request.headers.authorization !== undefined) return { store: false, reason: 'Authorization header' };
  const cookie = findCookie(request.headers.cookie, rules.bypassCookies);
  if (cookie !== undefined) return { store: false, reason: `bypass cookie ${cookie}` };
  const unkeyed = UNKEYED_HEADERS.find((name) => request.headers[name] !== undefined);
  if (unkeyed !== undefined) return { store: false, reason: `${unkeyed} header` };
  let host = normalizeHost(request.headers.host);
  if (rules.hosts !== undefined) {
    const refusal = exactHostRefusal(request.headers, rules.hosts);
    if (refusal !== undefined) return { store: false, reason: refusal };
    host = request.headers.host;
  } else {
    const forwardedHost = request.headers['x-forwarded-host'];
    if (forwardedHost !== undefined && normalizeHost(headerText(forwardedHost)) !== host) {
      return { store: false, reason: 'X-Forwarded-Host differs from Host' };
    }
  }
  const mapped = toCachePath(request.url ?? '');
  if (!mapped.ok) return { store: false, reason: `path not cacheable: ${REFUSAL_MESSAGES[mapped.reason]}` };
  return { store: true, target: mapped.value, host };
}

const hostName = /^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * A Host header as nginx's `$host` has it: lowercased, without the port or a trailing dot. Undefined
 * for anything that is not a plain DNS name (IP literals included), which is never stored per host.
 */
export function normalizeHost(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const name = value.trim().toLowerCase().replace(/:\d{1,5}$/, '').replace(/\.$/, '');
  return name.length <= 253 && hostName.test(name) ? name : undefined;
}

/**
 * The first configured cookie present in a Cookie header, by exact name. Every pair is parsed, malformed
 * ones included: a pair without `=` counts under its whole text, as browsers send `name` alone.
 */
export function findCookie(header: string | string[] | undefined, names: readonly string[]): string | undefined {
  if (header === undefined || names.length === 0) return undefined;
  const text = Array.isArray(header) ? header.join(';') : header;
  for (const pair of text.split(';')) {
    const eq = pair.indexOf('=');
    const name = (eq < 0 ? pair : pair.slice(0, eq)).trim();
    if (names.includes(name)) return name;
  }
  return undefined;
}

export interface StorableResponse {
  tags: string[];
  /** Epoch ms after which the file is stale; null when the response set no expiry. */
  expiresAt: number | null;
  /** `stale-while-revalidate` in ms: how long past expiresAt the page may be refreshed in place. */
  staleWhileRevalidateMs: number;
  /** The body must be checked to be valid UTF-8 (a text type that declared no charset). */
  mustBeUtf8: boolean;
  /** The declared Content-Length, which the body must match. */
  contentLength: number | undefined;
  /** Epoch ms of the response's Last-Modified, if it had a valid one (it becomes the file's mtime). */
  lastModified: number | null;
}

/**
 * Whether a response may be stored at `target`. Tag errors are returned as `tagError` so the caller can
 * log them where the app's developer will see them. `now` is when the response head arrived,
 * `requestTime` when the request was made (freshness.ts counts the difference towards the age).
 *
 * The directives come from the first valid targeted field (`Prerender-Cache-Control`, then
 * `CDN-Cache-Control`), else `Cache-Control` (cache-control.ts): a targeted field may thus allow a
 * response `Cache-Control: private` keeps from browsers' shared caches. `Set-Cookie` and the request's
 * `Authorization` refuse whatever any field says.
 */
export function checkResponse(
  statusCode: number,
  headers: OutgoingHttpHeaders,
  target: CachePath,
  now: number,
  requestTime = now,
): Verdict<StorableResponse> & { tagError?: PrerenderError } {
  if (statusCode !== 200) return { store: false, reason: `status ${statusCode}` };
  if (headers['set-cookie'] !== undefined) return { store: false, reason: 'Set-Cookie' };

  const governing = governingDirectives(headers);
  for (const directive of ['private', 'no-store', 'no-cache'] as const) {
    if (governing.directives.has(directive)) return { store: false, reason: `${fieldName[governing.field]}: ${directive}` };
  }
  const vary = headerText(headers.vary).split(',').map((v) => v.trim().toLowerCase()).filter((v) => v !== '');
  const varyOther = vary.find((v) => v !== 'accept-encoding');
  if (varyOther !== undefined) return { store: false, reason: `Vary: ${varyOther}` };
  const encoding = headerText(headers['content-encoding']).trim().toLowerCase();
  if (encoding !== '' && encoding !== 'identity') return { store: false, reason: `Content-Encoding: ${encoding}` };

  const contentType = parseContentType(headerText(headers['content-type']));
  if (contentType === undefined) return { store: false, reason: 'no valid Content-Type' };
  if (contentType.mediaType !== target.mediaType) {
    return { store: false, reason: `Content-Type ${contentType.mediaType} where nginx would serve ${target.mediaType}` };
  }
  if (contentType.otherParameters) return { store: false, reason: 'Content-Type has parameters nginx cannot reproduce' };
  const utf8Type = isUtf8Type(contentType.mediaType);
  if (contentType.charset !== undefined && !(utf8Type && isUtf8Charset(contentType.charset))) {
    return { store: false, reason: `charset ${contentType.charset} (only UTF-8 text is stored)` };
  }

  const freshness = freshnessOf(governing, headers, now, requestTime);
  if (!freshness.storable) return { store: false, reason: freshness.reason };
  const { expiresAt, staleWhileRevalidateMs } = freshness;

  const tags = parseTags(headers['cache-tag'], headers['surrogate-key']);
  if (!tags.ok) return { store: false, reason: tags.error.message, tagError: tags.error };

  const lengthText = headerText(headers['content-length']).trim();
  const contentLength = lengthText === '' ? undefined : Number(lengthText);
  if (contentLength !== undefined && !Number.isSafeInteger(contentLength)) return { store: false, reason: 'bad Content-Length' };

  const lastModifiedMs = parseHttpDate(headerText(headers['last-modified']).trim());
  const lastModified = lastModifiedMs === null || lastModifiedMs > now ? null : lastModifiedMs;

  return { store: true, tags: tags.tags, expiresAt, staleWhileRevalidateMs, mustBeUtf8: utf8Type && contentType.charset === undefined, contentLength, lastModified };
}

export function headerText(value: string | number | readonly string[] | undefined): string {
  if (value === undefined) return '';
  return Array.isArray(value) ? value.join(', ') : String(value);
}

const fieldName = { 'prerender-cache-control': 'Prerender-Cache-Control', 'cdn-cache-control': 'CDN-Cache-Control', 'cache-control': 'Cache-Control' } as const;

export { parseCacheControl };

const controlCharacter = /[\u0000-\u001f\u007f]/;

export type TagsResult = { ok: true; tags: string[] } | { ok: false; error: PrerenderError };

/**
 * Tags from `Cache-Tag` (comma-separated) and `Surrogate-Key` (space-separated), lowercased and
 * deduplicated. Header values reach Node as bytes; UTF-8 ones are decoded so that `purge --tag café`
 * finds them.
 */
export function parseTags(cacheTag: OutgoingHttpHeaders[string], surrogateKey: OutgoingHttpHeaders[string]): TagsResult {
  const raw = [
    ...headerText(cacheTag).split(','),
    ...headerText(surrogateKey).split(' '),
  ];
  const tags = new Set<string>();
  for (const item of raw) {
    const checked = normalizeTag(fromHeaderBytes(item.trim()));
    if (!checked.ok) return checked;
    if (checked.tag !== '') tags.add(checked.tag);
  }
  if (tags.size > MAX_TAGS) {
    return { ok: false, error: new PrerenderError('ETAG', `a response carries ${tags.size} tags; at most ${MAX_TAGS} are recorded`) };
  }
  return { ok: true, tags: [...tags] };
}

/** Validates and lowercases one tag; the empty string passes through for the caller to drop. */
export function normalizeTag(tag: string): { ok: true; tag: string } | { ok: false; error: PrerenderError } {
  if (controlCharacter.test(tag)) {
    return { ok: false, error: new PrerenderError('ETAG', `tag ${JSON.stringify(tag)} has a control character`, { input: tag }) };
  }
  if (Buffer.byteLength(tag) > MAX_TAG_BYTES) {
    return { ok: false, error: new PrerenderError('ETAG', `tag "${tag.slice(0, 40)}..." is over ${MAX_TAG_BYTES} bytes`, { input: tag }) };
  }
  return { ok: true, tag: tag.toLowerCase() };
}

function fromHeaderBytes(value: string): string {
  if (!/[\u0080-\u00ff]/.test(value)) return value;
  const bytes = Buffer.from(value, 'latin1');
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return value;
  }
}
