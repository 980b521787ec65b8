/**
 * The expiry index: every store of a page with an expiry appends a record to the log of the second it
 * expires in, `.prerender/expiry/<hour>/<second>.log` (epoch hours and seconds). The record says which
 * version of the file it is about (inode and birth time) and what acting on it needs (the URL path to
 * refresh, the expiry and its stale-while-revalidate window), so a reader needs no other index. Every
 * process with the cache reads the logs of the seconds that have come (expiry.ts acts on them), so a
 * page stored by a crawl or another process is acted on by any of them, and a check costs a few stats
 * plus the records of the pages expiring now, whatever the size of the cache (DESIGN.md invariant 7).
 *
 * A second's log is read for GRACE_S seconds after it has passed, since a writer may append to it a
 * little late (it decided the second, then waited on the disk), then deleted by whichever reader gets
 * there first: every reader acts on every record, so one having read it all is enough. Logs no reader
 * saw (no process ran, or an append came later still) are picked up by a scan of the directory at start,
 * every SCAN_MS, and when the directory is another one (a root reached through crawl --swap's `current`
 * link now names another tree): only then is the directory listed.
 */
import path from 'node:path';
import { StateFiles, type FileIdentity, type JournalCursor } from './store/state-files.js';

/** How long after its second has passed a log is still read, then deleted. */
export const GRACE_S = 5;
/** How often the whole index is scanned for logs older than the grace (appends that came late). */
const SCAN_MS = 60_000;

export interface ExpiryRecord extends FileIdentity {
  file: string;
  /** When to act on it: the page's expiry, or the next try of its refresh. */
  at: number;
  urlPath: string;
  /** When the page expires (epoch ms). */
  expiresAt: number;
  /** How long past `expiresAt` the page may be served while it is refreshed; 0 for none. */
  staleWhileRevalidateMs: number;
}

export class ExpiryIndex {
  readonly dir: string;
  private readonly files: StateFiles;
  /** The first second whose log has not been read to the end and deleted; undefined before the first scan. */
  private cursor: number | undefined;
  /** What this process has read of each second's log. */
  private readonly logs = new Map<number, JournalCursor>();
  /** Records read whose time has not come yet (the current second's). */
  private waiting: ExpiryRecord[] = [];
  private scannedAt = 0;
  /** `dev:ino` of the index directory at the last scan: another one (a crawl --swap made `current` another tree) is scanned at once. */
  private identity: string | undefined;

  constructor(stateDir: string, root: string) {
    this.dir = path.join(stateDir, 'expiry');
    this.files = new StateFiles(stateDir, root);
  }

  /**
   * Notes that `record.file` is due at `record.at`. One whose time has already passed goes into the
   * current second's log, which readers still read.
   */
  async record(record: ExpiryRecord, now = Date.now()): Promise<void> {
    await this.recordAll([record], now);
  }

  /** `record` for many files: one append a second's log. */
  async recordAll(records: readonly ExpiryRecord[], now = Date.now()): Promise<void> {
    const bySecond = new Map<number, string>();
    for (const record of records) {
      const second = Math.floor(Math.max(record.at, now) / 1000);
      const fields = [record.file, record.ino, record.birth, record.urlPath, record.expiresAt, record.staleWhileRevalidateMs];
      // A leading newline keeps a record torn by a killed writer from running into the next one.
      bySecond.set(second, `${bySecond.get(second) ?? ''}\n${record.at} ${JSON.stringify(fields)}\n`);
    }
    for (const [second, text] of bySecond) await this.appendSecond(second, text);
  }

  private async appendSecond(second: number, text: string): Promise<void> {
    // Makes the hour's directory if need be: a reader removes it once it has emptied.
    await this.files.appendText(this.logPath(second), text);
  }

