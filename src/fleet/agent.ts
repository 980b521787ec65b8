/**
 * `prerender agent`: applies every entry of the fleet's stream to this host's tree, in order, with the
 * local purge machinery (purge.ts): the purge is recorded in the root's invalidation journal when it
 * is applied here, so a render on this host that started before the purge reached it cannot store.
 *
 * Per batch: apply each entry, then write the position file (fsynced), then tell Redis (`applied`).
 * A crash in between re-applies entries on restart, which changes nothing (a purge of what is gone
 * removes nothing). Every loop also renews the heartbeat the host's cache processes read (guard.ts)
 * and, once a second, trims the stream up to the slowest live host (stream.ts).
 *
 * On start, and after Redis was unreachable, the agent checks that it can still read every entry after
 * its position: if they were trimmed away (it was silent past the retention), or Redis lost them (a
 * restart without its data), it drops the whole tree, since it cannot know what it missed.
 */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CacheRoot } from '../cache-root.js';
import { PrerenderError } from '../errors.js';
import { purge } from '../purge.js';
import { runFleetCrawl } from './agent-crawl.js';
import { decodeEntry, type FleetEntry, type PurgeEntry } from './entries.js';
import { DEFAULT_MAX_SILENCE_MS, PositionFile, ensureFleetDir, fleetDir, isSwapBase, readPositionRecord, storingVerdict, writeFleetFile, writeStatus, type AgentStatus } from './state.js';
import { FleetRedis, compareIds, missedEntries, redactUrl, type StreamEntry } from './stream.js';

export interface AgentOptions {
  /** The host's cache root, or the base of its crawl --swap generations. */
  root: string;
  /** The fleet's Redis, e.g. `redis://10.0.0.5:6379`. */
  redis: string;
  /** This host's name in the fleet. @default os.hostname() */
  id?: string;
  /** This host's app, for fleet crawls and refreshes (`http://127.0.0.1:3000`). */
  origin?: string;
  /**
   * A host silent for this long counts as gone: the stream is trimmed past it and purges stop waiting
   * for it; when it comes back it drops its tree.
   * @default 600_000 (10 minutes)
   */
  retentionMs?: number;
  /** Longest wait of one read of the stream; the heartbeat is at least this frequent. @default 1000 */
  blockMs?: number;
  /** Where progress and problems are said. @default stderr */
  log?: (line: string) => void;
}

export interface Agent {
  /** Resolves once the agent has stopped (after `stop()`). */
  readonly stopped: Promise<void>;
  stop(): Promise<void>;
}

const BATCH = 100;
const TRIM_EVERY_MS = 1_000;
const RETRY_MS = 250;
const STATUS_EVERY_MS = 200;
/** Test hook: after applying this many entries (deleting), and before recording them, SIGKILL itself. */
const KILL_HOOK = 'PRERENDER_AGENT_TEST_KILL_AFTER_APPLY';

