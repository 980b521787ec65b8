/**
 * The `prerender` command line: declares commands and calls library functions, so everything here can
 * be done from code too. Exit codes: 0 done, 1 some item failed, 2 bad usage or input.
 */
import { Command, CommanderError, Option } from 'commander';
import { PrerenderError } from './errors.js';
import { nginxConfig } from './nginx-config.js';
import { purge } from './purge.js';
import { Store } from './store.js';

export interface CliIO {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: NodeJS.ProcessEnv;
}

const processIO: CliIO = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  env: process.env,
};

/** Runs the CLI with `argv` (as process.argv: node, script, ...args) and resolves to the exit code. */
export async function main(argv: readonly string[], io: CliIO = processIO): Promise<number> {
  let exitCode = 0;
  const defaultRoot = io.env.PRERENDER_ROOT !== undefined && io.env.PRERENDER_ROOT !== '' ? io.env.PRERENDER_ROOT : './cache';
  const rootOption = () => new Option('--root <dir>', 'cache root (the directory nginx serves)').default(defaultRoot);

  const program = new Command('prerender')
    .description('Pre-render and cache Node responses as static files that nginx serves from disk')
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
    .action((options: { root: string; upstream: string; listen: string; serverName: string; bypassCookie?: string[] }) => {
      io.stdout(nginxConfig({
        root: options.root,
        upstream: options.upstream,
        listen: options.listen,
        serverName: options.serverName,
        ...(options.bypassCookie === undefined ? {} : { bypassCookies: options.bypassCookie }),
      }));
    });

  program.command('purge')
    .description('delete cached files by URL path or URL (with their .gz/.br siblings)')
    .argument('<paths...>', 'URL paths (/blog/post) or absolute URLs')
    .addOption(rootOption())
    .option('--json', 'print a machine-readable report on stdout')
    .action(async (paths: string[], options: { root: string; json?: boolean }) => {
      const result = await purge(new Store(options.root), { paths });
      if (options.json === true) io.stdout(`${JSON.stringify({ removed: result.removed, count: result.removed.length })}\n`);
      else io.stdout(`removed ${result.removed.length} file${result.removed.length === 1 ? '' : 's'}${result.removed.map((file) => `\n  ${file}`).join('')}\n`);
    });

  try {
    await program.parseAsync(argv);
  } catch (error) {
    exitCode = exitCodeFor(error, io);
  }
  return exitCode;
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
