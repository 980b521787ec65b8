/** `prerender purge`: delete (or refresh) cached files by path, tag, prefix, glob or all (purge.ts). */
import type { Command } from 'commander';
import { CacheRoot } from '../cache-root.js';
import { PrerenderError } from '../errors.js';
import { purge, type PurgeResult } from '../purge.js';
import { collect, redisOption, refreshOption, type RefreshCliOptions } from './arguments.js';
import type { CliIO, CommandContext } from './context.js';
import { fleetPurge } from './fleet.js';

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

export function registerPurge(program: Command, context: CommandContext): void {
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
    .addOption(context.rootOption())
    .addOption(redisOption(context.io.env))
    .option('--wait <ms>', 'with --redis: return once every live host applied it, fail naming those that did not')
    .action((paths: string[], options: PurgeCliOptions) => purgeCommand(paths, options, context));
}

async function purgeCommand(paths: string[], options: PurgeCliOptions, { io, setExitCode }: CommandContext): Promise<void> {
  if (options.redis !== undefined && options.dryRun !== true) return fleetPurgeCommand(paths, options, io);
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
  printPurgeResult(io, result, options.json === true, options.dryRun === true);
  if (result.failed.length > 0) setExitCode(1);
}

async function fleetPurgeCommand(paths: string[], options: PurgeCliOptions, io: CliIO): Promise<void> {
  if (options.origin !== undefined) throw new PrerenderError('EUSAGE', '--origin is not used with --redis: each host\'s agent refreshes from its own --origin');
  await fleetPurge(io, options.redis ?? '', {
    paths,
    ...(options.tag === undefined ? {} : { tags: options.tag }),
    ...(options.prefix === undefined ? {} : { prefix: options.prefix }),
    ...(options.all === true ? { all: true } : {}),
  }, { ...(options.wait === undefined ? {} : { wait: options.wait }), json: options.json === true, refresh: options.refresh === true });
}

/** The report of a purge or a sweep: counts, refresh failures and, for a dry run, the files. */
export function printPurgeResult(io: CliIO, result: PurgeResult, json: boolean, dryRun: boolean): void {
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
