/**
 * The write path's file-system calls: missing files are answers, other errors keep their errno code,
 * and a cache root writing through them leaves the same files on disk.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { constants as fsConstants } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CacheRoot, entryFor } from '../src/cache-root.js';
import { fileIo } from '../src/store/file-io.js';
import type { StorableResponse } from '../src/policy.js';
import { toCachePath } from '../src/url-path.js';
import { listFiles, readMeta, removeDir, tempDir } from './helpers.js';
import { PageBody } from '../src/page-body.js';

const CREATE = fsConstants.O_CREAT | fsConstants.O_EXCL | fsConstants.O_WRONLY;

{
  const calls = suite('file-io: calls');
  const io = fileIo;

  calls('a missing file or a file standing for a directory is undefined, not an error', async () => {
    const dir = await tempDir();
    try {
      await fs.writeFile(path.join(dir, 'file'), 'x');
      assert.is(await io.stat(path.join(dir, 'missing')), undefined);
      assert.is(await io.lstat(path.join(dir, 'missing')), undefined);
      assert.is(await io.stat(path.join(dir, 'file', 'below')), undefined, 'ENOTDIR');
      assert.is((await io.stat(path.join(dir, 'file')))?.size, 1);
    } finally {
      await removeDir(dir);
    }
  });

  calls('other errors reject with their errno code', async () => {
    const dir = await tempDir();
    try {
      await fs.writeFile(path.join(dir, 'file'), 'x');
      try {
        await io.open(path.join(dir, 'file'), CREATE, 0o644);
        assert.unreachable('O_EXCL over an existing file');
      } catch (error) {
        assert.is((error as NodeJS.ErrnoException).code, 'EEXIST');
      }
      try {
        await io.rename(path.join(dir, 'missing'), path.join(dir, 'other'));
        assert.unreachable('rename of a missing file');
      } catch (error) {
        assert.is((error as NodeJS.ErrnoException).code, 'ENOENT');
      }
      try {
        await io.mkdirp(path.join(dir, 'file', 'below'), 0o755);
        assert.unreachable('mkdir below a file');
      } catch (error) {
        assert.ok(['ENOTDIR', 'EEXIST'].includes((error as NodeJS.ErrnoException).code ?? ''), String(error));
      }
    } finally {
      await removeDir(dir);
    }
  });

  calls('write puts every byte down, futimes sets whole seconds, mkdirp names the first directory it made', async () => {
    const dir = await tempDir();
    try {
      const file = path.join(dir, 'big');
      const fd = await io.open(file, CREATE, 0o644);
      // Larger than a pipe or page-cache chunk, so a short write would show.
      const data = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
      await io.write(fd, data);
      await io.futimes(fd, 1_700_000_000);
      await io.fdatasync(fd);
      await io.close(fd);
      assert.ok((await fs.readFile(file)).equals(data));
      assert.is((await fs.stat(file)).mtimeMs, 1_700_000_000_000);

      assert.is(await io.mkdirp(path.join(dir, 'a', 'b', 'c'), 0o755), path.join(dir, 'a'));
      assert.is(await io.mkdirp(path.join(dir, 'a', 'b', 'c'), 0o755), undefined);
    } finally {
      await removeDir(dir);
    }
  });

  calls.run();

  const commits = suite('file-io: a cache root writing with it');

  commits('stores pages with their index records, and a purge removes them', async () => {
    const dir = await tempDir();
    try {
      const root = new CacheRoot(dir);
      await root.store.init();
      for (const urlPath of ['/', '/a/b', '/style.css', '/café']) {
        const target = toCachePath(urlPath);
        if (!target.ok) throw new Error(urlPath);
        const temp = new PageBody();
        temp.write(Buffer.from(`page ${urlPath}`));
        const renderedAt = Date.now();
        const response: StorableResponse = { tags: ['t'], expiresAt: null, staleWhileRevalidateMs: 0, mustBeUtf8: false, contentLength: undefined, lastModified: null };
        const result = await root.commit(temp, entryFor(target.value, response, renderedAt, temp.bytes));
        assert.equal(result, { stored: true }, urlPath);
        assert.is(await fs.readFile(path.join(dir, target.value.file), 'utf8'), `page ${urlPath}`);
        assert.is((await readMeta(root, target.value.file))?.urlPath, urlPath);
      }
      assert.equal((await listFiles(dir)).sort(), ['a/b/index.html', 'café/index.html', 'index.html', 'style.css']);
      // No temp file is left behind.
      assert.equal(await fs.readdir(root.store.tempDir), []);
    } finally {
      await removeDir(dir);
    }
  });

  commits.run();
}

// ---

const temps = suite('temp files');

temps('a write queued after the temp file was closed fails with EBADF and lands in no other file', async () => {
  const dir = await tempDir();
  try {
    const root = new CacheRoot(dir);
    await root.store.init();
    const temp = root.store.openTemp();
    temp.write(Buffer.from('first'));
    await temp.finish(false);
    // The descriptor number is free again: the next file opened may well get it.
    const other = path.join(dir, 'other');
    const otherHandle = await fs.open(other, 'w');
    try {
      temp.write(Buffer.from('late'));
      await temp.drained();
      assert.is((temp.error as NodeJS.ErrnoException | undefined)?.code, 'EBADF');
    } finally {
      await otherHandle.close();
    }
    assert.is(await fs.readFile(other, 'utf8'), '');
    assert.is(await fs.readFile(temp.path, 'utf8'), 'first');
    await temp.discard();
  } finally {
    await removeDir(dir);
  }
});

temps('stale temp files: this process keeps its own; the same pid under another tag is aged like any live pid', async () => {
  const dir = await tempDir();
  try {
    const root = new CacheRoot(dir);
    await root.store.init();
    const own = root.store.openTemp();
    own.write(Buffer.from('mine'));
    await own.drained();
    const young = path.join(root.store.tempDir, `${process.pid}-0badcafe-1.tmp`);
    const old = path.join(root.store.tempDir, `${process.pid}-0badcafe-2.tmp`);
    await fs.writeFile(young, 'young');
    await fs.writeFile(old, 'old');
    const twoHoursAgo = new Date(Date.now() - 2 * 60 * 60 * 1000);
    await fs.utimes(old, twoHoursAgo, twoHoursAgo);
    assert.is(await root.store.removeStaleTemps(), 1);
    assert.equal((await fs.readdir(root.store.tempDir)).sort(), [path.basename(own.path), path.basename(young)].sort());
    await own.discard();
  } finally {
    await removeDir(dir);
  }
});

temps('stale temp files of another host (a container sharing the volume): kept while young whatever its pid, removed when old', async () => {
  const dir = await tempDir();
  try {
    const root = new CacheRoot(dir);
    await root.store.init();
    const own = root.store.openTemp();
    own.write(Buffer.from('mine'));
    await own.drained();
    const [, , hostTag] = path.basename(own.path).split('-');
    const otherHost = hostTag === 'feedf00d' ? 'deadbeef' : 'feedf00d';
    // Pid 2^22 + 1 is beyond Linux's pid_max: no process here has it, as no process of another pid
    // namespace is visible here.
    const deadPid = 4194305;
    const inFlight = path.join(root.store.tempDir, `${deadPid}-0badcafe-${otherHost}-1.tmp`);
    const abandoned = path.join(root.store.tempDir, `${deadPid}-0badcafe-${otherHost}-2.tmp`);
    const killedHere = path.join(root.store.tempDir, `${deadPid}-0badcafe-${hostTag}-3.tmp`);
    for (const file of [inFlight, abandoned, killedHere]) await fs.writeFile(file, 'x');
    const anHourAgo = new Date(Date.now() - 60 * 60 * 1000);
    await fs.utimes(abandoned, anHourAgo, anHourAgo);
    assert.is(await root.store.removeStaleTemps(), 2);
    assert.equal((await fs.readdir(root.store.tempDir)).sort(), [path.basename(own.path), path.basename(inFlight)].sort());
    await own.discard();
  } finally {
    await removeDir(dir);
  }
});

temps.run();

