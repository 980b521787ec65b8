/** `prerender export <dir>`: the served tree as a plain static site (export.ts). */
import type { Command } from 'commander';
import type { CommandContext } from './context.js';

export function registerExport(program: Command, { io, rootOption }: CommandContext): void {
  program.command('export')
    .description('copy the served tree to <dir> as a plain static site (no state directory, no symlinks)')
    .argument('<dir>', 'export directory: new or empty, outside the root')
    .option('--precompressed', 'also copy the .gz/.br siblings (for a host with gzip_static)')
    .option('--overwrite', 'replace the contents of a non-empty <dir>')
    .option('--json', 'print a machine-readable report on stdout')
    .addOption(rootOption())
    .action(async (dir: string, options: { root: string; precompressed?: boolean; overwrite?: boolean; json?: boolean }) => {
      const { exportSite } = await import('../export.js');
      const report = await exportSite(options.root, dir, { precompressed: options.precompressed === true, overwrite: options.overwrite === true });
      if (options.json === true) {
        io.stdout(`${JSON.stringify(report)}\n`);
        return;
      }
      const lines = [`exported ${report.files} file${report.files === 1 ? '' : 's'} (${report.bytes} bytes${report.siblings > 0 ? `, ${report.siblings} precompressed` : ''}) from ${report.source} to ${report.target}`];
      for (const skip of report.skipped) lines.push(`  skipped ${skip.file}: ${skip.reason}`);
      io.stdout(`${lines.join('\n')}\n`);
    });
}
