/**
 * `prerender fleet status`: every host Redis knows of, how far it has applied the stream, its lag,
 * when it was last seen, and whether it stores; and the doctor's check of this host's agent.
 */
import { fleetDir, hasAgent, readStatus, storingVerdict, DEFAULT_MAX_SILENCE_MS } from './state.js';
import { compareIds, idTime, type FleetRedis } from './stream.js';

export interface FleetHostStatus {
  host: string;
  /** Last stream entry it applied. */
  applied: string | null;
  /** How far behind the stream's head it is: 0 when it applied the newest entry. */
  lagMs: number | null;
  /** Its last heartbeat (epoch ms). */
  lastSeen: number | null;
  /** Within the retention: purges wait for it and the stream is kept for it. */
  live: boolean;
  storing: boolean;
  note: string | null;
}

export interface FleetStatus {
  stream: { lastId: string; length: number; firstId: string };
  hosts: FleetHostStatus[];
}

export async function fleetStatus(redis: FleetRedis, now = Date.now()): Promise<FleetStatus> {
  const info = await redis.info();
  const hosts = (await redis.hosts()).map((record): FleetHostStatus => {
    const status = record.status ?? {};
    const lastSeen = typeof status.heartbeatAt === 'number' ? status.heartbeatAt : null;
    const live = record.liveUntil !== undefined && record.liveUntil >= now;
    const fresh = lastSeen !== null && now - lastSeen <= DEFAULT_MAX_SILENCE_MS;
    const applied = record.applied ?? null;
    const lagMs = applied === null ? null : compareIds(applied, info.lastId) >= 0 ? 0 : Math.max(0, idTime(info.lastId) - idTime(applied));
    return {
      host: record.id,
      applied,
      lagMs,
      lastSeen,
      live,
      storing: live && fresh && status.storing === true,
      note: typeof status.note === 'string' ? status.note : (fresh ? null : 'no heartbeat lately: agent down or cut off from Redis'),
    };
  });
  return { stream: { lastId: info.lastId, length: info.length, firstId: info.firstId }, hosts };
}

export function formatFleetStatus(status: FleetStatus, now = Date.now()): string {
  const lines = [`stream: ${status.stream.length} entries, from ${status.stream.firstId} to ${status.stream.lastId}`];
  lines.push(`${'host'.padEnd(20)}  ${'applied'.padEnd(16)}  ${'lag'.padStart(9)}  ${'last seen'.padStart(10)}  ${'storing'.padEnd(7)}  state`);
  for (const host of status.hosts) {
    const lag = host.lagMs === null ? '-' : `${host.lagMs} ms`;
    const seen = host.lastSeen === null ? '-' : `${((now - host.lastSeen) / 1000).toFixed(1)} s ago`;
    lines.push(`${host.host.padEnd(20)}  ${(host.applied ?? '-').padEnd(16)}  ${lag.padStart(9)}  ${seen.padStart(10)}  ${(host.storing ? 'yes' : 'NO').padEnd(7)}  ${host.live ? 'live' : 'gone'}${host.note === null ? '' : `  (${host.note})`}`);
  }
  if (status.hosts.length === 0) lines.push('no hosts: start `prerender agent` on each host');
  return `${lines.join('\n')}\n`;
}

/** The doctor's check of this host's agent; none when no agent ever ran for `root`. */
export async function agentCheck(root: string): Promise<{ check: string; ok: boolean; detail: string; fix?: string } | undefined> {
  if (!hasAgent(root)) return undefined;
  const status = await readStatus(fleetDir(root));
  const verdict = storingVerdict(status, Date.now(), DEFAULT_MAX_SILENCE_MS);
  return {
    check: 'the fleet agent is current (this host may store)',
    ok: verdict.storing,
    detail: `${verdict.reason}${status === undefined ? '' : `; host ${status.host}, applied up to ${status.position}`}`,
    ...(verdict.storing ? {} : { fix: 'start `prerender agent --root <root> --redis <url>` (systemctl start prerender-agent) and check it reaches Redis: until then this host serves misses and stores nothing' }),
  };
}
