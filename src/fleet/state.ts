/**
 * The agent's files on its host, in `<root>/.prerender/fleet/` (for a crawl --swap base, in the base's
 * own `.prerender/fleet/`, which outlives every generation):
 * - `position`: the last stream entry applied to the tree, made durable (fsync) before the agent tells
 *   Redis, so a host never claims more than its disk holds;
 * - `agent.json`: the agent's heartbeat, read by the cache processes of the host (guard.ts) to decide
 *   whether they may store.
 */
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, statSync } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { STATE_DIR } from '../url-path.js';
import { StateFiles } from '../store/state-files.js';

export const STATUS_FILE = 'agent.json';
/**
 * How old an agent's heartbeat, and its last moment caught up, may be before its host stops storing:
 * three missed beats of the default 1 s read, and a second of slack.
 */
export const DEFAULT_MAX_SILENCE_MS = 4_000;
const POSITION_FILE = 'position';

/** What an agent last said about itself (`agent.json`). */
export interface AgentStatus {
  host: string;
  pid: number;
  /** When the agent last wrote this file. */
  heartbeatAt: number;
  /**
   * Until this moment everything the stream held had been applied (the time a read was sent that
   * then returned nothing newer, or whose entries were all applied). 0 while it is not caught up.
   */
  caughtUpAt: number;
  position: string;
  redis: 'up' | 'down';
  /** Why it is not current, when it is not. */
  note?: string;
}

/** True when `dir` is a crawl --swap base (`current` symlink and `generations/`). */
export function isSwapBase(dir: string): boolean {
  const current = lstatSafe(path.join(dir, 'current'));
  return current?.isSymbolicLink() === true && statSafe(path.join(dir, 'generations'))?.isDirectory() === true;
}

/**
 * Where the fleet files of the tree at `root` live. `root` may be a plain cache root, a swap base (the
 * agent's --root), or a swap base's `current` (the app's root): the last two share the base's.
 */
export function fleetDir(root: string): string {
  const resolved = path.resolve(root);
  if (!isSwapBase(resolved) && path.basename(resolved) === 'current' && isSwapBase(path.dirname(resolved))) {
    return path.join(path.dirname(resolved), STATE_DIR, 'fleet');
  }
  return path.join(resolved, STATE_DIR, 'fleet');
}

export function hasAgent(root: string): boolean {
  return existsSync(path.join(fleetDir(root), STATUS_FILE));
}

/**
 * One fixed-size record, `<id> <epoch> <check>`, padded: rewritten in place, it never changes length.
 * The epoch names the stream it is a position in (stream.ts `epoch`).
 */
const POSITION_BYTES = 80;

export interface PositionRecord {
  id: string;
  epoch: string;
}

function positionRecord(id: string, epoch: string): Buffer {
  const record = Buffer.alloc(POSITION_BYTES, ' ');
  record.write(`${id} ${epoch} ${createHash('sha1').update(`${id} ${epoch}`).digest('hex').slice(0, 12)}`);
  record[POSITION_BYTES - 1] = 0x0a;
  return record;
}

/**
 * The position file's record, or undefined when it is missing or does not check out (a torn write):
 * the agent then treats the tree as one that cannot know what it applied.
 */
export async function readPositionRecord(dir: string): Promise<PositionRecord | undefined> {
  const text = await filesOf(dir).readText(path.join(dir, POSITION_FILE)).catch(() => undefined);
  const match = /^(\d+-\d+) ([0-9a-f]{1,32}) [0-9a-f]{12} *\n$/.exec(text ?? '');
  if (match === null) return undefined;
  const [id, epoch] = [match[1] as string, match[2] as string];
  return positionRecord(id, epoch).toString('utf8') === text ? { id, epoch } : undefined;
}

export async function readPosition(dir: string): Promise<string | undefined> {
  return (await readPositionRecord(dir))?.id;
}

/**
 * The position file, kept open: each record is written over the last in place and flushed with one
 * fdatasync, the only disk wait between applying a batch and acknowledging it. The file itself is
 * created once, through a flushed rename, so its directory entry is durable too.
 */
