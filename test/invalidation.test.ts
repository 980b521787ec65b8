/**
 * Invalidation journals read by many checks at once in one process (a crawl or a busy server commits
 * several pages concurrently): no check may throw, skip a record or miss one appended before it began.
 * And shared by processes whose maxRenderMs differ: each sees the others' records, and no prune deletes
 * a journal another process may still check against.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Invalidations } from '../src/invalidation.js';
import { removeDir, tempDir } from './helpers.js';
import { HOST_TAG } from '../src/owner.js';

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

// ---

const shared = suite('processes with different maxRenderMs sharing one root');
const HOUR = 3_600_000;

async function journals(invalidations: Invalidations): Promise<number> {
  return (await fs.readdir(invalidations.dir)).filter((name) => name.endsWith('.log')).length;
}

shared('a purge recorded by one is seen by the others', async () => {
  const dir = await tempDir();
  try {
    const root = path.join(dir, 'cache');
    const state = path.join(root, '.prerender');
    const renderedAt = Date.now() - 5;
    await new Invalidations(state, root, 600_000).recordTags(['post:1'], renderedAt + 1);
    for (const maxRenderMs of [50, 60_000, 600_000, 3 * HOUR]) {
      const reason = await new Invalidations(state, root, maxRenderMs).staleReason(renderedAt, { file: 'p', urlPath: '/p', tags: ['post:1'] });
      assert.is(reason, 'tag post:1 was purged while it rendered', `maxRenderMs ${maxRenderMs}`);
    }
  } finally {
    await removeDir(dir);
  }
});

shared('a prune keeps journals as long as the longest maxRenderMs declared, and no longer', async () => {
  const dir = await tempDir();
  try {
    const root = path.join(dir, 'cache');
    const state = path.join(root, '.prerender');
    const now = Date.now();
    const impatient = new Invalidations(state, root, 50);
    await impatient.declareRetention();
    const record = async (): Promise<void> => {
      await impatient.recordTags(['ancient'], now - 5 * HOUR);
      await impatient.recordTags(['old'], now - 2 * HOUR);
      await impatient.recordTags(['recent'], now - 1000);
    };
    await record();
    assert.is(await journals(impatient), 3);
    await impatient.prune(now);
    assert.is(await journals(impatient), 1, 'alone, the impatient process keeps only the recent journal');

    const patient = new Invalidations(state, root, 3 * HOUR);
    await patient.declareRetention();
    await record();
    await impatient.prune(now);
    assert.is(await journals(impatient), 2, 'the 2-hour-old journal is kept for the 3-hour process; the 5-hour-old one goes');
    const reason = await patient.staleReason(now - 2 * HOUR - 1000, { file: 'p', urlPath: '/p', tags: ['old'] }, now);
    assert.is(reason, 'tag old was purged while it rendered', 'the patient process still sees the purge its render straddles');
  } finally {
    await removeDir(dir);
  }
});

shared('a root reached through a symlink that switches trees (crawl --swap): the new tree\'s journal is read from its start', async () => {
  const dir = await tempDir();
  try {
    const [treeA, treeB] = [path.join(dir, 'a'), path.join(dir, 'b')];
    const current = path.join(dir, 'current');
    await fs.symlink(treeA, current);
    const app = new Invalidations(path.join(current, '.prerender'), current, 600_000);
    const renderedAt = Date.now() - 5;
    const target = { file: 'p/index.html', urlPath: '/p', tags: ['t'] };
    // Tree A's journal grows longer than tree B's will be.
    await new Invalidations(path.join(treeA, '.prerender'), treeA, 600_000).recordTags(['one', 'two', 'three', 'four', 'five', 'six'], renderedAt + 1);
    assert.is(await app.staleReason(renderedAt, target), undefined);
    await fs.symlink(treeB, `${current}.new`);
    await fs.rename(`${current}.new`, current);
    await new Invalidations(path.join(treeB, '.prerender'), treeB, 600_000).recordTags(['t'], renderedAt + 2);
    assert.is(await app.staleReason(renderedAt, target), 'tag t was purged while it rendered');
  } finally {
    await removeDir(dir);
  }
});

shared('a declaration nobody renewed for a week no longer keeps journals', async () => {
  const dir = await tempDir();
  try {
    const root = path.join(dir, 'cache');
    const state = path.join(root, '.prerender');
    const now = Date.now();
    const gone = new Invalidations(state, root, 3 * HOUR);
    await gone.declareRetention();
    const weekAgo = new Date(now - 8 * 24 * HOUR);
    await fs.utimes(path.join(gone.dir, `retain-${3 * HOUR}`), weekAgo, weekAgo);
    const pruner = new Invalidations(state, root, 50);
    await pruner.recordTags(['old'], now - 2 * HOUR);
    await pruner.recordTags(['recent'], now - 1000);
    await pruner.prune(now);
    assert.is(await journals(pruner), 1, 'only the recent journal is left');
    assert.equal((await fs.readdir(pruner.dir)).filter((name) => name.startsWith('retain-')), [], 'the stale declaration is gone');
  } finally {
    await removeDir(dir);
  }
});

shared('a hold of a process that is gone keeps nothing', async () => {
  const dir = await tempDir();
  try {
    const root = path.join(dir, 'cache');
    const invalidations = new Invalidations(path.join(root, '.prerender'), root, 50);
    const now = Date.now();
    await invalidations.recordTags(['held'], now - 2 * HOUR);
    await invalidations.prune(now);
    assert.is(await journals(invalidations), 0, 'without a hold the journal goes');
    await invalidations.recordTags(['held'], now - 2 * HOUR);
    // A dead process of this host (pid 2^22 + 1 is above Linux's pid_max) held it.
    await fs.writeFile(path.join(invalidations.dir, `hold-${now - 3 * HOUR}-4194305-00000000-${HOST_TAG}-hold-1`), '');
    await invalidations.prune(now);
    assert.is(await journals(invalidations), 0, 'a dead owner\'s hold keeps nothing');
    assert.equal((await fs.readdir(invalidations.dir)).filter((name) => name.startsWith('hold-')), [], 'and it is removed');
  } finally {
    await removeDir(dir);
  }
});

shared('a hold keeps journals from its time on past any retention, until it is released', async () => {
  const dir = await tempDir();
  try {
    const root = path.join(dir, 'cache');
    const invalidations = new Invalidations(path.join(root, '.prerender'), root, 50);
    const now = Date.now();
    await invalidations.recordTags(['older'], now - 3 * HOUR);
    await invalidations.recordTags(['held'], now - 2 * HOUR);
    const release = await invalidations.hold(now - 2 * HOUR - 1000);
    await invalidations.prune(now);
    assert.is(await journals(invalidations), 1, 'the journal from the hold on stays; the older one goes');
    const purged = await invalidations.since(now - 2 * HOUR - 1000, now);
    assert.equal([...purged.tags.keys()], ['held']);
    await release();
    await invalidations.prune(now);
    assert.is(await journals(invalidations), 0);
  } finally {
    await removeDir(dir);
  }
});

shared('a record torn inside a multi-byte character does not misalign the next read', async () => {
  const dir = await tempDir();
  try {
    const root = path.join(dir, 'cache');
    const state = path.join(root, '.prerender');
    const reader = new Invalidations(state, root, 600_000);
    await reader.declareRetention();
    const at = Date.now();
    const journal = path.join(reader.dir, `${Math.floor(at / 600_000)}.log`);
    // A purge of tag "café" cut after the first byte of "é" (a full disk, a kill), then written again
    // whole, as append() retries.
    const record = Buffer.from(`\n${at} tag "café"\n`);
    await fs.writeFile(journal, Buffer.concat([record.subarray(0, record.indexOf(0xc3) + 1), record]));
    const target = { file: 'p/index.html', urlPath: '/p', tags: ['café'] };
    assert.is(await reader.staleReason(at - 5, target, at + 1), 'tag café was purged while it rendered');
    await fs.appendFile(journal, `\n${at} tag "news"\n`);
    assert.is(await reader.staleReason(at - 5, { ...target, tags: ['news'] }, at + 2), 'tag news was purged while it rendered');
  } finally {
    await removeDir(dir);
  }
});

shared('a long-lived process forgets the journals its checks can no longer reach', async () => {
  const dir = await tempDir();
  try {
    const root = path.join(dir, 'cache');
    const state = path.join(root, '.prerender');
    const app = new Invalidations(state, root, 600_000);
    const cli = new Invalidations(state, root, 600_000);
    const start = Date.now();
    const target = { file: 'p/index.html', urlPath: '/p', tags: [] };
    // Two days of hourly sweeps run by another process, each recording expired files.
    for (let hour = 0; hour < 48; hour++) {
      const at = start + hour * HOUR;
      await cli.recordFiles(Array.from({ length: 100 }, (_, i) => `page/${hour}/${i}/index.html`), at);
      assert.is(await app.staleReason(at, target, at + 1), undefined);
      await cli.prune(at + 1);
    }
    assert.ok(app.bucketsHeld <= 2, `${app.bucketsHeld} buckets still held`);
  } finally {
    await removeDir(dir);
  }
});

shared.run();
