/**
 * The `crawl --swap` lifecycle, in the order it runs:
 * 1. create a generation, `<base>/generations/<id>/`, marked as being built by this process;
 * 2. hold the live tree's purge journals, so the purges made while the build runs are still there at
 *    the switch however long it takes;
 * 3. (the crawl stores into the generation, without per-file fsync: nothing serves it yet)
 * 4. flush the whole generation to disk once;
 * 5. carry over the purges the live tree received since the build began;
 * 6. publish: switch `current` to the generation with one `rename` (the old one becomes `previous`,
 *    older ones are deleted), then carry once more for purges that landed in between;
 * or discard the generation when the build failed, stored nothing, or everything was purged meanwhile.
 * `rollback` swaps `current` and `previous`. The layout and the lock are in generations.ts.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CacheRoot } from '../cache-root.js';
import { PrerenderError } from '../errors.js';
import { carryPurges, purge } from '../purge.js';
import { makeDirectories } from '../store/disk.js';
import { OWNER } from '../owner.js';
import { STATE_DIR } from '../url-path.js';
import {
  GENERATIONS, buildingMarker, checkBase, checkLink, currentGenerationDir, deleteOthers, readGenerations, switchLink, withGenerationsLock,
  type Generations,
} from './generations.js';

export { currentGenerationDir, type Generations } from './generations.js';

export interface SwapOutcome {
  swapped: boolean;
  /** When the switch was refused although no URL failed: why. */
  notSwapped?: string;
}

/** One build of a new generation, from its creation to its switch (or its discard). */
export class SwapBuild {
  private released = false;

  private constructor(
    /** The directory holding `current`, `previous` and `generations/`, as given. */
    readonly base: string,
    /** The new generation's directory, absolute. */
    readonly dir: string,
    /** The tree `current` pointed at when the build began, if any. */
    private readonly liveAtStart: string | undefined,
    private readonly startedAt: number,
    private readonly releaseHold: () => Promise<void>,
  ) {}

  /** Steps 1 and 2: a new generation, and the live tree's journals held from now on. */
  static async start(base: string): Promise<SwapBuild> {
    const dir = await createGeneration(base);
    const liveAtStart = await currentGenerationDir(base);
    const startedAt = Date.now();
    const releaseHold = liveAtStart === undefined ? async () => undefined : await new CacheRoot(liveAtStart).invalidations.hold(startedAt);
    return new SwapBuild(base, dir, liveAtStart, startedAt, releaseHold);
  }

  /**
   * Steps 4 to 6 when the build succeeded (`root` is the generation's), else the discard. A source that
   * named no page (an empty list, an HTML page where the sitemap was) must not replace the site with
   * an empty tree, so a build that stored nothing is not switched to either.
   */
  async finish(root: CacheRoot, counts: { stored: number; failed: number }): Promise<SwapOutcome> {
    try {
      if (counts.failed > 0 || counts.stored === 0) {
        await discardGeneration(this.dir);
        return { swapped: false };
      }
      await flushGeneration(this.dir);
      // Purges made in the live tree while this one was built may select pages rendered here before
      // them (invariant 5): they are carried over before the switch, and once more after it for any
      // that landed in between. (Later ones land in the new tree itself.)
      const live = await currentGenerationDir(this.base);
      // Usually the tree current when the build began; another crawl may have switched since.
      const sources = [...new Set([this.liveAtStart, live].filter((tree): tree is string => tree !== undefined))].map((tree) => new CacheRoot(tree));
      const carry = async (): Promise<boolean> => {
        for (const tree of sources) if (!(await carryPurges(tree, root, this.startedAt))) return false;
        return true;
      };
      if (!(await carry())) {
        await discardGeneration(this.dir);
        return { swapped: false, notSwapped: 'the whole cache was purged while this crawl built its tree: run it again' };
      }
      try {
        await publishGeneration(this.base, this.dir);
      } catch (error) {
        if (!(error instanceof PrerenderError) || error.code !== 'EROOT') throw error;
        await discardGeneration(this.dir);
        return { swapped: false, notSwapped: error.message };
      }
      // From the build's start again, not from the first carry: a purge stamped before it may have
      // been appended after it read. Carrying one twice changes nothing.
      if (!(await carry())) await purge(root, { all: true });
      return { swapped: true };
    } finally {
      await this.release();
    }
  }

  /** Lets the live tree's journals go (a build given up, or finished). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.releaseHold();
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

