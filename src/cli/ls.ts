/** `prerender ls`: the cached files with their size, tags, store and expiry times (list.ts). */
import type { Command } from 'commander';
import { CacheRoot } from '../cache-root.js';
import { listEntries } from '../list.js';
import { collect } from './arguments.js';
import type { CommandContext } from './context.js';

export function registerLs(program: Command, { io, rootOption }: CommandContext): void {
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
      io.stdout(options.json === true ? `${JSON.stringify(listing)}\n` : table(listing));
    });
}

type Listing = Awaited<ReturnType<typeof listEntries>>;

function table({ entries, summary }: Listing): string {
  const date = (at: number | null) => (at === null ? '-' : new Date(at).toISOString().replace(/\.\d+Z$/, 'Z')).padEnd(20);
  const lines: string[] = [];
  if (entries.length > 0) lines.push(`${'bytes'.padStart(9)}  ${'stored'.padEnd(20)}  ${'expires'.padEnd(20)}  url path  -> file  +precompressed  [tags]`);
  for (const entry of entries) {
    // Siblings apart from the name: `index.html.gz.br` would read as one file.
    const siblings = entry.siblings.map((suffix) => ` +${suffix.slice(1)}`).join('');
    lines.push(`${String(entry.size).padStart(9)}  ${date(entry.storedAt)}  ${date(entry.expiresAt)}  ${entry.urlPath}  -> ${entry.file}${siblings === '' ? '' : ` ${siblings}`}${entry.tags.length > 0 ? `  [${entry.tags.join(', ')}]` : ''}`);
  }
  lines.push(`${summary.files} file${summary.files === 1 ? '' : 's'}, ${summary.bytes} bytes, ${summary.tags} tag${summary.tags === 1 ? '' : 's'}`);
  return `${lines.join('\n')}\n`;
}
