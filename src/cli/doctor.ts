/** `prerender doctor --url <public url>`: is nginx really serving hits, and what to fix (doctor.ts). */
import type { Command } from 'commander';
import type { CommandContext } from './context.js';

export function registerDoctor(program: Command, { io, rootOption, setExitCode }: CommandContext): void {
  program.command('doctor')
    .description('check that nginx really serves the cache at a public URL, and say what to fix')
    .requiredOption('--url <url>', 'the site as clients reach it, e.g. https://www.example.com')
    .option('--host <name>', 'send this Host header (a name on the config\'s --host allowlist) while connecting to --url')
    .option('--json', 'print the checks as JSON on stdout')
    .addOption(rootOption())
    .action(async (options: { url: string; root: string; host?: string; json?: boolean }) => {
      const { doctor } = await import('../doctor.js');
      const checks = await doctor({ url: options.url, root: options.root, ...(options.host === undefined ? {} : { host: options.host }) });
      if (options.json === true) io.stdout(`${JSON.stringify({ ok: checks.every((c) => c.ok), checks })}\n`);
      else {
        for (const check of checks) {
          io.stdout(`${check.ok ? 'ok  ' : 'FAIL'}  ${check.check}: ${check.detail}\n`);
          if (check.fix !== undefined) io.stdout(`      fix: ${check.fix}\n`);
        }
      }
      if (!checks.every((c) => c.ok)) setExitCode(1);
    });
}
