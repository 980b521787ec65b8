/**
 * The meta index (src/store/meta-log.ts): records appended per batch to segments, counted only for
 * the version of the file they name, compacted while writers append, and never lost to a compaction.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CacheRoot } from '../src/cache-root.js';
import { purge } from '../src/purge.js';
import { sweep } from '../src/sweep.js';
import { listFiles, readMeta, removeDir, repoRoot, runNode, storePage, tempDir } from './helpers.js';

const writerScript = path.join(repoRoot, 'test', 'workers', 'writer.ts');

// ---

const records = suite('meta records');

records('a torn record in a segment is skipped and does not hide the next one', async () => {
  const dir = await tempDir();
  try {
    const root = new CacheRoot(path.join(dir, 'cache'));
    await storePage(root, '/a', ['t']);
    const [segment] = await fs.readdir(root.store.metaDir);
    assert.ok(segment !== undefined);
    await fs.appendFile(path.join(root.store.metaDir, segment ?? ''), '\n{"file":"b/index.html","ino":1'); // killed mid-write
    await storePage(root, '/c', ['t']);
    await fs.appendFile(path.join(root.store.metaDir, segment ?? ''), '\n{"not":"a record"}\t0\n');
    const index = await root.store.meta.load();
    assert.equal([...index.files()].sort(), ['a/index.html', 'c/index.html']);
    assert.is((await readMeta(root, 'c/index.html'))?.urlPath, '/c');
  } finally {
    await removeDir(dir);
  }
});

records('of several records for one file, the one for the version in place counts; a purged file has none', async () => {
  const dir = await tempDir();
  try {
    const root = new CacheRoot(path.join(dir, 'cache'));
    await storePage(root, '/p', ['old']);
    await storePage(root, '/p', ['new']);
    assert.equal((await readMeta(root, 'p/index.html'))?.tags, ['new']);
    await purge(root, { paths: ['/p'] });
    assert.is(await readMeta(root, 'p/index.html'), undefined);
    assert.is((await sweep(root)).orphans, 2, 'both records dropped by the sweep\'s compaction');
  } finally {
    await removeDir(dir);
  }
});

records('a symlink in place of a segment is neither read nor followed by a compaction', async () => {
  const dir = await tempDir();
  try {
    const root = new CacheRoot(path.join(dir, 'cache'));
    await storePage(root, '/a');
    const victim = path.join(dir, 'victim.log');
    const text = '\n{"file":"a/index.html","ino":1,"birth":0,"storedAt":1,"tags":[]}\t0\n';
    await fs.writeFile(victim, text);
    await fs.symlink(victim, path.join(root.store.metaDir, 'planted.log'));
    await root.store.meta.compact();
    assert.is(await fs.readFile(victim, 'utf8'), text, 'the target is untouched');
    assert.ok((await readMeta(root, 'a/index.html')) !== undefined, 'the real record survives');
  } finally {
    await removeDir(dir);
  }
});

records.run();

// ---

const concurrent = suite('compactions while writer processes append lose no record');

concurrent('3 writer processes x 1000 pages while the meta index is compacted over and over', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  const cacheRoot = new CacheRoot(root);
  await cacheRoot.store.init();
  try {
    const writers = Promise.all(['w0', 'w1', 'w2'].map(async (name) => {
      const result = await runNode(['--import', 'tsx', writerScript, root, name, '1000']);
      if (result.code !== 0) throw new Error(`writer ${name} exited ${result.code}: ${result.stderr}`);
      return JSON.parse(result.stdout) as Array<{ file: string; stored: boolean }>;
    }));
    let finished = false;
    void writers.finally(() => {
      finished = true;
    });
    let compactions = 0;
    let dropped = 0;
    while (!finished) {
      dropped += await cacheRoot.store.meta.compact();
      compactions++;
    }
    const written = (await writers).flat();
    process.stdout.write(` [${compactions} compactions; ${dropped} records dropped, of pages not yet placed or gone] `);
    assert.ok(compactions >= 3, `compactions ran during the writes: ${compactions}`);
    // Whether a compaction met records of pages not yet placed depends on timing (0 in one CI run);
    // that path is made to happen, deterministically, in commit.test.ts (segments taken before the renames).
    const onDisk = await listFiles(root);
    assert.is(onDisk.length, 3000, 'every page stored');
    const index = await cacheRoot.store.meta.load();
    const missing: string[] = [];
    for (const file of onDisk) if (index.current(file, await cacheRoot.store.fileStats(file)) === undefined) missing.push(file);
    assert.equal(missing, [], 'every page on disk has the record of its version');
    assert.ok(written.every((entry) => entry.stored));
  } finally {
    await removeDir(dir);
  }
});

concurrent.run();
