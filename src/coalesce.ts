/**
 * Miss coalescing: when many requests for one cold page reach this process at once (a stampede after
 * a deploy or a purge), the first goes to the app and the others wait for its response. They may
 * share it only where a stored page would be shared: the same canonical URL path (and Host, in
 * multi-site mode), GET, no Authorization or bypass cookie (policy.ts checkRequest). Once the first
 * response has finished, the waiters get its status, headers and bytes if the policy would store it
 * (checkResponse, and the body checks a store makes); otherwise (a 404, Set-Cookie, private, Vary,
 * an aborted or oversized body) each waiter goes to the app itself, as if nothing had been coalesced.
 *
 * A finished response is also kept for LINGER_MS for requests that arrive after it: a render that
 * holds the event loop (template rendering) makes a stampede reach the handler one request after
 * another, each after the first had finished, and requests nginx forwarded before the page was on
 * disk still arrive after it is. Before any waiter gets the response, the purge records are checked (one stat while
 * nothing is purged): a response rendered before a purge that was recorded by the time the waiter
 * arrived is never handed out, in this process or from another (DESIGN.md invariant 5, for reads).
 *
 * The first response's body is held in memory while it is written (the chunks the app wrote, no
 * copy), at most MAX_SHARED_BODY_BYTES (or `maxBodyBytes`) for one and MAX_HELD_BYTES across all; a
 * response past either (or declaring a larger Content-Length) stops being shared and its waiters go
 * to the app at once.
 */
