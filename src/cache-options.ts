/**
 * `createCache`'s options, checked once and resolved to their defaults. Each failure is an
 * `OptionError` naming the option, thrown before the cache touches anything.
 */
import type { CacheOptions } from './cache.js';
import { isHostEntry } from './host.js';
import { OptionError, listOf, nonEmptyString, wholeNumber } from './options.js';
import { parseOrigin } from './origin.js';
import { DEFAULT_BYPASS_COOKIES } from './policy.js';
import { ENCODINGS, type Encoding } from './precompress.js';
import { DEFAULT_SAFE_METHODS } from './unsafe.js';

export interface ResolvedCacheOptions {
  root: string;
  maxBodyBytes: number;
  bypassCookies: readonly string[];
  sweepIntervalMs: number;
  expiryCheckMs: number;
  refreshOrigin: string | undefined;
  maxRenderMs: number;
  safeMethods: readonly string[];
  maxPendingBytes: number;
  precompress: readonly Encoding[];
  hosts: ReadonlySet<string> | undefined;
  multiSite: boolean;
}

const MiB = 1024 * 1024;
/** An HTTP method is a token (RFC 9110, section 5.6.2). */
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export function resolveCacheOptions(options: CacheOptions): ResolvedCacheOptions {
  // JavaScript callers can pass nothing at all: that is a missing root.
  const root = nonEmptyString((options as CacheOptions | undefined)?.root, 'root', 'the directory nginx serves');
  const maxBodyBytes = wholeNumber(options.maxBodyBytes, 'maxBodyBytes', 1, 10 * MiB);
  const bypassCookies = listOf(options.bypassCookies, 'bypassCookies', DEFAULT_BYPASS_COOKIES,
    (name) => typeof name === 'string' && name !== '', 'an array of cookie names');
  const sweepIntervalMs = wholeNumber(options.sweepIntervalMs, 'sweepIntervalMs', 0, 0, 'a whole number of milliseconds (0 disables it)');
  const expiryCheckMs = wholeNumber(options.expiryCheckMs, 'expiryCheckMs', 0, 250, 'a whole number of milliseconds (0 disables it)');
  const refreshOrigin = options.refreshOrigin === undefined ? undefined : parseOrigin(options.refreshOrigin, 'refreshOrigin');
  const maxRenderMs = wholeNumber(options.maxRenderMs, 'maxRenderMs', 1, 600_000, 'a whole number of milliseconds');
  const safeMethods = listOf(options.safeMethods, 'safeMethods', DEFAULT_SAFE_METHODS,
    (method) => typeof method === 'string' && METHOD.test(method), 'an array of method names, e.g. [\'GET\', \'HEAD\']');
  const maxPendingBytes = wholeNumber(options.maxPendingBytes, 'maxPendingBytes', 1, 64 * 1024 * 1024);
  const precompress = listOf(options.precompress, 'precompress', [],
    (encoding) => (ENCODINGS as readonly unknown[]).includes(encoding), `an array of ${ENCODINGS.map((e) => `'${e}'`).join(', ')}`);
  const hosts = options.hosts === undefined ? undefined : checkHosts(options.hosts);
  const multiSite = options.multiSite === true;
  if (multiSite && hosts === undefined) {
    throw new OptionError('hosts', 'set with `multiSite`: only allowlisted hosts get a directory under the root');
  }
  return { root, maxBodyBytes, bypassCookies, sweepIntervalMs, expiryCheckMs, refreshOrigin, maxRenderMs, safeMethods, maxPendingBytes, precompress, hosts, multiSite };
}

function checkHosts(hosts: readonly string[]): ReadonlySet<string> {
  const expectation = 'a non-empty array of lowercase DNS names, each with an optional :port';
  if (Array.isArray(hosts) && hosts.length === 0) throw new OptionError('hosts', expectation, hosts);
  return new Set(listOf(hosts, 'hosts', [], isHostEntry, expectation));
}
