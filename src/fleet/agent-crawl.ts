/**
 * A fleet crawl on one host: the agent crawls its own app into a new --swap generation and switches
 * to it, while it goes on applying purges to the live tree (crawl.ts carries those made during the
 * build into the new one). The outcome goes to Redis for the publisher (`crawl --fleet --wait`).
 */
import fs from 'node:fs/promises';
import { crawl } from '../crawl/crawl.js';
import { createGeneration, currentGenerationDir, publishGeneration } from '../store/generations.js';
import type { CrawlEntry } from './entries.js';
import { isSwapBase, removeFleetFile, writeFleetFile } from './state.js';
import type { FleetRedis } from './stream.js';

export interface FleetCrawlReport {
  ok: boolean;
  error?: string;
  stored?: number;
  failed?: number;
  swapped?: boolean;
  failures?: string[];
  finishedAt: number;
}

export interface FleetCrawlContext {
  base: string;
  dir: string;
  host: string;
  entryId: string;
  entry: CrawlEntry;
  redis: FleetRedis;
  origin?: string;
  log: (line: string) => void;
}

const REPORT_ATTEMPTS = 120;

export async function runFleetCrawl(context: FleetCrawlContext): Promise<void> {
  const report = await crawlHere(context).catch((error: unknown): FleetCrawlReport => ({
    ok: false, error: error instanceof Error ? error.message : String(error), finishedAt: Date.now(),
  }));
  context.log(`${context.host}: fleet crawl ${context.entryId}: ${report.ok ? `switched (${report.stored ?? 0} stored)` : `failed: ${report.error ?? `${report.failed ?? 0} URLs failed`}`}`);
  // Redis may be away for a while; the report is kept and sent once it is back (up to a minute).
  for (let attempt = 0; attempt < REPORT_ATTEMPTS; attempt++) {
    try {
      await context.redis.reportCrawl(context.entryId, context.host, { ...report });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  context.log(`${context.host}: could not report fleet crawl ${context.entryId} to Redis`);
}

async function crawlHere(context: FleetCrawlContext): Promise<FleetCrawlReport> {
  const { base, entry } = context;
  if (context.origin === undefined) return { ok: false, error: 'this agent has no --origin: it cannot crawl its app', finishedAt: Date.now() };
  if (!isSwapBase(base)) {
    const names = (await fs.readdir(base).catch(() => [] as string[])).filter((name) => name !== '.prerender');
    if (names.length > 0) {
      return { ok: false, error: `${base} is a plain cache root: fleet crawls build --swap generations, so run the agent with --root on a swap base (nginx root <base>/current)`, finishedAt: Date.now() };
    }
  }
  // A first crawl gets an empty live tree beforehand, so purges applied during its build have a tree
  // to be recorded in and are carried into the new generation like any later build's.
  if ((await currentGenerationDir(base)) === undefined) await publishGeneration(base, await createGeneration(base));

  let source = entry.url;
  const listName = `crawl-${context.entryId}.list`;
  if (source === undefined) source = await writeFleetFile(context.dir, listName, Buffer.from(entry.list ?? '', 'base64'));
  try {
    const result = await crawl({
      source,
      origin: context.origin,
      root: base,
      swap: true,
      ...(entry.concurrency === undefined ? {} : { concurrency: entry.concurrency }),
    });
    const ok = result.swapped === true && result.counts.failed === 0;
    return {
      ok,
      ...(ok ? {} : { error: result.notSwapped ?? (result.counts.failed > 0 ? `${result.counts.failed} URLs failed` : 'not switched: no page was stored') }),
      stored: result.counts.stored,
      failed: result.counts.failed,
      swapped: result.swapped === true,
      failures: result.failures.slice(0, 20).map((failure) => `${failure.url}: ${failure.error}`),
      finishedAt: Date.now(),
    };
  } finally {
    if (entry.url === undefined) await removeFleetFile(context.dir, listName);
  }
}
