/**
 * The body of one page on its way to the store, held in memory until its batch is written (commit.ts):
 * a body is written with one call, flushed with the others of its batch, and never needs a descriptor
 * while the response is still streaming. What all pending bodies hold is bounded by a `ByteBudget`.
 */

/** Bytes all pending bodies of one cache may hold together (`maxPendingBytes`). */
export class ByteBudget {
  readonly limit: number;
  private used = 0;

  constructor(limit: number) {
    this.limit = limit;
  }

  get held(): number {
    return this.used;
  }

  /** Takes `bytes` from the budget; false (and nothing taken) when that would pass the limit. */
  take(bytes: number): boolean {
    if (this.used + bytes > this.limit) return false;
    this.used += bytes;
    return true;
  }

  give(bytes: number): void {
    this.used -= bytes;
  }
}

export class PageBody {
  readonly chunks: Uint8Array[] = [];
  /** Bytes written so far. */
  bytes = 0;
  private readonly budget: ByteBudget | undefined;
  private released = false;

  constructor(budget?: ByteBudget) {
    this.budget = budget;
  }

  /** Keeps a copy of `chunk`; false when the budget has no room for it (the body is then incomplete). */
  write(chunk: Uint8Array): boolean {
    if (this.released) return false;
    if (this.budget !== undefined && !this.budget.take(chunk.byteLength)) return false;
    // A copy: the caller (a response's write) may reuse its buffer once the call returns.
    this.chunks.push(Uint8Array.prototype.slice.call(chunk));
    this.bytes += chunk.byteLength;
    return true;
  }

  /** Drops the bytes and gives them back to the budget; safe to call more than once. */
  discard(): void {
    if (this.released) return;
    this.released = true;
    this.chunks.length = 0;
    this.budget?.give(this.bytes);
  }
}
