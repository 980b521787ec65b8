/**
 * `prerender fleet status`, and what `purge --redis` and `crawl --fleet` do (the agent is agent.ts).
 * Declares options and calls src/fleet/.
 */
import fs from 'node:fs/promises';
import type { Command } from 'commander';
import { PrerenderError } from '../errors.js';
import type { PurgeSelector } from '../purge.js';
import { MAX_CRAWL_LIST_BYTES } from '../fleet/entries.js';
import type { FleetPublishResult } from '../fleet/publish.js';
import type { Readable } from 'node:stream';
import { positiveInteger, redisOption } from './arguments.js';
import type { CliIO, CommandContext } from './context.js';

/** The fleet's modules, and the Redis client under them: loaded by the commands that talk to Redis, not by every start of the CLI. */
const fleetModules = async () => {
  const [publish, status, stream] = await Promise.all([import('../fleet/publish.js'), import('../fleet/status.js'), import('../fleet/stream.js')]);
  return { ...publish, ...status, ...stream };
};

export function registerFleet(program: Command, { io, setExitCode }: CommandContext): void {
  program.command('fleet')
    .description('the hosts of a fleet')
    .command('status')
    .description('each host: how far it applied the purge stream, its lag, when it was last seen, whether it stores')
    .addOption(redisOption(io.env))
    .option('--json', 'print a machine-readable report on stdout')
    .action(async (options: { redis?: string; json?: boolean }) => {
      const { FleetRedis, checkRedisUrl, fleetStatus, formatFleetStatus } = await fleetModules();
      const redis = new FleetRedis(checkRedisUrl(options.redis));
      try {
        const status = await fleetStatus(redis);
        io.stdout(options.json === true ? `${JSON.stringify(status)}\n` : formatFleetStatus(status));
        if (status.hosts.some((host) => host.live && !host.storing)) setExitCode(1);
      } finally {
        await redis.close();
      }
    });
}

/** `prerender purge ... --redis <url> [--wait <ms>]`. */
export async function fleetPurge(io: CliIO, url: string, selector: PurgeSelector, options: { wait?: string; json?: boolean; refresh?: boolean }): Promise<void> {
  const waitMs = options.wait === undefined ? 0 : positiveInteger(options.wait, '--wait', 'milliseconds');
  const { FleetRedis, checkRedisUrl, publishPurge, redactUrl } = await fleetModules();
  const redis = new FleetRedis(checkRedisUrl(url));
  let result: FleetPublishResult;
  try {
    result = await publishPurge(redis, selector, { waitMs, ...(options.refresh === true ? { refresh: true } : {}) });
  } finally {
    await redis.close();
  }
  if (options.json === true) {
    io.stdout(`${JSON.stringify({ published: result.id, waited: waitMs > 0, applied: result.applied, pending: result.pending })}\n`);
    return;
  }
  io.stdout(waitMs > 0
    ? `published purge ${result.id} to ${redactUrl(url)}; applied by ${result.applied.length} live host${result.applied.length === 1 ? '' : 's'}${result.applied.length > 0 ? `: ${result.applied.join(', ')}` : ''}\n`
    : `published purge ${result.id} to ${redactUrl(url)} (not waiting for the hosts: add --wait <ms>)\n`);
}

/** `prerender crawl <source> --fleet --redis <url> [--wait [ms]]`. Resolves to the exit code. */
export async function fleetCrawl(io: CliIO, source: string, options: { redis?: string; wait?: string | boolean; concurrency: number; json?: boolean }): Promise<number> {
  const { FleetRedis, checkRedisUrl, publishEntry, redactUrl } = await fleetModules();
  const url = checkRedisUrl(options.redis);
  const waitMs = options.wait === undefined || options.wait === false ? 0 : options.wait === true ? 3_600_000 : positiveInteger(options.wait, '--wait', 'milliseconds');
  const entry = /^https?:\/\//i.test(source)
    ? { kind: 'crawl' as const, url: source, concurrency: options.concurrency, at: Date.now() }
    : { kind: 'crawl' as const, list: (await readSource(source, io.stdin)).toString('base64'), concurrency: options.concurrency, at: Date.now() };
  const redis = new FleetRedis(url);
  try {
    const known = await redis.hosts().catch((error: unknown) => {
      throw new PrerenderError('EREDIS', `${(error as Error).message}: the crawl was NOT published to the fleet`, { cause: error });
    });
    const live = known.filter((host) => host.liveUntil !== undefined && host.liveUntil >= Date.now()).map((host) => host.id);
    const id = await publishEntry(redis, entry);
    if (waitMs === 0) {
      io.stdout(options.json === true ? `${JSON.stringify({ published: id, hosts: live })}\n` : `published crawl ${id} to ${redactUrl(url)} for ${live.length} live hosts (not waiting: add --wait)\n`);
      return 0;
    }
    io.stderr(`prerender: crawl ${id} published; waiting for ${live.length} hosts: ${live.join(', ')}\n`);
    const deadline = Date.now() + waitMs;
    let reports = await redis.crawlReports(id);
    for (;;) {
      const now = Date.now();
      const still = new Set((await redis.hosts()).filter((host) => host.liveUntil !== undefined && host.liveUntil >= now).map((host) => host.id));
      const waiting = live.filter((host) => still.has(host) && !reports.has(host));
      if (waiting.length === 0 || now >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
      reports = await redis.crawlReports(id);
    }
    const hosts = live.map((host): Record<string, unknown> & { host: string } => ({ host, ...(reports.get(host) ?? { ok: false, error: 'no report in time (still crawling, or its agent is down)' }) }));
    if (options.json === true) io.stdout(`${JSON.stringify({ published: id, hosts })}\n`);
    else {
      for (const host of hosts) {
        io.stdout(`${host.ok === true ? 'ok  ' : 'FAIL'}  ${host.host}: ${host.ok === true ? `switched, ${String(host.stored ?? 0)} pages stored` : String(host.error ?? 'failed')}\n`);
      }
      if (hosts.length === 0) io.stdout('no live hosts to crawl: start `prerender agent --origin <app>` on each host\n');
    }
    return hosts.length > 0 && hosts.every((host) => host.ok === true) ? 0 : 1;
  } finally {
    await redis.close();
  }
}

async function readSource(source: string, stdin: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  const tooLarge = (): PrerenderError => new PrerenderError('EUSAGE', `crawl --fleet: the source is over ${MAX_CRAWL_LIST_BYTES} bytes; publish a sitemap URL instead (each host fetches it from its own app)`, { input: source });
  const add = (chunk: Buffer): void => {
    size += chunk.length;
    if (size > MAX_CRAWL_LIST_BYTES) throw tooLarge();
    chunks.push(chunk);
  };
  if (source === '-') {
    for await (const chunk of stdin) add(Buffer.from(chunk as Buffer));
  } else {
    if (((await fs.stat(source).catch(() => undefined))?.size ?? 0) > MAX_CRAWL_LIST_BYTES) throw tooLarge();
    const data = await fs.readFile(source).catch((error: unknown) => {
      throw new PrerenderError('EUSAGE', `cannot read source file ${source}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`, { input: source, cause: error });
    });
    add(data);
  }
  return Buffer.concat(chunks);
}
