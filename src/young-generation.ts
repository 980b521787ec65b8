/**
 * Caps V8's young generation at a small fixed size while a crawl runs.
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
 */
import { PerformanceObserver } from 'node:perf_hooks';
import v8 from 'node:v8';

const FLAG = '--semi-space-growth-factor';
const V8_DEFAULT_FACTOR = 2;
/** Two 4 MB semi-spaces, as `getHeapSpaceStatistics` reports the new space. */
const CAP_BYTES = 8 * 1024 * 1024;

let holders = 0;
let observer: PerformanceObserver | undefined;

/** Caps the young generation until the returned function is called. */
export function holdYoungGeneration(): () => void {
  if (userChoseSizing()) return () => undefined;
  if (holders++ === 0) startCapping();
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders > 0) return;
    observer?.disconnect();
    observer = undefined;
    v8.setFlagsFromString(`${FLAG}=${V8_DEFAULT_FACTOR}`);
  };
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
