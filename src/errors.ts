/**
 * Stable error codes. Callers (and the CLI's exit status) branch on `code`, never on the message.
 * - `EUSAGE`: a bad argument or option; the CLI exits 2.
 * - `EPATH`: a path or URL that cannot name a cached file (not canonical, outside the root).
 * - `ETAG`: a tag that cannot be recorded (too long, control characters).
 * - `EROOT`: the cache root is unusable (a file, unreadable, not creatable).
 * - `ESTORE`: a write to the cache failed (disk full, permissions); the response itself is unaffected.
 * - `ENGINX`: nginx config generation was given something nginx cannot express.
 * - `EREDIS`: the fleet's Redis cannot be reached or refused a command; a purge was not published.
 * - `EFLEET`: some live hosts did not apply a fleet purge (or crawl) in time; `hosts` names them.
 * - `ESOURCE`: a crawl source went past one of its bounds (bytes, URLs, a line or token, nesting,
 *   sitemaps); the crawl reports it as failed (exit 1) and goes on with what it read before.
 */
export type PrerenderErrorCode = 'EUSAGE' | 'EPATH' | 'ETAG' | 'EROOT' | 'ESTORE' | 'ENGINX' | 'ESOURCE' | 'EREDIS' | 'EFLEET';

export class PrerenderError extends Error {
  readonly code: PrerenderErrorCode;
  /** The offending input, when there is one, so logs and `--json` reports can show it verbatim. */
  readonly input: string | undefined;
  /** With `EFLEET`: the hosts that did not apply it in time. */
  readonly hosts: readonly string[] | undefined;

  constructor(code: PrerenderErrorCode, message: string, options: { cause?: unknown; input?: string; hosts?: readonly string[] } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PrerenderError';
    this.code = code;
    this.input = options.input;
    this.hosts = options.hosts;
  }
}

export function isErrno(error: unknown, ...codes: string[]): error is NodeJS.ErrnoException {
  return error instanceof Error && typeof (error as NodeJS.ErrnoException).code === 'string'
    && (codes.length === 0 || codes.includes((error as NodeJS.ErrnoException).code as string));
}