  /**
   * Records whose expiry is at or before `now` that this process has not returned before. Never
   * creates anything on disk (a root deleted under a running process stays deleted).
   */
  async due(now = Date.now()): Promise<ExpiryRecord[]> {
    const nowSecond = Math.floor(now / 1000);
    const out: ExpiryRecord[] = [];
    const stats = await this.files.lstat(this.dir);
    const identity = stats === undefined ? undefined : `${stats.dev}:${stats.ino}`;
    if (this.cursor === undefined || now - this.scannedAt >= SCAN_MS || this.cursor < nowSecond - 3600 || identity !== this.identity) {
      this.scannedAt = now;
      this.identity = identity;
      await this.scan(nowSecond - GRACE_S, out);
      this.cursor = Math.max(this.cursor ?? -Infinity, nowSecond - GRACE_S);
    }
    const stillWaiting: ExpiryRecord[] = [];
    for (const record of this.waiting) (record.at <= now ? out : stillWaiting).push(record);
    this.waiting = stillWaiting;
    for (let second = this.cursor; second <= nowSecond; second++) {
      for (const record of await this.readNew(second)) (record.at <= now ? out : this.waiting).push(record);
      if (second < nowSecond - GRACE_S) {
        await this.drop(second);
        this.cursor = second + 1;
      }
    }
    return out;
  }

  /**
   * Deletes the logs of seconds past the grace, unread: for a sweep, which finds every expired page by
   * its meta anyway, so the index does not grow while no process runs.
   */
  async prune(now = Date.now()): Promise<void> {
    await this.scan(Math.floor(now / 1000) - GRACE_S, []);
  }

  /** Reads (and deletes) every log of a second before `before`: the ones no reader has finished. */
  private async scan(before: number, out: ExpiryRecord[]): Promise<void> {
    for (const hour of await this.files.names(this.dir)) {
      const hourNumber = Number(hour);
      if (!Number.isSafeInteger(hourNumber) || hourNumber * 3600 >= before) continue;
      const hourDir = path.join(this.dir, hour);
      for (const name of await this.files.names(hourDir)) {
        const second = Number(name.replace(/\.log$/, ''));
        if (!name.endsWith('.log') || !Number.isSafeInteger(second) || second >= before) continue;
        out.push(...(await this.readNew(second)));
        await this.drop(second);
      }
      // Only once empty: a writer may be about to append to it.
      await this.files.removeEmptyDirectory(hourDir);
    }
  }

  private logPath(second: number): string {
    return path.join(this.dir, String(Math.floor(second / 3600)), `${second}.log`);
  }

  /** The complete records appended to a second's log since this process last read it. */
  private async readNew(second: number): Promise<ExpiryRecord[]> {
    let cursor = this.logs.get(second);
    if (cursor === undefined) {
      cursor = { identity: undefined, offset: 0 };
      this.logs.set(second, cursor);
    }
    const records: ExpiryRecord[] = [];
    for (const line of (await this.files.readAppended(this.logPath(second), cursor)).split('\n')) {
      const record = parseRecord(line);
      // A torn record is skipped: its page is also in its meta, which sweep reads.
      if (record !== undefined) records.push(record);
    }
    return records;
  }

  private async drop(second: number): Promise<void> {
    this.logs.delete(second);
    await this.files.remove(this.logPath(second)).catch(() => undefined);
  }
}

function parseRecord(line: string): ExpiryRecord | undefined {
  const match = /^(\d+) (\[.*\])$/.exec(line);
  if (match === null) return undefined;
  let fields: unknown;
  try {
    fields = JSON.parse(match[2] ?? '');
  } catch {
    return undefined;
  }
  if (!Array.isArray(fields) || fields.length !== 6) return undefined;
  const [file, ino, birth, urlPath, expiresAt, staleWhileRevalidateMs] = fields as unknown[];
  if (typeof file !== 'string' || typeof urlPath !== 'string' || ![ino, birth, expiresAt, staleWhileRevalidateMs].every((value) => typeof value === 'number')) return undefined;
  return { file, at: Number(match[1]), ino: ino as number, birth: birth as number, urlPath, expiresAt: expiresAt as number, staleWhileRevalidateMs: staleWhileRevalidateMs as number };
}
