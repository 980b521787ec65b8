/**
 * The mark prerender's own fetches (crawl, `purge --refresh`, `sweep --refresh`) carry, so that an
 * origin running the middleware answers them with their `Cache-Tag` / `Surrogate-Key` headers intact
 * and does not store them itself: the fetcher stores them, with their tags, into whichever tree it
 * builds. Without it the middleware would strip the tags and every crawled page would be unpurgeable
 * by tag.
 *
 * No secret: a client that sends the mark only gets its own response unstored with the tag headers
 * visible, never a page stored on its behalf, and the generated nginx config clears the header from
 * every request it proxies (so only a client that can reach the app directly could send it at all).
 */
export const CRAWL_MARK_HEADER = 'X-Prerender-Crawl';
export const CRAWL_MARK_VALUE = '1';
const lowercase = CRAWL_MARK_HEADER.toLowerCase();

/** Whether a request carries the mark (any value counts: it can only make the middleware store less). */
export function hasCrawlMark(headers: Readonly<Record<string, string | string[] | undefined>>): boolean {
  return headers[lowercase] !== undefined;
}
