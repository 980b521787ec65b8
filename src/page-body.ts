/**
 * The body of one page on its way to the store, held in memory until its batch is written (commit.ts):
 * a body is written with one call, flushed with the others of its batch, and never needs a descriptor
 * while the response is still streaming. What all pending bodies hold is bounded by a `ByteBudget`.
 */

/**
 * What a page waiting for its batch holds in memory besides its body (its record, its task, the
 * promises that answer it), charged to the budget as if it were body bytes: about 3 KB live (a heap
 * snapshot of a crawl with 15,320 tiny pages waiting: 50 MB), rounded up. Without it, a flood of tiny
 * pages would count as next to nothing: 64 MiB of 100-byte bodies is 670,000 pages waiting, 2 GB.
 */
export const PENDING_PAGE_BYTES = 4096;

/** Bytes all pending bodies of one cache may hold together (`maxPendingBytes`), PENDING_PAGE_BYTES a page included. */
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
  /** False when the budget had no room even for the page itself: nothing of it can be stored. */
  readonly admitted: boolean;
  private readonly budget: ByteBudget | undefined;
  private released = false;
  /** What the page itself took from the budget, besides its bytes. */
  private readonly charged: number;

  constructor(budget?: ByteBudget) {
    this.budget = budget;
    const charge = budget === undefined ? 0 : PENDING_PAGE_BYTES;
    this.admitted = budget === undefined || budget.take(charge);
    this.charged = this.admitted ? charge : 0;
  }

  /** Keeps a copy of `chunk`; false when the budget has no room for it (the body is then incomplete). */
  write(chunk: Uint8Array): boolean {
    if (this.released || !this.admitted) return false;
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
    this.budget?.give(this.bytes + this.charged);
  }
}
