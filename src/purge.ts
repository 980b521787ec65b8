/**
 * Selecting cached files and removing (or refreshing) them. Every path and prefix argument goes through
 * the same canonicalization as a write (url-path.ts), so a purge can name exactly the files a write can
 * create and nothing else. The invalidation is recorded before anything is selected, so a render that
 * started earlier cannot store its result afterwards (cache-root.ts).
 */
import pLimit from 'p-limit';
import type { CacheRoot } from './cache-root.js';
import { PrerenderError } from './errors.js';
import { fetchPage, type PageOutcome } from './crawl/fetch-page.js';
import { globFiles, parseGlobArgument, type GlobArgument } from './glob.js';
import { parseOrigin } from './origin.js';
import { normalizeTag } from './policy.js';
import { REFUSAL_MESSAGES, decodePath, impliedUrlPath, splitAbsoluteUrl, toCachePath, type CachePath } from './url-path.js';

export interface PurgeSelector {
  /**
   * URL paths (`/blog/post`) or absolute URLs (`https://example.com/blog/post`; only the path counts).
   * `/x/` and `/x/index.html` name the same file.
   */
  paths?: readonly string[];
  /** Every file stored with any of these tags (case-insensitive). */
  tags?: readonly string[];
  /** Every file whose URL path starts with this string: `/blog/` (the section) or `/blog` (also `/blogroll`). */
  prefix?: string;
  /**
   * Every file whose URL path matches one of these globs (picomatch syntax over URL paths, e.g.
   * `/blog/**`, `/*.css`, `/{en,de}/news/*`); `d/index.html` answers `/d/` and `/d`. See glob.ts for
   * what is refused.
   */
  glob?: string | readonly string[];
  /** Everything under the root. */
  all?: boolean;
}

export interface RefreshOptions {
  /** Where pages are fetched again, e.g. `http://127.0.0.1:3000`. */
  origin: string;
  /** @default 8 */
  concurrency?: number;
  /** @default 30_000 */
  timeoutMs?: number;
  /** @default 10 MiB */
  maxBodyBytes?: number;
}

export interface PurgeOptions {
  /** Report what would be removed, remove nothing, record nothing. */
  dryRun?: boolean;
  /**
   * Fetch each selected page again and replace its file in place, so nginx keeps serving the old page
   * until the new one is there (no miss storm). A page whose refresh fails is deleted and reported.
   */
  refresh?: RefreshOptions;
}

export interface PurgeResult {
  /** Files removed (or, with `dryRun`, that would be), relative to the root; `.gz`/`.br` went with them. */
  removed: string[];
  /** Files replaced by a fresh fetch. */
  refreshed: string[];
  /** Refreshes that failed: the file was deleted instead. */
  failed: Array<{ file: string; urlPath: string; reason: string }>;
}

