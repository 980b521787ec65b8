/**
 * `exportSite`: the tree nginx serves, copied out as a plain static site for any static host or bucket.
 * What makes it plain: no state directory (index, journals, temp files), no precompressed siblings
 * unless asked, and nothing a symlink below the root points at (a planted link must not carry a file
 * from outside the root into a public bucket). From the base of `crawl --swap` generations it copies
 * the generation `current` points at, read once, so a swap during the export cannot mix two trees.
 *
 * Files are copied with fs-extra one at a time from our own walk rather than one `copy` of the tree:
 * a page purged between the walk and its copy is then skipped and reported instead of failing the
 * whole export, and each entry is judged by `lstat` before anything is read from it.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import fse from 'fs-extra';
import { PrerenderError, isErrno } from './errors.js';
import { nonEmptyString } from './options.js';
import { SIBLING_SUFFIXES, Store } from './store/store.js';
import { STATE_DIR } from './url-path.js';

export interface ExportOptions {
  /** Also copy the `.gz` / `.br` siblings, for a host that serves them (nginx gzip_static). @default false */
  precompressed?: boolean;
  /** Empty a non-empty target first instead of refusing it. @default false */
  overwrite?: boolean;
}

export interface ExportReport {
  /** The tree that was copied (the `current` generation's directory for a swap base). */
  source: string;
  /** The export directory, absolute. */
  target: string;
  /** Files copied (siblings included), root-relative. */
  files: number;
  bytes: number;
  /** Siblings copied (only with `precompressed`). */
  siblings: number;
  /** Entries left out, with why: a symlink, a special file, one gone during the export. */
  skipped: Array<{ file: string; reason: string }>;
}

/**
 * Copies the cache tree at `root` to `target` as a static site. Refuses (EUSAGE) a target inside the
 * root or holding it, and a non-empty target unless `overwrite`.
 */
export async function exportSite(root: string, target: string, options: ExportOptions = {}): Promise<ExportReport> {
  nonEmptyString(root, 'root', 'the cache root');
  nonEmptyString(target, 'target', 'the export directory');
  const source = await sourceTree(path.resolve(root));
  await new Store(source).checkRoot();
  const absoluteTarget = await realTarget(path.resolve(target));
  for (const tree of new Set([path.resolve(root), source])) {
    if (contains(tree, absoluteTarget) || contains(absoluteTarget, tree)) {
      throw new PrerenderError('EUSAGE', `cannot export ${tree} to ${absoluteTarget}: the export directory must be outside the cache root (and not hold it)`, { input: target });
    }
  }
  await prepareTarget(absoluteTarget, options.overwrite === true, target);

  const report: ExportReport = { source, target: absoluteTarget, files: 0, bytes: 0, siblings: 0, skipped: [] };
  const walk = async (relative: string): Promise<void> => {
    let entries;
    try {
      entries = await fs.readdir(path.join(source, relative), { withFileTypes: true });
    } catch (error) {
      if (isErrno(error, 'ENOENT', 'ENOTDIR')) return;
      throw error;
    }
    // Made here, not by fs-extra's mkdirs, which follow the umask: nginx's worker must traverse them.
    if (relative !== '') {
      await fs.mkdir(path.join(absoluteTarget, relative), { recursive: true });
      await fs.chmod(path.join(absoluteTarget, relative), 0o755);
    }
    const names = new Set(entries.map((entry) => entry.name));
    for (const entry of entries) {
      const file = relative === '' ? entry.name : `${relative}/${entry.name}`;
      if (relative === '' && entry.name === STATE_DIR) continue;
      if (entry.isSymbolicLink()) {
        report.skipped.push({ file, reason: 'a symlink (never followed below the root)' });
        continue;
      }
      if (entry.isDirectory()) {
        await walk(file);
        continue;
      }
      if (!entry.isFile()) {
        report.skipped.push({ file, reason: 'not a regular file' });
        continue;
      }
      const sibling = SIBLING_SUFFIXES.some((suffix) => entry.name.endsWith(suffix) && names.has(entry.name.slice(0, -suffix.length)));
      if (sibling && options.precompressed !== true) continue;
      const copied = await copyFile(path.join(source, file), path.join(absoluteTarget, file));
      if (copied === undefined) {
        report.skipped.push({ file, reason: 'gone during the export (purged or replaced)' });
        continue;
      }
      report.files++;
      report.bytes += copied;
      if (sibling) report.siblings++;
    }
  };
  await walk('');
  return report;
}

/** The directory to copy: `root` itself, or for a swap base the generation `current` points at now. */
async function sourceTree(root: string): Promise<string> {
  const current = path.join(root, 'current');
  const isSwapBase = (await fs.lstat(current).catch(() => undefined))?.isSymbolicLink() === true
    && (await fs.stat(path.join(root, 'generations')).catch(() => undefined))?.isDirectory() === true;
  const tree = isSwapBase ? current : root;
  try {
    // The root (and `current`) may be a symlink; what lies below it is checked entry by entry.
    return await fs.realpath(tree);
  } catch (error) {
    throw new PrerenderError('EROOT', `cache root ${tree} ${isErrno(error, 'ENOENT') ? 'does not exist' : 'cannot be read'}: check --root or $PRERENDER_ROOT`, { input: root, cause: error });
  }
}

/** `target` with its deepest existing ancestor resolved, so a symlinked parent cannot hide the root. */
async function realTarget(target: string): Promise<string> {
  const rest: string[] = [];
  let existing = target;
  for (;;) {
    try {
      return path.join(await fs.realpath(existing), ...rest);
    } catch (error) {
      if (!isErrno(error, 'ENOENT')) throw error;
      const parent = path.dirname(existing);
      if (parent === existing) return target;
      rest.unshift(path.basename(existing));
      existing = parent;
    }
  }
}

function contains(parent: string, child: string): boolean {
  const relative = path.relative(parent, child);
  return relative === '' || (!relative.startsWith(`..${path.sep}`) && relative !== '..' && !path.isAbsolute(relative));
}

async function prepareTarget(target: string, overwrite: boolean, input: string): Promise<void> {
  const stats = await fs.lstat(target).catch((error: unknown) => {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  });
  if (stats !== undefined && !stats.isDirectory()) {
    throw new PrerenderError('EUSAGE', `export directory ${target} exists and is not a directory`, { input });
  }
  if (stats !== undefined && (await fs.readdir(target)).length > 0) {
    if (!overwrite) throw new PrerenderError('EUSAGE', `export directory ${target} is not empty: give an empty or new directory, or --overwrite to replace its contents`, { input });
    await fse.emptyDir(target);
  }
  await fse.ensureDir(target, 0o755);
  await fs.chmod(target, 0o755);
}

/** Copies one file (mode and mtime kept: nginx derives Last-Modified and ETag from them); its size, or undefined if it vanished. */
async function copyFile(from: string, to: string): Promise<number | undefined> {
  try {
    await fse.copy(from, to, { preserveTimestamps: true, dereference: false, errorOnExist: false, overwrite: true });
    return (await fs.lstat(to)).size;
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
}
