/**
 * `prerender ls`: what is cached, filtered by tag or prefix, with a summary.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import fs from 'node:fs/promises';
import path from 'node:path';
import { siteHandler } from '../fixtures/site/app.js';
import { crawl, createCache } from '../src/index.js';
import { removeDir, request, runCli, startServer, tempDir } from './helpers.js';

interface Listing {
  entries: Array<{ urlPath: string; file: string; size: number; tags: string[]; storedAt: number; expiresAt: number | null; siblings: string[] }>;
  summary: { files: number; bytes: number; tags: number };
}

const ls = suite('prerender ls');

ls('lists files with their index records; filters by tag and prefix; --json and the summary line', async () => {
  const dir = await tempDir();
  const root = path.join(dir, 'cache');
  const cache = createCache({ root, log: () => undefined, precompress: ['gzip'] });
  const app = await startServer(cache.wrap(siteHandler));
  try {
    for (const target of ['/', '/about', '/docs/', '/docs/getting-started', '/big']) await request(app.port, target);
    await cache.idle();
    const all = await runCli(['ls', '--json', '--root', root]);
    assert.is(all.code, 0, all.stderr);
    const listing = JSON.parse(all.stdout) as Listing;
    assert.equal(listing.entries.map((e) => e.file), ['about/index.html', 'big/index.html', 'docs/getting-started/index.html', 'docs/index.html', 'index.html']);
    assert.equal(listing.summary, { files: 5, bytes: listing.entries.reduce((sum, e) => sum + e.size, 0), tags: 3 });
    const home = listing.entries.find((e) => e.file === 'index.html');
    assert.equal(home?.tags.sort(), ['home', 'nav']);
    assert.is(home?.urlPath, '/');
    assert.type(home?.storedAt, 'number');
    assert.equal(listing.entries.find((e) => e.file === 'big/index.html')?.siblings, ['.gz']);

    const docs = JSON.parse((await runCli(['ls', '--tag', 'DOCS', '--json', '--root', root])).stdout) as Listing;
    assert.equal(docs.entries.map((e) => e.urlPath), ['/docs/getting-started', '/docs/']);
    const prefixed = JSON.parse((await runCli(['ls', '--prefix', '/a', '--json', '--root', root])).stdout) as Listing;
    assert.equal(prefixed.entries.map((e) => e.urlPath), ['/about']);

    const text = await runCli(['ls', '--root', root]);
    assert.match(text.stdout, /^ {4}bytes {2}stored {16}expires {15}url path {2}-> file {2}\+precompressed {2}\[tags\]\n/);
    assert.match(text.stdout, /\/about  -> about\/index.html  \[nav\]\n/);
    // Siblings apart from the name: `index.html.gz` would read as one file.
    assert.match(text.stdout, /\/big  -> big\/index.html  \+gz\n/);
    assert.not.match(text.stdout, /index\.html\.gz/);
    const rows = text.stdout.trimEnd().split('\n');
    assert.is(rows.length, 1 + 5 + 1, 'a header, a line a file, the summary');
    for (const row of rows.slice(1, 6)) assert.is(row.indexOf('  /'), rows[0]?.indexOf('  url path'), `columns line up: ${row}`);
    assert.match(text.stdout, /\n5 files, \d+ bytes, 3 tags\n$/);
    assert.is((await runCli(['ls', '--prefix', '../x', '--root', root])).code, 2);
    assert.is((await runCli(['ls', '--root', path.join(dir, 'none')])).code, 2);
  } finally {
    await app.close();
    await removeDir(dir);
  }
});

ls('the base of crawl --swap generations: ls, purge, sweep and crawl without --swap refuse it (exit 2), name current, and write nothing there', async () => {
  const dir = await tempDir();
  const base = path.join(dir, 'site');
  const app = await startServer(siteHandler);
  try {
    const list = path.join(dir, 'urls.txt');
    await fs.writeFile(list, '/\n/about\n');
    for (let run = 0; run < 2; run++) assert.ok((await crawl({ source: list, origin: app.url, root: base, swap: true })).swapped);
    const before = await fs.readdir(base);
    for (const args of [['ls'], ['ls', '--json'], ['purge', '--tag', 'nav'], ['purge', '--all'], ['sweep'], ['crawl', list, '--origin', app.url]]) {
      const result = await runCli([...args, '--root', base]);
      assert.is(result.code, 2, `${args.join(' ')}: ${result.stdout}`);
      assert.is(result.stdout, '');
      assert.match(result.stderr, `--root ${path.join(base, 'current')}`);
    }
    assert.equal(await fs.readdir(base), before, 'nothing created in the base (no state directory)');
    const current = await runCli(['ls', '--root', path.join(base, 'current')]);
    assert.is(current.code, 0, current.stderr);
    assert.match(current.stdout, /\n2 files, /);
  } finally {
    await app.close();
    await removeDir(dir);
  }
});

ls.run();
