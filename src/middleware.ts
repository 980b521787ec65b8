/**
 * Captures a response on its way to the client. The client gets every byte unchanged and at the app's
 * pace: chunks go to the socket first and a copy is kept in memory, within the cache's byte budget
 * for pending stores; a body that outgrows `maxBodyBytes` or the budget is abandoned, never waited
 * for. Once the response has finished, the copy is stored if the policy allows; an aborted response
 * leaves nothing.
 */
import type { IncomingMessage, OutgoingHttpHeader, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { BodySink, OVER_BUDGET } from './body.js';
import { hasCrawlMark } from './crawl-mark.js';
import { checkRequest, checkResponse, type RequestRules, type StorableResponse } from './policy.js';
import { invalidates, invalidationTargets } from './unsafe.js';
import { httpDate, mtimeSeconds, nginxEtag, notModified } from './validators.js';
import type { PageBody } from './page-body.js';
import type { CachePath } from './url-path.js';

/**
 * Headers prerender consumes, which never reach the client: tags for the index, and the field that
 * targets this cache alone (cache-control.ts).
 */
const TAG_HEADERS = ['cache-tag', 'surrogate-key', 'prerender-cache-control'] as const;
const attached = Symbol('prerender.attached');
/** Why a response was not even captured: the pending stores hold the whole byte budget. */
export const BUSY = OVER_BUDGET;

export interface CaptureContext {
  rules: RequestRules;
  /** True while the pending stores hold the whole byte budget: the request is then not even examined. */
  saturated(): boolean;
  maxBodyBytes: number;
  /**
   * A body drawing on the cache's byte budget for pending stores, so a miss storm cannot pile work
   * up behind the app. Every body handed out is either passed to `store` or given back with
   * `release`, which discards it.
   */
  openBody(): PageBody;
  release(body: PageBody): void;
  /** Called once the response finished and the body is complete and valid; owns the body after. */
  store(body: PageBody, target: CachePath, response: StorableResponse, renderedAt: number, host: string | undefined): void;
  skip(urlPath: string, reason: string, error?: unknown): void;
  /** Methods that do not invalidate (RFC 9111 §4.4); every other one does. */
  safeMethods: ReadonlySet<string>;
  /** Purges these request-targets for the request's Host; never rejects (failures are logged). */
  invalidate(targets: readonly string[], host: string | undefined): Promise<void>;
}

type Response = ServerResponse & { [attached]?: true };
type WriteHead = ServerResponse['writeHead'];
type WriteArgs = [chunk?: unknown, encoding?: unknown, callback?: unknown];

export function attach(req: IncomingMessage, res: Response, context: CaptureContext): void {
  if (res[attached]) return;
  res[attached] = true;
  if (!context.safeMethods.has(req.method ?? '')) holdEndForInvalidation(req, res, context);
  // prerender's own fetch: it stores the page itself and needs the tag headers (crawl-mark.ts).
  if (hasCrawlMark(req.headers)) return;

  const url = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url;
  const saturated = context.saturated();
  const requestVerdict: ReturnType<typeof checkRequest> = saturated
    ? { store: false, reason: BUSY }
    : checkRequest({ method: req.method, url, headers: req.headers }, context.rules);
  if (saturated) context.skip(url ?? '', BUSY);
  if (!requestVerdict.store) {
    // Most requests a busy or refusing cache sees: they only need the tag headers kept from the client.
    interceptHead(res);
    return;
  }
  const host = requestVerdict.host;
  const renderedAt = Date.now();
  let target: CachePath | undefined = requestVerdict.target;
  let response: StorableResponse | undefined;
  let sink: BodySink | undefined;

  const abandon = (reason: string, error?: unknown): void => {
    if (target !== undefined) context.skip(target.urlPath, reason, error);
    target = undefined;
    response = undefined;
    if (sink !== undefined) context.release(sink.body);
    sink = undefined;
  };

  interceptHead(res, (head, statusCode, headers) => {
    if (target !== undefined) {
      const verdict = checkResponse(statusCode, headers, target, Date.now(), renderedAt);
      if (!verdict.store) {
        abandon(verdict.reason, verdict.tagError);
      } else {
        response = verdict;
        sink = new BodySink(context.openBody(), verdict, context.maxBodyBytes);
        // The validators nginx will send for the stored file (validators.ts), so a client can revalidate
        // this response against nginx later, and is answered 304 here when it already has this version.
        // The body is still captured and stored: the app wrote it, only the wire drops it.
        const mtime = mtimeSeconds(verdict.lastModified, renderedAt);
        const etag = verdict.contentLength === undefined ? undefined : nginxEtag(mtime, verdict.contentLength);
        if (etag !== undefined) head.setHeader('ETag', etag);
        else head.removeHeader('ETag');
        head.setHeader('Last-Modified', httpDate(mtime));
        if (notModified(req.headers, etag, mtime)) return 304;
      }
    }
    return statusCode;
  });

  const tee = (chunk: unknown, encoding: unknown): void => {
    if (sink === undefined || chunk === undefined || chunk === null || typeof chunk === 'function') return;
    const bytes = typeof chunk === 'string'
      ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
      : chunk instanceof Uint8Array ? chunk : undefined;
    if (bytes === undefined) return;
    const refusal = sink.push(bytes);
    if (refusal !== undefined) abandon(refusal);
  };

  const originalWrite = res.write;
  res.write = function write(this: Response, ...args: WriteArgs) {
    const result = (originalWrite as (...a: WriteArgs) => boolean).apply(this, args);
    tee(args[0], args[1]);
    return result;
  } as ServerResponse['write'];

  const originalEnd = res.end;
  res.end = function end(this: Response, ...args: WriteArgs) {
    const result = (originalEnd as (...a: WriteArgs) => Response).apply(this, args);
    tee(args[0], args[1]);
    return result;
  } as ServerResponse['end'];

  res.once('close', () => {
    if (sink === undefined || target === undefined || response === undefined) return;
    if (!res.writableFinished) return abandon('the response did not complete (client gone or stream destroyed)');
    const refusal = sink.end();
    if (refusal !== undefined) return abandon(refusal);
    const finished = sink.body;
    sink = undefined;
    context.store(finished, target, response, renderedAt, host);
  });
}

/**
 * An unsafe request answered with a non-error status invalidates its target and same-origin Location /
 * Content-Location (unsafe.ts). The response's end is held until that purge has been applied, so a
 * client that reads the answer and then asks again finds no stale page in nginx's way.
 */
function holdEndForInvalidation(req: IncomingMessage, res: Response, context: CaptureContext): void {
  const url = (req as IncomingMessage & { originalUrl?: string }).originalUrl ?? req.url;
  const originalEnd = res.end as (...a: WriteArgs) => Response;
  res.end = function end(this: Response, ...args: WriteArgs) {
    if (!invalidates(this.statusCode)) return originalEnd.apply(this, args);
    const targets = invalidationTargets(url, req.headers.host, this.getHeader('location'), this.getHeader('content-location'));
    if (targets.length === 0) return originalEnd.apply(this, args);
    void context.invalidate(targets, req.headers.host).finally(() => originalEnd.apply(this, args));
    return this;
  } as ServerResponse['end'];
}

/**
 * Wraps writeHead, which every response's head passes through (write and end call it implicitly):
 * headers given to it are folded into the response, `decide` sees all of them and may change the
 * status, and tag headers are then removed so they never reach the client. Without `decide`, that
 * removal is the whole job, as for a response that is never stored.
 */
function interceptHead(res: Response, decide?: (head: Response, statusCode: number, headers: OutgoingHttpHeaders) => number): void {
  const originalWriteHead = res.writeHead as (this: Response, statusCode: number, reason?: string) => Response;
  res.writeHead = function writeHead(this: Response, statusCode: number, ...rest: unknown[]) {
    const reason = foldHeaders(this, rest);
    const status = decide === undefined ? statusCode : decide(this, statusCode, this.getHeaders());
    for (const name of TAG_HEADERS) this.removeHeader(name);
    return reason === undefined ? originalWriteHead.call(this, status) : originalWriteHead.call(this, status, reason);
  } as WriteHead;
}

/**
 * Folds the headers given to writeHead into the response object, so they can be read, and tag headers
 * removed, in one place (writeHead would otherwise send them without ever exposing them). Returns the
 * reason phrase, if one was given.
 */
function foldHeaders(res: Response, rest: readonly unknown[]): string | undefined {
  const reason = typeof rest[0] === 'string' ? rest[0] : undefined;
  const headers = (reason === undefined ? rest[0] : rest[1]) as OutgoingHttpHeaders | OutgoingHttpHeader[] | undefined;
  if (Array.isArray(headers)) {
    for (let i = 0; i + 1 < headers.length; i += 2) res.appendHeader(String(headers[i]), headers[i + 1] as string);
  } else if (headers !== undefined) {
    for (const [name, value] of Object.entries(headers)) if (value !== undefined) res.setHeader(name, value);
  }
  return reason;
}
