/**
 * What a cache did since it was created: stores, skips by reason, drops, purges, refreshes, miss
 * coalescing, and what is pending now; as an object (`cache.stats()`) and as the Prometheus text
 * exposition format 0.0.4 (`cache.metrics()`, `cache.metricsHandler()`), without a client library:
 * a handful of counters needs no registry.
 *
 * Skip reasons are free text naming the page (`Content-Type text/css where nginx would serve ...`);
 * they are counted under a small fixed set of classes, so a label never grows with the site.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

export interface CacheStats {
  /** Responses stored (files written). */
  stored: number;
  /** Bytes of the responses stored (siblings not counted). */
  bytes: number;
  /** Responses not stored because the rules refuse them, by reason class (`status`, `set-cookie`, ...). */
  skipped: Record<string, number>;
  /**
   * Responses the rules would store that were dropped under load or a fault, by reason class: `busy`
   * (the pending stores held maxPendingBytes), `incomplete` (client gone), `store-failed`, `purged` (a purge
   * came while it rendered), `too-large`.
   */
  dropped: Record<string, number>;
  /** `purge()` calls, and the files they removed. */
  purges: number;
  purgedFiles: number;
  /** Pages refreshed in place (purge or sweep with `refresh`), and refreshes that failed (deleted). */
  refreshes: number;
  refreshFailures: number;
  /** Requests answered with another request's response (miss coalescing), and waiters sent on to the app. */
  coalesced: number;
  coalesceFallbacks: number;
  /** Responses being captured or waiting to be stored right now. */
  pending: number;
  /** Bytes their bodies hold now, against `maxPendingBytes`. */
  pendingBytes: number;
}

/** Reason text (middleware, policy, store) -> [class, whether it is a drop rather than a policy skip]. */
const CLASSES: ReadonlyArray<[RegExp, string, boolean]> = [
  [/^pending stores hold maxPendingBytes/, 'busy', true],
  [/^the response did not complete/, 'incomplete', true],
  [/^store failed/, 'store-failed', true],
  [/purged while it rendered|took longer than maxRenderMs/, 'purged', true],
  [/^body over maxBodyBytes/, 'too-large', true],
  [/^status /, 'status', false],
  [/^Set-Cookie/, 'set-cookie', false],
  [/^Cache-Control/, 'cache-control', false],
  [/^Vary/, 'vary', false],
  [/^Content-Encoding/, 'content-encoding', false],
  [/Content-Type|charset/, 'content-type', false],
  [/already expired/, 'expired', false],
  [/[Tt]ag/, 'tag', false],
  [/Content-Length|body is \d+ bytes/, 'content-length', false],
  [/UTF-8/, 'not-utf8', false],
  [/path|too long|file stands|directory/, 'path', false],
];

export function classifyReason(reason: string): { name: string; dropped: boolean } {
  for (const [pattern, name, dropped] of CLASSES) if (pattern.test(reason)) return { name, dropped };
  return { name: 'other', dropped: false };
}

export class StatsRecorder {
  private readonly counts: Omit<CacheStats, 'pending' | 'pendingBytes'> = {
    stored: 0, bytes: 0, skipped: {}, dropped: {}, purges: 0, purgedFiles: 0, refreshes: 0, refreshFailures: 0, coalesced: 0, coalesceFallbacks: 0,
  };

  constructor(private readonly pending: () => Pick<CacheStats, 'pending' | 'pendingBytes'>) {}

  stored(bytes: number): void {
    this.counts.stored++;
    this.counts.bytes += bytes;
  }

  skipped(reason: string): void {
    const { name, dropped } = classifyReason(reason);
    const into = dropped ? this.counts.dropped : this.counts.skipped;
    into[name] = (into[name] ?? 0) + 1;
  }

  purged(result: { removed: readonly unknown[]; refreshed: readonly unknown[]; failed: readonly unknown[] }, isPurge: boolean): void {
    if (isPurge) this.counts.purges++;
    // A failed refresh deletes the file, which `removed` lists too.
    this.counts.purgedFiles += result.removed.length;
    this.counts.refreshes += result.refreshed.length;
    this.counts.refreshFailures += result.failed.length;
  }

  coalesce(shared: boolean): void {
    if (shared) this.counts.coalesced++;
    else this.counts.coalesceFallbacks++;
  }

  snapshot(): CacheStats {
    return { ...this.counts, skipped: { ...this.counts.skipped }, dropped: { ...this.counts.dropped }, ...this.pending() };
  }
}

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** The Prometheus text exposition (format 0.0.4) of a stats snapshot. */
export function prometheusText(stats: CacheStats): string {
  const lines: string[] = [];
  const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: Array<[labels: string, value: number]>): void => {
    lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [labels, value] of samples) lines.push(`${name}${labels} ${value}`);
  };
  const byReason = (counts: Record<string, number>): Array<[string, number]> =>
    Object.entries(counts).sort(([a], [b]) => a.localeCompare(b)).map(([reason, value]) => [`{reason="${reason}"}`, value]);
  metric('prerender_stored_total', 'counter', 'Responses stored as files.', [['', stats.stored]]);
  metric('prerender_stored_bytes_total', 'counter', 'Bytes of the responses stored.', [['', stats.bytes]]);
  metric('prerender_skipped_total', 'counter', 'Responses the rules do not store, by reason.', byReason(stats.skipped));
  metric('prerender_dropped_total', 'counter', 'Storable responses dropped under load or a fault, by reason.', byReason(stats.dropped));
  metric('prerender_purges_total', 'counter', 'purge() calls.', [['', stats.purges]]);
  metric('prerender_purged_files_total', 'counter', 'Files removed by purges and sweeps.', [['', stats.purgedFiles]]);
  metric('prerender_refreshes_total', 'counter', 'Pages refreshed in place.', [['', stats.refreshes]]);
  metric('prerender_refresh_failures_total', 'counter', 'Refreshes that failed (the page was deleted).', [['', stats.refreshFailures]]);
  metric('prerender_coalesced_total', 'counter', 'Requests answered with a concurrent request\'s response (shared) or sent on to the app (fallback).', [
    ['{outcome="shared"}', stats.coalesced],
    ['{outcome="fallback"}', stats.coalesceFallbacks],
  ]);
  metric('prerender_pending_stores', 'gauge', 'Responses being captured or waiting to be stored.', [['', stats.pending]]);
  metric('prerender_pending_bytes', 'gauge', 'Bytes the bodies of pending stores hold (bounded by maxPendingBytes).', [['', stats.pendingBytes]]);
  return `${lines.join('\n')}\n`;
}

/** A node:http handler answering with the exposition, for a `/metrics` route. */
export function metricsHandler(stats: () => CacheStats): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const body = prometheusText(stats());
    res.writeHead(200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
}