import type { IncomingMessage, OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { TextDecoder } from 'node:util';
import { hasCrawlMark } from './crawl-mark.js';
import { checkRequest, checkResponse, type RequestRules, type StorableResponse } from './policy.js';
import type { CachePath } from './url-path.js';

/** Bytes held for waiters across every response in flight. */
export const MAX_HELD_BYTES = 64 * 1024 * 1024;
/** Bytes held for one response (or maxBodyBytes, if smaller): a larger one is not shared. */
export const MAX_SHARED_BODY_BYTES = 8 * 1024 * 1024;
/** How long a finished response is kept for late arrivals (evicted sooner when memory is short). */
export const LINGER_MS = 1000;

export interface CoalesceOptions {
  rules: RequestRules;
  /** Whether the Host is part of the key (multi-site mode: each host its own tree). */
  multiSite: boolean;
  maxBodyBytes: number;
  /**
   * Whether a purge recorded since `renderedAt` covers the page (the store's own check, see
   * invalidation.ts); a waiter is then sent to the app. Rejections count as stale.
   */
  stale(host: string | undefined, target: CachePath, tags: readonly string[], renderedAt: number): Promise<boolean>;
  /** Told when a waiter is answered from another request's response, or sent on to the app. */
  onCoalesced?(shared: boolean): void;
}

interface Waiter {
  res: ServerResponse;
  proceed: () => void;
}

interface Flight {
  key: string;
  host: string | undefined;
  target: CachePath;
  renderedAt: number;
  /** Set once the response finished and may be shared: what waiters get. */
  done?: { body: Buffer; tags: readonly string[]; expiresAt: number | null; timer: NodeJS.Timeout };
  waiters: Waiter[];
  chunks: Buffer[];
  bytes: number;
  /** False once the response can no longer be shared (too big); waiters then go to the app. */
  shareable: boolean;
  status?: number;
  reason?: string;
  /** The headers as the app set them (for the policy), and as the client received them. */
  appHeaders?: OutgoingHttpHeaders;
  sentHeaders?: OutgoingHttpHeaders;
}

export interface Coalescer {
  /**
   * Runs `capture` (the middleware's) then `app` for the first request of a key, and for every request
   * that cannot share; a later request of the same key waits for the first one's response instead.
   */
  handle(req: IncomingMessage, res: ServerResponse, capture: () => void, app: () => void): void;
}

export function createCoalescer(options: CoalesceOptions): Coalescer {
  const maxShared = Math.min(options.maxBodyBytes, MAX_SHARED_BODY_BYTES);
  const flights = new Map<string, Flight>();
  let held = 0;

  const release = (flight: Flight): void => {
    held -= flight.bytes;
    flight.bytes = 0;
    flight.chunks = [];
  };

  /** Sends the waiters on to the app: the response cannot be shared. */
  const dispatch = (flight: Flight): void => {
    const waiters = flight.waiters;
    flight.waiters = [];
    for (const waiter of waiters) {
      if (waiter.res.destroyed) continue;
      options.onCoalesced?.(false);
      waiter.proceed();
    }
  };

  const unshare = (flight: Flight): void => {
    if (!flight.shareable) return;
    flight.shareable = false;
    release(flight);
    if (flights.get(flight.key) === flight) flights.delete(flight.key);
    dispatch(flight);
  };

  const end = (flight: Flight): void => {
    if (flights.get(flight.key) === flight) flights.delete(flight.key);
    if (flight.done !== undefined) clearTimeout(flight.done.timer);
    release(flight);
    dispatch(flight);
  };

  /** Hands the finished response to `waiters`, once the purge records say it is still current. */
  const serve = async (flight: Flight, waiters: Waiter[]): Promise<void> => {
    const done = flight.done;
    // Nobody waiting (most responses): whether it is still current is asked when someone comes.
    if (done === undefined || waiters.length === 0) return;
    const expired = done.expiresAt !== null && done.expiresAt <= Date.now();
    const stale = expired || await options.stale(flight.host, flight.target, done.tags, flight.renderedAt).catch(() => true);
    if (stale && flights.get(flight.key) === flight) {
      // Purged since it rendered: nobody else gets it either.
      flights.delete(flight.key);
      clearTimeout(done.timer);
      release(flight);
    }
    for (const waiter of waiters) {
      if (waiter.res.destroyed || waiter.res.headersSent) continue;
      options.onCoalesced?.(!stale);
      if (stale) {
        waiter.proceed();
        continue;
      }
      try {
        const headers = flight.sentHeaders ?? {};
        if (flight.reason === undefined) waiter.res.writeHead(flight.status ?? 200, headers);
        else waiter.res.writeHead(flight.status ?? 200, flight.reason, headers);
        waiter.res.end(done.body);
      } catch (error) {
        // Nothing may escape into the app's process from here (this runs off any handler).
        waiter.res.destroy(error instanceof Error ? error : undefined);
      }
    }
  };

  const finish = (flight: Flight, res: ServerResponse): void => {
    if (!flight.shareable) return end(flight);
    const body = Buffer.concat(flight.chunks, flight.bytes);
    const verdict = res.writableFinished ? storableVerdict(flight, body, options.maxBodyBytes) : undefined;
    if (verdict === undefined) return end(flight);
    flight.chunks = [body];
    const timer = setTimeout(() => end(flight), LINGER_MS);
    timer.unref();
    flight.done = { body, tags: verdict.tags, expiresAt: verdict.expiresAt, timer };
    const waiters = flight.waiters;
    flight.waiters = [];
    void serve(flight, waiters);
  };

  const record = (flight: Flight, res: ServerResponse): void => {
    const innerWriteHead = res.writeHead as (this: ServerResponse, ...args: unknown[]) => ServerResponse;
    res.writeHead = function writeHead(this: ServerResponse, statusCode: number, ...rest: unknown[]) {
      flight.status = statusCode;
      flight.reason = typeof rest[0] === 'string' ? rest[0] : undefined;
      flight.appHeaders = withHeaders(this.getHeaders(), (flight.reason === undefined ? rest[0] : rest[1]) as HeadersArgument);
      const result = innerWriteHead.call(this, statusCode, ...rest);
      // As the client got them: the capture has set the validators and removed the tag headers.
      flight.sentHeaders = { ...this.getHeaders() };
      if (Number(flight.appHeaders['content-length'] ?? 0) > maxShared) unshare(flight);
      return result;
    } as ServerResponse['writeHead'];

    const hold = (chunk: unknown, encoding: unknown): void => {
      if (!flight.shareable || chunk === undefined || chunk === null || typeof chunk === 'function') return;
      const bytes = typeof chunk === 'string'
        ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
        : chunk instanceof Uint8Array ? Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength) : undefined;
      if (bytes === undefined || bytes.byteLength === 0) return;
      // Finished responses kept for late arrivals make room first, oldest first.
      for (const other of flights.values()) {
        if (held + bytes.byteLength <= MAX_HELD_BYTES) break;
        if (other.done !== undefined) end(other);
      }
      if (flight.bytes + bytes.byteLength > maxShared || held + bytes.byteLength > MAX_HELD_BYTES) return unshare(flight);
      flight.chunks.push(bytes);
      flight.bytes += bytes.byteLength;
      held += bytes.byteLength;
    };
    const innerWrite = res.write as (...args: unknown[]) => boolean;
    res.write = function write(this: ServerResponse, ...args: unknown[]) {
      hold(args[0], args[1]);
      return innerWrite.apply(this, args);
    } as ServerResponse['write'];
    const innerEnd = res.end as (...args: unknown[]) => ServerResponse;
    res.end = function end(this: ServerResponse, ...args: unknown[]) {
      hold(args[0], args[1]);
      return innerEnd.apply(this, args);
    } as ServerResponse['end'];
    res.once('close', () => finish(flight, res));
  };

  return {
    handle(req, res, capture, app) {
      const key = keyFor(req, options);
      const proceed = (): void => {
        capture();
        app();
      };
      if (key === undefined) return proceed();
      const flight = flights.get(key.key);
      if (flight !== undefined) {
        if (flight.done === undefined) flight.waiters.push({ res, proceed });
        else void serve(flight, [{ res, proceed }]);
        return;
      }
      const started: Flight = { key: key.key, host: key.host, target: key.target, renderedAt: Date.now(), waiters: [], chunks: [], bytes: 0, shareable: true };
      flights.set(key.key, started);
      capture();
      // Outermost, after the capture wrapped the response: it sees the app's own status and headers.
      record(started, res);
      app();
    },
  };
}

