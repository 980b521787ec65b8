/**
 * Invalidation journals read by many checks at once in one process (a crawl or a busy server commits
 * several pages concurrently): no check may throw, skip a record or miss one appended before it began.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { Invalidations } from '../src/invalidation.js';
import { removeDir, tempDir } from './helpers.js';

const concurrent = suite('invalidation checks running concurrently');

concurrent('every check sees every purge recorded before it began, however the reads interleave', async () => {
  const dir = await tempDir();
  try {
    const root = path.join(dir, 'cache');
    const writer = new Invalidations(path.join(root, '.prerender'), root, 600_000);
    const reader = new Invalidations(path.join(root, '.prerender'), root, 600_000);
    const renderedAt = Date.now();
    for (let round = 0; round < 40; round++) {
      await writer.recordTags([`tag-${round}`], renderedAt + 1);
      const checks = await Promise.all(Array.from({ length: 16 }, (_, i) =>
        reader.staleReason(renderedAt, { file: `f${i}`, urlPath: `/f${i}`, tags: [`tag-${round}`] })));
      for (const reason of checks) assert.is(reason, `tag tag-${round} was purged while it rendered`);
    }
    // Nothing skipped: every tag recorded so far is still known to the reader.
    for (let round = 0; round < 40; round++) {
      assert.ok(await reader.staleReason(renderedAt, { file: 'x', urlPath: '/x', tags: [`tag-${round}`] }), `tag-${round}`);
    }
  } finally {
    await removeDir(dir);
  }
});

concurrent.run();
