/**
 * `prerender stats`: the hit ratio an nginx access log shows, overall and by URL-path prefix, and
 * the most requested misses (what to crawl, or why a page is not cached). Reads the JSON-lines format
 * `prerender nginx --access-log` sets up (nginx-config.ts), where `cache` is the X-Cache header the
 * generated config sent: HIT (a file from the root), MISS (the app answered), empty (nginx's own
 * answer: the state directory, a bad request).
 *
 * Bounded like every input: lines are read as a stream, a line over MAX_LINE_BYTES is counted as
 * malformed and skipped without being held, and at most MAX_KEYS distinct prefixes and miss paths are
 * tracked (later new ones are counted under `(other)`), so a log of any size reads in fixed memory.
 */
import { createReadStream } from 'node:fs';
import { PrerenderError, isErrno } from './errors.js';
import { wholeNumber } from './options.js';

export const MAX_LINE_BYTES = 64 * 1024;
export const MAX_KEYS = 50_000;
const OTHER = '(other)';

export interface AccessLogOptions {
  /** Segments of the path that make a prefix: 1 gives `/blog/`, 2 `/blog/2024/`. @default 1 */
  prefixDepth?: number;
  /** Misses to list. @default 20 */
  top?: number;
}

export interface PrefixStats {
  prefix: string;
  requests: number;
  hits: number;
  misses: number;
  /** hits / (hits + misses); null when neither. */
  hitRatio: number | null;
}

export interface MissStats {
  /** The request path as sent (percent-encoded, without the query). */
  path: string;
  count: number;
  /** Responses by status. */
  statuses: Record<string, number>;
  /** How many carried a query string or came with another method than GET/HEAD (never served from disk). */
  withQuery: number;
  otherMethod: number;
  /** What the misses suggest: crawl it (200 GET), or why it cannot be a hit. */
  hint: string;
}

export interface AccessLogStats {
  file: string;
  /** Lines read as requests. */
  requests: number;
  hits: number;
  misses: number;
  /** Requests nginx answered itself (no X-Cache): neither hit nor miss. */
  other: number;
  hitRatio: number | null;
  /** Lines that were not prerender's format (or too long). */
  malformed: number;
  prefixes: PrefixStats[];
  topMisses: MissStats[];
}

interface Entry {
  method: string;
  requestUri: string;
  status: string;
  cache: string;
}

