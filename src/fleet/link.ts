/**
 * What `createCache` holds for the fleet: the publisher its `purge()` goes through when `fleet` is
 * configured, and the storing gates of its roots (guard.ts), which close on any root an agent has
 * reported for, configured or not.
 */
import { PrerenderError } from '../errors.js';
import { OptionError, wholeNumber } from '../options.js';
import type { PurgeOptions, PurgeResult, PurgeSelector } from '../purge.js';
import { StoringGuard } from './guard.js';
import { publishPurge, type FleetPublishResult } from './publish.js';
import { FleetRedis, checkRedisUrl, redactUrl } from './stream.js';
import type { StoringVerdict } from './state.js';

export interface FleetOptions {
  /** The fleet's Redis, e.g. `redis://10.0.0.5:6379`: `purge()` publishes there instead of purging here. */
  redis: string;
  /**
   * How long `purge()` waits for every live host to apply it; 0 returns once Redis has the purge.
   * Past the wait it throws `EFLEET` naming the hosts that had not.
   * @default 10_000
   */
  waitMs?: number;
  /**
   * How old this host's agent heartbeat may be before this process stops storing.
   * @default 4000
   */
  maxSilenceMs?: number;
}

export interface FleetPurgeOptions extends PurgeOptions {
  /** With `fleet`: overrides `fleet.waitMs` for this purge. */
  waitMs?: number;
}

export type FleetPurgeResult = PurgeResult & {
  /** With `fleet`: the stream entry and which hosts applied it. The files are removed by each host's agent. */
  fleet?: FleetPublishResult;
};

export interface FleetLink {
  publish(selector: PurgeSelector, options: FleetPurgeOptions): Promise<FleetPurgeResult>;
  verdict(root: string): StoringVerdict;
  close(): Promise<void>;
}

export function checkFleetOptions(fleet: FleetOptions | undefined): FleetOptions | undefined {
  if (fleet === undefined) return undefined;
  if (typeof fleet !== 'object' || fleet === null) throw new OptionError('fleet', 'an object: { redis: "redis://host:port" }', fleet);
  try {
    checkRedisUrl(fleet.redis, '`fleet.redis`');
  } catch {
    throw new OptionError('fleet.redis', 'a redis:// or rediss:// URL', fleet.redis === undefined ? undefined : redactUrl(String(fleet.redis)));
  }
  for (const name of ['waitMs', 'maxSilenceMs'] as const) wholeNumber(fleet[name], `fleet.${name}`, 0, 0, 'a whole number of milliseconds');
  return fleet;
}

export function createFleetLink(roots: readonly string[], fleet: FleetOptions | undefined, log: (message: string) => void): FleetLink {
  const guards = new Map(roots.map((root) => [root, new StoringGuard(root, {
    required: fleet !== undefined, log, ...(fleet?.maxSilenceMs === undefined ? {} : { maxSilenceMs: fleet.maxSilenceMs }),
  })]));
  let redis: FleetRedis | undefined;
  return {
    async publish(selector, options) {
      if (fleet === undefined) throw new PrerenderError('EUSAGE', 'this cache has no `fleet` to publish to');
      if (options.dryRun === true) throw new PrerenderError('EUSAGE', 'a dry run lists one root: purge with dryRun on a cache without `fleet` (or `prerender purge --dry-run` on the host)');
      redis ??= new FleetRedis(fleet.redis, { persistent: true });
      const published = await publishPurge(redis, selector, { refresh: options.refresh !== undefined, waitMs: options.waitMs ?? fleet.waitMs ?? 10_000 });
      return { removed: [], refreshed: [], failed: [], fleet: published };
    },
    verdict(root) {
      return guards.get(root)?.verdict() ?? { storing: true, reason: 'not a fleet host' };
    },
    async close() {
      for (const guard of guards.values()) guard.close();
      await redis?.close();
    },
  };
}
