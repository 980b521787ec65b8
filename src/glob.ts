/**
 * Glob selectors (`purge --glob '/blog/**'`, `ls --glob`): patterns over URL paths, not file names.
 * A pattern never reaches the file system: fast-glob walks the tree below the pattern's literal
 * directory (not following symlinks, leaving the state directory out), each stored file is turned
 * back into the URL paths that answer with it, and those are matched with picomatch (fast-glob's own
 * matcher). So a pattern can select only files a write could have stored, whatever it spells.
 *
 * Checked like every other selector (url-path.ts): percent-decoded once (`%2F`, NUL, control bytes
 * and invalid UTF-8 refused), no `.`/`..` or empty segments, nothing in the state directory, and
 * bounded: the length, the wildcards, the braces (no ranges, no nesting; picomatch compiles braces to
 * one regex, never expands them) and no regex groups or extglobs, whose backtracking could be
 * exponential.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import picomatch from 'picomatch';
import { PrerenderError } from './errors.js';
import { SIBLING_SUFFIXES } from './store/store.js';
import { NAME_MAX, STATE_DIR } from './url-path.js';

/** Longest pattern accepted, in bytes. */
export const MAX_GLOB_BYTES = 1024;
const MAX_WILDCARDS = 16;
const MAX_BRACE_GROUPS = 8;
const MAX_BRACE_ALTERNATIVES = 64;

export interface GlobArgument {
  /** The pattern as given. */
  input: string;
  /** Decoded, with characters that came from percent-escapes escaped for picomatch. */
  pattern: string;
  /** The decoded URL path before the first wildcard: what an invalidation record must cover. */
  literalPrefix: string;
  /** Whole directory segments of that prefix: where the walk starts. */
  dir: string[];
  matches(urlPath: string): boolean;
}

const SPECIAL = new Set(['*', '?', '[', ']', '{', '}', '(', ')', '!', '+', '@', '|', ',', '\\']);
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Checks a user-supplied URL-path glob; throws EPATH (exit 2) naming what is wrong. */
export function parseGlobArgument(input: string): GlobArgument {
  const refuse = (why: string): never => {
    throw new PrerenderError('EPATH', `cannot use --glob ${JSON.stringify(input)}: ${why}`, { input: typeof input === 'string' ? input : String(input) });
  };
  if (typeof input !== 'string' || input === '') return refuse('give a URL-path pattern such as /blog/**');
  if (Buffer.byteLength(input) > MAX_GLOB_BYTES) return refuse(`it is longer than ${MAX_GLOB_BYTES} bytes`);
  if (/^[A-Za-z]:[\\/]|^~|^\\\\/.test(input)) return refuse('it is a file-system path; globs select URL paths, e.g. /blog/**');
  if (!input.startsWith('/')) return refuse('it does not start with "/": globs select URL paths, e.g. /blog/**');
  if (/[\u0000-\u001f\u007f]/.test(input)) return refuse('it has a NUL or control character');

  const pattern = decodePattern(input, refuse);
  const segments = splitSegments(pattern);
  for (const [index, escaped] of segments.entries()) {
    const segment = escaped.replace(/\\(.)/g, '$1');
    if (segment === '.' || segment === '..') refuse('it has a "." or ".." segment');
    if (segment === '' && index !== segments.length - 1) refuse('it has an empty segment ("//")');
    if (Buffer.byteLength(segment) > NAME_MAX) refuse(`a segment is longer than ${NAME_MAX} bytes`);
  }
  if (segments[0] === STATE_DIR) refuse(`it points into prerender's state directory (/${STATE_DIR}/)`);
  checkBounds(pattern, refuse);

  const literalPrefix = literalPart(pattern);
  const dir = literalPrefix.slice(1).split('/').slice(0, -1);
  const matcher = picomatch(pattern, { dot: true, noextglob: true, nonegate: true, strictSlashes: true });
  return { input, pattern, literalPrefix, dir, matches: (urlPath) => matcher(urlPath) };
}

/**
 * Percent-decodes once, as nginx computes `$uri`, so `/caf%C3%A9/*` and `/café/*` are one pattern.
 * A character that came from an escape is taken literally (`%2A` is a star in a name, not a wildcard).
 */
function decodePattern(input: string, refuse: (why: string) => never): string {
  const raw = Buffer.from(input, 'utf8');
  const bytes: number[] = [];
  const literal = new Set<number>();
  for (let i = 0; i < raw.length; i++) {
    const byte = raw[i] as number;
    if (byte !== 0x25) {
      bytes.push(byte);
      continue;
    }
    const pair = raw.subarray(i + 1, i + 3).toString('latin1');
    if (!/^[0-9A-Fa-f]{2}$/.test(pair)) refuse('it has a "%" not followed by two hex digits');
    const decoded = Number.parseInt(pair, 16);
    if (decoded === 0x2f) refuse('it has an encoded slash (%2F), which nginx decodes into a real one');
    if (decoded < 0x20 || decoded === 0x7f) refuse('it has a NUL or control character');
    literal.add(bytes.length);
    bytes.push(decoded);
    i += 2;
  }
  let text: string;
  try {
    text = utf8.decode(Uint8Array.from(bytes));
  } catch {
    return refuse('it does not decode to valid UTF-8');
  }
  if (literal.size === 0) return text;
  // Map byte offsets of escaped ASCII characters to escapes in the decoded text.
  let out = '';
  let offset = 0;
  for (const character of text) {
    const escaped = literal.has(offset) && SPECIAL.has(character);
    out += escaped ? `\\${character}` : character;
    offset += Buffer.byteLength(character);
  }
  return out;
}

