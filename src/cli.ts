/**
 * The `prerender` command line: declares commands and calls library functions, so everything here can
 * be done from code too. Exit codes: 0 done, 1 some item failed, 2 bad usage or input.
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { PrerenderError } from './errors.js';
import { listEntries } from './list.js';
import { brotliModuleInstalled, nginxConfig } from './nginx-config.js';
import type { Readable } from 'node:stream';
import { CacheRoot } from './cache-root.js';
import { crawl, type CrawlReport } from './crawl/crawl.js';
import { doctor } from './doctor.js';
import { rollback } from './crawl/swap.js';
import { ENCODINGS } from './precompress.js';
import { progressReporter } from './progress.js';
import { parseOrigin } from './origin.js';
import { purge, type PurgeResult, type RefreshOptions } from './purge.js';
import { sweep } from './sweep.js';
import type { CommandContext } from './cli/context.js';
import { registerExport } from './cli/export.js';
import { registerStats } from './cli/stats.js';
import { fleetCrawl, fleetPurge, redisOption, registerFleetCommands } from './cli/fleet.js';

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  stderrIsTTY: boolean;
  stdin: Readable;
  env: NodeJS.ProcessEnv;
}

const processIO: CliIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stderrIsTTY: process.stderr.isTTY === true,
  stdin: process.stdin,
  env: process.env,
};

/** Runs the CLI with `argv` (as process.argv: node, script, ...args) and resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  let exitCode = 0;
  const defaultRoot = io.env.PRERENDER_ROOT !== undefined && io.env.PRERENDER_ROOT !== '' ? io.env.PRERENDER_ROOT : './cache';
  const rootOption = () => new Option('--root <dir>', 'cache root (the directory nginx serves)').default(defaultRoot);

  const program = new Command('prerender')
    .description('Pre-render and cache Node responses as static files that nginx serves from disk')
    .version(packageVersion(), '-V, --version', 'print the version (of the nginx-prerender package)')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError('(run with --help for usage)')
    .allowExcessArguments(false);

  program.command('nginx')
    .description('print an nginx server { } block that serves the cache and sends misses to the app')
    .addOption(rootOption())
    .requiredOption('--upstream <url>', 'the app, e.g. http://127.0.0.1:3000')
    .option('--listen <addr:port>', 'what nginx listens on', '80')
    .option('--server-name <name>', 'server_name', '_')
    .option('--bypass-cookie <name>', 'send requests with this cookie to the app (repeatable; default: the middleware defaults)', collect, undefined)
    .option('--host <name>', 'serve from disk only for this host (repeatable; the middleware\'s hosts)', collect, undefined)
    .option('--multi-site', 'serve <root>/$host/ (the middleware\'s multiSite); needs --host')
    .option('--access-log <file>', 'log requests with their X-Cache (HIT/MISS) here, for prerender stats')
    .addOption(new Option('--brotli <when>', 'serve .br siblings with brotli_static (auto: if the Debian module is installed)').choices(['auto', 'on', 'off']).default('auto'))
    .action((options: { root: string; upstream: string; listen: string; serverName: string; bypassCookie?: string[]; brotli: 'auto' | 'on' | 'off'; host?: string[]; multiSite?: boolean; accessLog?: string }) => {
      io.stdout(nginxConfig({
        ...(options.accessLog === undefined ? {} : { accessLog: options.accessLog }),
        ...(options.host === undefined ? {} : { hosts: options.host }),
        multiSite: options.multiSite === true,
        brotli: options.brotli === 'auto' ? brotliModuleInstalled() : options.brotli === 'on',
        root: options.root,
        upstream: options.upstream,
        listen: options.listen,
        serverName: options.serverName,
        ...(options.bypassCookie === undefined ? {} : { bypassCookies: options.bypassCookie }),
      }));
    });

  program.command('purge')
    .description('delete cached files by URL path, tag, prefix or all (with their .gz/.br siblings)')
    .argument('[paths...]', 'URL paths (/blog/post) or absolute URLs')
    .option('--tag <tag>', 'every file stored with this tag (repeatable)', collect, undefined)
    .option('--prefix <prefix>', 'every file whose URL path starts with this (/blog/)')
    .option('--glob <pattern>', 'every file whose URL path matches (/blog/**, /*.css; repeatable)', collect, undefined)
    .option('--all', 'everything under the root')
    .option('--dry-run', 'list what would be removed; remove nothing')
    .option('--refresh', 'fetch each page again from --origin and replace it in place; delete it if that fails')
    .option('--origin <url>', 'the app to refresh from, e.g. http://127.0.0.1:3000')
    .option('--concurrency <n>', 'refreshes at once', '8')
    .option('--json', 'print a machine-readable report on stdout')
    .addOption(rootOption())
    .addOption(redisOption(io.env))
    .option('--wait <ms>', 'with --redis: return once every live host applied it, fail naming those that did not')
    .action(async (paths: string[], options: PurgeCliOptions) => {
      if (options.redis !== undefined && options.dryRun !== true) return fleetPurgeAction(paths, options);
      if (options.wait !== undefined) throw new PrerenderError('EUSAGE', '--wait is only used with --redis (or $PRERENDER_REDIS)');
      const refresh = refreshOption(options);
      const selector = {
        paths,
        ...(options.tag === undefined ? {} : { tags: options.tag }),
        ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
        ...(options.glob === undefined ? {} : { glob: options.glob }),
        ...(options.all === true ? { all: true } : {}),
      };
      if (paths.length === 0 && selector.tags === undefined && selector.prefix === undefined && selector.glob === undefined && selector.all !== true) {
        throw new PrerenderError('EUSAGE', 'purge needs something to select: paths, --tag, --prefix, --glob or --all');
      }
      const result = await purge(new CacheRoot(options.root), selector, {
        dryRun: options.dryRun === true,
        ...(refresh === undefined ? {} : { refresh }),
      });
      report(io, result, options.json === true, options.dryRun === true);
      if (result.failed.length > 0) exitCode = 1;
    });

  const fleetPurgeAction = async (paths: string[], options: PurgeCliOptions): Promise<void> => {
    if (options.origin !== undefined) throw new PrerenderError('EUSAGE', '--origin is not used with --redis: each host\'s agent refreshes from its own --origin');
    await fleetPurge(io, options.redis ?? '', {
      paths,
      ...(options.tag === undefined ? {} : { tags: options.tag }),
      ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
      ...(options.all === true ? { all: true } : {}),
    }, { ...(options.wait === undefined ? {} : { wait: options.wait }), json: options.json === true, refresh: options.refresh === true });
  };

  program.command('crawl')
    .description('fetch every page of a URL list or sitemap from the app and store it')
    .argument('<source>', 'URL list file, sitemap (.xml, .xml.gz, or URL), or - for stdin')
    .option('--origin <url>', 'the app to fetch from, e.g. http://127.0.0.1:3000 (required unless --fleet)')
    .option('--fleet', 'publish the crawl to the fleet: each host\'s agent crawls its own app into a new --swap generation')
    .addOption(redisOption(io.env))
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
    .addOption(rootOption())
    .action(async (source: string, options: CrawlCliOptions) => {
      if (options.fleet === true) {
        exitCode = await fleetCrawl(io, source, { ...(options.redis === undefined ? {} : { redis: options.redis }), ...(options.wait === undefined ? {} : { wait: options.wait }), concurrency: positiveInteger(options.concurrency, '--concurrency'), json: options.json === true });
        return;
      }
      if (options.wait !== undefined) throw new PrerenderError('EUSAGE', '--wait is only used with --fleet');
      if (options.origin === undefined) throw new PrerenderError('EUSAGE', 'crawl needs --origin <url>: the app to fetch from (or --fleet to have each host crawl its own)');
      const origin = options.origin;
      if (options.maxDepth !== '3' && options.follow !== true) throw new PrerenderError('EUSAGE', '--max-depth is only used with --follow');
      const reporter = progressReporter({ write: io.stderr, isTTY: io.stderrIsTTY });
      const report = await crawl({
        source,
        origin,
        root: options.root,
        concurrency: positiveInteger(options.concurrency, '--concurrency'),
        retries: wholeNumber(options.retries, '--retries'),
        timeoutMs: positiveInteger(options.timeout, '--timeout'),
        follow: options.follow === true,
        maxDepth: wholeNumber(options.maxDepth, '--max-depth'),
        ...(options.maxPages === undefined ? {} : { maxPages: positiveInteger(options.maxPages, '--max-pages') }),
        swap: options.swap === true,
        precompress: options.precompress === true ? ENCODINGS : [],
        stdin: io.stdin,
        onProgress: (progress) => reporter.update(progress),
      });
      reporter.finish();
      // Said on stderr as well, so that it shows in a CI log even when stdout goes to a report file.
      if (report.stoppedEarly !== undefined) io.stderr(`prerender: crawl stopped early: ${report.stoppedEarly}\n`);
      if (options.json === true) io.stdout(`${JSON.stringify(report)}\n`);
      else io.stdout(crawlSummary(report));
      // A swap that did not happen fails the CI step too, even with no URL failed (nothing stored).
      if (report.counts.failed > 0 || report.swapped === false) exitCode = 1;
    });

  program.command('rollback')
    .description('switch <root>/current back to the previous crawl --swap generation')
    .addOption(rootOption())
    .action(async (options: { root: string }) => {
      const generations = await rollback(options.root);
      io.stdout(`current: ${generations.current ?? '-'}\nprevious: ${generations.previous ?? '-'}\n`);
    });

  program.command('ls')
    .description('list cached files: path, file, size, tags, stored at, expires')
    .option('--tag <tag>', 'only files stored with this tag')
    .option('--prefix <prefix>', 'only files whose URL path starts with this')
    .option('--glob <pattern>', 'only files whose URL path matches (/blog/**; repeatable)', collect, undefined)
    .option('--json', 'print a machine-readable listing on stdout')
    .addOption(rootOption())
    .action(async (options: { root: string; tag?: string; prefix?: string; glob?: string[]; json?: boolean }) => {
      const listing = await listEntries(new CacheRoot(options.root), {
        ...(options.tag === undefined ? {} : { tag: options.tag }),
        ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
        ...(options.glob === undefined ? {} : { glob: options.glob }),
      });
      if (options.json === true) {
        io.stdout(`${JSON.stringify(listing)}\n`);
        return;
      }
      const date = (at: number | null) => (at === null ? '-' : new Date(at).toISOString().replace(/\.\d+Z$/, 'Z')).padEnd(20);
      if (listing.entries.length > 0) io.stdout(`${'bytes'.padStart(9)}  ${'stored'.padEnd(20)}  ${'expires'.padEnd(20)}  url path  -> file  +precompressed  [tags]\n`);
      for (const entry of listing.entries) {
        // Siblings apart from the name: `index.html.gz.br` would read as one file.
        const siblings = entry.siblings.map((suffix) => ` +${suffix.slice(1)}`).join('');
        io.stdout(`${String(entry.size).padStart(9)}  ${date(entry.storedAt)}  ${date(entry.expiresAt)}  ${entry.urlPath}  -> ${entry.file}${siblings === '' ? '' : ` ${siblings}`}${entry.tags.length > 0 ? `  [${entry.tags.join(', ')}]` : ''}\n`);
      }
      const { summary } = listing;
      io.stdout(`${summary.files} file${summary.files === 1 ? '' : 's'}, ${summary.bytes} bytes, ${summary.tags} tag${summary.tags === 1 ? '' : 's'}\n`);
    });

  program.command('doctor')
    .description('check that nginx really serves the cache at a public URL, and say what to fix')
    .requiredOption('--url <url>', 'the site as clients reach it, e.g. https://www.example.com')
    .option('--host <name>', 'send this Host header (a name on the config\'s --host allowlist) while connecting to --url')
    .option('--json', 'print the checks as JSON on stdout')
    .addOption(rootOption())
    .action(async (options: { url: string; root: string; host?: string; json?: boolean }) => {
      const checks = await doctor({ url: options.url, root: options.root, ...(options.host === undefined ? {} : { host: options.host }) });
      if (options.json === true) io.stdout(`${JSON.stringify({ ok: checks.every((c) => c.ok), checks })}\n`);
      else {
        for (const check of checks) {
          io.stdout(`${check.ok ? 'ok  ' : 'FAIL'}  ${check.check}: ${check.detail}\n`);
          if (check.fix !== undefined) io.stdout(`      fix: ${check.fix}\n`);
        }
      }
      if (!checks.every((c) => c.ok)) exitCode = 1;
    });

  registerFleetCommands(program, io, rootOption, (code) => {
    exitCode = code;
  });

  program.command('sweep')
    .description('delete expired files (or refresh them) and compact the index')
    .option('--refresh', 'fetch expired pages again from --origin instead of deleting them')
    .option('--origin <url>', 'the app to refresh from')
    .option('--concurrency <n>', 'refreshes at once', '8')
    .option('--json', 'print a machine-readable report on stdout')
    .addOption(rootOption())
    .action(async (options: RefreshCliOptions & { root: string; json?: boolean }) => {
      const refresh = refreshOption(options);
      const result = await sweep(new CacheRoot(options.root), refresh === undefined ? {} : { refresh });
      report(io, result, options.json === true, false);
      if (result.failed.length > 0) exitCode = 1;
    });

  const context: CommandContext = { io, rootOption, setExitCode: (code) => { exitCode = code; } };
  registerExport(program, context);
  registerStats(program, context);

  try {
    await program.parseAsync(argv);
  } catch (error) {
    exitCode = exitCodeFor(error, io);
  }
  return exitCode;
}

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

function crawlSummary(report: CrawlReport): string {
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

function wholeNumber(value: string, option: string): number {
  return value === '0' ? 0 : positiveInteger(value, option);
}

interface RefreshCliOptions {
  refresh?: boolean;
  origin?: string;
  concurrency: string;
}

interface PurgeCliOptions extends RefreshCliOptions {
  root: string;
  tag?: string[];
  prefix?: string;
  glob?: string[];
  all?: boolean;
  dryRun?: boolean;
  json?: boolean;
  redis?: string;
  wait?: string;
}

function refreshOption(options: RefreshCliOptions): RefreshOptions | undefined {
  if (options.refresh !== true) {
    if (options.origin !== undefined) throw new PrerenderError('EUSAGE', '--origin is only used with --refresh');
    return undefined;
  }
  if (options.origin === undefined) throw new PrerenderError('EUSAGE', '--refresh needs --origin <url>: the app to fetch pages from');
  return { origin: parseOrigin(options.origin), concurrency: positiveInteger(options.concurrency, '--concurrency') };
}

function positiveInteger(value: string, option: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < 1) {
    throw new PrerenderError('EUSAGE', `${option} ${JSON.stringify(value)} must be a whole number from 1 and up`, { input: value });
  }
  return number;
}

function report(io: CliIO, result: PurgeResult, json: boolean, dryRun: boolean): void {
  if (json) {
    io.stdout(`${JSON.stringify({
      dryRun,
      counts: { removed: result.removed.length, refreshed: result.refreshed.length, failed: result.failed.length },
      ...result,
    })}\n`);
    return;
  }
  const plural = (count: number) => `${count} file${count === 1 ? '' : 's'}`;
  const lines = [`${dryRun ? 'would remove' : 'removed'} ${plural(result.removed.length)}`];
  if (result.refreshed.length > 0) lines.push(`refreshed ${plural(result.refreshed.length)}`);
  for (const failure of result.failed) lines.push(`refresh failed, deleted instead: ${failure.urlPath} (${failure.reason})`);
  if (dryRun) lines.push(...result.removed.map((file) => `  ${file}`));
  io.stdout(`${lines.join('\n')}\n`);
}

/** From the package.json next to dist/ (or src/ under tsx): the version npm installed. */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function exitCodeFor(error: unknown, io: CliIO): number {
  if (error instanceof CommanderError) {
    // Help and version are "errors" to commander; commander already printed the usage message.
    return error.exitCode === 0 ? 0 : 2;
  }
  if (error instanceof PrerenderError) {
    io.stderr(`prerender: ${error.message}\n`);
    return ['EUSAGE', 'EPATH', 'ETAG', 'EROOT'].includes(error.code) ? 2 : 1;
  }
  io.stderr(`prerender: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  return 1;
}
