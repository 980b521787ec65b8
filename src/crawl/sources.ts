/**
 * Crawl sources, streamed: a URL list (one path or absolute URL a line, `#` comments), `-` for stdin,
 * or a sitemap (file or URL, plain or gzip, sitemap indexes followed). Items are yielded as they are
 * read, so a list of any length costs the same memory.
 */
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { PrerenderError } from '../errors.js';
import { REFUSAL_MESSAGES, splitAbsoluteUrl, toCachePath, type CachePath } from '../url-path.js';
import { absoluteHttp, readSitemap, type Reading, sitemapKey } from './sitemap.js';
import { DEFAULT_SOURCE_LIMITS, boundedLines, byteLimited, describeSourceError, overBound, quote, type SourceLimits } from './source-limits.js';

export type SourceItem =
  | { kind: 'url'; text: string; line?: number; from: string }
  | { kind: 'error'; text: string; line?: number; reason: string };

export interface SourceContext {
  /** Fetches a sitemap URL (from the origin, with the URL's own path); throws when it cannot. */
  fetchStream(url: string): Promise<Readable>;
  stdin: Readable;
  /** @default DEFAULT_SOURCE_LIMITS */
  limits?: Partial<SourceLimits>;
}

/** Opens a source; throws EUSAGE (the CLI exits 2) when it cannot be read at all. */
export async function openSource(source: string, context: SourceContext): Promise<AsyncGenerator<SourceItem>> {
  const reading: Reading = {
    context, limits: { ...DEFAULT_SOURCE_LIMITS, ...context.limits }, sitemapsSeen: new Set(), sitemapsRead: 0,
    readChild: (stream, name, depth) => readAny(stream, name, reading, depth, true),
  };
  let stream: Readable;
  let fetched = false;
  if (source === '-') {
    stream = context.stdin;
  } else if (absoluteHttp.test(source)) {
    try {
      stream = await context.fetchStream(source);
      fetched = true;
      reading.sitemapsSeen.add(sitemapKey(source));
    } catch (error) {
      throw new PrerenderError('EUSAGE', `cannot read source ${quote(source)}: ${describeSourceError(error)}`, { cause: error, input: source });
    }
  } else {
    try {
      const stats = await fs.stat(source);
      if (!stats.isFile()) throw new Error('not a file');
      await fs.access(source, fs.constants.R_OK);
    } catch (error) {
      throw new PrerenderError('EUSAGE', `cannot read source file ${source}: ${describeSourceError(error)}`, { cause: error, input: source });
    }
    stream = createReadStream(source);
  }
  return readAny(stream, source, reading, 0, fetched);
}

async function* readAny(stream: Readable, name: string, reading: Reading, depth: number, fetched: boolean): AsyncGenerator<SourceItem> {
  const gunzips: Readable[] = [];
  try {
    const { kind, body, layers } = await sniff(stream, reading.limits, 0, gunzips);
    // A plain list from a file or stdin costs the same memory however long it is (and as much time
    // as its own size); anything expanded (gzip, Content-Encoding) or parsed whole (a sitemap) is
    // bounded in bytes, or a few MB of gzip could run for hours.
    const bounded = kind === 'xml' || fetched || layers > 0 ? byteLimited(body, reading.limits.maxBytes, name) : body;
    if (kind === 'xml') {
      reading.sitemapsRead++;
      yield* readSitemap(bounded, name, reading, depth);
    } else yield* readLines(bounded, name, reading.limits);
  } catch (error) {
    // A source cut short (a dropped connection, a truncated gzip file, a timeout, a bound): what it
    // held so far was crawled, and the rest is a failure the report names, not a crash without one.
    yield { kind: 'error', text: quote(name), reason: `source unreadable: ${describeSourceError(error)}` };
  } finally {
    for (const gunzip of gunzips) gunzip.destroy();
    stream.destroy();
  }
}

/** Looks at the first bytes: gzip is unwrapped, then `<` means XML (a sitemap), anything else a list. */
async function sniff(stream: Readable, limits: SourceLimits, layers: number, gunzips: Readable[]): Promise<{ kind: 'xml' | 'list'; body: AsyncIterable<Buffer>; layers: number }> {
  const iterator = stream[Symbol.asyncIterator]() as AsyncIterator<Buffer | string>;
  const first = await iterator.next();
  const head = first.done === true ? Buffer.alloc(0) : Buffer.from(first.value);
  const rest = (async function* () {
    if (head.length > 0) yield head;
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) return;
      yield Buffer.from(next.value);
    }
  })();
  if (head[0] === 0x1f && head[1] === 0x8b) {
    if (layers >= limits.maxGzipLayers) throw overBound(`${limits.maxGzipLayers} gzip layers`, 'gzip');
    // pipeline, not pipe: an error of the compressed stream must reach the reader of the gunzipped one.
    const gunzip = createGunzip();
    gunzips.push(gunzip);
    pipeline(Readable.from(rest), gunzip).catch(() => undefined);
    return sniff(gunzip, limits, layers + 1, gunzips);
  }
  const text = head.subarray(0, 1024).toString('utf8').trimStart();
  return { kind: text.startsWith('<') ? 'xml' : 'list', body: rest, layers };
}

async function* readLines(body: AsyncIterable<Buffer>, name: string, limits: SourceLimits): AsyncGenerator<SourceItem> {
  for await (const item of boundedLines(body, limits.maxLineBytes)) {
    if (item.kind === 'overlong') {
      yield { kind: 'error', text: quote(item.head, item.bytes), line: item.line, reason: `over the bound of ${limits.maxLineBytes} bytes a line (ESOURCE)` };
      continue;
    }
    const trimmed = item.text.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    yield { kind: 'url', text: trimmed, line: item.line, from: name };
  }
}

/** A source line: a path, or an absolute http(s) URL fetched from the origin with its own path. */
export function parseEntry(text: string, origin: string): { ok: true; target: CachePath; pageUrl: string } | { ok: false; reason: string } {
  let pathPart = text;
  let pageBase = origin;
  if (!text.startsWith('/')) {
    const url = splitAbsoluteUrl(text);
    if (url === undefined || (url.scheme !== 'http' && url.scheme !== 'https')) {
      return { ok: false, reason: 'not a path (/...) or an absolute http(s) URL' };
    }
    try {
      pageBase = new URL(text).origin;
    } catch {
      return { ok: false, reason: 'not a valid URL' };
    }
    pathPart = url.path;
  }
  const mapped = toCachePath(pathPart);
  if (!mapped.ok) return { ok: false, reason: `not cacheable: ${REFUSAL_MESSAGES[mapped.reason]}` };
  return { ok: true, target: mapped.value, pageUrl: pageBase + pathPart };
}
