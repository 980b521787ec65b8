/**
 * Request path -> cache file, as nginx's `try_files $uri/index.html $uri` would look it up.
 * Pure: no I/O. Everything that stores, purges or crawls goes through `toCachePath`, so a path is
 * either refused for all of them or maps to the same file for all of them.
 */
import path from 'node:path';
import { mediaTypeForName } from './mime.js';

/** prerender's own state (index, temp files) lives here under the root; nginx denies it. */
export const STATE_DIR = '.prerender';

/** Linux limits: a name (one path segment) and a whole path, in bytes. */
export const NAME_MAX = 255;
export const PATH_MAX = 4095;

export type PathRefusal =
  | 'not-origin-form'
  | 'query-string'
  | 'bad-percent-encoding'
  | 'encoded-slash'
  | 'control-byte'
  | 'invalid-utf8'
  | 'dot-segment'
  | 'empty-segment'
  | 'name-too-long'
  | 'state-directory'
  | 'ambiguous-index';

export interface CachePath {
  /** The decoded URL path, e.g. `/café/` (the spelling used in the index and in reports). */
  urlPath: string;
  /** The file relative to the root, `/`-separated, e.g. `café/index.html`. */
  file: string;
  /** The media type nginx will serve the file with; a response is stored only if it sent this type. */
  mediaType: string;
}

export type CachePathResult = { ok: true; value: CachePath } | { ok: false; reason: PathRefusal };

const utf8 = new TextDecoder('utf-8', { fatal: true });
const hex = /^[0-9A-Fa-f]{2}$/;

export type DecodedPath = { ok: true; path: string; segments: string[] } | { ok: false; reason: PathRefusal };

/**
 * Percent-decodes a path once, as nginx computes `$uri`, and refuses anything that is not canonical.
 * `segments` are the decoded segments below the root; the last is '' when the path ends in `/`.
 */
export function decodePath(target: string): DecodedPath {
  if (target.includes('?') || target.includes('#')) return { ok: false, reason: 'query-string' };
  if (!target.startsWith('/')) return { ok: false, reason: 'not-origin-form' };

  const decodedPath = plainTarget.test(target) ? target : percentDecode(target);
  if (typeof decodedPath !== 'string') return { ok: false, reason: decodedPath.refused };

  const segments = decodedPath.slice(1).split('/');
  const last = segments.length - 1;
  for (const [index, segment] of segments.entries()) {
    if (segment === '.' || segment === '..') return { ok: false, reason: 'dot-segment' };
    if (segment === '' && index !== last) return { ok: false, reason: 'empty-segment' };
    if (Buffer.byteLength(segment) > NAME_MAX) return { ok: false, reason: 'name-too-long' };
  }
  if (segments[0] === STATE_DIR) return { ok: false, reason: 'state-directory' };
  return { ok: true, path: decodedPath, segments };
}

/** Printable ASCII without `%` (nor `?`, `#`, refused before): decoding it once changes nothing. */
const plainTarget = /^\/[\x20-\x22\x24\x26-\x3e\x40-\x7e]*$/;

function percentDecode(target: string): string | { refused: PathRefusal } {
  // A request-target reaching Node is ASCII; text from a user (`/café`) is taken as UTF-8, which is
  // what a client would percent-encode it as.
  const raw = Buffer.from(target, 'utf8');
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i] as number;
    if (byte !== 0x25) {
      bytes.push(byte);
      continue;
    }
    const pair = raw.subarray(i + 1, i + 3).toString('latin1');
    if (!hex.test(pair)) return { refused: 'bad-percent-encoding' };
    const decoded = Number.parseInt(pair, 16);
    // nginx turns %2F into a real `/`, so the app may have routed a different resource than the file
    // nginx would look up.
    if (decoded === 0x2f) return { refused: 'encoded-slash' };
    bytes.push(decoded);
    i += 2;
  }
  if (bytes.some((byte) => byte < 0x20 || byte === 0x7f)) return { refused: 'control-byte' };
  try {
    return utf8.decode(Uint8Array.from(bytes));
  } catch {
    return { refused: 'invalid-utf8' };
  }
}

