/**
 * The fleet's Redis: one stream of purges (and crawls) every host reads in full, and three hashes
 * beside it: how far each host has applied (`applied`), until when it counts as live (`live`), and
 * what it last said about itself (`status`). Only Redis 7.0 commands.
 *
 * Every call is bounded in time. ioredis's `blockingTimeout` guards the blocking XREAD on the client
 * side, and each call races a timer of its own as well: hangs of blocking reads after a reconnect are
 * a known report against Redis clients, and an agent that hangs silently would keep its host storing
 * past purges it never saw. On such a timeout the connection is dropped and made again.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { PrerenderError } from '../errors.js';

export const KEYS = {
  stream: 'prerender:stream',
  applied: 'prerender:applied',
  live: 'prerender:live',
  status: 'prerender:status',
  epoch: 'prerender:epoch',
  crawl: (entryId: string) => `prerender:crawl:${entryId}`,
} as const;

/** A crawl's per-host reports are kept this long after the last one. */
const CRAWL_REPORT_TTL_S = 7 * 24 * 60 * 60;
/** Time allowed to (re)connect and for any non-blocking command. */
const COMMAND_TIMEOUT_MS = 5_000;
/** Slack given to a blocking read past its own BLOCK time before it counts as hung. */
const BLOCK_GRACE_MS = 2_000;

export interface StreamEntry {
  id: string;
  body: string;
}

export interface StreamInfo {
  /** False when the stream key does not exist (nothing ever published, or Redis lost its data). */
  exists: boolean;
  lastId: string;
  /** The oldest entry still held ('0-0' when empty). */
  firstId: string;
  /** The highest ID removed by XDEL ('0-0' if none; trims do not move it). */
  maxDeletedId: string;
  length: number;
  /** Entries ever added: more than `length` means some were trimmed or deleted. */
  entriesAdded: number;
}

/**
 * Whether a host that applied up to `position` can no longer read every entry after it: entries were
 * removed and the oldest one left is past its position (so its own entry, at least, went; a trim
 * keeps the slowest live host's entry), or an entry after it was deleted.
 */
export function missedEntries(info: StreamInfo, position: string): boolean {
  if (compareIds(info.maxDeletedId, position) > 0) return true;
  if (compareIds(position, info.lastId) >= 0) return false;
  return info.entriesAdded > info.length && (info.length === 0 || compareIds(position, info.firstId) < 0);
}

export interface HostRecord {
  id: string;
  applied: string | undefined;
  liveUntil: number | undefined;
  status: Record<string, unknown> | undefined;
}

/**
 * Drops every entry below the lowest position of a live host, atomically with reading those positions
 * (a host that registers as live afterwards sees the trim in `max-deleted-entry-id`). A live host with
 * no position yet stops the trim: it is about to read from where it stands.
 */
const TRIM_SCRIPT = `
local now = tonumber(ARGV[1])
local live = redis.call('HGETALL', KEYS[3])
local minId = nil
local minMs, minSeq = 0, 0
for i = 1, #live, 2 do
  local untilMs = tonumber(live[i + 1])
  if untilMs ~= nil and untilMs >= now then
    local id = redis.call('HGET', KEYS[2], live[i])
    if not id then return 0 end
    local dash = string.find(id, '-', 1, true)
    local ms = tonumber(string.sub(id, 1, dash - 1))
    local seq = tonumber(string.sub(id, dash + 1))
    if minId == nil or ms < minMs or (ms == minMs and seq < minSeq) then
      minId, minMs, minSeq = id, ms, seq
    end
  end
end
if minId == nil then return 0 end
return redis.call('XTRIM', KEYS[1], 'MINID', minId)
`;