export async function purge(root: CacheRoot, selector: PurgeSelector, options: PurgeOptions = {}): Promise<PurgeResult> {
  const paths = (selector.paths ?? []).map(parsePathArgument);
  const tags = (selector.tags ?? []).map(parseTagArgument);
  const prefix = selector.prefix === undefined ? undefined : parsePrefixArgument(selector.prefix);
  const globs = parseGlobs(selector.glob);
  const refresh = options.refresh === undefined ? undefined : { ...options.refresh, origin: parseOrigin(options.refresh.origin) };
  if (paths.length === 0 && tags.length === 0 && prefix === undefined && globs.length === 0 && selector.all !== true) {
    throw new PrerenderError('EUSAGE', 'nothing to purge: give paths, tags, a prefix, a glob, or all');
  }
  await root.store.checkRoot();

  const dryRun = options.dryRun === true;
  const at = Date.now();
  if (!dryRun) {
    await root.invalidations.recordFiles(paths.map((target) => target.file), at);
    await root.invalidations.recordTags(tags, at);
    if (prefix !== undefined) await root.invalidations.recordPrefix(prefix.urlPath, at);
    // A render in flight may be for a page the glob matches but that is not stored yet: its literal
    // prefix covers every such page (and some more, which only costs those renders their store).
    for (const glob of globs) await root.invalidations.recordPrefix(glob.literalPrefix, at);
    if (selector.all === true) await root.invalidations.recordAll(at);
  }

  if (selector.all === true && refresh === undefined && !dryRun) {
    const removed = await removeAll(root);
    await root.store.keepReserve();
    return { removed, refreshed: [], failed: [] };
  }

  const releases: Array<() => Promise<void>> = [];
  const selected = new Set<string>(paths.map((target) => target.file));
  // The URL path each selected page was stored for, which a refresh fetches: a path argument names its
  // own, a tag's records carry theirs; for a prefix, a glob or everything the meta index is read.
  const urlPaths = new Map<string, string>(paths.map((target) => [target.file, target.urlPath]));
  for (const tag of tags) {
    if (dryRun) {
      for (const file of await root.tags.files(tag)) selected.add(file);
    } else {
      const taken = await root.tags.take(tag);
      releases.push(taken.release);
      for (const file of taken.files) selected.add(file);
      for (const [file, urlPath] of taken.urlPaths) if (!urlPaths.has(file)) urlPaths.set(file, urlPath);
    }
  }
  const listed: string[] = [];
  if (prefix !== undefined) listed.push(...(await root.store.list(prefix.dir, prefix.namePrefix)));
  if (selector.all === true) listed.push(...(await root.store.list()));
  if (globs.length > 0) listed.push(...(await globFiles(root.root, globs)));
  for (const file of listed) selected.add(file);
  if (refresh !== undefined && listed.length > 0) {
    const index = await root.store.meta.load(new Set(listed));
    for (const file of listed) {
      const meta = urlPaths.has(file) ? undefined : index.current(file, await root.store.fileStats(file));
      if (meta !== undefined) urlPaths.set(file, meta.urlPath);
    }
  }

  const result: PurgeResult = { removed: [], refreshed: [], failed: [] };
  if (dryRun) {
    for (const file of selected) if (await root.store.exists(file)) result.removed.push(file);
  } else if (refresh !== undefined) {
    await refreshFiles(root, [...selected], refresh, result, at, urlPaths);
  } else {
    for (const file of selected) if (await root.store.remove(file)) result.removed.push(file);
  }
  for (const release of releases) await release();
  await root.invalidations.prune();
  // If a full disk took the purge records' reserve, set it aside again now that space may be free.
  if (!dryRun) await root.store.keepReserve();
  return result;
}

/**
 * Fetches each file's page again with bounded concurrency; a page that cannot be refreshed (non-200,
 * refused by the policy, network error, a write the disk refuses) is deleted, so nothing stale
 * outlives the purge. `recordedAt` is when the purge that selected them was recorded: a render that
 * starts in that same millisecond counts as started before the purge (it may have read old data) and
 * would be refused, so the fetches start once the clock has passed it. `urlPaths` gives the URL path a
 * file was stored for where its name does not say (`/x` as `x/index.html`).
 */
export async function refreshFiles(root: CacheRoot, files: readonly string[], options: RefreshOptions, result: PurgeResult, recordedAt: number, urlPaths: ReadonlyMap<string, string>): Promise<void> {
  while (Date.now() <= recordedAt) await new Promise((resolve) => setTimeout(resolve, 1));
  const limit = pLimit(options.concurrency ?? 8);
  await Promise.all(files.map((file) => limit(async () => {
    if (!(await root.store.exists(file))) return;
    const target = targetFor(file, urlPaths.get(file));
    let outcome: PageOutcome = { outcome: 'skipped', reason: 'its URL path cannot be recovered' };
    if (target !== undefined) {
      outcome = await fetchPage(root, target, {
        origin: options.origin,
        timeoutMs: options.timeoutMs ?? 30_000,
        maxBodyBytes: options.maxBodyBytes ?? 10 * 1024 * 1024,
      });
    }
    if (outcome.outcome === 'stored') {
      result.refreshed.push(file);
      return;
    }
    await root.store.remove(file);
    result.removed.push(file);
    result.failed.push({ file, urlPath: target?.urlPath ?? file, reason: outcome.reason });
  })));
}

