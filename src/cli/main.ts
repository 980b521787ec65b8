/**
 * The `prerender` command line: declares its commands, one a file in this directory, each calling
 * library functions, so everything here can be done from code too. Exit codes: 0 done, 1 some item
 * failed, 2 bad usage or input (arguments.ts maps errors to them).
 */
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { registerAgent } from './agent.js';
import { exitCodeFor, rootOptionFor } from './arguments.js';
import type { CliIO, CommandContext } from './context.js';
import { registerCrawl } from './crawl.js';
import { registerDoctor } from './doctor.js';
import { registerExport } from './export.js';
import { registerFleet } from './fleet.js';
import { registerLs } from './ls.js';
import { registerNginx } from './nginx.js';
import { registerPurge } from './purge.js';
import { registerRollback } from './rollback.js';
import { registerStats } from './stats.js';
import { registerSweep } from './sweep.js';

export type { CliIO } from './context.js';

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
  const context: CommandContext = { io, rootOption: rootOptionFor(io.env), setExitCode: (code) => { exitCode = code; } };
  const program = new Command('prerender')
    .description('Pre-render and cache Node responses as static files that nginx serves from disk')
    .version(packageVersion(), '-V, --version', 'print the version (of the nginx-prerender package)')
    .exitOverride()
    .configureOutput({ writeOut: io.stdout, writeErr: io.stderr })
    .showHelpAfterError('(run with --help for usage)')
    .allowExcessArguments(false);
  // In the order --help lists them.
  for (const register of [registerNginx, registerPurge, registerCrawl, registerRollback, registerLs, registerDoctor,
    registerAgent, registerFleet, registerSweep, registerExport, registerStats]) {
    register(program, context);
  }
  try {
    await program.parseAsync(argv);
  } catch (error) {
    exitCode = exitCodeFor(error, io);
  }
  return exitCode;
}

/** From the package.json above dist/ (or src/ under tsx): the version npm installed. */
function packageVersion(): string {
  const manifest = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof manifest.version === 'string' ? manifest.version : 'unknown';
}
