/**
 * `npm run soak`: the long soak. SOAK_SECONDS (default 180), SOAK_MAX_REQUESTS (default 500000).
 * Prints the report and exits 1 when anything was lost or any request failed.
 */
import { runSoak } from './soak.js';

const seconds = Number(process.env.SOAK_SECONDS ?? 180);
const report = await runSoak({
  durationMs: seconds * 1000,
  maxRequests: Number(process.env.SOAK_MAX_REQUESTS ?? 500_000),
  concurrency: 8,
  log: (line) => process.stderr.write(`${line}\n`),
});
const mb = (bytes: number): string => `${(bytes / 1024 / 1024).toFixed(1)} MB`;
process.stdout.write([
  `soak: ${(report.durationMs / 1000).toFixed(0)} s, ${report.requests} requests ${JSON.stringify(report.byKind)}`,
  `purges ${report.purges}, crawls ${report.crawls}, errors ${report.errors.length}${report.errors.length > 0 ? ` (first: ${report.errors[0]})` : ''}`,
  `app RSS ${mb(report.rss.early)} after warm-up -> ${mb(report.rss.late)} at the end; descriptors ${report.fds.start} before the traffic, ${report.fds.early} -> ${report.fds.late} under load, ${report.fds.idle} once it stopped`,
  `files ${report.files}, index ${report.indexBytes} bytes; unindexed ${report.unindexed.length}, dangling ${report.dangling.length}`,
].join('\n') + '\n');
const failed = report.errors.length > 0 || report.unindexed.length > 0 || report.dangling.length > 0 || report.fds.idle > report.fds.start + 8;
process.exitCode = failed ? 1 : 0;