/** The page a file was stored for: the URL path recorded for it, or the path the file name implies. */
export function targetFor(file: string, urlPath: string | undefined): CachePath | undefined {
  for (const candidate of [urlPath, impliedUrlPath(file)]) {
    if (candidate === undefined) continue;
    const mapped = toCachePath(encodePathForMapping(candidate));
    if (mapped.ok && mapped.value.file === file) return mapped.value;
  }
  return undefined;
}

function encodePathForMapping(urlPath: string): string {
  // Decoded paths may hold `%`, `?` or `#`; mapping decodes once, so escape them back first.
  return urlPath.replace(/[%?#]/g, (character) => `%${character.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Everything: the tree and the whole index (store/store.ts removeAll). */
function removeAll(root: CacheRoot): Promise<string[]> {
  return root.store.removeAll([root.tags.dir]);
}

/** A user-supplied path or absolute URL (its path as written), checked like a request path. */
export function parsePathArgument(argument: string): CachePath {
  const mapped = toCachePath(splitAbsoluteUrl(argument)?.path ?? argument);
  if (!mapped.ok) {
    throw new PrerenderError('EPATH', `cannot use path ${JSON.stringify(argument)}: ${REFUSAL_MESSAGES[mapped.reason]}`, {
      input: argument,
    });
  }
  return mapped.value;
}

export function parseGlobs(glob: string | readonly string[] | undefined): GlobArgument[] {
  if (glob === undefined) return [];
  return (typeof glob === 'string' ? [glob] : glob).map(parseGlobArgument);
}

export function parseTagArgument(tag: string): string {
  const checked = normalizeTag(typeof tag === 'string' ? tag.trim() : '');
  if (!checked.ok) throw new PrerenderError('EUSAGE', `--tag: ${checked.error.message}`, { input: tag });
  if (checked.tag === '') throw new PrerenderError('EUSAGE', '--tag needs a non-empty tag', { input: tag });
  return checked.tag;
}

export interface PrefixArgument {
  urlPath: string;
  dir: string[];
  namePrefix: string;
}

export function parsePrefixArgument(prefix: string): PrefixArgument {
  const decoded = decodePath(prefix);
  if (!decoded.ok) {
    throw new PrerenderError('EPATH', `--prefix ${JSON.stringify(prefix)}: ${REFUSAL_MESSAGES[decoded.reason]}`, { input: prefix });
  }
  return { urlPath: decoded.path, ...prefixLocation(decoded.path) };
}

/** Where a decoded URL prefix's files are: the directory it names whole, and the start of a name in it. */
function prefixLocation(urlPath: string): { dir: string[]; namePrefix: string } {
  const dir = urlPath.slice(1).split('/');
  const namePrefix = dir.pop() ?? '';
  return { dir, namePrefix };
}

/**
 * Carries the purges recorded in `from` since `since` over to `to`, a tree built meanwhile to replace
 * it (crawl --swap): each is recorded in `to` with its own time, so renders still in flight are
 * checked against it there too, and the pages it selects in `to` are deleted, since they may have
 * been rendered before it. Returns false, carrying nothing, when everything was purged: nothing built
 * before that can be trusted.
 */
export async function carryPurges(from: CacheRoot, to: CacheRoot, since: number): Promise<boolean> {
  const purged = await from.invalidations.since(since);
  if (purged.all !== undefined) return false;
  for (const [tag, at] of purged.tags) await to.invalidations.recordTags([tag], at);
  for (const [file, at] of purged.files) await to.invalidations.recordFiles([file], at);
  for (const [prefix, at] of purged.prefixes) await to.invalidations.recordPrefix(prefix, at);
  const selected = new Set(purged.files.keys());
  for (const tag of purged.tags.keys()) for (const file of await to.tags.files(tag)) selected.add(file);
  for (const prefix of purged.prefixes.keys()) {
    const { dir, namePrefix } = prefixLocation(prefix);
    for (const file of await to.store.list(dir, namePrefix)) selected.add(file);
  }
  for (const file of selected) await to.store.remove(file);
  return true;
}
