/**
 * A cold cache under a spike (issue 15), in one run:
 * a. a burst of 3,000 distinct cacheable ~19 KB pages, 16 requests at a time, against one app process
 *    wrapped by the middleware (`createCache({ root }).wrap(handler)`, options at their defaults): the
 *    share stored (goal >= 95%) and stores a second, from the first request until `idle()` resolves;
 * b. the same burst against the same app whose handler writes each body itself with plain Node (temp
 *    file + rename, no fsync, no index): stores a second, the floor; a / b has a goal of >= 0.5x.
 * The app runs in a child process (bench/burst-app.ts) so that this process, the load generator, does
 * not share its event loop. Each turn is a fresh process and a fresh root; the two modes take turns
 * (A B B A ...) so drift in the machine's speed hits both alike, and the figures are medians of turns.
 * Every response is checked (status and bytes), and so is the disk after each turn: each stored event
 * must have its whole file.
 *
 * Also here, moved out of test/faults.test.ts and test/soak.test.ts (timing and memory are figures,
 * not unit-test limits), see bench/body-memory.ts: a client reading 1 KB/s vs other requests and
 * memory; a fast client of a 256 MB body and the buffers it peaks at; the short soak's RSS growth.
 * The miss path's throughput and p99 against the bare app are in hits.bench.ts (case c).
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { removeDir, tempDir } from '../test/helpers.js';
import { fastClientPeak, slowClient, soakGrowth } from './body-memory.js';
import { burstPage, PAGE_BYTES, startBurstApp } from './burst-app.js';
import { median, withCleanup } from './exec.js';
import type { BenchRow } from './report.js';

const BENCH = 'burst';
const PAGES = 3000;
const CONCURRENCY = 16;
/** Turns per mode; they alternate A B B A A B ... */
const TURNS = 5;
const SHARE_GOAL = 0.95;
const RATE_GOAL = 0.5;

type Mode = 'middleware' | 'plain';

interface Turn {
  stored: number;
  onDisk: number;
  /** From the first request sent to the last response received. */
  answeredMs: number;
  /** From the first request sent until every store has finished. */
  idleMs: number;
  reasons: Record<string, number>;
}

export async function run(): Promise<BenchRow[]> {
  const turns: Record<Mode, Turn[]> = { middleware: [], plain: [] };
  for (let turn = 0; turn < TURNS; turn++) {
    for (const mode of turn % 2 === 0 ? (['middleware', 'plain'] as const) : (['plain', 'middleware'] as const)) {
      const result = await burst(mode);
      turns[mode].push(result);
      progress(`${mode}: ${result.stored} of ${PAGES} stored, answered in ${result.answeredMs.toFixed(0)} ms, idle after ${result.idleMs.toFixed(0)} ms (${rate(result).toFixed(0)} stores/s)${reasonsText(result.reasons)}`);
    }
  }
  return [...burstRows(turns), ...(await slowClient()), ...(await fastClientPeak()), ...(await soakGrowth())];
}

