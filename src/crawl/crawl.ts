/**
 * `crawl`: regenerates the tree from a URL list or sitemap by fetching each page from the origin, with
 * the same policy, mapping and write protocol as the middleware. The source (sources.ts) is streamed
 * and pulled by a fixed pool of workers (pool.ts), so memory does not grow with the list; report.ts
 * keeps the counts, and with `swap` the tree is a new generation switched to at the end (swap.ts).
 */
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { CacheRoot } from '../cache-root.js';
import { refuseSwapBase } from '../store/root-checks.js';
import { crawlSettings, type CrawlOptions } from './options.js';
import { runPool } from './pool.js';
import { ReportBuilder, type CrawlReport } from './report.js';
import { sitemapFetcher } from './sitemap-fetch.js';
import { openSource } from './sources.js';
import { SwapBuild } from './swap.js';

export type { CrawlOptions } from './options.js';
export type { CrawlFailure, CrawlProgress, CrawlReport } from './report.js';

export async function crawl(options: CrawlOptions): Promise<CrawlReport> {
  const settings = crawlSettings(options);
  if (!settings.swap) await refuseSwapBase(path.resolve(settings.root));
  const agentOptions = { keepAlive: true, maxSockets: settings.concurrency };
  const agent = settings.origin.startsWith('https:') ? new https.Agent(agentOptions) : new http.Agent(agentOptions);
  const sitemaps = sitemapFetcher(settings.origin, settings.timeoutMs);
  let build: SwapBuild | undefined;
  try {
    const source = await openSource(settings.source, { stdin: settings.stdin, limits: settings.sourceLimits, fetchStream: sitemaps.fetchStream });
    build = settings.swap ? await SwapBuild.start(settings.root) : undefined;
    const dir = build?.dir ?? path.resolve(settings.root);
    // With swap, nothing in the generation is visible until `current` switches to it, so files are not
    // fsynced one by one: the whole generation is flushed once before the switch.
    const root = new CacheRoot(dir, { precompress: settings.precompress, durable: !settings.swap });
    await root.init();

    const report = new ReportBuilder(settings.origin, settings.source, dir, settings.onProgress);
    await runPool({ settings, source, report, root, dir, agent });
    agent.destroy();
    sitemaps.destroy();
    report.close();
    if (build !== undefined) Object.assign(report.report, await build.finish(root, report.report.counts));
    return report.finish();
  } finally {
    agent.destroy();
    sitemaps.destroy();
    await build?.release();
  }
}