export class PositionFile {
  private handle: FileHandle | undefined;

  constructor(private readonly dir: string) {}

  async write(id: string, epoch: string): Promise<void> {
    if (this.handle === undefined) {
      const files = filesOf(this.dir);
      const file = path.join(this.dir, POSITION_FILE);
      if ((await files.lstat(file))?.size !== POSITION_BYTES) {
        await files.writeAtomically(file, positionRecord(id, epoch).toString('utf8'), true);
      }
      this.handle = await files.openForUpdate(file);
    }
    await this.handle.write(positionRecord(id, epoch), 0, POSITION_BYTES, 0);
    await this.handle.datasync();
  }

  async close(): Promise<void> {
    await this.handle?.close();
    this.handle = undefined;
  }
}

export async function writeStatus(dir: string, status: AgentStatus): Promise<void> {
  await filesOf(dir).writeAtomically(path.join(dir, STATUS_FILE), `${JSON.stringify(status)}\n`, false);
}

export async function readStatus(dir: string): Promise<AgentStatus | undefined> {
  return parseStatus(await filesOf(dir).readText(path.join(dir, STATUS_FILE)).catch(() => undefined));
}

/** An agent's status file's text, or undefined when it is missing or not one (a torn or foreign file). */
export function parseStatus(text: string | undefined): AgentStatus | undefined {
  if (text === undefined) return undefined;
  try {
    const value = JSON.parse(text) as AgentStatus;
    return typeof value.heartbeatAt === 'number' && typeof value.caughtUpAt === 'number' ? value : undefined;
  } catch {
    return undefined;
  }
}

export interface StoringVerdict {
  storing: boolean;
  reason: string;
}

/**
 * Whether a cache process may store, from its agent's last word. `maxSilenceMs` bounds both how old
 * the heartbeat and how old the last moment it was caught up may be.
 */
export function storingVerdict(status: AgentStatus | undefined, now: number, maxSilenceMs: number): StoringVerdict {
  if (status === undefined) return { storing: false, reason: 'its fleet agent has not reported (is `prerender agent` running for this root?)' };
  if (now - status.heartbeatAt > maxSilenceMs) {
    return { storing: false, reason: `its fleet agent (pid ${status.pid}) has been silent for ${Math.round((now - status.heartbeatAt) / 1000)} s` };
  }
  if (status.redis === 'down') return { storing: false, reason: `its fleet agent cannot reach Redis${status.note === undefined ? '' : ` (${status.note})`}` };
  if (now - status.caughtUpAt > maxSilenceMs) {
    return { storing: false, reason: `its fleet agent is behind the purge stream${status.note === undefined ? '' : ` (${status.note})`}` };
  }
  return { storing: true, reason: 'its fleet agent is current' };
}

function lstatSafe(file: string): ReturnType<typeof lstatSync> | undefined {
  try {
    return lstatSync(file);
  } catch {
    return undefined;
  }
}

function statSafe(file: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(file);
  } catch {
    return undefined;
  }
}

/** The fleet directory, made without going through a symlink in the state directory (EROOT there). */
export async function ensureFleetDir(dir: string): Promise<void> {
  await filesOf(dir).directory(dir, true);
}

/** Writes a file of the agent's own (a crawl's URL list) into the fleet directory `dir`. */
export async function writeFleetFile(dir: string, name: string, data: string | Uint8Array): Promise<string> {
  const file = path.join(dir, name);
  await filesOf(dir).writeAtomically(file, data, false);
  return file;
}

export async function removeFleetFile(dir: string, name: string): Promise<void> {
  await filesOf(dir).remove(path.join(dir, name));
}

/** The state files of the fleet directory `dir` (`<root>/.prerender/fleet`). */
function filesOf(dir: string): StateFiles {
  const stateDir = path.dirname(path.resolve(dir));
  if (path.basename(stateDir) !== STATE_DIR) throw new TypeError(`Expected \`dir\` to be a fleet directory below ${STATE_DIR}, not ${dir}`);
  return new StateFiles(stateDir, path.dirname(stateDir));
}
