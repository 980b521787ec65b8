/** `prerender crawl <source>`: fetch every page of a URL list or sitemap and store it (crawl.ts). */
import type { Command } from 'commander';
import type { CrawlReport } from '../crawl/crawl.js';
import { PrerenderError } from '../errors.js';
import { ENCODINGS } from '../precompress.js';
import { progressReporter } from '../progress.js';
import { integer, positiveInteger, redisOption } from './arguments.js';
import type { CommandContext } from './context.js';
import { fleetCrawl } from './fleet.js';

interface CrawlCliOptions {
  origin?: string;
  fleet?: boolean;
  redis?: string;
  wait?: string | boolean;
  root: string;
  concurrency: string;
  retries: string;
  timeout: string;
  follow?: boolean;
  maxDepth: string;
  maxPages?: string;
  swap?: boolean;
  precompress?: boolean;
  json?: boolean;
}

export function registerCrawl(program: Command, context: CommandContext): void {
  program.command('crawl')
    .description('fetch every page of a URL list or sitemap from the app and store it')
    .argument('<source>', 'URL list file, sitemap (.xml, .xml.gz, or URL), or - for stdin')
    .option('--origin <url>', 'the app to fetch from, e.g. http://127.0.0.1:3000 (required unless --fleet)')
    .option('--fleet', 'publish the crawl to the fleet: each host\'s agent crawls its own app into a new --swap generation')
    .addOption(redisOption(context.io.env))
    .option('--wait [ms]', 'with --fleet: wait for every live host and report each (default: an hour)')
    .option('--concurrency <n>', 'requests at once', '8')
    .option('--retries <n>', 'extra attempts after network errors, 5xx and 429', '2')
    .option('--timeout <ms>', 'per request', '30000')
    .option('--follow', 'also crawl same-origin links found in stored HTML')
    .option('--max-depth <n>', 'with --follow: links away from the source', '3')
    .option('--max-pages <n>', 'pages fetched at most; reaching it ends the crawl with a failure (default with --follow: 10000)')
    .option('--swap', 'build a new generation and switch <root>/current to it when every URL succeeded')
    .option('--precompress', 'also write .gz and .br siblings for nginx gzip_static / brotli_static')
    .option('--json', 'print a machine-readable report on stdout')
    .addOption(context.rootOption())
    .action((source: string, options: CrawlCliOptions) => crawlCommand(source, options, context));
}

async function crawlCommand(source: string, options: CrawlCliOptions, { io, setExitCode }: CommandContext): Promise<void> {
  if (options.fleet === true) {
    setExitCode(await fleetCrawl(io, source, {
      ...(options.redis === undefined ? {} : { redis: options.redis }),
      ...(options.wait === undefined ? {} : { wait: options.wait }),
      concurrency: positiveInteger(options.concurrency, '--concurrency'),
      json: options.json === true,
    }));
    return;
  }
  if (options.wait !== undefined) throw new PrerenderError('EUSAGE', '--wait is only used with --fleet');
  if (options.origin === undefined) throw new PrerenderError('EUSAGE', 'crawl needs --origin <url>: the app to fetch from (or --fleet to have each host crawl its own)');
  if (options.maxDepth !== '3' && options.follow !== true) throw new PrerenderError('EUSAGE', '--max-depth is only used with --follow');
  // Only spelled out here: crawl() checks each range, and its OptionError is worded with the flag.
  const numbers = {
    concurrency: integer(options.concurrency, '--concurrency'),
    retries: integer(options.retries, '--retries'),
    timeoutMs: integer(options.timeout, '--timeout'),
    maxDepth: integer(options.maxDepth, '--max-depth'),
    ...(options.maxPages === undefined ? {} : { maxPages: integer(options.maxPages, '--max-pages') }),
  };
  const { crawl } = await import('../crawl/crawl.js');
  const reporter = progressReporter({ write: io.stderr, isTTY: io.stderrIsTTY });
  const report = await crawl({
    source,
    origin: options.origin,
    root: options.root,
    ...numbers,
    follow: options.follow === true,
    swap: options.swap === true,
    precompress: options.precompress === true ? ENCODINGS : [],
    stdin: io.stdin,
    onProgress: (progress) => reporter.update(progress),
  });
  reporter.finish();
  // Said on stderr as well, so that it shows in a CI log even when stdout goes to a report file.
  if (report.stoppedEarly !== undefined) io.stderr(`prerender: crawl stopped early: ${report.stoppedEarly}\n`);
  io.stdout(options.json === true ? `${JSON.stringify(report)}\n` : summary(report));
  // A swap that did not happen fails the CI step too, even with no URL failed (nothing stored).
  if (report.counts.failed > 0 || report.swapped === false) setExitCode(1);
}

function summary(report: CrawlReport): string {
  const { counts } = report;
  const lines = [`crawled ${counts.total} URLs in ${(report.durationMs / 1000).toFixed(1)}s: ${counts.stored} stored (${counts.bytes} bytes), ${counts.skipped} skipped, ${counts.failed} failed`];
  for (const failure of report.failures) {
    lines.push(`  failed ${failure.line === undefined ? '' : `line ${failure.line}: `}${failure.url}: ${failure.error}${failure.attempts > 1 ? ` (${failure.attempts} attempts)` : ''}`);
  }
  for (const skip of report.skipped) lines.push(`  skipped ${skip.url}: ${skip.reason}`);
  if (report.swapped !== undefined) {
    const why = report.notSwapped ?? (report.counts.failed > 0 ? 'some URLs failed' : 'no page was stored');
    lines.push(report.swapped ? `switched current to ${report.root}` : `not switched: ${why}; current is unchanged`);
  }
  return `${lines.join('\n')}\n`;
}
