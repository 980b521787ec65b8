/** `prerender rollback`: <root>/current back to the previous `crawl --swap` generation (generations.ts). */
import type { Command } from 'commander';
import { rollback } from '../store/generations.js';
import type { CommandContext } from './context.js';

export function registerRollback(program: Command, { io, rootOption }: CommandContext): void {
  program.command('rollback')
    .description('switch <root>/current back to the previous crawl --swap generation')
    .addOption(rootOption())
    .action(async (options: { root: string }) => {
      const generations = await rollback(options.root);
      io.stdout(`current: ${generations.current ?? '-'}\nprevious: ${generations.previous ?? '-'}\n`);
    });
}
