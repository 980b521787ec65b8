/**
 * The tag index under real concurrency: several writer processes, purges while they write, a writer
 * killed with SIGKILL mid-write.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CacheRoot } from '../src/cache-root.js';
import { createCache } from '../src/index.js';
import { purge } from '../src/purge.js';
import { killMidWrite, listFiles, readMeta, removeDir, repoRoot, request, runCli, runNode, sleep, startServer, tempDir } from './helpers.js';

interface Written {
  file: string;
  tags: string[];
  stored: boolean;
  renderedAt: number;
}

const writerScript = path.join(repoRoot, 'test', 'workers', 'writer.ts');

async function runWriter(root: string, name: string, count: number): Promise<Written[]> {
  const result = await runNode(['--import', 'tsx', writerScript, root, name, String(count)]);
  if (result.code !== 0) throw new Error(`writer ${name} exited ${result.code}: ${result.stderr}`);
  return JSON.parse(result.stdout) as Written[];
}

// ---

const concurrent = suite('concurrent writers and purges lose no index entry');

concurrent('4 writer processes x 1500 pages while purges of one tag run', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  const cacheRoot = new CacheRoot(root);
  await cacheRoot.store.init();
  try {
    const writers = Promise.all(['w0', 'w1', 'w2', 'w3'].map((name) => runWriter(root, name, 1500)));
    let finished = false;
    void writers.finally(() => {
      finished = true;
    });
    let purges = 0;
    while (!finished) {
      await purge(cacheRoot, { tags: ['victim'] });
      purges++;
      await sleep(5);
    }
    const written = (await writers).flat();
    assert.ok(purges >= 3, `purges ran during the writes: ${purges}`);
    assert.ok(written.filter((w) => !w.tags.includes('victim')).every((w) => w.stored), 'every page without the purged tag was stored');
    const refusedVictims = written.filter((w) => w.tags.includes('victim') && !w.stored).length;
    process.stdout.write(` [${purges} purges; ${refusedVictims} victim renders refused as purged mid-render] `);

    // Every file on disk is listed under every one of its tags.
    const onDisk = new Set(await listFiles(root));
    const byTag = new Map<string, Set<string>>();
    for (const entry of written) {
      if (!onDisk.has(entry.file)) continue;
      for (const tag of entry.tags) {
        if (!byTag.has(tag)) byTag.set(tag, new Set(await cacheRoot.tags.files(tag)));
        assert.ok(byTag.get(tag)?.has(entry.file), `${entry.file} is indexed under ${tag}`);
      }
    }
    // Only victim files were ever removed.
    const bystanders = written.filter((w) => w.stored && !w.tags.includes('victim'));
    assert.ok(bystanders.every((w) => onDisk.has(w.file)), 'no bystander was removed');

    // A purge after the dust settles removes every victim and nothing else.
    await purge(cacheRoot, { tags: ['victim'] });
    const after = new Set(await listFiles(root));
    assert.ok(written.filter((w) => w.tags.includes('victim')).every((w) => !after.has(w.file)), 'no victim file survives');
    assert.is(after.size, bystanders.length);
  } finally {
    await removeDir(dir);
  }
});

concurrent.run();

// ---

const killed = suite('a writer killed with SIGKILL mid-write');

killed('leaves no partial file, the index still reads, temp files are cleaned, later writes and purges work', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  try {
    const tempDir = new CacheRoot(root).store.tempDir;
    for (let round = 0; round < 3; round++) {
      const existing = await fs.readdir(tempDir).catch(() => [] as string[]);
      const child = spawn(process.execPath, ['--import', 'tsx', writerScript, root, `k${round}`, '20', '--loop'], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
      await new Promise<void>((resolve) => child.stdout.once('data', () => resolve()));
      // Killed mid-write, provably: between writes, the checks below would pass having tested nothing.
      await killMidWrite(child, tempDir, { existing });
    }
    for (const file of await listFiles(root)) {
      const content = await fs.readFile(path.join(root, file), 'latin1');
      assert.ok(content.startsWith('<!doctype html>') && content.endsWith('</html>'), `${file} is complete`);
      assert.ok(content.length === 300 || content.length === 2 * 1024 * 1024, `${file} has a full size: ${content.length}`);
    }
    const cacheRoot = new CacheRoot(root);
    await cacheRoot.store.init();
    assert.equal(await fs.readdir(cacheRoot.store.tempDir), [], 'temp files of the dead writers were removed');
    const victims = await cacheRoot.tags.files('victim');
    assert.ok(victims.length > 0, 'the index reads');
    const result = await purge(cacheRoot, { tags: ['writer:k0', 'writer:k1', 'writer:k2'] });
    assert.ok(result.removed.length > 0);
    assert.equal(await listFiles(root), []);
  } finally {
    await removeDir(dir);
  }
});

killed('a torn record in a tag log is skipped and does not hide the next one', async () => {
  const dir = await tempDir();
  try {
    const cacheRoot = new CacheRoot(path.join(dir, 'cache'));
    await cacheRoot.store.init();
    await cacheRoot.tags.append('t', [{ file: 'a/index.html', urlPath: '/a/' }]);
    await fs.appendFile(cacheRoot.tags.logPath('t'), '\nb/index.html\t123'); // torn: bad checksum, no newline
    await cacheRoot.tags.append('t', [{ file: 'c/index.html', urlPath: '/c' }]);
    await fs.appendFile(cacheRoot.tags.logPath('t'), '\ngarbage without a tab');
    assert.equal((await cacheRoot.tags.files('t')).sort(), ['a/index.html', 'c/index.html']);
  } finally {
    await removeDir(dir);
  }
});

killed.run();

// ---

const hostileTags = suite('hostile tags through the middleware');

hostileTags('huge headers, thousands of tags, control characters, unicode, case variants, path-like tags', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  const warnings: string[] = [];
  const cache = createCache({ root, log: (message) => warnings.push(message) });
  const tagsFor: Record<string, string> = {
    '/many': Array.from({ length: 1000 }, (_, i) => `tag-number-${String(i).padStart(5, '0')}`).join(', '),
    '/too-many': Array.from({ length: 1001 }, (_, i) => `t${i}`).join(','),
    '/longest': 'x'.repeat(1024),
    '/too-long': 'y'.repeat(1025),
    '/control': 'fine, not\tfine',
    '/unicode': Buffer.from('Café, 日本語').toString('latin1'),
    '/cases': 'Foo, FOO, foo',
    '/paths': '../../etc/passwd, /.prerender/tags, ..',
  };
  const app = await startServer(cache.wrap((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Cache-Tag': tagsFor[req.url ?? ''] ?? '' });
    res.end('<p>tagged</p>');
  }));
  try {
    for (const target of Object.keys(tagsFor)) {
      const reply = await request(app.port, target);
      assert.is(reply.status, 200);
      assert.is(reply.headers['cache-tag'], undefined);
    }
    await cache.idle();
    assert.ok((tagsFor['/many'] ?? '').length > 16 * 1024, 'a 16 KB+ header');
    assert.equal(await listFiles(root), ['cases/index.html', 'longest/index.html', 'many/index.html', 'paths/index.html', 'unicode/index.html']);
    assert.is(warnings.length, 1, 'one warning for the kind of fault, not one per response');

    const index = new CacheRoot(root);
    for (let i = 0; i < 1000; i += 37) assert.equal(await index.tags.files(`tag-number-${String(i).padStart(5, '0')}`), ['many/index.html']);
    assert.equal(await index.tags.files('foo'), ['cases/index.html']);
    assert.equal(await index.tags.files('../../etc/passwd'), ['paths/index.html']);
    const meta = await readMeta(index, 'cases/index.html');
    assert.equal(meta?.tags, ['foo']);

    const unicode = await runCli(['purge', '--tag', 'CAFÉ', '--json', '--root', root]);
    assert.equal((JSON.parse(unicode.stdout) as { removed: string[] }).removed, ['unicode/index.html']);
    const pathLike = await runCli(['purge', '--tag', '/.prerender/tags', '--json', '--root', root]);
    assert.equal((JSON.parse(pathLike.stdout) as { removed: string[] }).removed, ['paths/index.html']);
    const many = await runCli(['purge', '--tag', 'TAG-NUMBER-00999', '--root', root]);
    assert.is(many.code, 0);
    assert.equal(await listFiles(root), ['cases/index.html', 'longest/index.html']);
    assert.equal((await listFiles(dir, { includeState: true })).filter((file) => !file.startsWith('cache/')), []);
  } finally {
    await app.close();
    await removeDir(dir);
  }
});

hostileTags.run();
