/**
 * `createCache`: the public object apps hold. It wires the capture (middleware.ts) to the store and
 * turns storage failures into throttled log lines: a cache fault never breaks a response.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { isErrno } from './errors.js';
import { consoleLogger, throttledLogger, type Logger } from './log.js';
import { BUSY, attach, type CaptureContext } from './middleware.js';
import { createCoalescer } from './coalesce.js';
import { StatsRecorder, metricsHandler, prometheusText, type CacheStats } from './stats.js';
import { normalizeHost } from './policy.js';
import { CacheRoot, entryFor } from './cache-root.js';
import { ByteBudget, PENDING_PAGE_BYTES, PageBody } from './page-body.js';
import { expiryTimer } from './expiry.js';
import type { Encoding } from './precompress.js';
import { resolveCacheOptions } from './cache-options.js';
import { splitAbsoluteUrl } from './url-path.js';
import { purge, type PurgeResult, type PurgeSelector } from './purge.js';
import { sweep, type SweepOptions, type SweepResult } from './sweep.js';
import { checkFleetOptions, createFleetLink, type FleetOptions, type FleetPurgeOptions, type FleetPurgeResult } from './fleet/link.js';

export interface CacheOptions {
  /** Directory nginx serves as its `root`. Created if missing. */
  root: string;
  /**
   * Requests carrying any of these cookies are personalised: never stored. Pass the same names to
   * `prerender nginx --bypass-cookie` so nginx sends those requests to the app.
   * @default DEFAULT_BYPASS_COOKIES (connect.sid, session, session.sig, sid, sessionid)
   */
  bypassCookies?: readonly string[];
  /**
   * Larger bodies are passed through but not stored. The copy is streamed to disk, so this bounds disk
   * use per entry, not memory.
   * @default 10 MiB
   */
  maxBodyBytes?: number;
  /**
   * fsync each file before it is renamed into place. Off trades durability across power loss (an empty
   * page after a crash) for less disk wait while storing; never affects response latency.
   * @default true
   */
  durable?: boolean;
  /**
   * A render (request to response end) that took longer than this is not stored. Purges are checked
   * against renders by time, and this bounds how long those records are kept.
   * @default 600_000 (10 minutes)
   */
  maxRenderMs?: number;
  /**
   * Run `sweep()` (remove expired files, compact the index) this often; 0 disables. Safe to enable in
   * every process sharing a root.
   * @default 0
   */
  sweepIntervalMs?: number;
  /**
   * How often this process acts on the expiry index: every page stored with an expiry (by this
   * process, another one, a crawl or a refresh) is removed within this long after it goes stale (plus
   * the time the removal takes), at a cost that grows with the pages expiring, not the cache. 0 turns
   * it off; then only `sweep()` (`prerender sweep`, from cron) removes expired pages.
   * @default 250
   */
  expiryCheckMs?: number;
  /**
   * The app's own address, e.g. `http://127.0.0.1:3000`, where pages stored with
   * `stale-while-revalidate=N` are fetched again once they expire, while nginx goes on serving the
   * old file; a page no refresh could replace within N seconds is removed. Without it such pages are
   * removed at expiry like any other. Needs the expiry check (`expiryCheckMs` above 0).
   */
  refreshOrigin?: string;
  /**
   * Also write `<file>.gz` and/or `<file>.br` for nginx's gzip_static / brotli_static, after the
   * response has finished; only for compressible types over 1 KiB, and only where it saves a tenth.
   * @default []
   */
  precompress?: readonly Encoding[];
  /**
   * Only responses whose Host header (and any X-Forwarded-Host) is exactly one of these are stored:
   * lowercase names, each with an optional `:port` (`www.example.com`, `www.example.com:8080`); another
   * case, port or a trailing dot is another page. Pass the same entries to `prerender nginx --host`. Without it any Host is accepted, and then the app must not
   * let the Host header shape its pages.
   */
  hosts?: readonly string[];
  /**
   * Store each host under `<root>/<host>/` (served by nginx as `root <root>/$http_host`); needs `hosts`.
   * Each host directory is a cache root of its own for the CLI (`--root <root>/<host>`).
   * @default false
   */
  multiSite?: boolean;
  /**
   * Bytes the bodies of responses being captured or waiting to be stored may hold in memory, all
   * together, each page counting 4 KiB (`PENDING_PAGE_BYTES`) besides its body. A response whose
   * body would pass it is passed through unstored (a later miss stores it) and counted as dropped
   * (`onEvent`, `stats().dropped`), so a miss storm costs a bounded amount of memory; a body larger
   * than this is never stored. Bodies are written in batches, each with
   * one wait for the disk, so a burst of small pages fits many times over.
   * @default 64 MiB
   */
  maxPendingBytes?: number;
  /**
   * Request methods that leave the cache alone. A request with any other method (POST, PUT, DELETE,
   * PATCH, or one unknown here) answered with a 2xx or 3xx status invalidates its URL and the
   * same-origin URLs of the response's Location and Content-Location (RFC 9111 §4.4), as a purge of
   * those paths does; the response's end waits for it, so the client's next GET is not served the old
   * page by nginx.
   * @default ['GET', 'HEAD', 'OPTIONS', 'TRACE']
   */
  safeMethods?: readonly string[];
  /**
   * Several hosts: `purge()` publishes to the fleet's Redis stream (each host's `prerender agent`
   * applies it) and, by default, waits until every live host has. Whether configured or not, a root
   * that has an agent stores only while that agent is current (see the README, "Several hosts").
   */
  fleet?: FleetOptions;
  /** Where warnings go (throttled per kind of fault). @default stderr */
  log?: Logger;
  /**
   * Miss coalescing: concurrent requests for one uncached page that could share a stored page (same
   * URL path, GET, no Authorization or bypass cookie, same Host in multi-site mode) wait for the
   * first one's response and get its status, headers and bytes, so a stampede costs one render. When
   * that response turns out not storable, each waiter goes to the app itself. The first response's
   * body is held in memory while it is written (at most 8 MiB or `maxBodyBytes`, 64 MiB across all;
   * a larger one is not shared) and kept for 1 s for requests that arrive just after it finished,
   * unless a purge or its expiry came since it rendered.
   * @default true
   */
  coalesce?: boolean;
  /** Told about every store and skip; for metrics and debugging. */
  onEvent?: (event: CacheEvent) => void;
}

