/**
 * A small mutation runner for the write path's guards (issue 15): each mutation breaks one step of
 * the protocol in a fresh copy of the repository, and the tests named for it must then fail.
 *
 *   node --import tsx test/mutation/run.ts [name...]      (npm run mutate -- [name...])
 *   --list   prints the mutations and exits;  --keep   keeps the temp copies (their paths are printed)
 *
 * For each mutation: the tracked files (git ls-files, as they are in the working tree) are copied into
 * a fresh temp directory (node_modules symlinked), the edits are applied (each `find` must occur
 * exactly once in its file, else the mutation is stale: an error, not a pass), `npm run build` runs
 * there (tests spawn dist/ for the CLI and workers), then only the named test files. Killed: the
 * tests failed; survived: they passed. The same tests run once unmutated first, and must pass.
 * Mutations run one after another. Exits 1 if any mutation survived, was stale or did not build.
 */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface Edit {
  /** Exact text, which must occur exactly once in the file. */
  find: string;
  replace: string;
}

interface Mutation {
  name: string;
  /** The guard the mutation breaks. */
  guard: string;
  /** Repository-relative file the edits apply to, in order. */
  file: string;
  edits: Edit[];
  /** Test files (names under test/) that must go red. */
  tests: string[];
}

const TEST_TIMEOUT_MS = 5 * 60 * 1000;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** commit.ts: the tag append of step 1 (`indexed`). */
const TAG_APPEND = `    await eachTag(live(), async (tag, tagged) => {
      identities.set(tag, await root.tags.append(tag, tagged.map(tagEntryOf)));
    }, settle);
`;
/** commit.ts: step 3 (`flushed`). */
const FLUSH = `    const staged = live();
    const errors = await root.store.flush(staged.map((item) => item.staged as StagedFile));
    staged.forEach((item, index) => {
      if (errors[index] !== undefined) settle(item, { error: errors[index] });
    });
`;
const PLACED_STEP = `    await step('placed');
`;

