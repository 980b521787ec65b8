/**
 * Stores `count` pages submitted in one turn of the event loop, so the group commit takes them as one
 * batch, each with the tag `t` and an expiry in the same second; prints the number of batches seen.
 * For tracing what one batch costs the index. Usage: node --import tsx test/workers/batch.ts <root> <count>
 */
import { CacheRoot } from '../../src/cache-root.js';
import { setCommitHook } from '../../src/commit.js';
import { PageBody } from '../../src/page-body.js';

const [root, countText] = process.argv.slice(2);
if (root === undefined || countText === undefined) throw new Error('usage: batch.ts <root> <count>');
const cacheRoot = new CacheRoot(root);
await cacheRoot.init();
let batches = 0;
setCommitHook((step) => {
  if (step === 'placed') batches++;
});
const now = Date.now();
const expiresAt = Math.ceil(now / 1000) * 1000 + 3_600_000;
const results = await Promise.all(Array.from({ length: Number(countText) }, (_, index) => {
  const body = new PageBody();
  const bytes = Buffer.from(`<p>page ${index}</p>`);
  body.write(bytes);
  return cacheRoot.commit(body, {
    urlPath: `/b/${index}`, file: `b/${index}/index.html`, tags: ['t'], renderedAt: now, storedAt: now, expiresAt,
    mediaType: 'text/html', size: bytes.length, mtime: Math.floor(now / 1000),
  });
}));
process.stdout.write(`${JSON.stringify({ batches, stored: results.filter((result) => result.stored).length })}\n`);
