/**
 * What a crawl says about itself: its counts, the URLs that failed or were skipped (bounded lists, so
 * a long crawl's report stays small), why it stopped early, and progress as it goes.
 */

export interface CrawlProgress {
  done: number;
  /** Entries known so far: URLs to fetch and source lines or links refused (the source is streamed, so this grows). */
  seen: number;
  stored: number;
  skipped: number;
  failed: number;
  elapsedMs: number;
}

export interface CrawlFailure {
  url: string;
  line?: number;
  status?: number;
  error: string;
  attempts: number;
}

export interface CrawlSkip {
  url: string;
  line?: number;
  status?: number;
  reason: string;
}

export interface CrawlReport {
  origin: string;
  source: string;
  /** The directory written: the root, or the new generation with `swap`. */
  root: string;
  /** With `swap`: whether `current` now points at the new generation. */
  swapped?: boolean;
  /** With `swap`, when the switch was refused although no URL failed: why. */
  notSwapped?: string;
  /**
   * Why the crawl stopped before the end of its source: the file system refused a write in a way every
   * later page would meet too (full, over quota, read-only). Pages in flight were finished; the rest
   * were not fetched.
   */
  stoppedEarly?: string;
  counts: { stored: number; skipped: number; failed: number; bytes: number; total: number };
  durationMs: number;
  failures: CrawlFailure[];
  /** Pages not stored by design (redirects, policy); the first 1,000. */
  skipped: CrawlSkip[];
}

const MAX_SKIPS_LISTED = 1000;
const MAX_FAILURES_LISTED = 10 * MAX_SKIPS_LISTED;

/** Builds a crawl's report as its pages are done, and tells `onProgress`. */
export class ReportBuilder {
  readonly report: CrawlReport;
  private readonly started = Date.now();

  constructor(
    origin: string,
    source: string,
    root: string,
    private readonly onProgress: ((progress: CrawlProgress) => void) | undefined,
  ) {
    this.report = { origin, source, root, counts: { stored: 0, skipped: 0, failed: 0, bytes: 0, total: 0 }, durationMs: 0, failures: [], skipped: [] };
  }

  stored(bytes: number): void {
    this.report.counts.stored++;
    this.report.counts.bytes += bytes;
  }

  skip(skip: CrawlSkip): void {
    this.report.counts.skipped++;
    if (this.report.skipped.length < MAX_SKIPS_LISTED) this.report.skipped.push(skip);
  }

  fail(failure: CrawlFailure): void {
    this.report.counts.failed++;
    if (this.report.failures.length < MAX_FAILURES_LISTED) this.report.failures.push(failure);
  }

  /** The first reason given is kept: it is what stopped the crawl. */
  stopEarly(reason: string): void {
    this.report.stoppedEarly ??= reason;
  }

  get done(): number {
    const { counts } = this.report;
    return counts.stored + counts.skipped + counts.failed;
  }

  /** `seen`: entries known so far (see CrawlProgress). */
  progress(seen: number): void {
    if (this.onProgress === undefined) return;
    const { counts } = this.report;
    this.onProgress({ done: this.done, seen, stored: counts.stored, skipped: counts.skipped, failed: counts.failed, elapsedMs: Date.now() - this.started });
  }

  /** Totals the counts once every page is done. */
  close(): void {
    this.report.counts.total = this.done;
  }

  /** The report, timed up to now. */
  finish(): CrawlReport {
    this.report.durationMs = Date.now() - this.started;
    return this.report;
  }
}