/** Segments split at unescaped `/`. */
function splitSegments(pattern: string): string[] {
  const segments: string[] = [''];
  for (let i = 1; i < pattern.length; i++) {
    const character = pattern[i] as string;
    if (character === '\\') {
      segments[segments.length - 1] += character + (pattern[i + 1] ?? '');
      i++;
    } else if (character === '/') segments.push('');
    else segments[segments.length - 1] += character;
  }
  return segments;
}

function checkBounds(pattern: string, refuse: (why: string) => never): void {
  let wildcards = 0;
  let groups = 0;
  let depth = 0;
  let alternatives = 1;
  let groupStart = -1;
  for (let i = 0; i < pattern.length; i++) {
    const character = pattern[i] as string;
    if (character === '\\') {
      i++;
      continue;
    }
    if (character === '*' || character === '?') wildcards++;
    if (character === '(' || character === ')' || character === '|') refuse(`"${character}" (regex groups and extglobs) is not supported; escape it as \\${character} to match it literally`);
    if (character === '{') {
      if (depth > 0) refuse('nested braces are not supported');
      depth++;
      groups++;
      alternatives = 1;
      groupStart = i;
    } else if (character === '}') {
      if (depth === 0) refuse('it has a "}" without "{"');
      depth--;
      if (pattern.slice(groupStart, i).includes('..')) refuse('brace ranges ({1..9}) are not supported: list the alternatives');
      if (alternatives > MAX_BRACE_ALTERNATIVES) refuse(`a brace group has more than ${MAX_BRACE_ALTERNATIVES} alternatives`);
    } else if (character === ',' && depth > 0) alternatives++;
  }
  if (depth > 0) refuse('it has a "{" without "}"');
  if (groups > MAX_BRACE_GROUPS) refuse(`it has more than ${MAX_BRACE_GROUPS} brace groups`);
  if (wildcards > MAX_WILDCARDS) refuse(`it has more than ${MAX_WILDCARDS} wildcards`);
}

/** The decoded text before the first unescaped wildcard, brace or class, unescaped. */
function literalPart(pattern: string): string {
  let out = '';
  for (let i = 0; i < pattern.length; i++) {
    const character = pattern[i] as string;
    if (character === '\\') {
      out += pattern[i + 1] ?? '';
      i++;
    } else if ('*?[{'.includes(character)) break;
    else out += character;
  }
  return out;
}

/** The URL paths a stored file answers: `d/index.html` is `/d/` and `/d`, any other file its own path. */
export function urlPathsOf(file: string): string[] {
  if (file === 'index.html') return ['/'];
  if (file.endsWith('/index.html')) {
    const dir = `/${file.slice(0, -'index.html'.length)}`;
    return [dir, dir.slice(0, -1)];
  }
  return [`/${file}`];
}

/**
 * Stored files (root-relative, siblings left out) whose URL paths match any of the globs. The walk
 * starts at each glob's literal directory, and only when no component of it is a symlink.
 */
export async function globFiles(root: string, globs: readonly GlobArgument[]): Promise<string[]> {
  // Loaded on first use: every other purge (and the CLI's start-up) goes without it.
  const { default: fg } = await import('fast-glob');
  const selected = new Set<string>();
  for (const glob of globs) {
    if (!(await realDirectory(root, glob.dir))) continue;
    const cwd = path.join(root, ...glob.dir);
    const found = await fg('**', {
      cwd,
      dot: true,
      onlyFiles: true,
      followSymbolicLinks: false,
      suppressErrors: true,
      ignore: glob.dir.length === 0 ? [`${STATE_DIR}/**`] : [],
    });
    for (const relative of found) {
      const file = [...glob.dir, relative].join('/');
      if (SIBLING_SUFFIXES.some((suffix) => file.endsWith(suffix))) continue;
      if (urlPathsOf(file).some((urlPath) => glob.matches(urlPath))) selected.add(file);
    }
  }
  return [...selected].sort();
}

/** True when `root/<dir...>` is a directory reached without passing a symlink below the root. */
async function realDirectory(root: string, dir: readonly string[]): Promise<boolean> {
  let current = root;
  for (const segment of dir) {
    current = path.join(current, segment);
    const stats = await fs.lstat(current).catch(() => undefined);
    if (stats === undefined || !stats.isDirectory()) return false;
  }
  return true;
}