/** Reads an access log written with `prerender nginx --access-log` and sums it up. */
export async function readAccessLog(file: string, options: AccessLogOptions = {}): Promise<AccessLogStats> {
  const prefixDepth = wholeNumber(options.prefixDepth, 'prefixDepth', 0, 1);
  const top = wholeNumber(options.top, 'top', 0, 20);

  const stats: AccessLogStats = { file, requests: 0, hits: 0, misses: 0, other: 0, hitRatio: null, malformed: 0, prefixes: [], topMisses: [] };
  const prefixes = new Map<string, PrefixStats>();
  const misses = new Map<string, MissStats>();

  const take = (entry: Entry): void => {
    stats.requests++;
    const cache = entry.cache.toUpperCase();
    const hit = cache === 'HIT';
    const miss = cache === 'MISS';
    if (hit) stats.hits++;
    else if (miss) stats.misses++;
    else stats.other++;
    const queryAt = entry.requestUri.search(/[?#]/);
    const requestPath = queryAt < 0 ? entry.requestUri : entry.requestUri.slice(0, queryAt);
    const prefix = bounded(prefixes, prefixOf(requestPath, prefixDepth), (key): PrefixStats => ({ prefix: key, requests: 0, hits: 0, misses: 0, hitRatio: null }));
    prefix.requests++;
    if (hit) prefix.hits++;
    if (miss) prefix.misses++;
    if (!miss) return;
    const record = bounded(misses, requestPath, (key): MissStats => ({ path: key, count: 0, statuses: {}, withQuery: 0, otherMethod: 0, hint: '' }));
    record.count++;
    record.statuses[entry.status] = (record.statuses[entry.status] ?? 0) + 1;
    if (queryAt >= 0) record.withQuery++;
    if (entry.method !== 'GET' && entry.method !== 'HEAD') record.otherMethod++;
  };

  await readLines(file, (line) => {
    const entry = parseLine(line);
    if (entry === undefined) stats.malformed++;
    else take(entry);
  }, () => stats.malformed++);

  stats.hitRatio = ratio(stats.hits, stats.misses);
  stats.prefixes = [...prefixes.values()]
    .map((prefix) => ({ ...prefix, hitRatio: ratio(prefix.hits, prefix.misses) }))
    .sort((a, b) => b.requests - a.requests || a.prefix.localeCompare(b.prefix));
  stats.topMisses = [...misses.values()]
    .sort((a, b) => b.count - a.count || a.path.localeCompare(b.path))
    .slice(0, top)
    .map((miss) => ({ ...miss, hint: hintFor(miss) }));
  return stats;
}

function ratio(hits: number, misses: number): number | null {
  return hits + misses === 0 ? null : hits / (hits + misses);
}

/** The map's entry for `key`, or `(other)`'s once the map holds MAX_KEYS. */
function bounded<T>(map: Map<string, T>, key: string, make: (key: string) => T): T {
  const found = map.get(key);
  if (found !== undefined) return found;
  const name = map.size >= MAX_KEYS ? OTHER : key;
  const existing = map.get(name);
  if (existing !== undefined) return existing;
  const made = make(name);
  map.set(name, made);
  return made;
}

/** `/blog/2024/post` at depth 1 is `/blog/`; a path with no more segments than that is itself. */
export function prefixOf(requestPath: string, depth: number): string {
  if (depth === 0 || !requestPath.startsWith('/')) return depth === 0 ? '/' : requestPath;
  const segments = requestPath.slice(1).split('/');
  if (segments.length <= depth) return requestPath;
  return `/${segments.slice(0, depth).join('/')}/`;
}

function hintFor(miss: MissStats): string {
  const ok = miss.statuses['200'] ?? 0;
  if (miss.otherMethod === miss.count) return 'not GET: always goes to the app';
  if (miss.withQuery === miss.count) return 'query string: nginx cannot serve it from disk';
  if (ok === 0) return `status ${Object.keys(miss.statuses).join('/')}: not cacheable`;
  return 'answered 200 by the app: crawl it, or check `prerender ls` and the app log for why it is not stored';
}

function parseLine(line: string): Entry | undefined {
  if (line.trim() === '') return undefined;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof value !== 'object' || value === null) return undefined;
  const record = value as Record<string, unknown>;
  const { method, request_uri: requestUri, status, cache } = record;
  if (typeof method !== 'string' || typeof requestUri !== 'string' || typeof status !== 'string' || typeof cache !== 'string') return undefined;
  return { method, requestUri, status, cache };
}

/** Calls `line` for every line of the file, `tooLong` for each line over MAX_LINE_BYTES (not held). */
async function readLines(file: string, line: (text: string) => void, tooLong: () => void): Promise<void> {
  const stream = createReadStream(file);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let skipping = false;
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      let start = 0;
      for (let newline = chunk.indexOf(0x0a, start); ; newline = chunk.indexOf(0x0a, start)) {
        const end = newline < 0 ? chunk.length : newline;
        if (!skipping) {
          pending.push(chunk.subarray(start, end));
          pendingBytes += end - start;
          if (pendingBytes > MAX_LINE_BYTES) {
            skipping = true;
            pending = [];
            pendingBytes = 0;
            tooLong();
          }
        }
        if (newline < 0) break;
        if (!skipping) line(Buffer.concat(pending).toString('utf8'));
        pending = [];
        pendingBytes = 0;
        skipping = false;
        start = newline + 1;
      }
    }
  } catch (error) {
    throw new PrerenderError('EUSAGE', `cannot read --access-log ${file}: ${isErrno(error) ? error.code : String(error)}`, { input: file, cause: error });
  }
  if (!skipping && pendingBytes > 0) line(Buffer.concat(pending).toString('utf8'));
}
