/** `prerender sweep`: delete (or refresh) expired files and compact the index (sweep.ts). */
import type { Command } from 'commander';
import { CacheRoot } from '../cache-root.js';
import { sweep } from '../sweep.js';
import { refreshOption, type RefreshCliOptions } from './arguments.js';
import type { CommandContext } from './context.js';
import { printPurgeResult } from './purge.js';

export function registerSweep(program: Command, { io, rootOption, setExitCode }: CommandContext): void {
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
      printPurgeResult(io, result, options.json === true, false);
      if (result.failed.length > 0) setExitCode(1);
    });
}
