/**
 * The fail-closed gate of a cache process on a fleet host: it may store only while the host's agent
 * says (in `agent.json`, state.ts) that it is alive, reaches Redis and has applied the whole stream
 * within the last few seconds. Otherwise a page rendered now might already have been purged on
 * another host, and this host would serve it. Responses still pass through; only storing stops.
 *
 * The file is re-read a few times a second, off any response; the verdict also ages on its own, so
 * an agent that dies mid-sentence stops storing once its last heartbeat is too old.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { DEFAULT_MAX_SILENCE_MS, STATUS_FILE, fleetDir, parseStatus, storingVerdict, type AgentStatus, type StoringVerdict } from './state.js';
import { READ_NO_FOLLOW, readStateFile } from '../store/no-follow.js';

export interface GuardOptions {
  /**
   * Refuse to store until an agent reports (the cache was configured with `fleet`). Without it the
   * gate closes only once an agent has reported for this root (its `agent.json` exists).
   */
  required: boolean;
  /** How old the agent's heartbeat and catch-up may be. @default 4000 */
  maxSilenceMs?: number;
  /** @default 250 */
  pollMs?: number;
  log: (message: string) => void;
}

export class StoringGuard {
  private readonly file: string;
  private readonly maxSilenceMs: number;
  private required: boolean;
  private status: AgentStatus | undefined;
  private storing: boolean | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly log: (message: string) => void;
  private readonly root: string;

  constructor(root: string, options: GuardOptions) {
    this.root = root;
    this.file = path.join(fleetDir(root), STATUS_FILE);
    this.maxSilenceMs = options.maxSilenceMs ?? DEFAULT_MAX_SILENCE_MS;
    this.required = options.required;
    this.log = options.log;
    this.status = parseStatus(safeRead(this.file));
    if (this.status !== undefined) this.required = true;
    this.timer = setInterval(() => void this.poll(), options.pollMs ?? 250);
    this.timer.unref();
  }

  /** The verdict now; `storing: true` when this root is not part of a fleet. */
  verdict(now = Date.now()): StoringVerdict {
    if (!this.required) return { storing: true, reason: 'not a fleet host' };
    return storingVerdict(this.status, now, this.maxSilenceMs);
  }

  close(): void {
    clearInterval(this.timer);
  }

  private async poll(): Promise<void> {
    const text = await readStateFile(this.file).catch(() => undefined);
    const status = parseStatus(text);
    // A torn or missing read keeps the last word, which ages out on its own.
    if (status !== undefined) {
      this.status = status;
      this.required = true;
    }
    const verdict = this.verdict();
    if (this.required && verdict.storing !== this.storing) {
      if (this.storing !== undefined || !verdict.storing) {
        this.log(verdict.storing ? `storing again under ${this.root}: ${verdict.reason}` : `not storing under ${this.root}: ${verdict.reason}; responses pass through unstored until it is current`);
      }
      this.storing = verdict.storing;
    }
  }
}

function safeRead(file: string): string | undefined {
  try {
    // Opened without following a link at its name: a planted agent.json link must not vouch for the host.
    const fd = openSync(file, READ_NO_FOLLOW);
    try {
      return readFileSync(fd, 'utf8');
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
}
