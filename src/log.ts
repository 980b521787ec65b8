/**
 * Warnings from the cache go to the app's log. A fault that hits every request (disk full, read-only
 * root) must show as one line a minute, not one line a request, so warnings are throttled per key.
 */
export type Logger = (message: string, error?: unknown) => void;

export const consoleLogger: Logger = (message, error) => {
  const detail = error instanceof Error ? `: ${error.message}` : '';
  process.stderr.write(`prerender: ${message}${detail}\n`);
};

export function throttledLogger(log: Logger, intervalMs = 60_000): (key: string, message: string, error?: unknown) => void {
  const last = new Map<string, { at: number; suppressed: number }>();
  return (key, message, error) => {
    const now = Date.now();
    const seen = last.get(key);
    if (seen !== undefined && now - seen.at < intervalMs) {
      seen.suppressed++;
      return;
    }
    const suffix = seen !== undefined && seen.suppressed > 0 ? ` (${seen.suppressed} more like this since the last report)` : '';
    last.set(key, { at: now, suppressed: 0 });
    log(message + suffix, error);
  };
}
