/**
 * The options of `crawl()`, documented on the type and checked in one place: a bad value is an
 * `OptionError` naming the option as the API spells it (`maxDepth`), which the CLI maps to its flag.
 */
import type { Readable } from 'node:stream';
import { OptionError, wholeNumber } from '../options.js';
import { parseOrigin } from '../origin.js';
import { ENCODINGS, type Encoding } from '../precompress.js';
import type { CrawlProgress } from './report.js';
import { DEFAULT_SOURCE_LIMITS, type SourceLimits } from './source-limits.js';

export interface CrawlOptions {
  /** A URL-list file, a sitemap file or URL (`.xml`, gzip too), or `-` for stdin. */
  source: string;
  /** Where pages are fetched: `http(s)://host[:port]`. Absolute URLs in the source are fetched here with their own path. */
  origin: string;
  /** Cache root; with `swap`, the directory holding `current`, `previous` and `generations/`. */
  root: string;
  /** @default 8 */
  concurrency?: number;
  /** Extra attempts after a network error, 5xx or 429 (never after another 4xx). @default 2 */
  retries?: number;
  /** Per request, headers and body. @default 30_000 */
  timeoutMs?: number;
  /** Also crawl same-origin links found in stored HTML pages. @default false */
  follow?: boolean;
  /** With `follow`: how many links away from the source a page may be. @default 3 */
  maxDepth?: number;
  /**
   * Pages fetched at most, source entries and followed links together; reaching it ends the crawl
   * with a failure that says so (exit 1; a --swap does not switch). An endless link space (a calendar,
   * a search page linking to more) would otherwise grow the crawl without end.
   * @default 10,000 with `follow`, unbounded without
   */
  maxPages?: number;
  /** Bounds of the source (sitemap bytes, URLs, line and token sizes, nesting). @default DEFAULT_SOURCE_LIMITS */
  sourceLimits?: Partial<SourceLimits>;
  /**
   * Build a new generation and switch `<root>/current` to it atomically when the crawl succeeds (no
   * failures); the previous generation is kept for `rollback`. Files of a generation are not fsynced
   * one by one (nothing serves them yet): the whole generation is flushed to disk once, before the
   * switch, so `current` never points at pages a power cut could empty. @default false
   */
  swap?: boolean;
  /** @default 10 MiB */
  maxBodyBytes?: number;
  /** Write `.gz` / `.br` siblings for nginx's gzip_static / brotli_static. @default [] */
  precompress?: readonly Encoding[];
  /** Stream to read when `source` is `-`. @default process.stdin */
  stdin?: Readable;
  /** Called after each URL is done. */
  onProgress?: (progress: CrawlProgress) => void;
}

/** The options with their defaults filled in, every one checked. */
export interface CrawlSettings {
  source: string;
  /** As `parseOrigin` gives it: `scheme://host[:port]`. */
  origin: string;
  root: string;
  concurrency: number;
  retries: number;
  timeoutMs: number;
  follow: boolean;
  maxDepth: number;
  /** Infinity when unbounded. */
  maxPages: number;
  sourceLimits: SourceLimits;
  swap: boolean;
  maxBodyBytes: number;
  precompress: readonly Encoding[];
  stdin: Readable;
  onProgress: ((progress: CrawlProgress) => void) | undefined;
}

const DEFAULT_MAX_PAGES_FOLLOWING = 10_000;
/** Bounds where 0 means "none of these" (no sitemap index, no gzip) rather than nothing readable. */
const ZERO_ALLOWED: ReadonlySet<keyof SourceLimits> = new Set(['maxSitemapDepth', 'maxGzipLayers']);

/** Checks every option of `crawl()`; throws an `OptionError` naming the first bad one. */
export function crawlSettings(options: CrawlOptions): CrawlSettings {
  const follow = flag(options.follow, 'follow');
  return {
    source: text(options.source, 'source'),
    origin: parseOrigin(options.origin),
    root: text(options.root, 'root'),
    concurrency: wholeNumber(options.concurrency, 'concurrency', 1, 8),
    retries: wholeNumber(options.retries, 'retries', 0, 2),
    timeoutMs: wholeNumber(options.timeoutMs, 'timeoutMs', 1, 30_000),
    follow,
    maxDepth: wholeNumber(options.maxDepth, 'maxDepth', 0, 3),
    maxPages: wholeNumber(options.maxPages, 'maxPages', 1, follow ? DEFAULT_MAX_PAGES_FOLLOWING : Infinity),
    sourceLimits: sourceLimits(options.sourceLimits),
    swap: flag(options.swap, 'swap'),
    maxBodyBytes: wholeNumber(options.maxBodyBytes, 'maxBodyBytes', 1, 10 * 1024 * 1024),
    precompress: encodings(options.precompress),
    stdin: options.stdin ?? process.stdin,
    onProgress: options.onProgress,
  };
}

function sourceLimits(given: Partial<SourceLimits> | undefined): SourceLimits {
  if (given === undefined) return { ...DEFAULT_SOURCE_LIMITS };
  if (typeof given !== 'object' || given === null) throw new OptionError('sourceLimits', 'an object of bounds', given);
  const limits = { ...DEFAULT_SOURCE_LIMITS };
  for (const name of Object.keys(DEFAULT_SOURCE_LIMITS) as Array<keyof SourceLimits>) {
    limits[name] = wholeNumber(given[name], `sourceLimits.${name}`, ZERO_ALLOWED.has(name) ? 0 : 1, DEFAULT_SOURCE_LIMITS[name]);
  }
  return limits;
}

function encodings(given: readonly Encoding[] | undefined): readonly Encoding[] {
  if (given === undefined) return [];
  const expectation = `an array of ${ENCODINGS.map((encoding) => `'${encoding}'`).join(' or ')}`;
  if (!Array.isArray(given)) throw new OptionError('precompress', expectation, given);
  const refused = given.find((item: unknown) => !ENCODINGS.includes(item as Encoding));
  if (refused !== undefined) throw new OptionError('precompress', expectation, refused);
  return given;
}

function flag(value: unknown, option: string): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new OptionError(option, 'a boolean', value);
  return value;
}

function text(value: unknown, option: string): string {
  if (typeof value !== 'string' || value === '') throw new OptionError(option, 'a non-empty string', value);
  return value;
}
