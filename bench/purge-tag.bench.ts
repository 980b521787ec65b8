/**
 * Checks the claim in tags.ts that a purge by tag costs O(files under the tag), not O(cache size): one
 * tag of 1,000 files is purged from an index of 2,000 entries and from one of 200,000, and the larger
 * may take at most 1.5x as long.
 *
 * Caches are built through the real write path (CacheRoot.commit), so the index, meta files and
 * directories look as they would after a crawl. Section `s0` holds the tag `target`; every other
 * section `s<k>` holds 1,000 files tagged `filler:<k>`, so no tag log is larger than the target's.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { CacheRoot } from '../src/cache-root.js';
import { purge } from '../src/purge.js';
import type { BenchRow } from './report.js';
import { storePage } from '../test/helpers.js';

const BENCH = 'purge-tag';
const TAG = 'target';
const TAG_FILES = 1_000;
const SIZES = [2_000, 200_000] as const;
const REPEATS = 3;
const CONCURRENCY = 16;
const GOAL = 1.5;

type Limit = ReturnType<typeof pLimit>;

interface Subject {
  entries: number;
  root: CacheRoot;
  fillMs: number;
  purgeMs: number[];
}

export async function run(): Promise<BenchRow[]> {
  const limit = pLimit(CONCURRENCY);
  const dirs: string[] = [];
  try {
    const subjects: Subject[] = [];
    for (const entries of SIZES) {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), `prerender-bench-${label(entries)}-`));
      dirs.push(dir);
      const root = new CacheRoot(dir, { durable: false });
      subjects.push({ entries, root, fillMs: await fill(root, limit, entries), purgeMs: [] });
    }
    await measure(subjects, limit);
    return rows(subjects);
  } finally {
    for (const dir of dirs) {
      progress(`removing ${dir}`);
      await fs.rm(dir, { recursive: true, force: true });
    }
  }
}

/**
 * Sizes take turns, so drift in the machine's state (disk writeback, other load) hits both alike
 * instead of whichever ran second. Round 0 is not counted: the process's first purge pays for JIT
 * compilation, which would otherwise be charged to the small cache and flatter the ratio.
 */
async function measure(subjects: readonly Subject[], limit: Limit): Promise<void> {
  for (let round = 0; round <= REPEATS; round++) {
    for (const subject of subjects) {
      if (round > 0) await storeSection(subject.root, limit, 0, [TAG]);
      const ms = await timePurge(subject.root);
      if (round > 0) subject.purgeMs.push(ms);
      progress(`${label(subject.entries)}: purge ${round === 0 ? 'warm-up' : `${round}/${REPEATS}`} took ${ms.toFixed(1)} ms`);
    }
  }
}

/** Fillers first and the target section last, so every round purges equally fresh files. */
async function fill(root: CacheRoot, limit: Limit, entries: number): Promise<number> {
  const sections = entries / TAG_FILES;
  const started = process.hrtime.bigint();
  for (let section = 1; section < sections; section++) {
    await storeSection(root, limit, section, [`filler:${section}`]);
    if (section % 10 === 0) progress(`${label(entries)}: filled ${section * TAG_FILES}/${entries} in ${seconds(started)} s`);
  }
  await storeSection(root, limit, 0, [TAG]);
  const fillMs = elapsedMs(started);
  progress(`${label(entries)}: filled ${entries} entries in ${(fillMs / 1000).toFixed(1)} s`);
  return fillMs;
}

async function storeSection(root: CacheRoot, limit: Limit, section: number, tags: string[]): Promise<void> {
  const pages = Array.from({ length: TAG_FILES }, (_, page) => page);
  await Promise.all(pages.map((page) => limit(() => storePage(root, `/s${section}/p${page}`, tags))));
}


async function timePurge(root: CacheRoot): Promise<number> {
  // Without this the kernel would still be writing back the fill's dirty pages during the timed
  // purge, charging the larger cache for disk traffic that is not the purge's.
  execFileSync('sync');
  const started = process.hrtime.bigint();
  const result = await purge(root, { tags: [TAG] });
  const ms = elapsedMs(started);
  const strays = result.removed.filter((file) => !file.startsWith('s0/'));
  if (result.removed.length !== TAG_FILES || strays.length > 0) {
    throw new Error(`${BENCH}: purge removed ${result.removed.length} files (${strays.length} outside s0/), expected ${TAG_FILES}`);
  }
  return ms;
}

function rows(results: readonly Subject[]): BenchRow[] {
  const out: BenchRow[] = [];
  for (const result of results) {
    const rate = Math.round(result.entries / (result.fillMs / 1000));
    out.push({ bench: BENCH, case: `fill ${label(result.entries)} entries`, value: result.fillMs / 1000, unit: 's', note: `${rate} commits/s, concurrency ${CONCURRENCY}` });
  }
  for (const result of results) {
    out.push({
      bench: BENCH,
      case: `purge ${TAG_FILES}-file tag, index ${label(result.entries)}`,
      value: median(result.purgeMs),
      unit: 'ms',
      note: `median of ${result.purgeMs.map((ms) => ms.toFixed(1)).join(', ')}`,
    });
  }
  const small = results[0];
  const large = results.at(-1);
  if (small !== undefined && large !== undefined && small !== large) {
    const ratio = median(large.purgeMs) / median(small.purgeMs);
    out.push({
      bench: BENCH,
      case: `ratio ${label(large.entries)}/${label(small.entries)}`,
      value: ratio,
      unit: 'x',
      note: `goal <= ${GOAL}x: ${ratio <= GOAL ? 'met' : 'NOT met'}`,
    });
  }
  return out;
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? Number.NaN;
}

function elapsedMs(started: bigint): number {
  return Number(process.hrtime.bigint() - started) / 1e6;
}

function seconds(started: bigint): string {
  return (elapsedMs(started) / 1000).toFixed(1);
}

function label(entries: number): string {
  return entries >= 1000 ? `${entries / 1000}k` : String(entries);
}

function progress(message: string): void {
  process.stderr.write(`${BENCH}: ${message}\n`);
}
