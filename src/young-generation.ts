/**
 * Caps V8's young generation at a small fixed size while `prerender crawl` runs. The CLI holds it,
 * never the library: it changes V8 flags of the running process (which Node documents as unsupported
 * once V8 runs) and forces full collections, fine for a process the CLI owns and not for an app's.
 *
 * V8 doubles the young generation (up to 16 MB a semi-space, three semi-spaces in all) each time the
 * bytes that survived scavenges since its last growth exceed its size. That total only ever adds up,
 * so any process that allocates steadily for more than a few seconds reaches the maximum, whatever it
 * keeps alive: a crawl of 100k URLs measured ~25 MB more RSS than one of 1k for this alone, with the
 * same live set (one page per worker in flight). Too small a young generation is no better: pages in
 * flight then survive two scavenges, are promoted, and their body buffers wait in the old generation
 * for a full collection (measured: +15 MB of dead ArrayBuffers over 100 s with 1 MB semi-spaces).
 * 4 MB semi-spaces outlive a page's few milliseconds in flight and keep RSS flat.
 *
 * `--max-semi-space-size` cannot be changed once V8 runs, but `--semi-space-growth-factor` is read
 * each time V8 grows the space: it is set to 1 (no growth) as soon as a collection shows the space at
 * the cap, and back to V8's default when the last crawl in the process ends. Left alone when the
 * process was started with its own young-generation flags.
 *
 * What still gets promoted (a page held up by a slow disk, the seen-set's outgrown arrays) is garbage
 * that V8 leaves in the old generation until its limit, which it sets generously for a small heap:
 * ~15 MB more RSS after 100 s of crawling, given back at the first full collection. So while a crawl
 * runs, a full collection (~5 ms for a crawl's ~20 MB heap) is done every FULL_GC_MS; the peak then no
 * longer depends on how long the crawl runs.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';
import vm from 'node:vm';

const FLAG = '--semi-space-growth-factor';
const V8_DEFAULT_FACTOR = 2;
/** Two 4 MB semi-spaces, as `getHeapSpaceStatistics` reports the new space. */
const CAP_BYTES = 8 * 1024 * 1024;

const FULL_GC_MS = 5_000;

let holders = 0;
let observer: PerformanceObserver | undefined;
let collector: NodeJS.Timeout | undefined;

/** Caps the young generation and collects periodically until the returned function is called. */
export function holdYoungGeneration(): () => void {
  if (userChoseSizing()) return () => undefined;
  if (holders++ === 0) {
    startCapping();
    const gc = fullCollection();
    if (gc !== undefined) {
      collector = setInterval(gc, FULL_GC_MS);
      collector.unref();
    }
  }
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders > 0) return;
    clearInterval(collector);
    collector = undefined;
    observer?.disconnect();
    observer = undefined;
    v8.setFlagsFromString(`${FLAG}=${V8_DEFAULT_FACTOR}`);
  };
}

let exposedGc: (() => void) | undefined;

/**
 * V8's full collection: `globalThis.gc` when the process runs with `--expose-gc`, else taken from a
 * fresh context with the flag set for that moment only (the process's own global gains nothing).
 */
function fullCollection(): (() => void) | undefined {
  const own = (globalThis as { gc?: unknown }).gc;
  if (typeof own === 'function') return () => void own();
  if (exposedGc !== undefined) return exposedGc;
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = vm.runInNewContext('gc');
    if (typeof gc === 'function') exposedGc = () => void gc();
  } catch {
    // No full collections then: memory is still bounded, only later.
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
  return exposedGc;
}

function startCapping(): void {
  if (capReached()) return;
  // Growth happens only in a collection, so a look after each one stops it at the cap.
  observer = new PerformanceObserver(() => {
    if (capReached()) {
      observer?.disconnect();
      observer = undefined;
    }
  });
  observer.observe({ entryTypes: ['gc'] });
}

function capReached(): boolean {
  const size = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size ?? 0;
  if (size < CAP_BYTES) return false;
  v8.setFlagsFromString(`${FLAG}=1`);
  return true;
}

function userChoseSizing(): boolean {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return flags.some((flag) => /^--(max|min)[-_]semi[-_]space[-_]size|^--semi[-_]space[-_]growth[-_]factor/.test(flag));
}
