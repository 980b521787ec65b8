/**
 * The soak, short: 15 seconds of mixed traffic through nginx with purges and crawls running. The long
 * version is `npm run soak` (SOAK_SECONDS, default 180).
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { nginxAvailable } from './helpers.js';
import { runSoak } from './soak/soak.js';

const soak = suite('soak (short)');

(nginxAvailable() ? soak : soak.skip)('no errors, flat RSS and descriptors, a bounded index that matches the disk', async () => {
  const report = await runSoak({ durationMs: 15_000, maxRequests: 20_000, concurrency: 8, minPurges: 3, minCrawls: 1 });
  assert.equal(report.errors.slice(0, 5), []);
  assert.ok(report.requests > 500, `requests: ${report.requests}`);
  assert.ok(report.purges >= 3 && report.crawls >= 1, `purges ${report.purges}, crawls ${report.crawls}`);
  assert.ok(report.rss.late < report.rss.early * 1.5 + 16 * 1024 * 1024, `RSS ${report.rss.early} -> ${report.rss.late}`);
  assert.ok(report.fds.idle <= report.fds.start + 8, `descriptors ${report.fds.start} before, ${report.fds.idle} after the traffic`);
  assert.equal(report.unindexed.slice(0, 5), []);
  assert.equal(report.dangling.slice(0, 5), []);
  assert.ok(report.indexBytes < report.files * 3 * 200 + 64 * 1024, `index ${report.indexBytes} bytes for ${report.files} files`);
  process.stdout.write(` [${report.requests} requests, ${report.purges} purges, ${report.crawls} crawls, ${report.files} files] `);
});

soak.run();
