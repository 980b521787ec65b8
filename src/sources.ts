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

export type SourceItem =
  | { kind: 'url'; text: string; line?: number; from: string }
  | { kind: 'error'; text: string; line?: number; reason: string };

export interface SourceContext {
  /** Fetches a sitemap URL (from the origin, with the URL's own path); throws when it cannot. */
  fetchStream(url: string): Promise<Readable>;
  stdin: Readable;
}

/** How deep sitemap indexes may nest before the crawler stops following them. */
const MAX_SITEMAP_DEPTH = 4;
const absoluteHttp = /^https?:\/\//i;

/** Opens a source; throws EUSAGE (the CLI exits 2) when it cannot be read at all. */
export async function openSource(source: string, context: SourceContext): Promise<AsyncGenerator<SourceItem>> {
  let stream: Readable;
  if (source === '-') {
    stream = context.stdin;
  } else if (absoluteHttp.test(source)) {
    try {
      stream = await context.fetchStream(source);
    } catch (error) {
      throw new PrerenderError('EUSAGE', `cannot read source ${source}: ${describe(error)}`, { cause: error, input: source });
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
  return readAny(stream, source, context, 0, new Set());
}

async function* readAny(stream: Readable, name: string, context: SourceContext, depth: number, sitemapsSeen: Set<string>): AsyncGenerator<SourceItem> {
  try {
    const { kind, body } = await sniff(stream);
    if (kind === 'xml') yield* readSitemap(body, name, context, depth, sitemapsSeen);
    else yield* readLines(body, name);
  } catch (error) {
    // A source cut short (a dropped connection, a truncated gzip file, a timeout): what it held so far
    // was crawled, and the rest is a failure the report names, not a crash without one.
    yield { kind: 'error', text: name, reason: `source unreadable: ${describe(error)}` };
  } finally {
    stream.destroy();
  }
}

/** Looks at the first bytes: gzip is unwrapped, then `<` means XML (a sitemap), anything else a list. */
async function sniff(stream: Readable): Promise<{ kind: 'xml' | 'list'; body: AsyncIterable<Buffer> }> {
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
    // pipeline, not pipe: an error of the compressed stream must reach the reader of the gunzipped one.
    const gunzip = createGunzip();
    pipeline(Readable.from(rest), gunzip).catch(() => undefined);
    return sniff(gunzip);
  }
  const text = head.toString('utf8').trimStart();
  return { kind: text.startsWith('<') ? 'xml' : 'list', body: rest };
}

async function* readLines(body: AsyncIterable<Buffer>, name: string): AsyncGenerator<SourceItem> {
  let carry = '';
  let line = 0;
  const decoder = new TextDecoder();
  const items = function* (text: string): Generator<SourceItem> {
    line++;
    const trimmed = text.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    yield { kind: 'url', text: trimmed, line, from: name };
  };
  for await (const chunk of body) {
    const lines = (carry + decoder.decode(chunk, { stream: true })).split('\n');
    carry = lines.pop() ?? '';
    for (const text of lines) yield* items(text);
  }
  carry += decoder.decode();
  if (carry !== '') yield* items(carry);
}

async function* readSitemap(body: AsyncIterable<Buffer>, name: string, context: SourceContext, depth: number, sitemapsSeen: Set<string>): AsyncGenerator<SourceItem> {
  const pages: string[] = [];
  const children: string[] = [];
  /** Open elements, as written (with their prefix). */
  const open: string[] = [];
  let root: string | undefined;
  let inLoc = false;
  let parent = '';
  let loc = '';
  let parseError: Error | undefined;
  const parser = new Parser({
    onopentag(tag) {
      root ??= localName(tag);
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
      if (inLoc) loc += text;
    },
    onclosetag(tag) {
      open.pop();
      if (localName(tag) !== 'loc' || !inLoc) return;
      inLoc = false;
      const url = loc.trim();
      if (url !== '') (parent === 'sitemap' ? children : pages).push(url);
    },
    onerror(error) {
      parseError = error;
    },
  }, { xmlMode: true, decodeEntities: true });

  // Chunks end anywhere, inside a multi-byte character too.
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    parser.write(decoder.decode(chunk, { stream: true }));
    if (root !== undefined && root !== 'urlset' && root !== 'sitemapindex') break;
    // Yield what this chunk held before reading more: the parse never runs ahead of the crawl.
    while (pages.length > 0) yield { kind: 'url', text: pages.shift() as string, from: name };
    yield* readChildren(children, context, depth, sitemapsSeen);
  }
  if (root !== undefined && root !== 'urlset' && root !== 'sitemapindex') {
    // An HTML page served where a sitemap was expected: no URLs, and it must not pass for an empty site.
    yield { kind: 'error', text: name, reason: `not a sitemap: its root element is <${root}>, not <urlset> or <sitemapindex>` };
    return;
  }
  parser.write(decoder.decode());
  parser.end();
  if (root === undefined) yield { kind: 'error', text: name, reason: 'not a sitemap: no root element' };
  if (parseError !== undefined) yield { kind: 'error', text: name, reason: `sitemap does not parse: ${parseError.message}` };
  while (pages.length > 0) yield { kind: 'url', text: pages.shift() as string, from: name };
  yield* readChildren(children, context, depth, sitemapsSeen);
}

async function* readChildren(children: string[], context: SourceContext, depth: number, sitemapsSeen: Set<string>): AsyncGenerator<SourceItem> {
  while (children.length > 0) {
    const child = children.shift() as string;
    if (sitemapsSeen.has(child)) continue;
    sitemapsSeen.add(child);
    if (depth + 1 > MAX_SITEMAP_DEPTH) {
      yield { kind: 'error', text: child, reason: `sitemap indexes nest deeper than ${MAX_SITEMAP_DEPTH}` };
      continue;
    }
    if (!absoluteHttp.test(child)) {
      yield { kind: 'error', text: child, reason: 'a sitemap index entry must be an absolute http(s) URL' };
      continue;
    }
    let stream: Readable;
    try {
      stream = await context.fetchStream(child);
    } catch (error) {
      yield { kind: 'error', text: child, reason: `child sitemap unreadable: ${describe(error)}` };
      continue;
    }
    yield* readAny(stream, child, context, depth + 1, sitemapsSeen);
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
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? error.message;
  return String(error);
}