export const MUTATIONS: Mutation[] = [
  {
    name: 'flush-no-fdatasync',
    guard: 'store.flush: each staged file fdatasync\'d before it is closed (and renamed)',
    file: 'src/store/store.ts',
    edits: [{ find: '        if (this.durable && file.fd !== undefined) await this.io.fdatasync(file.fd);\n', replace: '' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'rename-before-flush',
    guard: 'commit: nothing renamed before its batch\'s flushes returned (the flush moved after the place step)',
    file: 'src/commit.ts',
    edits: [
      { find: FLUSH, replace: '' },
      { find: PLACED_STEP, replace: FLUSH + PLACED_STEP },
    ],
    tests: ['commit.test.ts'],
  },
  {
    name: 'no-first-purge-check',
    guard: 'commit step 4 (checked): pages purged since their render began are dropped before the rename',
    file: 'src/commit.ts',
    edits: [{ find: '    await purgeCheck(root, live(), settle);\n', replace: '' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'no-second-purge-check',
    guard: 'commit step 6 (rechecked): a purge that slipped in before the rename removes the placed page',
    file: 'src/commit.ts',
    edits: [{ find: '    await purgeCheck(root, live(), async (item, refused) => {', replace: '    if (false as boolean) await purgeCheck(root, live(), async (item, refused) => {' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'purge-same-ms-file',
    guard: 'invalidation.purgedSince: a file purge in the render\'s own millisecond counts (>=, not >)',
    file: 'src/invalidation.ts',
    edits: [{ find: 'if ((journal.files.get(target.file) ?? -Infinity) >= renderedAt)', replace: 'if ((journal.files.get(target.file) ?? -Infinity) > renderedAt)' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'purge-same-ms-tag',
    guard: 'invalidation.purgedSince: a tag purge in the render\'s own millisecond counts (>=, not >)',
    file: 'src/invalidation.ts',
    edits: [{ find: 'if ((journal.tags.get(tag) ?? -Infinity) >= renderedAt)', replace: 'if ((journal.tags.get(tag) ?? -Infinity) > renderedAt)' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'no-tag-reappend',
    guard: 'state-files appendUntilLive: records re-appended when a purge or compaction took the log aside (tag logs and meta segments)',
    file: 'src/store/state-files.ts',
    edits: [{ find: '      if (await this.isLive(log, identity)) return;\n', replace: '      if (true as boolean) return;\n' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'tags-after-rename',
    guard: 'commit step 1 (indexed): tag records appended before anything is written, not after the rename',
    file: 'src/commit.ts',
    edits: [
      { find: TAG_APPEND, replace: '' },
      { find: PLACED_STEP, replace: PLACED_STEP + TAG_APPEND },
    ],
    tests: ['commit.test.ts'],
  },
  {
    name: 'unplace-any-inode',
    guard: 'store.unplace: the recheck removes a page only while it is still the inode this batch placed',
    file: 'src/store/store.ts',
    edits: [{ find: '    return (await this.inodeOf(file)) === inode && this.remove(file);\n', replace: '    return this.remove(file);\n' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'no-meta-reappend',
    guard: 'commit step 7 (done): meta records appended again when a compaction or purge --all took their segment before the renames',
    file: 'src/commit.ts',
    edits: [{ find: '      await root.store.meta.ensureIndexed(metaAppend).catch((error: unknown) => live().forEach((item) => settle(item, { error })));\n', replace: '' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'meta-any-version',
    guard: 'meta-log MetaIndex.current: a record describes only the version of the file it names (inode and birth time)',
    file: 'src/store/meta-log.ts',
    edits: [{ find: '      if (isSameFile(record, stats) && ', replace: '      if (stats !== undefined && ' }],
    tests: ['purge.test.ts', 'commit.test.ts'],
  },
  {
    name: 'expiry-any-version',
    guard: 'expiry: a record removes only the version of the file it names, not one stored since',
    file: 'src/expiry.ts',
    edits: [{ find: '  return isSameFile(record, await root.store.fileStats(record.file));', replace: '  return (await root.store.fileStats(record.file)) !== undefined;' }],
    tests: ['expiry.test.ts'],
  },
  {
    name: 'dir-checks-outlive-batch',
    guard: 'NoFollow.batch: directories found free of links are trusted for one batch only',
    file: 'src/store/no-follow.ts',
    edits: [{ find: '    } finally {\n      this.verified = undefined;\n    }\n', replace: '    } finally {\n      this.verified = this.verified ?? undefined;\n    }\n' }],
    tests: ['symlinks.test.ts'],
  },
  {
    name: 'refused-temp-kept',
    guard: 'commit settle: the temp file of a page refused before its rename is removed',
    file: 'src/commit.ts',
    edits: [{ find: '    if (item.staged !== undefined && !item.staged.placed) void root.store.unstage(item.staged).finally(answer);\n    else answer();\n', replace: '    answer();\n' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'no-meta-before-rename',
    guard: 'commit step 5 (placed): the batch\'s meta records appended before its renames',
    file: 'src/commit.ts',
    edits: [{ find: '      metaAppend = await root.store.meta.append(described.map(metaRecordOf));\n', replace: '' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'no-expiry-before-rename',
    guard: 'commit step 4 (checked): expiries recorded before the rename (a kill in between leaves no page the index misses)',
    file: 'src/commit.ts',
    edits: [{ find: '    if (expiring.length > 0) {\n', replace: '    if (false as boolean) {\n' }],
    tests: ['commit.test.ts', 'expiry.test.ts'],
  },
  {
    name: 'old-siblings-kept',
    guard: 'store.place: precompressed siblings of the version replaced are removed (before and after the rename)',
    file: 'src/store/store.ts',
    edits: [
      { find: '        if (replacing) await unlinkSiblings();\n', replace: '' },
      { find: '    if (replacing && (await this.io.lstat(absolute))?.ino === staged.inode) await unlinkSiblings();\n', replace: '' },
    ],
    tests: ['commit.test.ts', 'precompress.test.ts'],
  },
  {
    name: 'dead-temps-kept',
    guard: 'store.removeStaleTemps: a dead process\'s temp files are removed at the next init',
    file: 'src/store/store.ts',
    edits: [{ find: '      await fs.rm(file, { force: true, recursive: true }).then(() => removed++, () => undefined);\n', replace: '' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'budget-never-refuses',
    guard: 'page-body ByteBudget.take: pending bodies bounded in bytes (take refuses past the limit)',
    file: 'src/page-body.ts',
    edits: [{ find: '    if (this.used + bytes > this.limit) return false;\n', replace: '' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'tiny-pages-uncharged',
    guard: 'page-body: each pending page is charged PENDING_PAGE_BYTES besides its body, so tiny pages stay bounded too',
    file: 'src/page-body.ts',
    edits: [{ find: '    const charge = budget === undefined ? 0 : PENDING_PAGE_BYTES;\n', replace: '    const charge = 0;\n' }],
    tests: ['commit.test.ts'],
  },
  {
    name: 'crawl-pages-uncharged',
    guard: 'crawl pool: a fetched page waiting for its batch counts PENDING_PAGE_BYTES besides its body',
    file: 'src/crawl/pool.ts',
    edits: [{ find: '        const bytes = fetched.bytes + PENDING_PAGE_BYTES;\n', replace: '        const bytes = fetched.bytes;\n' }],
    tests: ['crawl.test.ts'],
  },
  {
    name: 'doctor-repeat-hit-passes',
    guard: 'doctor: "repeat hits come from disk" fails when the second request is not a disk hit',
    file: 'src/doctor.ts',
    edits: [{ find: "      const repeated = isHit(second, 'v1');\n", replace: '      const repeated = true as boolean;\n' }],
    tests: ['doctor.test.ts'],
  },
  {
    name: 'crawl-deletes-builds-in-progress',
    guard: 'crawl --swap: another crawl\'s generation still being built (its marker\'s owner alive) is not deleted',
    file: 'src/store/generations.ts',
    edits: [{ find: "    if (builder !== '' && inUse(ownerOf(builder), age, { maxAgeMs: FOREIGN_BUILD_MS })) continue;\n", replace: '' }],
    tests: ['crawl.test.ts'],
  },
  {
    name: 'sitemap-loop-unguarded',
    guard: 'sitemaps: an index naming a sitemap already read is not read again',
    file: 'src/crawl/sitemap.ts',
    edits: [{ find: '    if (reading.sitemapsSeen.has(key)) continue;\n', replace: '' }],
    tests: ['security-sources.test.ts', 'crawl.test.ts'],
  },
  {
    name: 'sitemap-depth-unguarded',
    guard: 'sitemaps: indexes nested deeper than maxSitemapDepth are refused',
    file: 'src/crawl/sitemap.ts',
    edits: [{ find: '    if (depth + 1 > limits.maxSitemapDepth) {', replace: '    if (false) {' }],
    tests: ['security-sources.test.ts', 'crawl.test.ts'],
  },
];

type Outcome = 'killed' | 'killed (timeout)' | 'survived' | 'stale' | 'build failed';

interface Row {
  name: string;
  guard: string;
  tests: string;
  result: Outcome;
  seconds: number;
  detail: string;
}

interface TestRun {
  code: number | null;
  timedOut: boolean;
  output: string;
}

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** uvu matches the pattern against each file's path under test/. */
function testPattern(tests: readonly string[]): string {
  return `^(${tests.map(escapeRegex).join('|')})$`;
}

function occurrences(text: string, find: string): number {
  let count = 0;
  for (let at = text.indexOf(find); at !== -1; at = text.indexOf(find, at + 1)) count++;
  return count;
}

async function copyRepository(): Promise<string> {
  const listed = spawnSync('git', ['ls-files', '-z'], { cwd: repoRoot, encoding: 'utf8' });
  if (listed.status !== 0) throw new Error(`git ls-files failed: ${listed.stderr}`);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'prerender-mutation-'));
  // nginx's worker (nobody) may need to traverse it, as test/helpers.ts's tempDir does.
  await fs.chmod(dir, 0o755);
  for (const file of listed.stdout.split('\0').filter((name) => name !== '')) {
    const from = path.join(repoRoot, file);
    // A tracked file deleted in the working tree is not copied.
    const stats = await fs.lstat(from).catch(() => undefined);
    if (stats === undefined) continue;
    const to = path.join(dir, file);
    await fs.mkdir(path.dirname(to), { recursive: true });
    if (stats.isSymbolicLink()) await fs.symlink(await fs.readlink(from), to);
    else await fs.copyFile(from, to);
  }
  await fs.symlink(path.join(repoRoot, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

/** Applies the edits; the first problem (a `find` not occurring exactly once) or undefined. */
async function apply(dir: string, mutation: Mutation): Promise<string | undefined> {
  const file = path.join(dir, mutation.file);
  let text = await fs.readFile(file, 'utf8').catch(() => undefined);
  if (text === undefined) return `${mutation.file} does not exist`;
  for (const [index, edit] of mutation.edits.entries()) {
    const count = occurrences(text, edit.find);
    if (count !== 1) return `edit ${index + 1}: its find text occurs ${count} times in ${mutation.file}`;
    text = text.replace(edit.find, () => edit.replace);
  }
  await fs.writeFile(file, text);
  return undefined;
}

function run(command: string, args: readonly string[], cwd: string, timeoutMs: number): Promise<TestRun> {
  return new Promise((resolve, reject) => {
    // Its own process group, so a timeout ends the tests and whatever they started (nginx, strace, apps).
    const child = spawn(command, args, { cwd, detached: true, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    child.stderr.on('data', (chunk: Buffer) => {
      output += chunk.toString();
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
    }, timeoutMs);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, timedOut, output });
    });
  });
}

function runTests(dir: string, tests: readonly string[]): Promise<TestRun> {
  return run(process.execPath, ['--import', 'tsx', 'node_modules/uvu/bin.js', 'test', testPattern(tests)], dir, TEST_TIMEOUT_MS);
}

function stripAnsi(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}

/** uvu's totals, and the first failing test's name and message. */
function summarize(output: string): { total: number; passed: number; skipped: number; failure: string } {
  const plain = stripAnsi(output);
  const count = (label: string): number => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(plain)?.[1] ?? 0);
  const fail = /FAIL\s+(.+?)\s+"(.+?)"\s*\n\s*(.*)/.exec(plain);
  const failure = fail === null ? '' : `${fail[1]} "${fail[2]}": ${(fail[3] ?? '').trim()}`.slice(0, 200);
  return { total: count('Total'), passed: count('Passed'), skipped: count('Skipped'), failure };
}

async function mutate(mutation: Mutation, keep: boolean): Promise<Row> {
  const started = Date.now();
  const row = (result: Outcome, detail: string): Row => ({
    name: mutation.name, guard: mutation.guard, tests: mutation.tests.join(', '), result, seconds: Math.round((Date.now() - started) / 1000), detail,
  });
  const dir = await copyRepository();
  try {
    const stale = await apply(dir, mutation);
    if (stale !== undefined) return row('stale', stale);
    const build = await run('npm', ['run', 'build'], dir, TEST_TIMEOUT_MS);
    if (build.code !== 0) return row('build failed', stripAnsi(build.output).split('\n').filter((line) => /error/i.test(line)).slice(0, 3).join(' | '));
    const tests = await runTests(dir, mutation.tests);
    const summary = summarize(tests.output);
    const counts = `${summary.passed}/${summary.total} passed`;
    if (tests.timedOut) return row('killed (timeout)', `no result within ${TEST_TIMEOUT_MS / 1000} s`);
    if (tests.code !== 0) return row('killed', `${counts}; ${summary.failure}`);
    return row('survived', counts);
  } finally {
    if (keep) process.stdout.write(`  (kept ${dir})\n`);
    else await fs.rm(dir, { recursive: true, force: true });
  }
}

function table(rows: readonly Row[]): string {
  const lines = ['| mutation | guard | tests | result | s | detail |', '| --- | --- | --- | --- | --- | --- |'];
  for (const row of rows) lines.push(`| ${row.name} | ${row.guard} | ${row.tests} | ${row.result} | ${row.seconds} | ${row.detail.replace(/\|/g, '\\|')} |`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  const args = process.argv.slice(2);
  const keep = args.includes('--keep');
  const names = args.filter((arg) => !arg.startsWith('--'));
  if (args.includes('--list')) {
    for (const mutation of MUTATIONS) process.stdout.write(`${mutation.name}\t${mutation.file}\t${mutation.tests.join(',')}\t${mutation.guard}\n`);
    return 0;
  }
  const unknown = names.filter((name) => !MUTATIONS.some((mutation) => mutation.name === name));
  if (unknown.length > 0) {
    process.stderr.write(`unknown mutation(s): ${unknown.join(', ')} (--list shows them)\n`);
    return 2;
  }
  const chosen = names.length === 0 ? MUTATIONS : MUTATIONS.filter((mutation) => names.includes(mutation.name));
  const files = [...new Set(chosen.flatMap((mutation) => mutation.tests))];

  process.stdout.write(`baseline: ${files.join(', ')} unmutated\n`);
  const baselineStarted = Date.now();
  const dir = await copyRepository();
  try {
    const build = await run('npm', ['run', 'build'], dir, TEST_TIMEOUT_MS);
    if (build.code !== 0) {
      process.stderr.write(`baseline: npm run build failed\n${build.output}\n`);
      return 1;
    }
    const baseline = await runTests(dir, files);
    const summary = summarize(baseline.output);
    if (baseline.code !== 0 || baseline.timedOut || summary.total === 0) {
      process.stderr.write(`baseline: the unmutated tests do not pass${baseline.timedOut ? ' (timed out)' : ''}; aborting\n${baseline.output}\n`);
      return 1;
    }
    process.stdout.write(`baseline: ${summary.passed}/${summary.total} passed, ${summary.skipped} skipped, ${Math.round((Date.now() - baselineStarted) / 1000)} s\n`);
    // A skipped test cannot kill a mutant: say so rather than report survivors for the wrong reason.
    if (summary.skipped > 0) process.stdout.write('baseline: WARNING, some tests are skipped (nginx or strace missing?)\n');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }

  const rows: Row[] = [];
  for (const mutation of chosen) {
    process.stdout.write(`${mutation.name} ... `);
    const row = await mutate(mutation, keep);
    rows.push(row);
    process.stdout.write(`${row.result} (${row.seconds} s) ${row.detail}\n`);
  }
  process.stdout.write(`\n${table(rows)}\n`);
  const bad = rows.filter((row) => row.result !== 'killed' && row.result !== 'killed (timeout)');
  if (bad.length > 0) process.stdout.write(`\n${bad.length} of ${rows.length} not killed: ${bad.map((row) => `${row.name} (${row.result})`).join(', ')}\n`);
  return bad.length > 0 ? 1 : 0;
}

process.exitCode = await main();
