/**
 * Crawl sources, streamed: a URL list (one path or absolute URL a line, `#` comments), `-` for stdin,
 * or a sitemap (file or URL, plain or gzip, sitemap indexes followed). Items are yielded as they are
 * read, so a list of any length costs the same memory.
 */
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TextDecoder } from 'node:util';
import { createGunzip } from 'node:zlib';
import { Parser } from 'htmlparser2';
import { PrerenderError } from './errors.js';
import { DEFAULT_SOURCE_LIMITS, boundedLines, byteLimited, overBound, quote, type SourceLimits } from './source-limits.js';

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

/** What one crawl has read of its sitemaps so far, across indexes and their children. */
interface Reading {
  context: SourceContext;
  limits: SourceLimits;
  sitemapsSeen: Set<string>;
  sitemapsRead: number;
}

const absoluteHttp = /^https?:\/\//i;

/** Opens a source; throws EUSAGE (the CLI exits 2) when it cannot be read at all. */
export async function openSource(source: string, context: SourceContext): Promise<AsyncGenerator<SourceItem>> {
  const reading: Reading = { context, limits: { ...DEFAULT_SOURCE_LIMITS, ...context.limits }, sitemapsSeen: new Set(), sitemapsRead: 0 };
  let stream: Readable;
  let fetched = false;
  if (source === '-') {
    stream = context.stdin;
  } else if (absoluteHttp.test(source)) {
    try {
      stream = await context.fetchStream(source);
      fetched = true;
    } catch (error) {
      throw new PrerenderError('EUSAGE', `cannot read source ${quote(source)}: ${describe(error)}`, { cause: error, input: source });
    }
  } else {
    try {
      const stats = await fs.stat(source);
      if (!stats.isFile()) throw new Error('not a file');
      await fs.access(source, fs.constants.R_OK);
    } catch (error) {
      throw new PrerenderError('EUSAGE', `cannot read source file ${source}: ${describe(error)}`, { cause: error, input: source });
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
    yield { kind: 'error', text: quote(name), reason: `source unreadable: ${describe(error)}` };
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

async function* readSitemap(body: AsyncIterable<Buffer>, name: string, reading: Reading, depth: number): AsyncGenerator<SourceItem> {
  const { limits } = reading;
  const pages: string[] = [];
  const children: string[] = [];
  /** Open elements, as written (with their prefix). */
  const open: string[] = [];
  let root: string | undefined;
  let inLoc = false;
  let parent = '';
  let loc = '';
  let locs = 0;
  let parseError: Error | undefined;
  /** The first bound passed; the parse stops there. Callbacks set it, the loop below throws it. */
  let bound: PrerenderError | undefined;
  // Bytes handed to the parser, and that count when it last finished something: what lies between is
  // one token the parser holds in memory (a comment, a tag, an attribute that never ends).
  let written = 0;
  let progressAt = 0;
  const progress = (): void => {
    progressAt = written;
  };
  const parser = new Parser({
    onopentag(tag) {
      progress();
      root ??= localName(tag);
      if (open.length >= limits.maxElementDepth) bound ??= overBound(`${limits.maxElementDepth} nested elements`, name);
      // Only <loc> right inside <url> or <sitemap>, written with the same prefix: <image:loc> inside
      // <image:image>, <video:loc> and the like name media, not pages.
      const container = open.at(-1);
      if (localName(tag) === 'loc' && container !== undefined && ['url', 'sitemap'].includes(localName(container)) && prefixOf(tag) === prefixOf(container)) {
        inLoc = true;
        parent = localName(container);
        loc = '';
      }
      open.push(tag);
    },
    ontext(text) {
      progress();
      if (!inLoc) return;
      loc += text;
      if (loc.length > limits.maxLineBytes) bound ??= overBound(`${limits.maxLineBytes} bytes a <loc>`, loc.slice(0, 256));
    },
    onclosetag(tag) {
      progress();
      open.pop();
      if (localName(tag) !== 'loc' || !inLoc) return;
      inLoc = false;
      const url = loc.trim();
      loc = '';
      if (url === '') return;
      if (++locs > limits.maxUrls) {
        bound ??= overBound(`${limits.maxUrls} URLs a sitemap`, name);
        return;
      }
      (parent === 'sitemap' ? children : pages).push(url);
    },
    onattribute: progress,
    oncomment: progress,
    oncommentend: progress,
    oncdatastart: progress,
    oncdataend: progress,
    onprocessinginstruction: progress,
    onerror(error) {
      parseError = error;
    },
  }, { xmlMode: true, decodeEntities: true });

  // Chunks end anywhere, inside a multi-byte character too.
  const decoder = new TextDecoder();
  const write = (text: string, bytes: number): void => {
    written += bytes;
    parser.write(text);
    if (bound === undefined && written - progressAt > limits.maxTokenBytes) bound = overBound(`${limits.maxTokenBytes} bytes a token (one tag, comment or text)`, name);
  };
  for await (const chunk of body) {
    write(decoder.decode(chunk, { stream: true }), chunk.length);
    if (root !== undefined && root !== 'urlset' && root !== 'sitemapindex') break;
    // Yield what this chunk held before reading more: the parse never runs ahead of the crawl.
    while (pages.length > 0) yield { kind: 'url', text: pages.shift() as string, from: name };
    yield* readChildren(children, reading, depth);
    if (bound !== undefined) throw bound;
  }
  if (root !== undefined && root !== 'urlset' && root !== 'sitemapindex') {
    // An HTML page served where a sitemap was expected: no URLs, and it must not pass for an empty site.
    yield { kind: 'error', text: quote(name), reason: `not a sitemap: its root element is <${quote(root)}>, not <urlset> or <sitemapindex>` };
    return;
  }
  write(decoder.decode(), 0);
  parser.end();
  if (root === undefined) yield { kind: 'error', text: quote(name), reason: 'not a sitemap: no root element' };
  if (parseError !== undefined) yield { kind: 'error', text: quote(name), reason: `sitemap does not parse: ${quote(parseError.message)}` };
  while (pages.length > 0) yield { kind: 'url', text: pages.shift() as string, from: name };
  yield* readChildren(children, reading, depth);
  if (bound !== undefined) throw bound;
}

async function* readChildren(children: string[], reading: Reading, depth: number): AsyncGenerator<SourceItem> {
  const { limits, context } = reading;
  while (children.length > 0) {
    const child = children.shift() as string;
    if (reading.sitemapsSeen.has(child)) continue;
    if (depth + 1 > limits.maxSitemapDepth) {
      yield { kind: 'error', text: quote(child), reason: `over the bound of ${limits.maxSitemapDepth} nested sitemap indexes (ESOURCE)` };
      continue;
    }
    if (reading.sitemapsRead >= limits.maxSitemaps) {
      yield { kind: 'error', text: quote(child), reason: `over the bound of ${limits.maxSitemaps} sitemaps a crawl (ESOURCE): not read` };
      continue;
    }
    reading.sitemapsSeen.add(child);
    if (!absoluteHttp.test(child)) {
      yield { kind: 'error', text: quote(child), reason: 'a sitemap index entry must be an absolute http(s) URL' };
      continue;
    }
    let stream: Readable;
    try {
      stream = await context.fetchStream(child);
    } catch (error) {
      yield { kind: 'error', text: quote(child), reason: `child sitemap unreadable: ${describe(error)}` };
      continue;
    }
    yield* readAny(stream, child, reading, depth + 1, true);
  }
}

function localName(tag: string): string {
  return tag.replace(/^.*:/, '').toLowerCase();
}

function prefixOf(tag: string): string {
  const colon = tag.indexOf(':');
  return colon === -1 ? '' : tag.slice(0, colon);
}

function describe(error: unknown): string {
  if (error instanceof PrerenderError && error.code === 'ESOURCE') return `${error.message} (ESOURCE)`;
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? quote(error.message);
  return quote(String(error));
}
