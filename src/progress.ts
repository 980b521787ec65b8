/**
 * Crawl progress on stderr: a redrawn bar on a TTY, a plain line every few seconds otherwise (CI logs).
 */
import type { CrawlProgress } from './crawl/crawl.js';

export interface ProgressOutput {
  write(text: string): void;
  isTTY: boolean;
}

export function progressReporter(output: ProgressOutput, intervalMs = output.isTTY ? 100 : 5000): { update(progress: CrawlProgress): void; finish(): void } {
  // The first line comes one interval in: a crawl that ends sooner prints only its final line.
  let last = Date.now();
  let latest: CrawlProgress | undefined;
  const render = (progress: CrawlProgress): string => {
    const rate = progress.done / Math.max(progress.elapsedMs / 1000, 0.001);
    const remaining = Math.max(progress.seen - progress.done, 0);
    const eta = rate > 0 ? `${Math.ceil(remaining / rate)}s` : '?';
    const counts = `${progress.done}/${progress.seen} ${rate.toFixed(1)}/s stored ${progress.stored} skipped ${progress.skipped} failed ${progress.failed}`;
    if (!output.isTTY) return `crawl: ${counts}\n`;
    const width = 24;
    const filled = progress.seen === 0 ? 0 : Math.round((progress.done / progress.seen) * width);
    return `\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${counts} eta ${eta}\u001b[K`;
  };
  return {
    update(progress) {
      latest = progress;
      const now = Date.now();
      if (now - last < intervalMs) return;
      last = now;
      output.write(render(progress));
    },
    finish() {
      if (latest === undefined) return;
      output.write(output.isTTY ? `${render(latest)}\n` : render(latest));
    },
  };
}