/** `redis://host:port` without any password, for messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password !== '') parsed.password = '***';
    return parsed.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

export function checkRedisUrl(url: unknown, option = '--redis'): string {
  if (typeof url !== 'string' || url === '') {
    throw new PrerenderError('EUSAGE', `${option} needs the fleet's Redis URL, e.g. redis://127.0.0.1:6379 (or set $PRERENDER_REDIS)`);
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new PrerenderError('EUSAGE', `${option} ${JSON.stringify(redactUrl(url))} is not a URL: use redis://host:port[/db]`, { input: redactUrl(url) });
  }
  if (parsed.protocol !== 'redis:' && parsed.protocol !== 'rediss:') {
    throw new PrerenderError('EUSAGE', `${option} ${JSON.stringify(redactUrl(url))} must start with redis:// or rediss://`, { input: redactUrl(url) });
  }
  return url;
}

/** Orders stream IDs (`<ms>-<seq>`). */
export function compareIds(a: string, b: string): number {
  const [aMs = 0n, aSeq = 0n] = a.split('-').map((part) => BigInt(part));
  const [bMs = 0n, bSeq = 0n] = b.split('-').map((part) => BigInt(part));
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

export function idTime(id: string): number {
  return Number(id.split('-')[0]);
}

export interface FleetRedisOptions {
  /**
   * Reconnect in the background after a loss (agents, long-lived apps). Off: one connection attempt,
   * and a failure is an error at once (the CLI).
   * @default false
   */
  persistent?: boolean;
  /** Told when the connection is lost (false) and ready again (true), as it happens. */
  onConnection?: (up: boolean) => void;
}

export class FleetRedis {
  readonly url: string;
  private client: Redis;
  private readonly persistent: boolean;
  private readonly onConnection: ((up: boolean) => void) | undefined;
  private closed = false;
  /** What the socket last said (ECONNREFUSED ...): ioredis's own rejections only say "closed". */
  private lastError: string | undefined;

  constructor(url: string, options: FleetRedisOptions = {}) {
    this.url = checkRedisUrl(url);
    this.persistent = options.persistent === true;
    this.onConnection = options.onConnection;
    this.client = this.makeClient();
  }

  private makeClient(): Redis {
    const client = new Redis(this.url, {
      lazyConnect: true,
      // A command while disconnected fails at once instead of waiting in a queue: a purge must not be
      // reported as published while it sits in this process's memory.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: COMMAND_TIMEOUT_MS,
      // How long a closing socket may linger (ioredis default 2 s): a one-shot CLI would wait it out.
      disconnectTimeout: 100,
      commandTimeout: COMMAND_TIMEOUT_MS,
      blockingTimeout: COMMAND_TIMEOUT_MS,
      blockingTimeoutGrace: BLOCK_GRACE_MS,
      retryStrategy: this.persistent ? (times: number) => Math.min(50 * times, 500) : () => null,
    });
    // Errors surface through the calls that hit them; without a listener ioredis prints each one.
    client.on('error', (error: Error) => {
      this.lastError = error.message;
    });
    client.on('close', () => {
      if (client === this.client && !this.closed) this.onConnection?.(false);
    });
    client.on('ready', () => {
      if (client === this.client) this.onConnection?.(true);
    });
    return client;
  }

  /** Connects if needed; fails (EREDIS) if Redis cannot be reached within the command timeout. */
  async ready(timeoutMs = COMMAND_TIMEOUT_MS): Promise<void> {
    if (this.closed) throw new PrerenderError('EREDIS', 'the fleet link was closed');
    const client = this.client;
    if (client.status === 'ready') return;
    if (client.status === 'wait' || client.status === 'end') {
      if (client.status === 'end') this.client = this.makeClient();
      await this.bounded(this.client.connect(), timeoutMs, 'connect');
      return;
    }
    await this.bounded(new Promise<void>((resolve, reject) => {
      const onReady = (): void => {
        client.off('end', onEnd);
        resolve();
      };
      const onEnd = (): void => {
        client.off('ready', onReady);
        reject(new Error('connection closed'));
      };
      client.once('ready', onReady);
      client.once('end', onEnd);
    }), timeoutMs, 'connect');
  }

  /** Appends an entry; resolves to its ID once Redis has accepted it. */
  async publish(body: string): Promise<string> {
    const id = await this.call(() => this.client.xadd(KEYS.stream, '*', 'e', body), 'XADD');
    if (typeof id !== 'string') throw new PrerenderError('EREDIS', `Redis at ${redactUrl(this.url)} did not accept the entry`);
    return id;
  }

  /** Entries after `after`, waiting up to `blockMs` for the first. */
  async read(after: string, blockMs: number, count: number): Promise<StreamEntry[]> {
    const reply = await this.call(() => this.client.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', KEYS.stream, after), 'XREAD', blockMs + BLOCK_GRACE_MS);
    if (reply === null || reply === undefined) return [];
    const out: StreamEntry[] = [];
    for (const [, entries] of reply) {
      for (const [id, fields] of entries) {
        const at = fields.indexOf('e');
        out.push({ id, body: at >= 0 ? fields[at + 1] ?? '' : '' });
      }
    }
    return out;
  }

  async info(): Promise<StreamInfo> {
    let reply: unknown[];
    try {
      reply = await this.call(() => this.client.xinfo('STREAM', KEYS.stream) as Promise<unknown[]>, 'XINFO');
    } catch (error) {
      if (error instanceof PrerenderError && /no such key/i.test(String((error.cause as Error | undefined)?.message))) {
        return { exists: false, lastId: '0-0', firstId: '0-0', maxDeletedId: '0-0', length: 0, entriesAdded: 0 };
      }
      throw error;
    }
    const field = (name: string): unknown => reply[reply.indexOf(name) + 1];
    const first = field('first-entry');
    return {
      exists: true,
      lastId: String(field('last-generated-id') ?? '0-0'),
      firstId: Array.isArray(first) && typeof first[0] === 'string' ? first[0] : '0-0',
      maxDeletedId: String(field('max-deleted-entry-id') ?? '0-0'),
      length: Number(field('length') ?? 0),
      entriesAdded: Number(field('entries-added') ?? 0),
    };
  }

  /**
   * A random name for this Redis's stream, made by the first agent that asks and kept with the data:
   * a Redis that lost its data (restarted without its append-only file) loses it too, so an agent
   * whose recorded epoch differs knows its position means nothing here.
   */
  async epoch(): Promise<string> {
    const [, got] = await this.call(() => this.client.multi()
      .set(KEYS.epoch, randomBytes(8).toString('hex'), 'NX')
      .get(KEYS.epoch)
      .exec(), 'MULTI') ?? [];
    const value = got?.[1];
    if (typeof value !== 'string') throw new PrerenderError('EREDIS', `Redis at ${redactUrl(this.url)} did not return the stream's epoch`);
    return value;
  }

  /** Records a host's applied position, liveness and status in one transaction. */
  async acknowledge(host: string, applied: string, liveUntil: number, status: Record<string, unknown>): Promise<void> {
    await this.call(() => this.client.multi()
      .hset(KEYS.applied, host, applied)
      .hset(KEYS.live, host, String(liveUntil))
      .hset(KEYS.status, host, JSON.stringify(status))
      .exec(), 'MULTI');
  }

  /** Says the host is live without moving its position (a host that has no position yet). */
  async heartbeat(host: string, liveUntil: number, status: Record<string, unknown>): Promise<void> {
    await this.call(() => this.client.multi()
      .hset(KEYS.live, host, String(liveUntil))
      .hset(KEYS.status, host, JSON.stringify(status))
      .exec(), 'MULTI');
  }

  async hosts(): Promise<HostRecord[]> {
    const [applied, live, status] = await this.call(() => Promise.all([
      this.client.hgetall(KEYS.applied), this.client.hgetall(KEYS.live), this.client.hgetall(KEYS.status),
    ]), 'HGETALL');
    const ids = new Set([...Object.keys(applied), ...Object.keys(live), ...Object.keys(status)]);
    return [...ids].sort().map((id) => {
      let parsed: Record<string, unknown> | undefined;
      try {
        parsed = status[id] === undefined ? undefined : JSON.parse(status[id]) as Record<string, unknown>;
      } catch {
        parsed = undefined;
      }
      const until = live[id] === undefined ? undefined : Number(live[id]);
      return { id, applied: applied[id], liveUntil: Number.isFinite(until) ? until : undefined, status: parsed };
    });
  }

  /** Trims the stream up to the slowest live host; returns the number of entries removed. */
  async trim(now = Date.now()): Promise<number> {
    const removed = await this.call(() => this.client.eval(TRIM_SCRIPT, 3, KEYS.stream, KEYS.applied, KEYS.live, String(now)), 'EVAL');
    return Number(removed);
  }

  async reportCrawl(entryId: string, host: string, report: Record<string, unknown>): Promise<void> {
    await this.call(() => this.client.multi()
      .hset(KEYS.crawl(entryId), host, JSON.stringify(report))
      .expire(KEYS.crawl(entryId), CRAWL_REPORT_TTL_S)
      .exec(), 'MULTI');
  }

  async crawlReports(entryId: string): Promise<Map<string, Record<string, unknown>>> {
    const raw = await this.call(() => this.client.hgetall(KEYS.crawl(entryId)), 'HGETALL');
    const out = new Map<string, Record<string, unknown>>();
    for (const [host, text] of Object.entries(raw)) {
      try {
        out.set(host, JSON.parse(text) as Record<string, unknown>);
      } catch {
        out.set(host, { ok: false, error: 'unreadable report' });
      }
    }
    return out;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.client.disconnect(false);
  }

  private async call<T>(run: () => Promise<T>, what: string, timeoutMs = COMMAND_TIMEOUT_MS): Promise<T> {
    await this.ready();
    return this.bounded(run(), timeoutMs, what);
  }

  private async bounded<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no reply to ${what} within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      return await Promise.race([promise, timeout]);
    } catch (error) {
      if (/no reply to/.test((error as Error).message)) {
        // A connection that stopped answering is dropped, so the next call starts on a fresh one.
        const stale = this.client;
        this.client = this.makeClient();
        stale.disconnect(false);
      }
      promise.catch(() => undefined);
      const said = this.lastError;
      this.lastError = undefined;
      const reason = `${error instanceof Error ? error.message.replace(/\.$/, '') : String(error)}${said === undefined ? '' : ` (${said})`}`;
      throw new PrerenderError('EREDIS', `Redis at ${redactUrl(this.url)}: ${what} failed: ${reason}`, { cause: error });
    } finally {
      clearTimeout(timer);
    }
  }
}
