/**
 * What is cached: each stored file with its meta record, filtered by tag (through the tag log) or by
 * URL-path prefix (through the tree under it). The meta records are read whole (store/meta-log.ts).
 */
import type { CacheRoot } from './cache-root.js';
import { globFiles } from './glob.js';
import { parseGlobs, parsePrefixArgument, parseTagArgument } from './purge.js';
import { SIBLING_SUFFIXES } from './store/store.js';
import { impliedUrlPath } from './url-path.js';

export interface ListedEntry {
  /** URL path it was stored for (from the index; derived from the file name if the record is missing). */
  urlPath: string;
  file: string;
  size: number;
  mediaType: string | undefined;
  tags: string[];
  storedAt: number | null;
  expiresAt: number | null;
  /** Precompressed siblings present. */
  siblings: string[];
}

export interface ListSummary {
  files: number;
  bytes: number;
  tags: number;
}

export async function listEntries(root: CacheRoot, filter: { tag?: string; prefix?: string; glob?: string | readonly string[] } = {}): Promise<{ entries: ListedEntry[]; summary: ListSummary }> {
  const tag = filter.tag === undefined ? undefined : parseTagArgument(filter.tag);
  const prefix = filter.prefix === undefined ? undefined : parsePrefixArgument(filter.prefix);
  const globs = parseGlobs(filter.glob);
  await root.store.checkRoot();

  let files: string[];
  if (tag !== undefined) files = (await root.tags.files(tag)).sort();
  else files = (await root.store.list(prefix?.dir ?? [], prefix?.namePrefix ?? '')).sort();
  if (globs.length > 0) {
    const matched = new Set(await globFiles(root.root, globs));
    files = files.filter((file) => matched.has(file));
  }

  const index = await root.store.meta.load(new Set(files));
  const entries: ListedEntry[] = [];
  const tags = new Set<string>();
  let bytes = 0;
  for (const file of files) {
    // Not through a symlinked directory, and not a symlink itself (isFile below).
    const stats = await root.store.fileStats(file);
    if (stats === undefined || !stats.isFile()) continue;
    const meta = index.current(file, stats);
    // The log may still list a file re-rendered without the tag; ls shows what is tagged now.
    if (tag !== undefined && meta !== undefined && !meta.tags.includes(tag)) continue;
    const siblings: string[] = [];
    for (const suffix of SIBLING_SUFFIXES) if ((await root.store.fileStats(file + suffix)) !== undefined) siblings.push(suffix);
    for (const entryTag of meta?.tags ?? []) tags.add(entryTag);
    bytes += stats.size;
    entries.push({
      urlPath: meta?.urlPath ?? impliedUrlPath(file),
      file,
      size: stats.size,
      mediaType: meta?.mediaType,
      tags: meta?.tags ?? [],
      storedAt: meta?.storedAt ?? null,
      expiresAt: meta?.expiresAt ?? null,
      siblings,
    });
  }
  return { entries, summary: { files: entries.length, bytes, tags: tags.size } };
}
