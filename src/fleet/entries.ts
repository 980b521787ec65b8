/**
 * What travels in the stream: one JSON object per entry. Pure: no I/O. A purge's arguments are
 * checked before it is published (a bad path fails the publisher, not every agent), and checked again
 * by each agent, which trusts nothing it reads from Redis.
 */
import { PrerenderError } from '../errors.js';
import { parsePathArgument, parsePrefixArgument, parseTagArgument, type PurgeSelector } from '../purge.js';

/** A crawl's URL list travels inside its entry; bounded so one entry cannot fill Redis's memory. */
export const MAX_CRAWL_LIST_BYTES = 8 * 1024 * 1024;

export interface PurgeEntry {
  kind: 'purge';
  selector: PurgeSelector;
  /** Refresh in place from each agent's own `--origin` (deleted where it has none). */
  refresh?: boolean;
  /** When it was published (publisher's clock), for lag figures. */
  at: number;
}

export interface CrawlEntry {
  kind: 'crawl';
  /** A sitemap or URL list as a URL (each agent fetches its path from its own origin)... */
  url?: string;
  /** ...or the source's bytes in base64 (a URL list or sitemap, gzipped or not), from a file or stdin. */
  list?: string;
  concurrency?: number;
  at: number;
}

export type FleetEntry = PurgeEntry | CrawlEntry;

/** Throws the same errors a local purge would for the same selector. */
export function checkSelector(selector: PurgeSelector): PurgeSelector {
  const paths = selector.paths ?? [];
  for (const entry of paths) parsePathArgument(entry);
  for (const tag of selector.tags ?? []) parseTagArgument(tag);
  if (selector.prefix !== undefined) parsePrefixArgument(selector.prefix);
  if (paths.length === 0 && (selector.tags ?? []).length === 0 && selector.prefix === undefined && selector.all !== true) {
    throw new PrerenderError('EUSAGE', 'nothing to purge: give paths, tags, a prefix, or all');
  }
  return {
    ...(paths.length > 0 ? { paths: [...paths] } : {}),
    ...(selector.tags !== undefined && selector.tags.length > 0 ? { tags: [...selector.tags] } : {}),
    ...(selector.prefix !== undefined ? { prefix: selector.prefix } : {}),
    ...(selector.all === true ? { all: true } : {}),
  };
}

export function encodeEntry(entry: FleetEntry): string {
  return JSON.stringify(entry);
}

const strings = (value: unknown): value is string[] => Array.isArray(value) && value.every((item) => typeof item === 'string');

/** The entry, or a reason it cannot be applied (then it is skipped and said so in the agent's log). */
export function decodeEntry(body: string): FleetEntry | { invalid: string } {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { invalid: 'not JSON' };
  }
  if (typeof value !== 'object' || value === null) return { invalid: 'not an object' };
  const record = value as Record<string, unknown>;
  const at = typeof record.at === 'number' ? record.at : 0;
  if (record.kind === 'purge') {
    const raw = record.selector;
    if (typeof raw !== 'object' || raw === null) return { invalid: 'purge without a selector' };
    const selector = raw as Record<string, unknown>;
    if (selector.paths !== undefined && !strings(selector.paths)) return { invalid: 'paths is not a list of strings' };
    if (selector.tags !== undefined && !strings(selector.tags)) return { invalid: 'tags is not a list of strings' };
    if (selector.prefix !== undefined && typeof selector.prefix !== 'string') return { invalid: 'prefix is not a string' };
    try {
      const checked = checkSelector({
        ...(selector.paths === undefined ? {} : { paths: selector.paths as string[] }),
        ...(selector.tags === undefined ? {} : { tags: selector.tags as string[] }),
        ...(selector.prefix === undefined ? {} : { prefix: selector.prefix as string }),
        ...(selector.all === true ? { all: true } : {}),
      });
      return { kind: 'purge', selector: checked, ...(record.refresh === true ? { refresh: true } : {}), at };
    } catch (error) {
      return { invalid: error instanceof Error ? error.message : String(error) };
    }
  }
  if (record.kind === 'crawl') {
    const url = typeof record.url === 'string' ? record.url : undefined;
    const list = typeof record.list === 'string' ? record.list : undefined;
    if ((url === undefined) === (list === undefined)) return { invalid: 'crawl needs a url or a list' };
    if (list !== undefined && list.length > Math.ceil(MAX_CRAWL_LIST_BYTES / 3) * 4) return { invalid: 'crawl list too large' };
    const concurrency = typeof record.concurrency === 'number' && Number.isSafeInteger(record.concurrency) && record.concurrency > 0 ? record.concurrency : undefined;
    return {
      kind: 'crawl',
      ...(url === undefined ? {} : { url }),
      ...(list === undefined ? {} : { list }),
      ...(concurrency === undefined ? {} : { concurrency }),
      at,
    };
  }
  return { invalid: `unknown kind ${JSON.stringify(record.kind)}` };
}