export function startAgent(options: AgentOptions): Agent {
  const host = options.id ?? os.hostname();
  if (!/^[A-Za-z0-9._:-]{1,128}$/.test(host)) {
    throw new PrerenderError('EUSAGE', `--id ${JSON.stringify(host)} must be 1 to 128 letters, digits, '.', '_', ':' or '-'`, { input: host });
  }
  const retentionMs = options.retentionMs ?? 600_000;
  const blockMs = options.blockMs ?? 1_000;
  const base = path.resolve(options.root);
  const dir = fleetDir(base);
  const log = options.log ?? ((line: string) => process.stderr.write(`prerender agent: ${line}\n`));
  const redis = new FleetRedis(options.redis, {
    persistent: true,
    onConnection: (up) => {
      if (up || !redisUp) return;
      // Said at once, not at the next read's timeout: the host's cache processes stop storing now.
      redisUp = false;
      note = 'the connection to Redis was lost';
      log(`${host}: lost the connection to ${where}; this host stops storing until it is back and caught up`);
      void writeStatus(dir, status()).catch(() => undefined);
    },
  });
  const where = redactUrl(options.redis);
  const killAfter = Number(process.env[KILL_HOOK] ?? 0);
  let applied = 0;
  let stopping = false;
  let applying = false;
  let position = '0-0';
  let epoch = '';
  let caughtUpAt = 0;
  let redisUp = false;
  let note: string | undefined;
  let lastTrim = 0;
  let crawls: Promise<void> = Promise.resolve();
  let crawling = 0;
  let wake: (() => void) | undefined;
  const positionFile = new PositionFile(dir);
  let statusWrittenAt = 0;
  let statusWritten = '';

  const status = (): AgentStatus => ({
    host, pid: process.pid, heartbeatAt: Date.now(), caughtUpAt, position, redis: redisUp ? 'up' : 'down', ...(note === undefined ? {} : { note }),
  });
  const beat = async (): Promise<void> => {
    const current = status();
    // The file the cache processes read (every 250 ms) is rewritten when what it says changes, and
    // otherwise a few times a second: a heartbeat, not a log of every batch.
    const says = `${current.redis} ${current.note ?? ''} ${current.caughtUpAt === 0}`;
    if (says !== statusWritten || current.heartbeatAt - statusWrittenAt >= STATUS_EVERY_MS) {
      await writeStatus(dir, current);
      statusWritten = says;
      statusWrittenAt = current.heartbeatAt;
    }
    if (!redisUp) return;
    const verdict = storingVerdict(current, Date.now(), DEFAULT_MAX_SILENCE_MS);
    await redis.acknowledge(host, position, Date.now() + retentionMs, { ...current, storing: verdict.storing, root: base });
  };

  /** The trees purges go to: the root, or a swap base's current (and previous, which rollback would bring back). */
  const trees = async (includePrevious: boolean): Promise<string[]> => {
    if (!isSwapBase(base)) return [base];
    const out: string[] = [];
    for (const name of includePrevious ? ['current', 'previous'] : ['current']) {
      if ((await fs.stat(path.join(base, name)).catch(() => undefined))?.isDirectory() === true) out.push(path.join(base, name));
    }
    return out;
  };

  // One CacheRoot per tree, by its real directory: a swap base's `current` names another tree after
  // each switch, and a CacheRoot remembers what it set up on disk.
  const opened = new Map<string, CacheRoot>();
  const cacheRoot = async (tree: string): Promise<CacheRoot> => {
    const real = await fs.realpath(tree).catch(() => tree);
    let root = opened.get(real);
    if (root === undefined) {
      if (opened.size >= 4) opened.clear();
      root = new CacheRoot(real);
      opened.set(real, root);
    }
    await root.init();
    return root;
  };

  const dropTree = async (why: string): Promise<void> => {
    log(`${host}: ${why}: dropping the whole tree of ${base}, since it cannot know what it missed`);
    for (const tree of await trees(true)) await purge(await cacheRoot(tree), { all: true });
  };

  const hasPages = async (): Promise<boolean> => {
    for (const tree of await trees(true)) {
      const names = await fs.readdir(tree).catch(() => [] as string[]);
      if (names.some((name) => !name.startsWith('.'))) return true;
    }
    return false;
  };

  /** Whether every entry after `position` can still be read; if not, the tree goes. */
  const checkContinuity = async (): Promise<void> => {
    // Live first, so no trim runs past this host between the check and its first read.
    await redis.heartbeat(host, Date.now() + retentionMs, { ...status(), storing: false, root: base });
    const current = await redis.epoch();
    const info = await redis.info();
    const record = await readPositionRecord(dir);
    const recorded = record?.id;
    if (recorded === undefined) {
      if (await hasPages()) await dropTree('no record of how far this tree applied the purge stream');
      position = info.lastId;
    } else if (record?.epoch !== current) {
      await dropTree(`the purge stream in Redis is not the one this host applied up to ${recorded} (Redis lost its data, or this is another Redis)`);
      position = info.lastId;
    } else if ((!info.exists && recorded !== '0-0') || compareIds(info.lastId, recorded) < 0) {
      await dropTree(`Redis no longer holds the purge stream up to ${recorded}, where this host stopped (it lost its data?)`);
      position = info.lastId;
    } else if (missedEntries(info, recorded)) {
      await dropTree(`its place in the purge stream (${recorded}) was trimmed away while it was gone (the oldest entry left is ${info.firstId})`);
      position = info.lastId;
    } else {
      position = recorded;
    }
    epoch = current;
    await positionFile.write(position, epoch);
  };

  /**
   * Consecutive plain purges of a batch are applied as one purge() of their union (one journal
   * append, one pass over the tree), with the same effect as one after another. An `all`, a refresh,
   * a crawl or a second prefix starts a new group.
   */
  const applyGroup = async (streams: readonly StreamEntry[]): Promise<void> => {
    const entries = streams.map((stream) => decodeEntry(stream.body));
    const first = entries[0];
    if (streams.length === 1 || first === undefined) {
      if (streams[0] !== undefined && first !== undefined) await apply(streams[0], first);
      return;
    }
    const paths: string[] = [];
    const tags: string[] = [];
    let prefix: string | undefined;
    for (const entry of entries) {
      if (!mergeable(entry)) throw new Error('a group holds an entry that cannot be merged');
      paths.push(...(entry.selector.paths ?? []));
      tags.push(...(entry.selector.tags ?? []));
      prefix ??= entry.selector.prefix;
    }
    const selector = { ...(paths.length > 0 ? { paths } : {}), ...(tags.length > 0 ? { tags } : {}), ...(prefix === undefined ? {} : { prefix }) };
    for (const tree of await trees(false)) await purge(await cacheRoot(tree), selector);
  };

  /** How many entries from `start` form the next group, at most `limit`. */
  const groupLength = (streams: readonly StreamEntry[], start: number, limit: number): number => {
    let prefixes = 0;
    let length = 0;
    while (start + length < streams.length && length < limit) {
      const entry = decodeEntry((streams[start + length] as StreamEntry).body);
      if (!mergeable(entry)) return length === 0 ? 1 : length;
      if (entry.selector.prefix !== undefined && ++prefixes > 1) break;
      length++;
    }
    return Math.max(1, length);
  };

  const apply = async (stream: StreamEntry, entry: FleetEntry | { invalid: string }): Promise<void> => {
    if ('invalid' in entry) {
      log(`${host}: skipping entry ${stream.id}: ${entry.invalid}`);
      return;
    }
    if (entry.kind === 'crawl') {
      crawling++;
      crawls = crawls
        .then(() => runFleetCrawl({ base, dir, host, entryId: stream.id, entry, redis, log, ...(options.origin === undefined ? {} : { origin: options.origin }) }))
        .finally(() => {
          crawling--;
        });
      return;
    }
    const refresh = entry.refresh === true && options.origin !== undefined ? { refresh: { origin: options.origin } } : {};
    for (const tree of await trees(false)) await purge(await cacheRoot(tree), entry.selector, refresh);
  };

  const loop = async (): Promise<void> => {
    while (!stopping) {
      const sentAt = Date.now();
      let entries: StreamEntry[];
      try {
        if (!redisUp) {
          await redis.ready(blockMs);
          redisUp = true;
          await checkContinuity();
          log(`${host}: connected to ${where}, applying from ${position}`);
        }
        entries = await redis.read(position, blockMs, BATCH);
      } catch (error) {
        if (stopping) break;
        if (redisUp || note === undefined) log(`${host}: cannot read the purge stream: ${(error as Error).message}; this host stops storing until it can`);
        redisUp = false;
        note = (error as Error).message;
        await writeStatus(dir, status()).catch(() => undefined);
        await pause(RETRY_MS);
        continue;
      }
      let done = 0;
      applying = true;
      try {
        while (done < entries.length) {
          const length = groupLength(entries, done, killAfter > applied ? killAfter - applied : Infinity);
          await applyGroup(entries.slice(done, done + length));
          done += length;
          applied += length;
          if (killAfter > 0 && applied === killAfter) {
            await writeFleetFile(dir, 'killed-after-apply', (entries[done - 1] as StreamEntry).id);
            process.kill(process.pid, 'SIGKILL');
          }
        }
        note = undefined;
      } catch (error) {
        note = `cannot apply entry ${entries[done]?.id ?? '?'}: ${(error as Error).message}`;
        log(`${host}: ${note}; retrying, and this host stops storing meanwhile`);
      }
      applying = false;
      const last = done > 0 ? entries[done - 1] : undefined;
      if (last !== undefined) {
        try {
          await positionFile.write(last.id, epoch);
          position = last.id;
        } catch (error) {
          // Not recorded, so not acknowledged: the entries are applied again once the disk takes it.
          note = `cannot record the position: ${(error as Error).message}`;
          log(`${host}: ${note}; this host stops storing until it can`);
          await writeStatus(dir, status()).catch(() => undefined);
          await pause(1_000);
          continue;
        }
      }
      if (done === entries.length && entries.length < BATCH) caughtUpAt = sentAt;
      try {
        await beat();
        if (Date.now() - lastTrim >= TRIM_EVERY_MS) {
          lastTrim = Date.now();
          await redis.trim();
        }
      } catch (error) {
        redisUp = false;
        note = (error as Error).message;
        await writeStatus(dir, status()).catch(() => undefined);
      }
      if (done < entries.length) await pause(1_000);
    }
  };

  const pause = (ms: number): Promise<void> => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => {
      clearTimeout(timer);
      resolve();
    };
  });

  const stopped = (async () => {
    try {
      await ensureFleetDir(dir);
      await writeStatus(dir, status());
      await loop();
    } finally {
      await crawls;
      caughtUpAt = 0;
      note = 'the agent stopped';
      await writeStatus(dir, status()).catch(() => undefined);
      await redis.close();
      await positionFile.close();
    }
  })();

  return {
    stopped,
    async stop() {
      stopping = true;
      wake?.();
      // Ends a blocking read at once; an entry being applied is finished and recorded first, and a
      // crawl in progress finishes and reports.
      if (!applying && crawling === 0) await redis.close();
      await stopped;
    },
  };
}

function mergeable(entry: FleetEntry | { invalid: string }): entry is PurgeEntry {
  return 'kind' in entry && entry.kind === 'purge' && entry.refresh !== true && entry.selector.all !== true;
}
