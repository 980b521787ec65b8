/**
 * `prerender ls`: what is cached, filtered by tag or prefix, with a summary.
 */
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import path from 'node:path';
import { siteHandler } from '../fixtures/site/app.js';
import { createCache } from '../src/index.js';
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
    assert.match(text.stdout, /\/about  -> about\/index.html  \[nav\]\n/);
    assert.match(text.stdout, /\n5 files, \d+ bytes, 3 tags\n$/);
    assert.is((await runCli(['ls', '--prefix', '../x', '--root', root])).code, 2);
    assert.is((await runCli(['ls', '--root', path.join(dir, 'none')])).code, 2);
  } finally {
    await app.close();
    await removeDir(dir);
  }
});

ls.run();
