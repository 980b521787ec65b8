/**
 * The bounds of a crawl source (DESIGN.md invariant 2: every input is bounded). A sitemap's protocol
 * allows 50,000 URLs and 50 MB uncompressed a file, so those are the defaults; past any bound the
 * source fails with ESOURCE naming it, and what was read before stays crawled. Nothing here buffers
 * more than one line or token: a few-MB gzip bomb that expands into one endless comment costs one
 * token's worth of memory, then fails.
 */
import { PrerenderError } from '../errors.js';

export interface SourceLimits {
  /** Decompressed bytes of one sitemap, and of any gzip-compressed source. @default 50 MiB */
  maxBytes: number;
  /** `<loc>` entries in one sitemap (pages or child sitemaps). @default 50,000 */
  maxUrls: number;
  /** Bytes of one URL-list line, and of one sitemap token (a tag, comment, text or `<loc>`). @default 8 KiB / 1 MiB */
  maxLineBytes: number;
  maxTokenBytes: number;
  /** Open elements in a sitemap (a sitemap needs 4). @default 64 */
  maxElementDepth: number;
  /** Sitemap indexes inside sitemap indexes. @default 4 */
  maxSitemapDepth: number;
  /** Sitemaps read in one crawl, the source included. @default 1,000 */
  maxSitemaps: number;
  /** gzip inside gzip (a gzip quine decompresses to itself forever). @default 2 */
  maxGzipLayers: number;
}

export const DEFAULT_SOURCE_LIMITS: Readonly<SourceLimits> = {
  maxBytes: 50 * 1024 * 1024,
  maxUrls: 50_000,
  // nginx's default large_client_header_buffers: a longer request line never reaches the app anyway.
  maxLineBytes: 8 * 1024,
  maxTokenBytes: 1024 * 1024,
  maxElementDepth: 64,
  maxSitemapDepth: 4,
  maxSitemaps: 1000,
  maxGzipLayers: 2,
};

/** Fails a source past a bound; `bound` is what the report names. */
export function overBound(bound: string, input: string): PrerenderError {
  return new PrerenderError('ESOURCE', `over the bound of ${bound}`, { input: quote(input) });
}

const QUOTE_CHARS = 200;

/** Input as a report may quote it: at most 200 characters, then how long the whole was. */
export function quote(text: string, totalBytes?: number): string {
  if (text.length <= QUOTE_CHARS && totalBytes === undefined) return text;
  return `${text.slice(0, QUOTE_CHARS)}... (${totalBytes ?? Buffer.byteLength(text)} bytes)`;
}

/** The chunks of `body`, failing once more than `maxBytes` went through. */
export async function* byteLimited(body: AsyncIterable<Buffer>, maxBytes: number, name: string): AsyncGenerator<Buffer> {
  let bytes = 0;
  for await (const chunk of body) {
    bytes += chunk.length;
    if (bytes > maxBytes) throw overBound(`${maxBytes} bytes decompressed (${formatBytes(maxBytes)})`, name);
    yield chunk;
  }
}

/** Why a source (or a part of it) could not be read, as the report says it. */
export function describeSourceError(error: unknown): string {
  if (error instanceof PrerenderError && error.code === 'ESOURCE') return `${error.message} (ESOURCE)`;
  if (error instanceof Error) return (error as NodeJS.ErrnoException).code ?? quote(error.message);
  return quote(String(error));
}

export function formatBytes(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(0)} MiB` : `${(bytes / 1024).toFixed(0)} KiB`;
}

export type LineItem = { kind: 'line'; text: string; line: number } | { kind: 'overlong'; head: string; bytes: number; line: number };

/**
 * Lines of a byte stream in time linear in its length whatever the line length: each chunk is
 * searched once for newlines, and a line's parts are joined once, when it ends. A line longer than
 * `maxLineBytes` is not kept: only its first bytes, for the report, and its length.
 */
export async function* boundedLines(body: AsyncIterable<Buffer>, maxLineBytes: number): AsyncGenerator<LineItem> {
  let parts: Buffer[] = [];
  let partBytes = 0;
  let overlong: { head: Buffer; bytes: number } | undefined;
  let line = 0;
  const finish = (): LineItem => {
    line++;
    let item: LineItem;
    if (overlong !== undefined) item = { kind: 'overlong', head: overlong.head.toString('utf8'), bytes: overlong.bytes, line };
    else item = { kind: 'line', text: (parts.length === 1 ? parts[0] as Buffer : Buffer.concat(parts, partBytes)).toString('utf8'), line };
    parts = [];
    partBytes = 0;
    overlong = undefined;
    return item;
  };
  const take = (piece: Buffer): void => {
    if (piece.length === 0) return;
    if (overlong !== undefined) {
      overlong.bytes += piece.length;
      return;
    }
    if (partBytes + piece.length > maxLineBytes) {
      const head = Buffer.concat([...parts, piece.subarray(0, 256)]).subarray(0, 256);
      overlong = { head: Buffer.from(head), bytes: partBytes + piece.length };
      parts = [];
      partBytes = 0;
      return;
    }
    // A copy: the chunk's memory must not be retained by a short part of it.
    parts.push(parts.length === 0 && piece.length === piece.buffer.byteLength ? piece : Buffer.from(piece));
    partBytes += piece.length;
  };
  for await (const chunk of body) {
    let start = 0;
    for (let newline = chunk.indexOf(10, start); newline !== -1; newline = chunk.indexOf(10, start)) {
      take(chunk.subarray(start, newline));
      yield finish();
      start = newline + 1;
    }
    take(chunk.subarray(start));
  }
  if (partBytes > 0 || overlong !== undefined) yield finish();
}
