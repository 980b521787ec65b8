/**
 * Fetches one page from the origin and stores it under the same policy, mapping and write protocol as
 * the middleware. Used by refresh (purge/sweep --refresh) and by the crawler.
 *
 * The request goes through `node:http` directly, not node-fetch (which still fetches sitemaps): a crawl
 * makes one request per URL, and node-fetch adds a Request, a Response, Headers and a stream copy of
 * the body to each, which showed in the crawl's profile. Its timeout also needs an AbortSignal; the
 * `AbortSignal.timeout` used before cannot be cancelled, so every finished request left a signal and
 * a 30 s timer behind (thousands alive at crawl speed, and `AbortSignal.any` retains its inputs on
 * Node 20: nodejs/node#48419, #55328). Here one timer per request is cleared when the request ends,
 * and an aborted page is `req.destroy()`.
 */
import http, { type Agent as HttpAgent, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https, { type Agent as HttpsAgent } from 'node:https';
import { BodySink } from '../body.js';
import { PageBody } from '../page-body.js';
import { entryFor, type CacheRoot } from '../cache-root.js';
import { CRAWL_MARK_HEADER, CRAWL_MARK_VALUE } from '../crawl-mark.js';
import { isErrno } from '../errors.js';
import { checkResponse } from '../policy.js';
import type { EntryMeta } from '../store/meta-log.js';
import { encodePath, type CachePath } from '../url-path.js';

export interface FetchPageOptions {
  /** `http(s)://host[:port]`, no trailing slash (see `parseOrigin`). */
  origin: string;
  /** For the whole exchange: headers and body. */
  timeoutMs: number;
  maxBodyBytes: number;
  agent?: HttpAgent | HttpsAgent;
  /** The Host header to send, when it is not the origin's (a multi-site root's host). */
  host?: string;
}

export type PageOutcome =
  | { outcome: 'stored'; status: number; bytes: number }
  | { outcome: 'skipped'; status?: number; reason: string; /** A redirect's Location, as sent. */ location?: string }
  | {
    outcome: 'failed';
    status?: number;
    reason: string;
    retryable: boolean;
    retryAfterMs?: number;
    /** The file system refused the write, and will refuse every later one too (full, over quota, read-only). */
    unwritable?: true;
  };

/** Write errors no later write escapes either. */
const LASTING_WRITE_ERRORS = ['ENOSPC', 'EDQUOT', 'EROFS'];
const MAX_DRAINED = 64 * 1024;

/**
 * A fetched page handed to the store, whose outcome is known once its batch is written (commit.ts):
 * a crawl fetches on meanwhile, so that the store's batches hold more than the pages in flight.
 */
export interface StoringPage {
  outcome: 'storing';
  status: number;
  bytes: number;
  settled: Promise<PageOutcome>;
}

/** Fetches a page and stores it; resolves once it is stored, skipped or failed. */
export async function fetchPage(root: CacheRoot, target: CachePath, options: FetchPageOptions): Promise<PageOutcome> {
  const fetched = await fetchAndSubmit(root, target, options);
  return fetched.outcome === 'storing' ? fetched.settled : fetched;
}

/** `fetchPage`, resolving as soon as a storable page is fetched whole and handed to the store. */
export async function fetchAndSubmit(root: CacheRoot, target: CachePath, options: FetchPageOptions): Promise<PageOutcome | StoringPage> {
  const renderedAt = Date.now();
  const url = new URL(options.origin + encodePath(target.urlPath));
  const client = url.protocol === 'https:' ? https : http;
  const exchange: { timer?: NodeJS.Timeout; request?: http.ClientRequest; response?: IncomingMessage; timedOut: boolean } = { timedOut: false };
  const describe = (error: unknown): string => (exchange.timedOut ? `timed out after ${options.timeoutMs} ms` : describeNetworkError(error));
  try {
    try {
      exchange.response = await new Promise<IncomingMessage>((resolve, reject) => {
        const request = client.get(url, {
          headers: {
            'accept-encoding': 'identity', 'user-agent': 'prerender', [CRAWL_MARK_HEADER]: CRAWL_MARK_VALUE,
            ...(options.host === undefined ? {} : { host: options.host }),
          },
          ...(options.agent === undefined ? {} : { agent: options.agent }),
        }, resolve);
        exchange.request = request;
        // Kept for the whole exchange: an error after the headers (a reset mid-body) reaches the body
        // reader through the response, and must not go unhandled here.
        request.on('error', reject);
        exchange.timer = setTimeout(() => {
          exchange.timedOut = true;
          request.destroy(new Error('timed out'));
        }, options.timeoutMs);
      });
    } catch (error) {
      return { outcome: 'failed', reason: describe(error), retryable: true };
    }
    return await receive(root, target, renderedAt, exchange.response, options, describe);
  } finally {
    clearTimeout(exchange.timer);
    // Whatever was not read (a refused page, a body cut short) is dropped with its socket, never buffered.
    if (exchange.response?.complete !== true) exchange.request?.destroy();
  }
}

async function receive(root: CacheRoot, target: CachePath, renderedAt: number, response: IncomingMessage, options: FetchPageOptions, describe: (error: unknown) => string): Promise<PageOutcome | StoringPage> {
  const status = response.statusCode ?? 0;
  const header = (name: string): string | null => response.headersDistinct[name]?.join(', ') ?? null;
  if (status !== 200) {
    // A small error body is read to its end so the keep-alive socket can be reused.
    await drain(response);
    if (status >= 300 && status < 400) {
      const location = header('location');
      return { outcome: 'skipped', status, reason: `redirect (${status}) to ${location ?? '?'}, not followed`, ...(location === null ? {} : { location }) };
    }
    const retryable = status === 429 || status >= 500;
    const retryAfterMs = parseRetryAfter(header('retry-after'));
    return { outcome: 'failed', status, reason: `status ${status}`, retryable, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
  }

  const verdict = checkResponse(status, joinedHeaders(response.rawHeaders), target, Date.now(), renderedAt);
  if (!verdict.store) return { outcome: 'skipped', status, reason: verdict.reason };

  const sink = new BodySink(new PageBody(), verdict, options.maxBodyBytes);
  let refused: string | undefined;
  try {
    refused = await readBody(response, (chunk) => sink.push(chunk));
  } catch (error) {
    sink.body.discard();
    return { outcome: 'failed', status, reason: describe(error), retryable: true };
  }
  if (refused !== undefined) {
    sink.body.discard();
    return { outcome: 'skipped', status, reason: refused };
  }
  if (!response.complete) {
    sink.body.discard();
    return { outcome: 'failed', status, reason: describe(new Error('connection closed before the body ended')), retryable: true };
  }
  const refusal = sink.end();
  if (refusal !== undefined) {
    sink.body.discard();
    return { outcome: 'failed', status, reason: refusal, retryable: true };
  }
  const bytes = sink.body.bytes;
  const settled = submit(root, sink.body, entryFor(target, verdict, renderedAt, bytes), status);
  return { outcome: 'storing', status, bytes, settled };
}

/**
 * Hands the page to the store. A function of its own so that what waits for the batch holds only
 * these few values: a closure in `receive` would keep the whole response (socket, headers, parser
 * state) alive until the batch is written, some kilobytes a page while thousands wait.
 */
function submit(root: CacheRoot, body: PageBody, entry: EntryMeta, status: number): Promise<PageOutcome> {
  const bytes = body.bytes;
  return root.commit(body, entry).then((committed): PageOutcome => (
    committed.stored ? { outcome: 'stored', status, bytes } : { outcome: 'skipped', status, reason: committed.reason }
  ), (error: unknown): PageOutcome => {
    // A write the file system refused (an errno, or the store's EROOT wrapping one) is this page's
    // failure; anything else is a bug, and must not turn into a thousand failed pages.
    if (!isErrno(error)) throw error;
    const cause: unknown = error.cause;
    if ([error, cause].some((candidate) => isErrno(candidate, ...LASTING_WRITE_ERRORS))) {
      return { outcome: 'failed', status, reason: error.message, retryable: false, unwritable: true };
    }
    // Others may pass: a deleted root is set up again, descriptors run out for a moment.
    return { outcome: 'failed', status, reason: error.message, retryable: true };
  });
}

/**
 * The response's header fields as the policy reads them: every line of a field kept, joined with
 * ", " (RFC 9110 §5.3), Set-Cookie as its list. `headers` would drop repeats of some fields (a second
 * Age, Content-Type or Expires), which the policy must see; this is `headersDistinct` joined, in one
 * pass over the raw lines instead of that getter's arrays.
 */
function joinedHeaders(raw: readonly string[]): OutgoingHttpHeaders {
  // No prototype: a field named `__proto__` or `constructor` is a field like any other.
  const headers = Object.create(null) as OutgoingHttpHeaders;
  const cookies: string[] = [];
  for (let index = 0; index + 1 < raw.length; index += 2) {
    const name = (raw[index] as string).toLowerCase();
    const value = raw[index + 1] as string;
    if (name === 'set-cookie') {
      cookies.push(value);
      continue;
    }
    const previous = headers[name];
    headers[name] = previous === undefined ? value : `${String(previous)}, ${value}`;
  }
  if (cookies.length > 0) headers['set-cookie'] = cookies;
  return headers;
}

/**
 * Hands each chunk of a body to `take` until it ends or `take` refuses one (resolving to its reason);
 * rejects when the exchange fails mid-body. Listeners rather than `for await`: the stream's async
 * iterator costs a promise and a few objects a chunk, at every page of a crawl.
 */
function readBody(response: IncomingMessage, take: (chunk: Buffer) => string | undefined): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    const finish = (settle: () => void): void => {
      // The error listener stays: an error after a refusal (the socket is destroyed next) must not go
      // unhandled, and rejects a promise already settled, which does nothing.
      response.off('data', onData).off('end', onEnd).off('close', onClose);
      settle();
    };
    const onData = (chunk: Buffer): void => {
      const refused = take(chunk);
      if (refused !== undefined) finish(() => resolve(refused));
    };
    const onEnd = (): void => finish(() => resolve(undefined));
    const onError = (error: Error): void => finish(() => reject(error));
    // Closed without an end (a reset the parser did not report as an error): `complete` tells.
    const onClose = (): void => finish(() => resolve(undefined));
    response.on('data', onData).on('end', onEnd).on('error', onError).on('close', onClose);
  });
}

/** Reads and drops up to MAX_DRAINED bytes of a body; a longer one is left for `destroy`. */
async function drain(response: IncomingMessage): Promise<void> {
  let bytes = 0;
  try {
    for await (const chunk of response) {
      bytes += (chunk as Buffer).length;
      if (bytes > MAX_DRAINED) return;
    }
  } catch {
    // The status is what matters; a body cut short changes nothing.
  }
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function describeNetworkError(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
}