type HeadersArgument = OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined;

/** The response's headers with those given to writeHead folded in, names lowercased. */
function withHeaders(current: OutgoingHttpHeaders, given: HeadersArgument): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = { ...current };
  if (Array.isArray(given)) {
    for (let i = 0; i + 1 < given.length; i += 2) {
      const name = String(given[i]).toLowerCase();
      const value = given[i + 1] as string;
      const previous = headers[name];
      headers[name] = previous === undefined ? value : [...(Array.isArray(previous) ? previous : [String(previous)]), value];
    }
  } else if (given !== undefined) {
    for (const [name, value] of Object.entries(given)) if (value !== undefined) headers[name.toLowerCase()] = value;
  }
  return headers;
}

function keyFor(req: IncomingMessage, options: CoalesceOptions): { key: string; host: string | undefined; target: CachePath } | undefined {
  if (req.method !== 'GET' || hasCrawlMark(req.headers)) return undefined;
  const url = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url;
  const verdict = checkRequest({ method: req.method, url, headers: req.headers }, options.rules);
  if (!verdict.store) return undefined;
  const host = options.multiSite ? verdict.host : undefined;
  return { key: keyOf(host, verdict.target.urlPath), host: verdict.host, target: verdict.target };
}

function keyOf(host: string | undefined, urlPath: string): string {
  return `${host ?? ''}\u0000${urlPath}`;
}

/** The policy's verdict when the store would take the response (with the body checks of body.ts). */
function storableVerdict(flight: Flight, body: Buffer, maxBodyBytes: number): StorableResponse | undefined {
  if (flight.status === undefined || flight.appHeaders === undefined) return undefined;
  const verdict = checkResponse(flight.status, flight.appHeaders, flight.target, Date.now());
  if (!verdict.store) return undefined;
  if (body.byteLength > maxBodyBytes) return undefined;
  if (verdict.contentLength !== undefined && verdict.contentLength !== body.byteLength) return undefined;
  if (verdict.mustBeUtf8) {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(body);
    } catch {
      return undefined;
    }
  }
  return verdict;
}
