/**
 * A soak on loopback: an app process behind nginx takes mixed traffic (hits, misses, bypasses) while
 * purges run every couple of seconds and crawls write into the same root. Bounded in time and in
 * request count. Used by test/soak.test.ts (short) and `npm run soak` (minutes).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CacheRoot } from '../../src/cache-root.js';
import { purge } from '../../src/purge.js';
import { sweep } from '../../src/sweep.js';
import { listFiles, removeDir, repoRoot, request, runCli, sleep, startNginx, tempDir } from '../helpers.js';

export interface SoakOptions {
  durationMs: number;
  /** Hard cap on client requests, whatever the duration. */
  maxRequests: number;
  concurrency: number;
  /**
   * The soak goes on past its duration (up to three times it) until this many purges and crawls ran
   * under traffic: on a slow machine a fixed duration would otherwise end before the mix it tests.
   */
  minPurges?: number;
  minCrawls?: number;
  log?: (line: string) => void;
}

export interface SoakReport {
  requests: number;
  byKind: Record<string, number>;
  errors: string[];
  purges: number;
  crawls: number;
  rss: { early: number; late: number };
  /**
   * Descriptors: most open in the second quarter (after warm-up) and in the last quarter, and open
   * before the traffic and once it has stopped (a leak shows as idle > start).
   */
  fds: { early: number; late: number; start: number; idle: number };
  files: number;
  indexBytes: number;
  /** Files on disk not listed under one of their tags, or without an index record. */
  unindexed: string[];
  /** Tag-log entries and index records whose file is gone (after the final sweep). */
  dangling: string[];
  durationMs: number;
}

interface Stats {
  rss: number;
  fds: number;
}

export async function runSoak(options: SoakOptions): Promise<SoakReport> {
  const log = options.log ?? (() => undefined);
  const dir = await tempDir('prerender-soak-');
  const root = path.join(dir, 'cache');
  // A set-up step that throws undoes the ones before it: nothing left running, no temp dir behind.
  const app = await startApp(root).catch(async (error: unknown) => {
    await removeDir(dir);
    throw error;
  });
  const nginx = await startNginx({ root, upstream: `http://127.0.0.1:${app.port}` }).catch(async (error: unknown) => {
    await stopApp(app.child);
    await removeDir(dir);
    throw error;
  });
  const report: SoakReport = {
    requests: 0, byKind: {}, errors: [], purges: 0, crawls: 0, rss: { early: 0, late: 0 }, fds: { early: 0, late: 0, start: 0, idle: 0 },
    files: 0, indexBytes: 0, unindexed: [], dangling: [], durationMs: 0,
  };
  const started = Date.now();
  const deadline = started + options.durationMs;
  const hardDeadline = started + options.durationMs * 3;
  const mixDone = (): boolean => report.purges >= (options.minPurges ?? 0) && report.crawls >= (options.minCrawls ?? 0);
  const running = (): boolean => {
    const now = Date.now();
    if (now >= hardDeadline) return false;
    if (!mixDone()) return true;
    return now < deadline && report.requests < options.maxRequests;
  };
  const samples: Array<{ at: number; stats: Stats }> = [];
  let fresh = 0;

  const client = async (): Promise<void> => {
    while (running()) {
      report.requests++;
      const roll = Math.random();
      const pop = `/page/2000/pop${Math.floor(Math.random() * 50)}`;
      let kind: string;
      let reply;
      try {
        if (roll < 0.5) {
          kind = 'hit';
          reply = await request(nginx.port, pop);
        } else if (roll < 0.7) {
          kind = 'miss';
          const size = 1000 + Math.floor(Math.random() * 200_000);
          reply = await request(nginx.port, `/page/${size}/new${fresh++}`);
        } else if (roll < 0.8) {
          kind = 'bypass-cookie';
          reply = await request(nginx.port, pop, { headers: { Cookie: 'theme=1; session=abc' } });
        } else if (roll < 0.9) {
          kind = 'bypass-query';
          reply = await request(nginx.port, `${pop}?q=${roll}`);
        } else {
          kind = 'bypass-post';
          reply = await request(nginx.port, pop, { method: 'POST' });
        }
      } catch (error) {
        report.errors.push(`request failed: ${(error as Error).message}`);
        continue;
      }
      report.byKind[kind] = (report.byKind[kind] ?? 0) + 1;
      const text = reply.body.toString('latin1');
      if (reply.status !== 200 || !text.startsWith('<!doctype html>') || !text.endsWith('</html>')) {
        report.errors.push(`${kind}: status ${reply.status}, ${reply.body.length} bytes`);
      }
    }
  };

  const purger = async (): Promise<void> => {
    const cacheRoot = new CacheRoot(root);
    await cacheRoot.store.init();
    for (let round = 0; running(); round++) {
      await sleep(2000);
      if (!running()) break;
      await (round % 3 === 2 ? purge(cacheRoot, { prefix: `/page/${1000 + (round % 7)}` }) : purge(cacheRoot, { tags: [`group:${round % 10}`] }));
      report.purges++;
    }
  };

  const crawler = async (): Promise<void> => {
    const list = path.join(dir, 'crawl.txt');
    for (let round = 0; running(); round++) {
      await fs.writeFile(list, Array.from({ length: 100 }, (_, i) => `/page/3000/crawl${round % 5}-${i}`).join('\n'));
      const result = await runCli(['crawl', list, '--origin', `http://127.0.0.1:${app.port}`, '--root', root, '--concurrency', '4']);
      if (result.code !== 0) report.errors.push(`crawl exited ${result.code}: ${result.stderr.slice(0, 300)}`);
      report.crawls++;
      await sleep(1000);
    }
  };

  const stats = async (): Promise<Stats> => JSON.parse((await request(app.port, '/__stats')).body.toString()) as Stats;
  const sampler = async (): Promise<void> => {
    while (running()) {
      samples.push({ at: Date.now() - started, stats: await stats() });
      await sleep(500);
    }
  };

  try {
    const startFds = (await stats()).fds;
    const progress = setInterval(() => log(`soak: ${Math.round((Date.now() - started) / 1000)}s, ${report.requests} requests, ${report.purges} purges, ${report.crawls} crawls, ${report.errors.length} errors`), 10_000);
    await Promise.all([...Array.from({ length: options.concurrency }, client), purger(), crawler(), sampler()]);
    clearInterval(progress);
    report.durationMs = Date.now() - started;

    // After warm-up (the second quarter) against the last quarter: a leak shows as growth between them.
    const quarter = report.durationMs / 4;
    const maxIn = (from: number, to: number, of: (stats: Stats) => number): number =>
      Math.max(0, ...samples.filter((sample) => sample.at >= from && sample.at < to).map((sample) => of(sample.stats)));
    report.rss = { early: maxIn(quarter, 2 * quarter, (sample) => sample.rss), late: maxIn(3 * quarter, Infinity, (sample) => sample.rss) };
    await sleep(1000);
    report.fds = {
      early: maxIn(quarter, 2 * quarter, (sample) => sample.fds),
      late: maxIn(3 * quarter, Infinity, (sample) => sample.fds),
      start: startFds,
      idle: (await stats()).fds,
    };

    await stopApp(app.child);
    const cacheRoot = new CacheRoot(root);
    await sweep(cacheRoot);
    await checkIndex(cacheRoot, report);
  } finally {
    await stopApp(app.child);
    await nginx.stop();
    await removeDir(dir);
  }
  return report;
}

