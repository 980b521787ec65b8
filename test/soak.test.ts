/**
 * The soak, short: 15 seconds of mixed traffic through nginx with purges and crawls running. The long
 * version is `npm run soak` (SOAK_SECONDS, default 180).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nginxAvailable } from './helpers.js';
import { runSoak } from './soak/soak.js';

const soak = suite('soak (short)');

// RSS growth is a figure of bench/burst.bench.ts (case f, the same 15 s soak), not a limit here: it moves
// with the machine's load and V8's collection timing. Descriptors and index size are counts: kept.
(nginxAvailable() ? soak : soak.skip)('no errors, no leaked descriptors, a bounded index that matches the disk', async () => {
  const report = await runSoak({ durationMs: 15_000, maxRequests: 20_000, concurrency: 8, minPurges: 3, minCrawls: 1 });
  assert.equal(report.errors.slice(0, 5), []);
  assert.ok(report.requests > 500, `requests: ${report.requests}`);
  assert.ok(report.purges >= 3 && report.crawls >= 1, `purges ${report.purges}, crawls ${report.crawls}`);
  assert.ok(report.fds.idle <= report.fds.start + 8, `descriptors ${report.fds.start} before, ${report.fds.idle} after the traffic`);
  assert.equal(report.unindexed.slice(0, 5), []);
  assert.equal(report.dangling.slice(0, 5), []);
  assert.ok(report.indexBytes < report.files * 3 * 200 + 64 * 1024, `index ${report.indexBytes} bytes for ${report.files} files`);
  process.stdout.write(` [${report.requests} requests, ${report.purges} purges, ${report.crawls} crawls, ${report.files} files] `);
});

soak.run();