const absoluteForm = /^([a-z][a-z0-9+.-]*):\/\/([^/?#]*)(.*)$/is;

/**
 * Splits `scheme://authority/path` into its parts, with the path exactly as written (`/` when empty):
 * `new URL` would resolve `..` segments and hide them from the checks. Undefined for anything else.
 */
export function splitAbsoluteUrl(text: string): { scheme: string; authority: string; path: string } | undefined {
  const match = absoluteForm.exec(text);
  if (match === null) return undefined;
  return { scheme: (match[1] as string).toLowerCase(), authority: match[2] as string, path: (match[3] as string) || '/' };
}

/** A decoded URL path written back as a request-target: each segment percent-encoded. */
export function encodePath(urlPath: string): string {
  return urlPath.split('/').map((segment) => encodeURIComponent(segment)).join('/');
}

/**
 * Maps a request-target (`req.url`, or a path written by a user) to its cache file. The file does not
 * depend on the response: a path with an extension from `mime.types` is its own file, any other path is
 * `<path>/index.html`; the response decides only whether it may be stored there (`mediaType`).
 */
export function toCachePath(target: string): CachePathResult {
  const decoded = decodePath(target);
  if (!decoded.ok) return decoded;
  const { path: decodedPath, segments } = decoded;
  const last = segments.length - 1;
  const lastSegment = segments[last] as string;
  const typeByName = lastSegment === '' ? undefined : mediaTypeForName(lastSegment);
  const fileSegments = typeByName !== undefined ? segments : [...segments.filter((segment) => segment !== ''), 'index.html'];
  // nginx serves `x.css/index.html` for `/x.css` too (try_files looks up `$uri/index.html` as well as
  // `$uri`), where the app may answer with something else entirely.
  const parent = fileSegments[fileSegments.length - 2];
  if (fileSegments[fileSegments.length - 1] === 'index.html' && parent !== undefined && mediaTypeForName(parent) !== undefined) {
    return { ok: false, reason: 'ambiguous-index' };
  }
  return { ok: true, value: { urlPath: decodedPath, file: fileSegments.join('/'), mediaType: typeByName ?? 'text/html' } };
}

/** Human-readable reasons, for errors and reports. */
export const REFUSAL_MESSAGES: Readonly<Record<PathRefusal, string>> = {
  'not-origin-form': 'it does not start with "/"',
  'query-string': 'it has a query string or fragment, which nginx cannot key a file on',
  'bad-percent-encoding': 'it has a "%" not followed by two hex digits',
  'encoded-slash': 'it has an encoded slash (%2F), which nginx decodes into a real one',
  'control-byte': 'it has a NUL or control character',
  'invalid-utf8': 'it does not decode to valid UTF-8',
  'dot-segment': 'it has a "." or ".." segment',
  'empty-segment': 'it has an empty segment ("//")',
  'name-too-long': `a segment is longer than ${NAME_MAX} bytes`,
  'state-directory': `it points into prerender's state directory (/${STATE_DIR}/)`,
  'ambiguous-index': 'its index.html would sit in a directory named like a file (/x.css/), which nginx also serves for /x.css',
};

/** The URL path a stored file answers when nothing else is known of it: `a/index.html` is `/a/`. */
export function impliedUrlPath(file: string): string {
  return `/${file.replace(/(^|\/)index\.html$/, '$1')}`;
}

/**
 * Whether `target` lies below directory `base` (not `base` itself), by `path.relative`: `..x` is a
 * name inside, only `..` as a whole segment leaves.
 */
export function isBelow(base: string, target: string): boolean {
  const relative = path.relative(base, target);
  return relative !== '' && relative !== '..' && !relative.startsWith(`..${path.sep}`) && !path.isAbsolute(relative);
}

/**
 * Resolves a root-relative file inside `root`, or returns undefined when it would land outside it or
 * exceed the file system's path length. Checked with `path.relative`, never a bare prefix test:
 * `/srv/cache-evil` starts with `/srv/cache`.
 */
export function resolveInRoot(root: string, file: string): string | undefined {
  const absoluteRoot = path.resolve(root);
  const absolute = path.resolve(absoluteRoot, file);
  if (!isBelow(absoluteRoot, absolute)) return undefined;
  const relative = path.relative(absoluteRoot, absolute);
  if (relative.split(path.sep)[0] === STATE_DIR) return undefined;
  // Room for the longest sibling suffix (`.br`, `.gz`) so a file is never stored without room for them.
  if (Buffer.byteLength(absolute) + 3 > PATH_MAX) return undefined;
  return absolute;
}

/**
 * Whether a purge of URL prefix `prefix` covers the stored `file` (root-relative). A file is covered
 * when its own path starts with the prefix, except `<dir>/index.html`, whose URL is its directory's
 * (`/blog/`, which also answers `/blog`): it is covered when that URL starts with the prefix, or when
 * the prefix names it exactly. `--prefix /in` must not take the home page.
 */
export function prefixCovers(prefix: string, file: string): boolean {
  if (file === 'index.html' || file.endsWith('/index.html')) {
    return `/${file.slice(0, -'index.html'.length)}`.startsWith(prefix) || `/${file}` === prefix;
  }
  return `/${file}`.startsWith(prefix);
}