/** Every file on disk is indexed under each of its tags; every index entry has its file. */
async function checkIndex(cacheRoot: CacheRoot, report: SoakReport): Promise<void> {
  const files = await listFiles(cacheRoot.root);
  report.files = files.length;
  const tagged = new Map<string, Set<string>>();
  const onDisk = new Set(files);
  const index = await cacheRoot.store.meta.load();
  for (const file of files) {
    const meta = index.current(file, await cacheRoot.store.fileStats(file));
    if (meta === undefined) {
      report.unindexed.push(`${file}: no index record`);
      continue;
    }
    for (const tag of meta.tags) {
      if (!tagged.has(tag)) tagged.set(tag, new Set(await cacheRoot.tags.files(tag)));
      if (!tagged.get(tag)?.has(file)) report.unindexed.push(`${file}: not under ${tag}`);
    }
  }
  for (const log of await cacheRoot.tags.allLogs()) {
    report.indexBytes += (await fs.stat(log)).size;
    const text = await fs.readFile(log, 'utf8');
    for (const line of text.split('\n')) {
      // `<file>\t<crc>` or `<file>\t<urlPath>\t<crc>` (tags.ts).
      const file = line.includes('\t') ? line.slice(0, line.indexOf('\t')) : '';
      if (file !== '' && !onDisk.has(file)) report.dangling.push(`${path.basename(log)}: ${file}`);
    }
  }
  // After the sweep's compaction, every record left describes a file on disk.
  for (const file of index.files()) {
    if (index.current(file, await cacheRoot.store.fileStats(file)) === undefined) report.dangling.push(`meta of ${file}`);
  }
}

async function startApp(root: string): Promise<{ port: number; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(repoRoot, 'test', 'workers', 'app.ts'), root], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (chunk: Buffer) => resolve(Number(chunk.toString().trim())));
    child.once('exit', (code) => reject(new Error(`app exited ${code}`)));
  });
  return { port, child };
}

async function stopApp(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}
