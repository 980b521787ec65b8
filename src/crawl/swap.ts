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
 * `rollback` swaps `current` and `previous`. The layout, the lock and the tree operations are in
 * store/generations.ts.
 */
import { CacheRoot } from '../cache-root.js';
import { PrerenderError } from '../errors.js';
import { carryPurges, purge } from '../purge.js';
import { createGeneration, currentGenerationDir, discardGeneration, flushGeneration, publishGeneration } from '../store/generations.js';

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
