/**
 * The checks a body must pass on its way to the store, shared by the middleware (a response in
 * flight) and the fetcher (a crawl or refresh): size limit, UTF-8 validity for text that declared no
 * charset, and the declared Content-Length.
 */
import { TextDecoder } from 'node:util';
import type { StorableResponse } from './policy.js';
import type { PageBody } from './page-body.js';

/** Why a body was dropped when the cache's pending bodies had no room left for it. */
export const OVER_BUDGET = 'pending stores hold maxPendingBytes';

export class BodySink {
  readonly body: PageBody;
  private readonly expectedLength: number | undefined;
  private readonly maxBodyBytes: number;
  private readonly decoder: TextDecoder | undefined;

  constructor(body: PageBody, response: StorableResponse, maxBodyBytes: number) {
    this.body = body;
    this.expectedLength = response.contentLength;
    this.maxBodyBytes = maxBodyBytes;
    this.decoder = response.mustBeUtf8 ? new TextDecoder('utf-8', { fatal: true }) : undefined;
  }

  /** Keeps a chunk; returns why the body cannot be stored, if it cannot. */
  push(bytes: Uint8Array): string | undefined {
    if (bytes.byteLength === 0) return undefined;
    if (this.body.bytes + bytes.byteLength > this.maxBodyBytes) return `body over maxBodyBytes (${this.maxBodyBytes})`;
    if (this.decoder !== undefined) {
      try {
        this.decoder.decode(bytes, { stream: true });
      } catch {
        return 'body is not valid UTF-8 and declares no charset';
      }
    }
    return this.body.write(bytes) ? undefined : OVER_BUDGET;
  }

  /** Call once the body is complete; returns why it cannot be stored, if it cannot. */
  end(): string | undefined {
    // An empty body writes nothing, so only here does a page the budget had no room for show.
    if (!this.body.admitted) return OVER_BUDGET;
    if (this.expectedLength !== undefined && this.expectedLength !== this.body.bytes) {
      return `body is ${this.body.bytes} bytes but Content-Length said ${this.expectedLength}`;
    }
    if (this.decoder !== undefined) {
      try {
        this.decoder.decode();
      } catch {
        return 'body ends inside a UTF-8 sequence and declares no charset';
      }
    }
    return undefined;
  }
}