/**
 * `dropped`: a storable response passed through unstored because the pending stores held
 * `maxPendingBytes` (`cache.stats().dropped` counts them too).
 */
export type CacheEvent =
  | { type: 'stored'; urlPath: string; file: string; bytes: number }
  | { type: 'skipped'; urlPath: string; reason: string }
  | { type: 'dropped'; urlPath: string; reason: string };

export type Handler = (req: IncomingMessage, res: ServerResponse) => void;
export type Middleware = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => void;

export interface Cache {
  readonly root: string;
  /** Connect / Express / polka middleware. */
  middleware(): Middleware;
  /** Wraps a plain node:http handler. */
  wrap(handler: Handler): Handler;
  /**
   * Removes (or, with `refresh`, re-fetches in place) the selected files. Once it resolves, no render
   * that started before it can store its result.
   */
  purge(selector: PurgeSelector, options?: FleetPurgeOptions): Promise<FleetPurgeResult>;
  /** Removes (or refreshes) expired files and compacts the index. */
  sweep(options?: SweepOptions): Promise<SweepResult>;
  /**
   * What this cache did since it was created (in this process): stored, skipped by reason, dropped,
   * bytes, purges, refreshes, coalesced requests, and the stores pending now.
   */
  stats(): CacheStats;
  /** The same as Prometheus text exposition format 0.0.4. */
  metrics(): string;
  /**
   * A handler answering `text/plain; version=0.0.4` with `metrics()`, for a scrape route:
   * `app.get('/metrics', cache.metricsHandler())`. Keep that route away from the public.
   */
  metricsHandler(): Handler;
  /** Resolves once every response captured so far has been stored or skipped. */
  idle(): Promise<void>;
  /** Stops the sweep and expiry timers and waits for pending stores. */
  close(): Promise<void>;
}

