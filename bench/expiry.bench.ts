/**
 * Checks the claim in expiry-index.ts that acting on expiry costs O(pages expiring), not O(cache
 * size): 200 pages expire at once in a root that also holds 2,000 other pages and in one that holds
 * 50,000 (each with an expiry hours ahead, so the index is full of future logs too). What is timed is
 * what a running cache does once those pages are due: one `due()` of the index plus the removals
 * (expiry.ts). The larger may take at most 1.5x as long. A `sweep()` of each root is timed beside it,
 * as the O(cache) baseline this replaces.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { CacheRoot } from '../src/cache-root.js';
import { expireFiles } from '../src/expiry.js';
import { sweep } from '../src/sweep.js';
import type { BenchRow } from './report.js';
import { storePage } from '../test/helpers.js';

const BENCH = 'expiry';
const EXPIRING = 200;
const SIZES = [2_000, 50_000] as const;
const REPEATS = 3;
const CONCURRENCY = 16;
const GOAL = 1.5;

type Limit = ReturnType<typeof pLimit>;

interface Subject {
  others: number;
  dir: string;
  root: CacheRoot;
  expireMs: number[];
  idleMs: number[];
  sweepMs: number;
}

export async function run(): Promise<BenchRow[]> {
  const limit = pLimit(CONCURRENCY);
  const subjects: Subject[] = [];
  try {
    for (const others of SIZES) {
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), `prerender-bench-expiry-${label(others)}-`));
      const root = new CacheRoot(dir, { durable: false });
      subjects.push({ others, dir, root, expireMs: [], idleMs: [], sweepMs: 0 });
      const started = Date.now();
      await Promise.all(Array.from({ length: others }, (_, page) => limit(() =>
        // Spread over the next two days: thousands of future logs in ~48 hour directories.
        storePage(root, `/other/p${page}`, [], { expiresAt: Date.now() + 3600_000 + ((page * 7919) % 172_800) * 1000 }))));
      progress(`${label(others)}: stored ${others} other pages in ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
    for (let round = 0; round <= REPEATS; round++) {
      for (const subject of subjects) {
        const ms = await timeExpiry(subject, limit);
        if (round > 0) subject.expireMs.push(ms.expire);
        if (round > 0) subject.idleMs.push(ms.idle);
        progress(`${label(subject.others)}: round ${round === 0 ? 'warm-up' : round}: expiry of ${EXPIRING} took ${ms.expire.toFixed(1)} ms, an idle check ${ms.idle.toFixed(2)} ms`);
      }
    }
    for (const subject of subjects) {
      execFileSync('sync');
      const started = process.hrtime.bigint();
      await sweep(subject.root);
      subject.sweepMs = elapsedMs(started);
    }
    return rows(subjects);
  } finally {
    for (const subject of subjects) await fs.rm(subject.dir, { recursive: true, force: true });
  }
}

async function timeExpiry(subject: Subject, limit: Limit): Promise<{ expire: number; idle: number }> {
  const { root } = subject;
  // All due at one instant, a little ahead, so the index holds them in one second's log.
  const at = Math.ceil((Date.now() + 1500) / 1000) * 1000 + 100;
  await Promise.all(Array.from({ length: EXPIRING }, (_, page) => limit(() => storePage(root, `/expiring/p${page}`, [], { expiresAt: at }))));
  // An idle check just before they are due: its cost is the few stats of the seconds around now.
  await root.expiry.due();
  const idleStarted = process.hrtime.bigint();
  await root.expiry.due();
  const idle = elapsedMs(idleStarted);
  while (Date.now() <= at) await new Promise((resolve) => setTimeout(resolve, 5));
  execFileSync('sync');
  const started = process.hrtime.bigint();
  const now = Date.now();
  const due = await root.expiry.due(now);
  const result = await expireFiles(root, due, now);
  const expire = elapsedMs(started);
  if (result.removed.length !== EXPIRING || result.removed.some((file) => !file.startsWith('expiring/'))) {
    throw new Error(`${BENCH}: removed ${result.removed.length} files, expected the ${EXPIRING} expiring ones`);
  }
  return { expire, idle };
}


function rows(subjects: readonly Subject[]): BenchRow[] {
  const out: BenchRow[] = [];
  for (const subject of subjects) {
    out.push({ bench: BENCH, case: `expire ${EXPIRING} pages, ${label(subject.others)} others`, value: median(subject.expireMs), unit: 'ms', note: `median of ${subject.expireMs.map((ms) => ms.toFixed(1)).join(', ')}` });
  }
  for (const subject of subjects) {
    out.push({ bench: BENCH, case: `idle check, ${label(subject.others)} others`, value: median(subject.idleMs), unit: 'ms', note: 'one due() with nothing due' });
  }
  for (const subject of subjects) {
    out.push({ bench: BENCH, case: `baseline: sweep(), ${label(subject.others)} others`, value: subject.sweepMs, unit: 'ms', note: 'reads every meta' });
  }
  const small = subjects[0];
  const large = subjects.at(-1);
  if (small !== undefined && large !== undefined && small !== large) {
    const ratio = median(large.expireMs) / median(small.expireMs);
    out.push({ bench: BENCH, case: `ratio ${label(large.others)}/${label(small.others)}`, value: ratio, unit: 'x', note: `goal <= ${GOAL}x: ${ratio <= GOAL ? 'met' : 'NOT met'}` });
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

function label(count: number): string {
  return count >= 1000 ? `${count / 1000}k` : String(count);
}

function progress(message: string): void {
  process.stderr.write(`${BENCH}: ${message}\n`);
}
