/**
 * Freshness as RFC 9111 §4.2 defines it for a shared cache, as pure functions of a response's headers
 * and the times it was requested and received. The result is the local time the stored page becomes
 * stale (`expiresAt`); a response already stale when it arrives is not stored at all.
 *
 *   freshness_lifetime    s-maxage, else max-age, else Expires - Date (§4.2.1); none: no expiry
 *   apparent_age          max(0, response_time - Date)                          (§4.2.3)
 *   corrected_age_value   Age + (response_time - request_time)
 *   corrected_initial_age max(apparent_age, corrected_age_value)
 *   expiresAt             response_time + freshness_lifetime - corrected_initial_age
 *
 * Invalid values are read as the spec asks: an invalid max-age or s-maxage makes the response stale
 * (§4.2.1, "encouraged"), an invalid Expires is a time in the past (§5.3), an invalid Age is ignored
 * and a list-valued one counts by its first member (§5.1), a Date that is no HTTP-date is as if absent
 * (the response time stands in, §4.2.3), and any delta past 2^31 seconds is 2^31 (§1.2.2).
 */
import type { OutgoingHttpHeaders } from 'node:http';
import type { GoverningDirectives } from './cache-control.js';
import { parseHttpDate } from './http-date.js';

/** RFC 9111 §1.2.2: the largest delta-seconds a cache must be able to represent. */
export const MAX_DELTA_SECONDS = 2 ** 31;

export type Freshness =
  | {
    storable: true;
    /** Local epoch ms after which the page is stale; null when the response gave no freshness. */
    expiresAt: number | null;
    /** `stale-while-revalidate` (RFC 5861), in ms: how long past expiresAt a refresh may take. */
    staleWhileRevalidateMs: number;
  }
  | { storable: false; reason: string };

/**
 * `requestTime`: when the request was sent to (or reached) the app; `responseTime`: when its head came
 * back. Their difference counts towards the age, as the time the response may have spent in transit.
 */
export function freshnessOf(governing: GoverningDirectives, headers: OutgoingHttpHeaders, responseTime: number, requestTime = responseTime): Freshness {
  const lifetime = lifetimeMs(governing, headers, responseTime);
  if (lifetime === null) return { storable: true, expiresAt: null, staleWhileRevalidateMs: 0 };
  const age = initialAgeMs(headers, responseTime, requestTime);
  if (lifetime <= age) {
    return { storable: false, reason: age === 0 ? 'already expired (zero max-age or past Expires)' : `already stale on arrival (age ${Math.round(age / 1000)} s, fresh for ${Math.round(lifetime / 1000)} s)` };
  }
  // §4.2.4: no stale response where must-revalidate, proxy-revalidate or s-maxage (which implies
  // proxy-revalidate for shared caches, §5.2.2.10) forbids it.
  const forbidsStale = ['must-revalidate', 'proxy-revalidate', 's-maxage'].some((name) => governing.directives.has(name));
  const swr = forbidsStale ? undefined : parseDeltaSeconds(governing.directives.get('stale-while-revalidate'));
  return { storable: true, expiresAt: responseTime + lifetime - age, staleWhileRevalidateMs: (swr ?? 0) * 1000 };
}

/** freshness_lifetime in ms (§4.2.1), 0 for invalid freshness information, null for none at all. */
export function lifetimeMs(governing: GoverningDirectives, headers: OutgoingHttpHeaders, responseTime: number): number | null {
  for (const directive of ['s-maxage', 'max-age']) {
    const value = governing.directives.get(directive);
    if (value !== undefined) return (parseDeltaSeconds(value) ?? 0) * 1000;
  }
  if (!governing.useExpires) return null;
  const expires = headers.expires;
  if (expires === undefined) return null;
  // Two Expires lines arrive joined by a comma, which no HTTP-date has: invalid, so stale (§4.2.1
  // allows either the first or stale).
  const expiresAt = parseHttpDate(headerText(expires).trim());
  if (expiresAt === null) return 0;
  const date = dateOf(headers) ?? responseTime;
  return Math.max(0, expiresAt - date);
}

/** corrected_initial_age in ms (§4.2.3). */
export function initialAgeMs(headers: OutgoingHttpHeaders, responseTime: number, requestTime: number): number {
  const date = dateOf(headers);
  const apparentAge = date === null ? 0 : Math.max(0, responseTime - date);
  const responseDelay = Math.max(0, responseTime - requestTime);
  return Math.max(apparentAge, (parseAge(headers.age) ?? 0) * 1000 + responseDelay);
}

/** Age (§5.1): the first member of a list, a non-negative integer, else ignored (undefined). */
export function parseAge(value: OutgoingHttpHeaders[string]): number | undefined {
  if (value === undefined) return undefined;
  const first = headerText(value).split(',')[0]?.trim() ?? '';
  return parseDeltaSeconds(first);
}

/** delta-seconds (§1.2.2): digits only, capped at 2^31; undefined when it is not one. */
export function parseDeltaSeconds(value: string | undefined): number | undefined {
  if (value === undefined || !/^\d+$/.test(value)) return undefined;
  // Compare as text first: Number() of 400 digits is Infinity, of 20 digits already imprecise.
  const digits = value.replace(/^0+(?=\d)/, '');
  return digits.length > 10 ? MAX_DELTA_SECONDS : Math.min(Number(digits), MAX_DELTA_SECONDS);
}

function dateOf(headers: OutgoingHttpHeaders): number | null {
  const date = headers.date;
  return date === undefined ? null : parseHttpDate(headerText(date).trim());
}

function headerText(value: string | number | readonly string[]): string {
  return Array.isArray(value) ? value.join(', ') : String(value);
}
