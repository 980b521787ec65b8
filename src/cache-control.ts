/**
 * Which cache directives govern a response for prerender, a shared cache in front of the app.
 *
 * Targeted fields (RFC 9213) come first, in this order, the first one present with a valid value wins:
 *   1. `Prerender-Cache-Control`: this cache only (the middleware removes it from the client response);
 *   2. `CDN-Cache-Control`: every CDN-like cache in front of the app (RFC 9213 §3);
 * and when one of them wins, `Cache-Control` and `Expires` are ignored for storing and freshness
 * (RFC 9213 §2.2): they still govern browsers. Only when neither is there (or neither parses as a
 * Structured Field Dictionary) does `Cache-Control` decide, with `Expires`.
 */
import type { OutgoingHttpHeaders } from 'node:http';
import { parseDictionary, Token, type MemberValue } from './structured-field.js';

/** Targeted fields in the order they take precedence (lowercase). */
export const TARGETED_FIELDS = ['prerender-cache-control', 'cdn-cache-control'] as const;
export type PolicyField = typeof TARGETED_FIELDS[number] | 'cache-control';

/** Directive name (lowercase) -> argument as text ('' when none). */
export type Directives = ReadonlyMap<string, string>;

export interface GoverningDirectives {
  field: PolicyField;
  directives: Directives;
  /** False when a targeted field won: `Expires` is then ignored too (RFC 9213 §2.2). */
  useExpires: boolean;
}

/** An argument no delta-seconds or token matches: a directive given a value of the wrong type. */
export const INVALID_ARGUMENT = '\u0000';

export function governingDirectives(headers: OutgoingHttpHeaders): GoverningDirectives {
  for (const field of TARGETED_FIELDS) {
    const value = headers[field];
    if (value === undefined) continue;
    const parsed = parseDictionary(Array.isArray(value) ? value.join(', ') : String(value));
    // An empty field parses as an empty Dictionary; it must not silence a Cache-Control: private.
    if (parsed !== null && parsed.size > 0) return { field, directives: fromDictionary(parsed), useExpires: false };
  }
  const cacheControl = headers['cache-control'];
  const text = cacheControl === undefined ? '' : Array.isArray(cacheControl) ? cacheControl.join(', ') : String(cacheControl);
  return { field: 'cache-control', directives: parseCacheControl(text), useExpires: true };
}

/**
 * Cache-Control (RFC 9111 §5.2): a list of `name[=token|quoted-string]`; names are case-insensitive,
 * the first of duplicate directives counts (§4.2.1), and commas inside a quoted string (`no-cache="a,
 * b"`) do not split it.
 */
export function parseCacheControl(value: string): Map<string, string> {
  const directives = new Map<string, string>();
  for (const part of splitOutsideQuotes(value)) {
    const eq = part.indexOf('=');
    const name = (eq < 0 ? part : part.slice(0, eq)).trim().toLowerCase();
    if (name === '' || directives.has(name)) continue;
    const raw = eq < 0 ? '' : part.slice(eq + 1).trim();
    directives.set(name, /^".*"$/s.test(raw) ? raw.slice(1, -1).replace(/\\(.)/g, '$1') : raw);
  }
  return directives;
}

function splitOutsideQuotes(value: string): string[] {
  const parts: string[] = [];
  let start = 0;
  let quoted = false;
  for (let i = 0; i < value.length; i++) {
    const character = value[i];
    if (quoted && character === '\\') i++;
    else if (character === '"') quoted = !quoted;
    else if (!quoted && character === ',') {
      parts.push(value.slice(start, i));
      start = i + 1;
    }
  }
  parts.push(value.slice(start));
  return parts;
}

/**
 * A Dictionary's members as directives: an Integer or a Token as its text, `true` as a bare name;
 * `?0` removes the directive; any other type (a String for max-age, say) is no valid argument.
 */
function fromDictionary(members: ReadonlyMap<string, MemberValue>): Directives {
  const directives = new Map<string, string>();
  for (const [name, value] of members) {
    if (value === false) continue;
    if (value === true) directives.set(name, '');
    else if (value instanceof Token) directives.set(name, value.value);
    else if (typeof value === 'number' && Number.isInteger(value)) directives.set(name, String(value));
    else directives.set(name, INVALID_ARGUMENT);
  }
  return directives;
}
