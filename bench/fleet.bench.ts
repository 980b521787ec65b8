/**
 * Several hosts over loopback: one redis-server, three roots, three real `prerender agent` processes.
 * - Latency: 1,000 purges published one at a time, each waited for on all three hosts (the `--wait`
 *   path, which polls every 5 ms): publish-to-applied p50 and p99. Goal: p99 <= 50 ms.
 * - Throughput: 1,000 purges published back to back, then the time until each host applied the last:
 *   purges applied per second per host.
 * Baseline, same run: the same purges applied with the local purge() on one root (no Redis), so the
 * fleet's cost reads as a ratio to the purge machinery's own.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { CacheRoot } from '../src/cache-root.js';
import { publishPurge, waitForHosts } from '../src/fleet/publish.js';
import { FleetRedis, compareIds } from '../src/fleet/stream.js';
import { purge, type PurgeSelector } from '../src/purge.js';
import { storePage } from '../test/helpers.js';
import { startAgentProcess, startRedis, waitForLog, type AgentProcess } from '../test/redis-helpers.js';
import type { BenchRow } from './report.js';

const BENCH = 'fleet';
const HOSTS = 3;
const PURGES = 1_000;
const PAGES = 2_000;
const GOAL_P99_MS = 50;

export async function run(): Promise<BenchRow[]> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'prerender-bench-fleet-'));
  const redis = await startRedis();
  const agents: AgentProcess[] = [];
  const link = new FleetRedis(redis.url, { persistent: true });
  try {
    const roots: string[] = [];
    for (let host = 1; host <= HOSTS; host++) roots.push(path.join(dir, `host${host}`));
    const baselineRoot = path.join(dir, 'baseline');
    progress(`filling ${HOSTS + 1} roots with ${PAGES} pages each`);
    for (const root of [...roots, baselineRoot]) await fill(new CacheRoot(root, { durable: false }));
    for (const [index, root] of roots.entries()) agents.push(startAgentProcess(root, redis.url, `host${index + 1}`));
    for (const agent of agents) await waitForLog(agent, 'connected to');

    const selectors = Array.from({ length: PURGES }, (_, i): PurgeSelector => (i % 4 === 3 ? { tags: [`t${i % 50}`] } : { paths: [`/s${i % 20}/p${i}`] }));

    progress('baseline: local purge() on one root');
    const baseline = new CacheRoot(baselineRoot);
    const local: number[] = [];
    for (const selector of selectors) {
      const started = performance.now();
      await purge(baseline, selector);
      local.push(performance.now() - started);
    }

    progress(`latency: ${PURGES} purges, each waited for on ${HOSTS} hosts`);
    const latency: number[] = [];
    for (const selector of selectors) {
      const started = performance.now();
      const result = await publishPurge(link, selector, { waitMs: 10_000 });
      latency.push(performance.now() - started);
      if (result.applied.length !== HOSTS) throw new Error(`${BENCH}: only ${result.applied.join(', ')} applied ${result.id}`);
    }

    progress(`throughput: ${PURGES} purges back to back`);
    for (const root of roots) await fill(new CacheRoot(root, { durable: false }));
    const started = performance.now();
    let last = '';
    for (const selector of selectors) last = (await publishPurge(link, selector)).id;
    const publishedMs = performance.now() - started;
    const finished = new Map<string, number>();
    while (finished.size < HOSTS) {
      for (const host of await link.hosts()) {
        if (!finished.has(host.id) && host.applied !== undefined && compareIds(host.applied, last) >= 0) finished.set(host.id, performance.now() - started);
      }
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    await waitForHosts(link, last, 10_000, 'purge');
    const slowest = Math.max(...finished.values());

    const p = (values: number[], q: number): number => {
      const sorted = [...values].sort((a, b) => a - b);
      return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? Number.NaN;
    };
    const round = (value: number): number => Math.round(value * 100) / 100;
    const p99 = p(latency, 0.99);
    return [
      { bench: BENCH, case: `publish-to-applied p50, ${HOSTS} hosts`, value: round(p(latency, 0.5)), unit: 'ms', note: `${round(p(latency, 0.5) / p(local, 0.5))}x local purge() p50 (${round(p(local, 0.5))} ms)` },
      { bench: BENCH, case: `publish-to-applied p99, ${HOSTS} hosts`, value: round(p99), unit: 'ms', note: `goal <= ${GOAL_P99_MS} ms: ${p99 <= GOAL_P99_MS ? 'met' : 'MISSED'}; local purge() p99 ${round(p(local, 0.99))} ms` },
      { bench: BENCH, case: 'purges applied per second per host (slowest)', value: Math.round(PURGES / (slowest / 1000)), unit: 'purges/s', note: `${PURGES} back to back, published in ${Math.round(publishedMs)} ms; local purge() ${Math.round(PURGES / (local.reduce((a, b) => a + b, 0) / 1000))}/s` },
    ];
  } finally {
    await link.close();
    for (const agent of agents) await agent.stop();
    await redis.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
}

async function fill(root: CacheRoot): Promise<void> {
  const limit = pLimit(16);
  await Promise.all(Array.from({ length: PAGES }, (_, i) => limit(() => storePage(root, `/s${i % 20}/p${i}`, [`t${i % 50}`]))));
}

function progress(message: string): void {
  process.stderr.write(`${BENCH}: ${message}\n`);
}
