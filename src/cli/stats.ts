/** `prerender stats --access-log <file>`: hit ratio overall and by prefix, the most requested misses (access-log.ts). */
import type { Command } from 'commander';
import { readAccessLog, type AccessLogStats } from '../access-log.js';
import { PrerenderError } from '../errors.js';
import type { CommandContext } from './context.js';

export function registerStats(program: Command, { io }: CommandContext): void {
  program.command('stats')
    .description('hit ratio from an access log written with `prerender nginx --access-log`, by prefix, and the top misses')
    .requiredOption('--access-log <file>', 'the log nginx writes (prerender nginx --access-log <file>)')
    .option('--prefix-depth <n>', 'path segments that make a prefix (/blog/ is 1)', '1')
    .option('--top <n>', 'misses to list', '20')
    .option('--json', 'print a machine-readable report on stdout')
    .action(async (options: { accessLog: string; prefixDepth: string; top: string; json?: boolean }) => {
      const stats = await readAccessLog(options.accessLog, {
        prefixDepth: count(options.prefixDepth, '--prefix-depth'),
        top: count(options.top, '--top'),
      });
      io.stdout(options.json === true ? `${JSON.stringify(stats)}\n` : summary(stats));
    });
}

function count(value: string, option: string): number {
  if (!/^\d{1,6}$/.test(value)) throw new PrerenderError('EUSAGE', `${option} ${JSON.stringify(value)} must be a whole number from 0 up`, { input: value });
  return Number(value);
}

const percent = (ratio: number | null): string => (ratio === null ? '-' : `${(ratio * 100).toFixed(1)}%`);

function summary(stats: AccessLogStats): string {
  const lines = [`${stats.requests} requests: ${stats.hits} hits, ${stats.misses} misses, ${stats.other} other; hit ratio ${percent(stats.hitRatio)}${stats.malformed > 0 ? ` (${stats.malformed} lines not in prerender's format)` : ''}`];
  if (stats.prefixes.length > 0) {
    lines.push('', `${'hit ratio'.padStart(9)}  ${'hits'.padStart(8)}  ${'misses'.padStart(8)}  prefix`);
    for (const prefix of stats.prefixes) lines.push(`${percent(prefix.hitRatio).padStart(9)}  ${String(prefix.hits).padStart(8)}  ${String(prefix.misses).padStart(8)}  ${prefix.prefix}`);
  }
  if (stats.topMisses.length > 0) {
    lines.push('', `${'misses'.padStart(8)}  statuses  path  (what to do)`);
    for (const miss of stats.topMisses) {
      const statuses = Object.entries(miss.statuses).map(([status, n]) => `${status}x${n}`).join(',');
      lines.push(`${String(miss.count).padStart(8)}  ${statuses.padEnd(8)}  ${miss.path}  (${miss.hint})`);
    }
  }
  return `${lines.join('\n')}\n`;
}
