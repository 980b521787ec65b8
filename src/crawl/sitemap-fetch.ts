/**
 * Sitemaps fetched from the origin (a sitemap URL names its public host; its path is fetched from the
 * origin, as every page is). Redirects are followed only while they stay on the origin, and a body is
 * read at the crawl's pace, so the timeout bounds each wait for data, not the whole read.
 */
import http from 'node:http';
import https from 'node:https';
import { Readable } from 'node:stream';
import { CRAWL_MARK_HEADER, CRAWL_MARK_VALUE } from '../crawl-mark.js';
import { splitAbsoluteUrl } from '../url-path.js';
import { quote } from './source-limits.js';

const MAX_SITEMAP_REDIRECTS = 5;

export interface SitemapFetcher {
  fetchStream(url: string): Promise<Readable>;
  /** Closes the fetcher's sockets. */
  destroy(): void;
}

export function sitemapFetcher(origin: string, timeoutMs: number): SitemapFetcher {
  // Sitemaps have an agent of their own: a sitemap is read only as fast as the crawl goes, and on the
  // pages' agent its response would hold one of `concurrency` sockets for the whole crawl (all of
  // them at concurrency 1: a deadlock).
  const agent = origin.startsWith('https:') ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
  return {
    destroy: () => agent.destroy(),
    fetchStream: async (url) => {
      // Loaded on first use: only a crawl of a sitemap URL needs it.
      const { default: fetch } = await import('node-fetch');
      let response;
      // Redirects are followed here, one hop at a time, and only while they stay on the origin (or on
      // the sitemap's own public origin, which is fetched from the origin too): node-fetch would follow
      // them to any host, and the crawl would then fetch what that host lists.
      for (let target = url, hops = 0; ; hops++) {
        // The timeout covers the wait for the headers only, for the same reason: the body is read as
        // the crawl goes, which may take far longer than any timeout.
        const controller = new AbortController();
        const timer = setTimeout(() => controller.abort(), timeoutMs);
        try {
          response = await fetch(origin + (splitAbsoluteUrl(target)?.path ?? target), {
            agent, signal: controller.signal, redirect: 'manual', headers: { [CRAWL_MARK_HEADER]: CRAWL_MARK_VALUE },
          });
        } finally {
          clearTimeout(timer);
        }
        if (response.status < 300 || response.status >= 400) break;
        response.body?.resume();
        const location = response.headers.get('location');
        const next = redirectOnOrigin(location, target, origin);
        if (next === undefined) throw new Error(`redirect (${response.status}) to ${quote(location ?? '?')}, off the origin ${origin}: not followed`);
        if (hops >= MAX_SITEMAP_REDIRECTS) throw new Error(`more than ${MAX_SITEMAP_REDIRECTS} redirects: not followed`);
        target = next;
      }
      if (response.status !== 200 || response.body === null) {
        response.body?.resume();
        throw new Error(`status ${response.status}`);
      }
      return Readable.from(idleLimited(response.body as Readable, timeoutMs));
    },
  };
}

/**
 * Where a sitemap redirect leads, as an absolute URL, when it stays on the origin or on the sitemap's
 * own public origin (both are fetched from the origin); undefined when it leaves them.
 */
function redirectOnOrigin(location: string | null, from: string, origin: string): string | undefined {
  if (location === null) return undefined;
  let base: URL;
  let url: URL;
  try {
    base = new URL(from, origin);
    url = new URL(location, base);
  } catch {
    return undefined;
  }
  if (url.origin !== origin && url.origin !== base.origin) return undefined;
  return url.href;
}

/**
 * The chunks of a body, failing when one is awaited for longer than `ms`: a stalled server. Only
 * waits that are asked for count, so a body read slowly because the crawl is busy never times out.
 */
async function* idleLimited(body: Readable, ms: number): AsyncGenerator<Buffer> {
  const iterator = body[Symbol.asyncIterator]();
  try {
    for (;;) {
      let timer: NodeJS.Timeout | undefined;
      const stalled = new Promise<'stalled'>((resolve) => {
        timer = setTimeout(() => resolve('stalled'), ms);
      });
      const next = await Promise.race([iterator.next(), stalled]).finally(() => clearTimeout(timer));
      if (next === 'stalled') throw new Error(`no data for ${ms} ms`);
      if (next.done === true) return;
      yield Buffer.from(next.value as Uint8Array);
    }
  } finally {
    // Not iterator.return(): it would wait for the read still pending on a stalled body.
    body.destroy();
  }
}
