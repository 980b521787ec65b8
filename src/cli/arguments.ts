/**
 * What every command shares: turning argument strings into the library's option values, the options
 * several commands declare, and the mapping of errors to messages and exit codes (0 done, 1 some item
 * failed, 2 bad usage or input).
 *
 * Ranges are the library's to check: a number is parsed here only as far as its spelling (`1e3` is
 * not a count), and an `OptionError` the library throws is worded back with the flag it came from.
 */
import { CommanderError, Option } from 'commander';
import { PrerenderError } from '../errors.js';
import { OptionError } from '../options.js';
import { parseOrigin } from '../origin.js';
import type { RefreshOptions } from '../purge.js';
import type { CliIO } from './context.js';

/** The flag each library option (as the API names it) comes from. */
const FLAGS: Readonly<Record<string, string>> = {
  concurrency: '--concurrency',
  retries: '--retries',
  timeoutMs: '--timeout',
  maxDepth: '--max-depth',
  maxPages: '--max-pages',
  origin: '--origin',
  'refresh.origin': '--origin',
  'refresh.concurrency': '--concurrency',
  root: '--root',
  prefixDepth: '--prefix-depth',
  top: '--top',
  target: '<dir>',
  retentionMs: '--retention',
  redis: '--redis',
  upstream: '--upstream',
  listen: '--listen',
  serverName: '--server-name',
  bypassCookies: '--bypass-cookie',
  hosts: '--host',
  multiSite: '--multi-site',
  accessLog: '--access-log',
};

/** The CLI flag for a library option (`timeoutMs` -> `--timeout`); undefined for one no flag sets. */
export function flagFor(option: string): string | undefined {
  return Object.hasOwn(FLAGS, option) ? FLAGS[option] : undefined;
}

/** A whole number as written in decimal digits (not `1e3`, `0x10` or `1.5`); its range is checked by the library. */
export function integer(value: string, flag: string): number {
  const number = Number(value);
  if (!/^-?\d+$/.test(value) || !Number.isSafeInteger(number)) {
    throw new PrerenderError('EUSAGE', `${flag} ${JSON.stringify(value)} must be a whole number`, { input: value });
  }
  return number;
}

/** A whole number from 1 up, for values the library takes without checking (`unit`: "milliseconds"). */
export function positiveInteger(value: string, flag: string, unit?: string): number {
  const number = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(number) || number < 1) {
    throw new PrerenderError('EUSAGE', `${flag} ${JSON.stringify(value)} must be a whole number${unit === undefined ? '' : ` of ${unit}`} from 1 and up`, { input: value });
  }
  return number;
}

/** For repeatable options: `--tag a --tag b` gives ['a', 'b']. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `--root <dir>`, defaulting to $PRERENDER_ROOT, else ./cache. */
export function rootOptionFor(env: NodeJS.ProcessEnv): () => Option {
  const root = env.PRERENDER_ROOT !== undefined && env.PRERENDER_ROOT !== '' ? env.PRERENDER_ROOT : './cache';
  return () => new Option('--root <dir>', 'cache root (the directory nginx serves)').default(root);
}

/** `--redis`, defaulting to $PRERENDER_REDIS. */
export function redisOption(env: NodeJS.ProcessEnv): Option {
  const option = new Option('--redis <url>', 'the fleet\'s Redis (default: $PRERENDER_REDIS)');
  return env.PRERENDER_REDIS !== undefined && env.PRERENDER_REDIS !== '' ? option.default(env.PRERENDER_REDIS) : option;
}

export interface RefreshCliOptions {
  refresh?: boolean;
  origin?: string;
  concurrency: string;
}

/** `--refresh --origin <url> [--concurrency <n>]` of purge and sweep; undefined without --refresh. */
export function refreshOption(options: RefreshCliOptions): RefreshOptions | undefined {
  if (options.refresh !== true) {
    if (options.origin !== undefined) throw new PrerenderError('EUSAGE', '--origin is only used with --refresh');
    return undefined;
  }
  if (options.origin === undefined) throw new PrerenderError('EUSAGE', '--refresh needs --origin <url>: the app to fetch pages from');
  return { origin: parseOrigin(options.origin), concurrency: positiveInteger(options.concurrency, '--concurrency') };
}

/** Prints what went wrong and returns the exit code for it. */
export function exitCodeFor(error: unknown, io: CliIO): number {
  if (error instanceof CommanderError) {
    // Help and version are "errors" to commander; commander already printed the usage message.
    return error.exitCode === 0 ? 0 : 2;
  }
  if (error instanceof PrerenderError) {
    io.stderr(`prerender: ${error.message}\n`);
    return ['EUSAGE', 'EPATH', 'ETAG', 'EROOT'].includes(error.code) ? 2 : 1;
  }
  if (error instanceof OptionError) {
    io.stderr(`prerender: ${optionMessage(error)}\n`);
    return 2;
  }
  io.stderr(`prerender: ${error instanceof Error ? error.stack ?? error.message : String(error)}\n`);
  return 1;
}

/** An OptionError in the words of the command line: `--timeout must be a whole number from 1 up, not 0`. */
export function optionMessage(error: OptionError): string {
  const flag = flagFor(error.option);
  if (flag === undefined) return error.message;
  // Another option the expectation names is a flag here too ("given with `multiSite`").
  const expectation = error.expectation.replace(/`([\w.]+)`/g, (quoted, option: string) => flagFor(option) ?? quoted);
  return `${flag} must be ${expectation}${error.given === undefined ? '' : `, not ${error.given}`}`;
}
