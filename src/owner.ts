/**
 * Who owns a file: one naming scheme and one liveness rule for everything a process leaves in a cache
 * root (temp files and trash, tag-log asides and compaction locks, purge-journal holds, crawl --swap
 * build markers and locks), on one host or on several sharing a volume.
 *
 * An owner is `<pid>-<process tag>-<host tag>`. The pid lets another process of this host ask whether
 * the owner still runs; the process tag, drawn once, tells two processes with the same pid apart
 * (another pid namespace, or this pid's earlier life); the host tag (of the host name) tells a file of
 * another machine or container, whose pids mean nothing here.
 */
import { createHash, randomBytes } from 'node:crypto';
import os from 'node:os';
import { isErrno } from './errors.js';

export const HOST_TAG = createHash('sha1').update(os.hostname()).digest('hex').slice(0, 8);
const PROCESS_TAG = randomBytes(4).toString('hex');
/** This process, as the names and contents of the files it owns give it. */
export const OWNER = `${process.pid}-${PROCESS_TAG}-${HOST_TAG}`;
const OWNER_PATTERN = /^(\d+)-([0-9a-f]{8})-([0-9a-f]{8})(?:-|$)/;

let counter = 0;

/** A fresh name this process owns, `<owner>-<kind>-<n>`, unique within the process. */
export function ownedName(kind: string): string {
  return `${OWNER}-${kind}-${++counter}`;
}

/** The owner a name (or a file's content) starts with, if it starts with one. */
export function ownerOf(text: string): string | undefined {
  return OWNER_PATTERN.exec(text.trim())?.[0].replace(/-$/, '');
}

export interface Lifetimes {
  /**
   * Past this age a thing of this host counts as abandoned even while a process with its pid runs
   * (the pid may have been reused): as long as the longest use of such a thing lasts.
   */
  maxAgeMs: number;
  /** The same for a thing of another host, whose processes cannot be asked. @default maxAgeMs */
  foreignMaxAgeMs?: number;
}

/**
 * The one liveness rule: a thing owned by `owner` (undefined: no owner could be read), last touched
 * `ageMs` ago, is still in use when it is this process's; or when it is younger than its lifetime and
 * its owner may still run (a process of this host with its pid is alive; another host's cannot be
 * asked, so it counts as alive). A thing with no owner is in use while it is young.
 */
export function inUse(owner: string | undefined, ageMs: number, lifetimes: Lifetimes): boolean {
  if (owner === OWNER) return true;
  const match = owner === undefined ? null : OWNER_PATTERN.exec(owner);
  if (match === null) return ageMs < lifetimes.maxAgeMs;
  const [, pid, , host] = match;
  if (host !== HOST_TAG) return ageMs < (lifetimes.foreignMaxAgeMs ?? lifetimes.maxAgeMs);
  return ageMs < lifetimes.maxAgeMs && isAlive(Number(pid));
}

function isAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return isErrno(error, 'EPERM');
  }
}
