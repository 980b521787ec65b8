/**
 * The on-disk layout of `crawl --swap` generations (after django-jimmypage), and every write to it:
 * whole trees in `<base>/generations/<id>/`, the `current` and `previous` symlinks that name two of
 * them, the marker of a build in progress, and the lock under which links switch. crawl/swap.ts
 * drives the lifecycle.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { PrerenderError, isErrno } from '../errors.js';
import { OWNER, inUse, ownedName, ownerOf } from '../owner.js';
import { STATE_DIR } from '../url-path.js';
import { makeDirectories } from './disk.js';

export const GENERATIONS = 'generations';

export interface Generations {
  current: string | undefined;
  previous: string | undefined;
}

/** Present while a crawl builds the generation (inside its state directory, which nginx denies). */
export function buildingMarker(generation: string): string {
  return path.join(generation, STATE_DIR, 'building');
}

const LOCK = '.generations.lock';
/** A lock older than this is taken over even if its pid is alive here (pid reuse, another host). */
const LOCK_STALE_MS = 5 * 60 * 1000;

/**
 * One switch at a time per base: without it, a crawl deleting old generations after its switch could
 * delete the one another crawl had just made current (it read `current` before that switch).
 */
export async function withGenerationsLock<T>(base: string, work: (discard: (generation: string) => Promise<void>) => Promise<T>): Promise<T> {
  const lock = path.join(base, LOCK);
  for (let wait = 10; ; wait = Math.min(wait * 2, 500)) {
    try {
      await fs.mkdir(lock);
      await fs.writeFile(path.join(lock, 'owner'), OWNER);
      break;
    } catch (error) {
      if (!isErrno(error, 'EEXIST')) throw error;
      const owner = await fs.readFile(path.join(lock, 'owner'), 'utf8').catch(() => '');
      const age = Date.now() - ((await fs.stat(lock).catch(() => undefined))?.mtimeMs ?? Date.now());
      // A lock with no owner yet is being taken right now: wait for it like any other. Another host's
      // owner cannot be asked whether it lives; only age frees its lock.
      const abandoned = owner === '' ? age > LOCK_STALE_MS : !inUse(ownerOf(owner), age, { maxAgeMs: LOCK_STALE_MS });
      if (abandoned) await fs.rm(lock, { recursive: true, force: true });
      else await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }
  // Generations to delete are only moved aside under the lock (one rename each), and deleted once it
  // is released: a large tree takes long to delete, and the lock must not grow old meanwhile.
  const trash: string[] = [];
  try {
    return await work(async (generation) => {
      const aside = path.join(base, `.trash-${ownedName('trash')}-${path.basename(generation)}`);
      await fs.rename(generation, aside);
      trash.push(aside);
    });
  } finally {
    await fs.rm(lock, { recursive: true, force: true });
    for (const aside of trash) await fs.rm(aside, { recursive: true, force: true });
  }
}

/** The directory `current` points at, if any. */
export async function currentGenerationDir(base: string): Promise<string | undefined> {
  const absoluteBase = path.resolve(base);
  const { current } = await readGenerations(absoluteBase);
  return current === undefined ? undefined : path.join(absoluteBase, GENERATIONS, current);
}

export async function readGenerations(base: string): Promise<Generations> {
  return { current: await readLink(base, 'current'), previous: await readLink(base, 'previous') };
}

async function readLink(base: string, name: string): Promise<string | undefined> {
  await checkLink(base, name);
  try {
    return path.basename(await fs.readlink(path.join(base, name)));
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return undefined;
    throw error;
  }
}

/** The directory holding `current`, `previous` and `generations/`. */
export async function checkBase(base: string, mustExist: boolean): Promise<void> {
  const stats = await fs.stat(base).catch((error: unknown) => {
    if (isErrno(error, 'ENOENT') && !mustExist) return undefined;
    throw new PrerenderError('EROOT', `--root ${base} ${isErrno(error, 'ENOENT') ? 'does not exist' : `cannot be used (${isErrno(error) ? error.code : 'error'})`}: it must be the directory holding current/ and generations/`, { input: base, cause: error });
  });
  if (stats !== undefined && !stats.isDirectory()) {
    throw new PrerenderError('EROOT', `--root ${base} is not a directory: it must be the directory holding current/ and generations/`, { input: base });
  }
}

/** `current` and `previous` must be symlinks (or absent): never replace a real directory. */
export async function checkLink(base: string, name: string): Promise<void> {
  const stats = await fs.lstat(path.join(base, name)).catch(() => undefined);
  if (stats !== undefined && !stats.isSymbolicLink()) {
    throw new PrerenderError('EUSAGE', `${path.join(base, name)} is not a symlink: --swap manages ${name} itself; point --root at a fresh directory`, { input: base });
  }
}

export async function switchLink(base: string, name: string, id: string): Promise<void> {
  const temp = path.join(base, `.${name}.${ownedName('tmp')}.tmp`);
  await fs.rm(temp, { force: true });
  await fs.symlink(path.join(GENERATIONS, id), temp);
  await fs.rename(temp, path.join(base, name));
}

/** A build whose crawl runs on another host is given up only past this age (its crawl died). */
const FOREIGN_BUILD_MS = 24 * 60 * 60 * 1000;

/** Deletes (through `discard`) every generation but current, previous and builds still under way. */
export async function deleteOthers(base: string, discard: (generation: string) => Promise<void>): Promise<void> {
  const keep = new Set(Object.values(await readGenerations(base)));
  for (const id of await fs.readdir(path.join(base, GENERATIONS)).catch(() => [] as string[])) {
    if (keep.has(id)) continue;
    const marker = buildingMarker(path.join(base, GENERATIONS, id));
    const builder = await fs.readFile(marker, 'utf8').catch(() => '');
    const age = Date.now() - ((await fs.stat(marker).catch(() => undefined))?.mtimeMs ?? 0);
    // Another crawl is still building it (on this host, or on another within a day).
    if (builder !== '' && inUse(ownerOf(builder), age, { maxAgeMs: FOREIGN_BUILD_MS })) continue;
    await discard(path.join(base, GENERATIONS, id)).catch((error: unknown) => {
      if (!isErrno(error, 'ENOENT')) throw error;
    });
  }
}

/** Creates an empty generation directory and returns its absolute path. */
export async function createGeneration(base: string): Promise<string> {
  const absoluteBase = path.resolve(base);
  await checkBase(absoluteBase, false);
  await checkLink(absoluteBase, 'current');
  const id = `${new Date().toISOString().replace(/[-:]/g, '').replace(/\..*$/, '')}-${process.pid}-${Math.random().toString(36).slice(2, 6)}`;
  const dir = path.join(absoluteBase, GENERATIONS, id);
  await makeDirectories(path.join(dir, STATE_DIR), path.parse(absoluteBase).root);
  await fs.writeFile(buildingMarker(dir), OWNER);
  return dir;
}

/**
 * Makes every file of a generation durable before `current` may point at it. A generation is built
 * without per-file fsync (no reader can see it yet), so this one flush is what guarantees a power cut
 * after the switch cannot leave empty pages behind `current`. One `syncfs(2)` (coreutils `sync -f`)
 * flushes the generation in one journal commit; where that is not available, every file and directory
 * is fsynced, many at a time so the file system can batch them.
 */
export async function flushGeneration(generation: string): Promise<void> {
  const synced = await new Promise<boolean>((resolve) => {
    execFile('sync', ['-f', generation], (error) => resolve(error === null));
  });
  if (!synced) await fsyncTree(generation);
}

const FSYNC_BATCH = 64;

async function fsyncTree(dir: string): Promise<void> {
  const entries = await fs.readdir(dir, { withFileTypes: true });
  for (let i = 0; i < entries.length; i += FSYNC_BATCH) {
    await Promise.all(entries.slice(i, i + FSYNC_BATCH).map(async (entry) => {
      const inner = path.join(dir, entry.name);
      if (entry.isDirectory()) await fsyncTree(inner);
      else if (entry.isFile()) await fsyncPath(inner);
    }));
  }
  await fsyncPath(dir);
}

async function fsyncPath(file: string): Promise<void> {
  const handle = await fs.open(file, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/**
 * Points `current` at `generation` atomically; the old current becomes `previous`. Refuses a generation
 * whose building marker is gone or not this process's: it was deleted while it was built (by a
 * cleanup that took this crawl for dead), and what the crawl wrote since is only part of the site.
 */
export async function publishGeneration(base: string, generation: string): Promise<Generations> {
  const absoluteBase = path.resolve(base);
  const marker = await fs.readFile(buildingMarker(generation), 'utf8').catch(() => '');
  if (marker !== OWNER) {
    throw new PrerenderError('EROOT', `generation ${generation} was deleted while this crawl built it (by another crawl's cleanup?): not switching to a partial tree`, { input: generation });
  }
  return withGenerationsLock(absoluteBase, async (discard) => {
    const before = await readGenerations(absoluteBase);
    const id = path.basename(generation);
    await fs.rm(buildingMarker(generation), { force: true });
    await switchLink(absoluteBase, 'current', id);
    if (before.current !== undefined && before.current !== id) await switchLink(absoluteBase, 'previous', before.current);
    await deleteOthers(absoluteBase, discard);
    return readGenerations(absoluteBase);
  });
}

/** Swaps `current` and `previous`: a second rollback rolls forward again. */
export async function rollback(base: string): Promise<Generations> {
  const absoluteBase = path.resolve(base);
  await checkBase(absoluteBase, true);
  return withGenerationsLock(absoluteBase, async () => {
    const before = await readGenerations(absoluteBase);
    if (before.previous === undefined || before.current === undefined) {
      throw new PrerenderError('EUSAGE', `nothing to roll back to under ${absoluteBase}: it needs a current and a previous generation from crawl --swap`, { input: base });
    }
    await switchLink(absoluteBase, 'current', before.previous);
    await switchLink(absoluteBase, 'previous', before.current);
    return readGenerations(absoluteBase);
  });
}

export async function discardGeneration(generation: string): Promise<void> {
  await fs.rm(generation, { recursive: true, force: true });
}

