/**
 * Sitemaps (sitemaps.org): `<loc>` entries of a `<urlset>` are pages, those of a `<sitemapindex>` are
 * child sitemaps, read in turn. The parse is pulled by the crawl, one read chunk at a time, and every
 * token, nesting level and count is bounded (source-limits.ts).
 */
import type { Readable } from 'node:stream';
import { TextDecoder } from 'node:util';
import type { PrerenderError } from '../errors.js';
import { describeSourceError, overBound, quote, type SourceLimits } from './source-limits.js';
import type { SourceContext, SourceItem } from './sources.js';
import { splitAbsoluteUrl } from '../url-path.js';

/** What one crawl has read of its sitemaps so far, across indexes and their children. */
export interface Reading {
  context: SourceContext;
  limits: SourceLimits;
  sitemapsSeen: Set<string>;
  sitemapsRead: number;
  /** Reads a child sitemap's stream as any source is read (it may be gzip, or not a sitemap at all). */
  readChild(stream: Readable, name: string, depth: number): AsyncGenerator<SourceItem>;
}

export const absoluteHttp = /^https?:\/\//i;

export async function* readSitemap(body: AsyncIterable<Buffer>, name: string, reading: Reading, depth: number): AsyncGenerator<SourceItem> {
  // Loaded on first use, as in links.ts: a crawl of a URL list never needs it.
  const { Parser } = await import('htmlparser2');
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
    // By the path fetched from the origin: another spelling of the host names the same sitemap.
    const key = sitemapKey(child);
    if (reading.sitemapsSeen.has(key)) continue;
    if (depth + 1 > limits.maxSitemapDepth) {
      yield { kind: 'error', text: quote(child), reason: `over the bound of ${limits.maxSitemapDepth} nested sitemap indexes (ESOURCE)` };
      continue;
    }
    if (reading.sitemapsRead >= limits.maxSitemaps) {
      yield { kind: 'error', text: quote(child), reason: `over the bound of ${limits.maxSitemaps} sitemaps a crawl (ESOURCE): not read` };
      continue;
    }
    reading.sitemapsSeen.add(key);
    if (!absoluteHttp.test(child)) {
      yield { kind: 'error', text: quote(child), reason: 'a sitemap index entry must be an absolute http(s) URL' };
      continue;
    }
    let stream: Readable;
    try {
      stream = await context.fetchStream(child);
    } catch (error) {
      yield { kind: 'error', text: quote(child), reason: `child sitemap unreadable: ${describeSourceError(error)}` };
      continue;
    }
    yield* reading.readChild(stream, child, depth + 1);
  }
}

function localName(tag: string): string {
  return tag.replace(/^.*:/, '').toLowerCase();
}

function prefixOf(tag: string): string {
  const colon = tag.indexOf(':');
  return colon === -1 ? '' : tag.slice(0, colon);
}

/** What a sitemap is known by for the loop check: the path it is fetched with from the origin. */
export function sitemapKey(url: string): string {
  return splitAbsoluteUrl(url)?.path ?? url;
}
