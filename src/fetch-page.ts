/**
 * Fetches one page from the origin and stores it under the same policy, mapping and write protocol as
 * the middleware. Used by refresh (purge/sweep --refresh) and by the crawler.
 */
import type { Agent as HttpAgent, OutgoingHttpHeaders } from 'node:http';
import type { Agent as HttpsAgent } from 'node:https';
import fetch from 'node-fetch';
import { BodySink } from './body.js';
import { entryFor, type CacheRoot } from './cache-root.js';
import { checkResponse } from './policy.js';
import { encodePath, type CachePath } from './url-path.js';

export interface FetchPageOptions {
  /** `http(s)://host[:port]`, no trailing slash (see `parseOrigin`). */
  origin: string;
  timeoutMs: number;
  maxBodyBytes: number;
  agent?: HttpAgent | HttpsAgent;
}

export type PageOutcome =
  | { outcome: 'stored'; status: number; bytes: number }
  | { outcome: 'skipped'; status?: number; reason: string }
  | { outcome: 'failed'; status?: number; reason: string; retryable: boolean; retryAfterMs?: number };

const MAX_BACKLOG = 8 * 1024 * 1024;

export async function fetchPage(root: CacheRoot, target: CachePath, options: FetchPageOptions): Promise<PageOutcome> {
  const renderedAt = Date.now();
  const abort = new AbortController();
  const signal = AbortSignal.any([abort.signal, AbortSignal.timeout(options.timeoutMs)]);
  let response;
  try {
    response = await fetch(options.origin + encodePath(target.urlPath), {
      redirect: 'manual',
      compress: false,
      signal,
      ...(options.agent === undefined ? {} : { agent: options.agent }),
      headers: { 'accept-encoding': 'identity', 'user-agent': 'prerender' },
    });
  } catch (error) {
    return { outcome: 'failed', reason: describeNetworkError(error, options.timeoutMs), retryable: true };
  }

  const status = response.status;
  if (status !== 200) {
    response.body?.resume();
    if (status >= 300 && status < 400) {
      return { outcome: 'skipped', status, reason: `redirect (${status}) to ${response.headers.get('location') ?? '?'}, not followed` };
    }
    const retryable = status === 429 || status >= 500;
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
    return { outcome: 'failed', status, reason: `status ${status}`, retryable, ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
  }

  const headers: OutgoingHttpHeaders = {};
  for (const [name, values] of Object.entries(response.headers.raw())) {
    headers[name] = name === 'set-cookie' ? values : values.join(', ');
  }
  const verdict = checkResponse(status, headers, target, Date.now());
  if (!verdict.store) {
    abort.abort();
    return { outcome: 'skipped', status, reason: verdict.reason };
  }

  const sink = new BodySink(root.store.openTemp(), verdict, options.maxBodyBytes);
  try {
    for await (const chunk of response.body ?? []) {
      const refusal = sink.push(chunk as Buffer);
      if (refusal !== undefined) {
        abort.abort();
        return { outcome: 'skipped', status, reason: refusal };
      }
      if (sink.temp.backlog > MAX_BACKLOG) await sink.temp.drained();
    }
  } catch (error) {
    await sink.temp.discard();
    return { outcome: 'failed', status, reason: describeNetworkError(error, options.timeoutMs), retryable: true };
  } finally {
    if (abort.signal.aborted) await sink.temp.discard();
  }
  const refusal = sink.end();
  if (refusal !== undefined) {
    await sink.temp.discard();
    return { outcome: 'failed', status, reason: refusal, retryable: true };
  }
  const bytes = sink.temp.bytes;
  const committed = await root.commit(sink.temp, entryFor(target, verdict, renderedAt, bytes));
  return committed.stored ? { outcome: 'stored', status, bytes } : { outcome: 'skipped', status, reason: committed.reason };
}

function parseRetryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

function describeNetworkError(error: unknown, timeoutMs: number): string {
  if (error instanceof Error && (error.name === 'AbortError' || error.name === 'TimeoutError')) return `timed out after ${timeoutMs} ms`;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : error instanceof Error ? error.message : String(error);
}
