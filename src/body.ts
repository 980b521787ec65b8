/**
 * The checks a body must pass on its way into a temp file, shared by the middleware (a response in
 * flight) and the fetcher (a crawl or refresh): size limit, UTF-8 validity for text that declared no
 * charset, and the declared Content-Length.
 */
import { TextDecoder } from 'node:util';
import type { StorableResponse } from './policy.js';
import type { TempFile } from './store.js';

export class BodySink {
  readonly temp: TempFile;
  private readonly expectedLength: number | undefined;
  private readonly maxBodyBytes: number;
  private readonly decoder: TextDecoder | undefined;

  constructor(temp: TempFile, response: StorableResponse, maxBodyBytes: number) {
    this.temp = temp;
    this.expectedLength = response.contentLength;
    this.maxBodyBytes = maxBodyBytes;
    this.decoder = response.mustBeUtf8 ? new TextDecoder('utf-8', { fatal: true }) : undefined;
  }

  /** Queues a chunk for the temp file; returns why the body cannot be stored, if it cannot. */
  push(bytes: Uint8Array): string | undefined {
    if (bytes.byteLength === 0) return undefined;
    if (this.temp.bytes + bytes.byteLength > this.maxBodyBytes) return `body over maxBodyBytes (${this.maxBodyBytes})`;
    if (this.decoder !== undefined) {
      try {
        this.decoder.decode(bytes, { stream: true });
      } catch {
        return 'body is not valid UTF-8 and declares no charset';
      }
    }
    this.temp.write(bytes);
    return undefined;
  }

  /** Call once the body is complete; returns why it cannot be stored, if it cannot. */
  end(): string | undefined {
    if (this.expectedLength !== undefined && this.expectedLength !== this.temp.bytes) {
      return `body is ${this.temp.bytes} bytes but Content-Length said ${this.expectedLength}`;
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
