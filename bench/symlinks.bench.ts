/**
 * What `disable_symlinks on "from=<root>"` (in the generated config) costs a hit,
 * counted as the hits benchmark counts nginx's work (hit-cost.ts): user-space instructions per hit under
 * callgrind and system calls per hit under strace, for the generated config with the line and without
 * it, in the same run. nginx then opens each path component below the root with openat(O_NOFOLLOW)
 * instead of one open(2), so the cost grows with the depth of the page; a deep page is measured too.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { removeDir, startNginx, tempDir } from '../test/helpers.js';
import { withCleanup } from './exec.js';
import { hitCostUnavailable, hitCosts, type CostedPage } from './hit-cost.js';
import type { BenchRow } from './report.js';

const BENCH = 'symlinks';
const COUNTED_HITS = 1000;
const DIRECTIVE = /^\s*disable_symlinks on "from=[^"]+";\n/m;
const PAGES: ReadonlyArray<{ target: string; file: string; body: string }> = [
  { target: '/about', file: 'about/index.html', body: '<h1>About</h1>' },
  { target: '/style.css', file: 'style.css', body: 'body { color: #333 }' },
  { target: '/docs/a/b/c/deep-page', file: 'docs/a/b/c/deep-page/index.html', body: '<p>deep</p>' },
];

export async function run(): Promise<BenchRow[]> {
  const missing = await hitCostUnavailable();
  if (missing !== undefined) {
    console.error(`bench: symlinks SKIPPED: ${missing}`);
    return [];
  }
  return withCleanup(async (defer) => {
    const root = await tempDir('prerender-bench-symlinks-');
    defer(() => removeDir(root));
    for (const page of PAGES) {
      await fs.mkdir(path.dirname(path.join(root, page.file)), { recursive: true });
      await fs.writeFile(path.join(root, page.file), page.body);
    }
    // Started to get the whole nginx.conf as the tests run it (hit-cost.ts runs its own nginx, with
    // this one's temp directories, which live until it stops).
    const nginx = await startNginx({ root, upstream: 'http://127.0.0.1:9' });
    defer(() => nginx.stop());
    const carried = nginx.config;
    if (!DIRECTIVE.test(carried)) throw new Error(`${BENCH}: the generated config does not carry disable_symlinks`);
    const without = carried.replace(DIRECTIVE, '');
    const hit = (target: string): CostedPage => ({
      target,
      expect: (status, headers) => (status === 200 && headers['x-cache'] === 'HIT' ? undefined : `status ${status}, X-Cache ${String(headers['x-cache'])}`),
    });
    const targets = PAGES.map((page) => hit(page.target));
    console.error(`bench: symlinks: counting ${COUNTED_HITS} hits a page under valgrind and strace, with and without disable_symlinks`);
    const withLine = await hitCosts(carried, targets, COUNTED_HITS);
    const withoutLine = await hitCosts(without, targets, COUNTED_HITS);
    const rows: BenchRow[] = [];
    for (const page of PAGES) {
      const ours = withLine.get(page.target);
      const theirs = withoutLine.get(page.target);
      if (ours === undefined || theirs === undefined) throw new Error(`${BENCH}: no counted cost for ${page.target}`);
      rows.push({
        bench: BENCH, case: `${page.target}: instructions per hit, with disable_symlinks / without`, value: ours.instructions / theirs.instructions, unit: 'x',
        note: `${Math.round(ours.instructions).toLocaleString('en-US')} vs ${Math.round(theirs.instructions).toLocaleString('en-US')}; callgrind, (${COUNTED_HITS} hits - none) / ${COUNTED_HITS}`,
      });
      if (ours.syscalls !== undefined && theirs.syscalls !== undefined) {
        rows.push({
          bench: BENCH, case: `${page.target}: system calls per hit, with - without`, value: ours.syscalls - theirs.syscalls, unit: 'calls',
          note: `${ours.syscalls.toFixed(1)} vs ${theirs.syscalls.toFixed(1)} (strace -c)`,
        });
      }
    }
    return rows;
  });
}