export function createCache(options: CacheOptions): Cache {
  const { maxBodyBytes, bypassCookies, sweepIntervalMs, expiryCheckMs, refreshOrigin, maxRenderMs, safeMethods, maxPendingBytes, precompress, hosts, multiSite } = resolveCacheOptions(options);

  const rootOptions = { durable: options.durable ?? true, maxRenderMs, precompress };
  const base = new CacheRoot(options.root, rootOptions);
  // Multi-site: each allowlisted host is a cache root of its own at <root>/<host>, which nginx serves
  // as `root <root>/$host`, so every single-site tool works on it unchanged.
  const roots = new Map<string | undefined, CacheRoot>(multiSite && hosts !== undefined
    ? [...hosts].map((host) => [host, new CacheRoot(path.join(base.root, host), { ...rootOptions, rootMayBeLink: false })])
    : [[undefined, base]]);
  const rootFor = (host: string | undefined): CacheRoot => roots.get(multiSite ? host : undefined) ?? base;
  const warn = throttledLogger(options.log ?? consoleLogger);
  const fleet = createFleetLink([...roots.values()].map((root) => root.root), checkFleetOptions(options.fleet), (message) => (options.log ?? consoleLogger)(message));
  const pending = new Set<Promise<void>>();
  const budget = new ByteBudget(maxPendingBytes);
  /** Bodies being captured or waiting to be stored. */
  let open = 0;
  const stats = new StatsRecorder(() => ({ pending: open, pendingBytes: budget.held }));
  const emit = (event: CacheEvent): void => {
    if (event.type === 'stored') stats.stored(event.bytes);
    else stats.skipped(event.reason);
    options.onEvent?.(event);
  };
  // Start-up work (state directory, stale temp files) happens now, off any response.
  for (const root of roots.values()) {
    root.init().catch((error: unknown) => warn('init', `cache root ${root.root} is not usable yet`, error));
  }

  const context: CaptureContext = {
    rules: { bypassCookies, ...(hosts === undefined ? {} : { hosts }) },
    safeMethods: new Set(safeMethods),
    async invalidate(targets, hostHeader) {
      const host = normalizeHost(hostHeader);
      const root = multiSite ? (host === undefined ? undefined : roots.get(host)) : base;
      if (root === undefined) return;
      try {
        // On a fleet the other hosts hold the same page: the invalidation travels like any purge.
        if (options.fleet !== undefined && !multiSite) {
          await fleet.publish({ paths: targets }, {});
          return;
        }
        await root.store.init();
        await purge(root, { paths: targets });
      } catch (error) {
        warn('invalidate', `could not invalidate ${targets.join(', ')} under ${root.root} after an unsafe request`, error);
      }
    },
    saturated: () => budget.held + PENDING_PAGE_BYTES > budget.limit,
    maxBodyBytes,
    openBody() {
      open++;
      return new PageBody(budget);
    },
    release(body) {
      open--;
      body.discard();
    },
    skip(urlPath, reason, error) {
      if (reason === BUSY) {
        warn('busy', `storing falls behind the traffic: pending stores hold ${maxPendingBytes} bytes (maxPendingBytes); responses pass through unstored until it catches up`);
        emit({ type: 'dropped', urlPath, reason });
        return;
      }
      if (error !== undefined) warn(`skip:${(error as { code?: string }).code ?? 'error'}`, `not caching ${urlPath}: ${reason}`);
      emit({ type: 'skipped', urlPath, reason });
    },
    store(body, target, response, renderedAt, host) {
      const root = rootFor(host);
      const bytes = body.bytes;
      const gate = fleet.verdict(root.root);
      if (!gate.storing) {
        open--;
        body.discard();
        options.onEvent?.({ type: 'skipped', urlPath: target.urlPath, reason: `not storing: ${gate.reason}` });
        return;
      }
      const task = root.commit(body, entryFor(target, response, renderedAt, bytes)).then((result) => {
        if (result.stored) emit({ type: 'stored', urlPath: target.urlPath, file: target.file, bytes });
        else emit({ type: 'skipped', urlPath: target.urlPath, reason: result.reason });
      }, (error: unknown) => {
        const code = isErrno(error) ? error.code : 'error';
        warn(`store:${code}`, `could not store ${target.urlPath} under ${root.root} (${code}); responses are unaffected`, error);
        emit({ type: 'skipped', urlPath: target.urlPath, reason: `store failed: ${code}` });
      }).finally(() => {
        open--;
        pending.delete(task);
      });
      pending.add(task);
    },
  };

  const eachRoot = async <T extends PurgeResult>(run: (root: CacheRoot, host: string | undefined) => Promise<T | undefined>): Promise<PurgeResult> => {
    const merged: PurgeResult = { removed: [], refreshed: [], failed: [] };
    for (const [host, root] of roots) {
      await root.store.init();
      const result = await run(root, host);
      if (result === undefined) continue;
      const prefix = host === undefined ? '' : `${host}/`;
      merged.removed.push(...result.removed.map((file) => prefix + file));
      merged.refreshed.push(...result.refreshed.map((file) => prefix + file));
      merged.failed.push(...result.failed.map((failure) => ({ ...failure, file: prefix + failure.file })));
    }
    return merged;
  };

  let sweeping: Promise<unknown> | undefined;
  const timer = sweepIntervalMs === 0 ? undefined : setInterval(() => {
    sweeping ??= eachRoot((root) => sweep(root)).then((result) => stats.purged(result, false))
      .catch((error: unknown) => warn('sweep', `sweep of ${base.root} failed`, error))
      .finally(() => {
        sweeping = undefined;
      });
  }, sweepIntervalMs);
  timer?.unref();
  const expiry = expiryCheckMs === 0 ? undefined : expiryTimer([...roots], {
    intervalMs: expiryCheckMs,
    ...(refreshOrigin === undefined ? {} : { refreshOrigin }),
    warn: (error) => warn('expiry', `acting on expiry under ${base.root} failed`, error),
  });

  const idle = async (): Promise<void> => {
    while (pending.size > 0) await Promise.allSettled([...pending]);
  };

  const coalescer = options.coalesce === false ? undefined : createCoalescer({
    rules: context.rules,
    multiSite,
    maxBodyBytes,
    onCoalesced: (shared) => stats.coalesce(shared),
    stale: async (host, target, tags, renderedAt) => (await rootFor(host).invalidations.staleReason(renderedAt, { file: target.file, urlPath: target.urlPath, tags })) !== undefined,
  });
  const run = (req: IncomingMessage, res: ServerResponse, app: () => void): void => {
    if (coalescer === undefined) {
      attach(req, res, context);
      app();
    } else coalescer.handle(req, res, () => attach(req, res, context), app);
  };

  return {
    root: base.root,
    middleware: () => (req, res, next) => run(req, res, () => next?.()),
    wrap: (handler) => (req, res) => run(req, res, () => handler(req, res)),
    purge: async (selector, purgeOptions) => {
      if (options.fleet !== undefined) return fleet.publish(selector, purgeOptions ?? {});
      const result = await eachRoot(async (root, host) => {
        const scoped = scopeToHost(selector, host);
        return scoped === undefined ? undefined : purge(root, scoped, purgeOptions);
      });
      if (purgeOptions?.dryRun !== true) stats.purged(result, true);
      return result;
    },
    sweep: async (sweepOptions) => {
      let orphans = 0;
      const merged = await eachRoot(async (root) => {
        const result = await sweep(root, sweepOptions);
        orphans += result.orphans;
        return result;
      });
      stats.purged(merged, false);
      return { ...merged, orphans };
    },
    stats: () => stats.snapshot(),
    metrics: () => prometheusText(stats.snapshot()),
    metricsHandler: () => metricsHandler(() => stats.snapshot()),
    idle,
    async close() {
      clearInterval(timer);
      await expiry?.stop();
      await sweeping;
      await idle();
      await fleet.close();
    },
  };
}

/**
 * In multi-site mode a purge applies to every host, except that a path written as an absolute URL
 * names its own host. Undefined when nothing of the selector concerns `host`.
 */
function scopeToHost(selector: PurgeSelector, host: string | undefined): PurgeSelector | undefined {
  if (host === undefined || selector.paths === undefined) return selector;
  const paths = selector.paths.filter((entry) => {
    const url = splitAbsoluteUrl(entry);
    return url === undefined || url.authority.toLowerCase() === host || normalizeHost(url.authority) === host;
  });
  const scoped = { ...selector, paths };
  const empty = paths.length === 0 && selector.tags === undefined && selector.prefix === undefined && selector.glob === undefined && selector.all !== true;
  return empty ? undefined : scoped;
}
