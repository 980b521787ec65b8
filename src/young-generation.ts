/**
 * Keeps V8's young generation at its initial size while a crawl runs.
 *
 * V8 doubles the young generation (up to 16 MB a semi-space, three semi-spaces in all) each time the
 * bytes that survived scavenges since its last growth exceed its size. That total only ever adds up,
 * so any process that allocates steadily for more than a few seconds reaches the maximum, whatever it
 * keeps alive: a crawl of 100k URLs measured ~20 MB more RSS than one of 1k for this alone, with the
 * same live set (a page per worker in flight). A crawl's garbage dies young, so a small young
 * generation costs only more frequent, cheap scavenges.
 *
 * `--semi-space-growth-factor` is read by V8 each time it grows the space, so it can be set at run
 * time; it is restored to V8's default when the last crawl in the process ends. Left alone when the
 * process was started with its own young-generation flags.
 */
import v8 from 'node:v8';

const FLAG = '--semi-space-growth-factor';
const V8_DEFAULT = 2;
let holders = 0;

function userChoseSizing(): boolean {
  const flags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)];
  return flags.some((flag) => /^--(max|min)[-_]semi[-_]space[-_]size|^--semi[-_]space[-_]growth[-_]factor/.test(flag));
}

/** Holds the young generation at its size until the returned function is called. */
export function holdYoungGeneration(): () => void {
  if (userChoseSizing()) return () => undefined;
  if (holders++ === 0) v8.setFlagsFromString(`${FLAG}=1`);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    if (--holders === 0) v8.setFlagsFromString(`${FLAG}=${V8_DEFAULT}`);
  };
}
