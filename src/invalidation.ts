/**
 * Invalidation records: when each tag, file, prefix, or the whole cache was last purged. A write
 * checks them before and after it renames its file into place, and gives up (undoing the rename) when
 * a purge began at or after its render started, so a render that read old data never overwrites a
 * purge (DESIGN.md invariant 5).
 *
 * Records are appended, never rewritten (concurrent purges of one key cannot erase each other's time),
 * into time buckets `.prerender/inval/<bucket>/`, one bucket per `maxRenderMs`. A write whose render
 * started more than `maxRenderMs` ago is refused outright, so only the last two buckets are ever read,
 * and older buckets are deleted whole, with no writer in them.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { isErrno } from './errors.js';
import { makeDirectories } from './store.js';
import { hashName } from './tags.js';

export interface InvalidationTarget {
  file: string;
  urlPath: string;
  tags: readonly string[];
}

export class Invalidations {
  readonly dir: string;
  readonly maxRenderMs: number;
  private readonly root: string;

  constructor(stateDir: string, root: string, maxRenderMs: number) {
    this.dir = path.join(stateDir, 'inval');
    this.root = root;
    this.maxRenderMs = maxRenderMs;
  }

  recordTags(tags: readonly string[], at: number): Promise<void> {
    return this.append(at, tags.map((tag) => `tag-${hashName(tag)}`), String(at));
  }

  recordFiles(files: readonly string[], at: number): Promise<void> {
    return this.append(at, files.map((file) => `file-${hashName(file)}`), String(at));
  }

  recordPrefix(prefix: string, at: number): Promise<void> {
    return this.append(at, ['prefixes'], `${at} ${JSON.stringify(prefix)}`);
  }

  recordAll(at: number): Promise<void> {
    return this.append(at, ['all'], String(at));
  }

  /**
   * Why a render that started at `renderedAt` may no longer be stored, or undefined when it may. A
   * purge recorded at the very millisecond the render started counts: the render may have read old data.
   */
  async staleReason(renderedAt: number, target: InvalidationTarget, now = Date.now()): Promise<string | undefined> {
    if (now - renderedAt > this.maxRenderMs) return `the render took longer than maxRenderMs (${this.maxRenderMs} ms)`;
    for (let bucket = this.bucketOf(renderedAt); bucket <= this.bucketOf(now); bucket++) {
      const dir = path.join(this.dir, String(bucket));
      if (latest(await readLines(path.join(dir, 'all'))) >= renderedAt) return 'the whole cache was purged while it rendered';
      if (latest(await readLines(path.join(dir, `file-${hashName(target.file)}`))) >= renderedAt) return 'its path was purged while it rendered';
      for (const tag of target.tags) {
        if (latest(await readLines(path.join(dir, `tag-${hashName(tag)}`))) >= renderedAt) return `tag ${tag} was purged while it rendered`;
      }
      for (const line of await readLines(path.join(dir, 'prefixes'))) {
        const space = line.indexOf(' ');
        const at = Number(line.slice(0, space));
        let prefix: unknown;
        try {
          prefix = JSON.parse(line.slice(space + 1));
        } catch {
          continue;
        }
        // A prefix covers a page by its URL or by its file: purging /blog/ removes blog/index.html,
        // which also serves /blog.
        if (at >= renderedAt && typeof prefix === 'string' && (target.urlPath.startsWith(prefix) || `/${target.file}`.startsWith(prefix))) {
          return `prefix ${prefix} was purged while it rendered`;
        }
      }
    }
    return undefined;
  }

  /** Deletes buckets no render can still be checked against. */
  async prune(now = Date.now()): Promise<void> {
    const oldest = this.bucketOf(now - this.maxRenderMs) - 1;
    for (const name of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (/^\d+$/.test(name) && Number(name) < oldest) await fs.rm(path.join(this.dir, name), { recursive: true, force: true });
    }
  }

  private bucketOf(at: number): number {
    return Math.floor(at / this.maxRenderMs);
  }

  private async append(at: number, names: readonly string[], line: string): Promise<void> {
    if (names.length === 0) return;
    const dir = path.join(this.dir, String(this.bucketOf(at)));
    await makeDirectories(dir, this.root);
    // Leading newline: a line torn by a killed purge cannot run into the next one.
    for (const name of names) await fs.appendFile(path.join(dir, name), `\n${line}\n`, { mode: 0o644 });
  }
}

async function readLines(file: string): Promise<string[]> {
  try {
    return (await fs.readFile(file, 'utf8')).split('\n').filter((line) => line !== '');
  } catch (error) {
    if (isErrno(error, 'ENOENT')) return [];
    throw error;
  }
}

function latest(lines: string[]): number {
  let max = -Infinity;
  for (const line of lines) {
    const at = Number(line);
    if (Number.isFinite(at) && at > max) max = at;
  }
  return max;
}
