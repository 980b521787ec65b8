/**
 * Publishing to the fleet: a purge (or crawl) becomes one stream entry, and with a wait the call
 * returns only once every live host has applied it (its `applied` position is at or past the entry),
 * or fails naming those that did not. A purge Redis did not accept is an error (EREDIS), never done.
 */
import { PrerenderError } from '../errors.js';
import type { PurgeSelector } from '../purge.js';
import { checkSelector, encodeEntry, type FleetEntry } from './entries.js';
import { FleetRedis, compareIds, redactUrl } from './stream.js';

export interface FleetPublishResult {
  /** The stream entry's ID. */
  id: string;
  /** Hosts that applied it (only when waiting). */
  applied: string[];
  /** Live hosts that had not applied it when the wait ended (the call threw EFLEET if any). */
  pending: string[];
}

const POLL_MS = 2;

export async function publishEntry(redis: FleetRedis, entry: FleetEntry): Promise<string> {
  try {
    return await redis.publish(encodeEntry(entry));
  } catch (error) {
    if (error instanceof PrerenderError) {
      throw new PrerenderError('EREDIS', `${error.message}: the ${entry.kind} was NOT published to the fleet`, { cause: error });
    }
    throw error;
  }
}

export async function publishPurge(redis: FleetRedis, selector: PurgeSelector, options: { refresh?: boolean; waitMs?: number } = {}): Promise<FleetPublishResult> {
  const checked = checkSelector(selector);
  const id = await publishEntry(redis, { kind: 'purge', selector: checked, ...(options.refresh === true ? { refresh: true } : {}), at: Date.now() });
  if (options.waitMs === undefined || options.waitMs <= 0) return { id, applied: [], pending: [] };
  return waitForHosts(redis, id, options.waitMs, 'purge');
}

/** Resolves once every live host has applied entry `id`; throws EFLEET naming the others at the deadline. */
export async function waitForHosts(redis: FleetRedis, id: string, waitMs: number, what: string): Promise<FleetPublishResult> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const now = Date.now();
    const hosts = (await redis.hosts()).filter((host) => host.liveUntil !== undefined && host.liveUntil >= now);
    const applied = hosts.filter((host) => host.applied !== undefined && compareIds(host.applied, id) >= 0).map((host) => host.id);
    const pending = hosts.filter((host) => !applied.includes(host.id)).map((host) => host.id);
    if (pending.length === 0) return { id, applied, pending };
    if (Date.now() >= deadline) {
      throw new PrerenderError('EFLEET', `the ${what} ${id} was published to ${redactUrl(redis.url)}, but ${pending.length} live host${pending.length === 1 ? '' : 's'} did not apply it within ${waitMs} ms: ${pending.join(', ')} (applied: ${applied.join(', ') || 'none'}); see \`prerender fleet status\``, { hosts: pending });
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}