function burstRows(turns: Record<Mode, Turn[]>): BenchRow[] {
  const how = `${PAGES} distinct ${(PAGE_BYTES / 1024).toFixed(0)} KiB pages, ${CONCURRENCY} concurrent, median of ${TURNS} turns`;
  const shares = turns.middleware.map((turn) => turn.stored / PAGES);
  const share = median(shares);
  const ratios = turns.middleware.map((turn, i) => {
    const plain = turns.plain[i];
    return plain === undefined ? Number.NaN : rate(turn) / rate(plain);
  });
  const ratio = median(ratios);
  const list = (values: readonly number[], digits: number): string => values.map((value) => value.toFixed(digits)).join(', ');
  const reasons = turns.middleware.reduce<Record<string, number>>((all, turn) => {
    for (const [reason, count] of Object.entries(turn.reasons)) all[reason] = (all[reason] ?? 0) + count;
    return all;
  }, {});
  return [
    { bench: BENCH, case: 'a middleware: share stored', value: share * 100, unit: '%', note: `goal >= ${SHARE_GOAL * 100}%: ${share >= SHARE_GOAL ? 'met' : 'NOT met'}; turns ${list(shares.map((s) => s * 100), 1)}; ${how}${reasonsText(reasons, 'not stored, all turns')}` },
    { bench: BENCH, case: 'a middleware: stores a second', value: median(turns.middleware.map(rate)), unit: 'stores/s', note: `stored / (first request until idle()); turns ${list(turns.middleware.map(rate), 0)}` },
    { bench: BENCH, case: 'a middleware: burst answered in', value: median(turns.middleware.map((turn) => turn.answeredMs)), unit: 'ms', note: 'first request to last response' },
    { bench: BENCH, case: 'b plain Node (temp + rename, no fsync): stores a second', value: median(turns.plain.map(rate)), unit: 'stores/s', note: `turns ${list(turns.plain.map(rate), 0)}; share stored ${list(turns.plain.map((turn) => (turn.stored / PAGES) * 100), 1)}%` },
    { bench: BENCH, case: 'b plain Node: burst answered in', value: median(turns.plain.map((turn) => turn.answeredMs)), unit: 'ms', note: 'first request to last response' },
    { bench: BENCH, case: 'ratio a / b: stores a second, middleware / plain Node', value: ratio, unit: 'x', note: `goal >= ${RATE_GOAL}x: ${ratio >= RATE_GOAL ? 'met' : 'NOT met'}; median of ${ratios.length} turn pairs (${list(ratios, 3)})` },
  ];
}

function rate(turn: Turn): number {
  return turn.stored / (turn.idleMs / 1000);
}

function reasonsText(reasons: Record<string, number>, label = 'not stored'): string {
  const entries = Object.entries(reasons).sort((a, b) => b[1] - a[1]);
  return entries.length === 0 ? '' : `; ${label}: ${entries.slice(0, 3).map(([reason, count]) => `${count}x ${reason}`).join(', ')}`;
}

/** One turn: a fresh app process over a fresh root, the whole burst, then until every store is done. */
async function burst(mode: Mode): Promise<Turn> {
  return withCleanup(async (defer) => {
    const dir = await tempDir(`prerender-bench-burst-${mode}-`);
    defer(() => removeDir(dir));
    const root = path.join(dir, 'cache');
    const app = await startBurstApp(mode, root);
    defer(() => app.stop());
    const agent = new http.Agent({ keepAlive: true, maxSockets: CONCURRENCY });
    defer(async () => agent.destroy());
    const started = performance.now();
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < PAGES) await fetchPage(app.port, agent, next++);
    }));
    const answeredMs = performance.now() - started;
    const idle = await app.idle();
    const idleMs = performance.now() - started;
    const onDisk = await wholeFilesOnDisk(root);
    if (onDisk !== idle.stored) throw new Error(`${BENCH}: ${mode}: ${idle.stored} stores reported, ${onDisk} whole pages on disk`);
    return { stored: idle.stored, onDisk, answeredMs, idleMs, reasons: idle.reasons };
  });
}

function fetchPage(port: number, agent: http.Agent, n: number): Promise<void> {
  return new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: `/p/${n}`, agent }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('error', reject);
      response.on('end', () => {
        if (response.statusCode !== 200) return reject(new Error(`${BENCH}: /p/${n}: status ${response.statusCode}`));
        if (!Buffer.concat(chunks).equals(burstPage(n))) return reject(new Error(`${BENCH}: /p/${n}: the body is not the page`));
        resolve();
      });
    }).on('error', reject);
  });
}

/** Pages stored whole where nginx would look for them: `<root>/p/<n>/index.html` of the page's size. */
async function wholeFilesOnDisk(root: string): Promise<number> {
  let whole = 0;
  for (let n = 0; n < PAGES; n++) {
    const size = await fs.stat(path.join(root, 'p', String(n), 'index.html')).then((stats) => stats.size, () => undefined);
    if (size === PAGE_BYTES) whole++;
    else if (size !== undefined) throw new Error(`${BENCH}: p/${n}/index.html is ${size} bytes, not ${PAGE_BYTES}`);
  }
  return whole;
}

function progress(message: string): void {
  process.stderr.write(`${BENCH}: ${message}\n`);
}
