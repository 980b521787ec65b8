/**
 * CPU time of nginx's worker processes, read from /proc: a hit's cost in CPU per request is steadier
 * than throughput on a 2-core machine where wrk, nginx and everything else share the cores.
 */
import fs from 'node:fs/promises';

/** Linux reports utime and stime in USER_HZ ticks, 100 a second on every architecture Linux runs here. */
const TICKS_PER_SECOND = 100;

/** CPU seconds (user + system) used so far by the processes whose parent is `parentPid`. */
export async function childrenCpuSeconds(parentPid: number): Promise<number> {
  let ticks = 0;
  let children = 0;
  for (const entry of await fs.readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const stat = await fs.readFile(`/proc/${entry}/stat`, 'utf8').catch(() => undefined);
    if (stat === undefined) continue;
    // The command name (field 2) may hold spaces and parentheses: fields are counted after its last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(fields[1]) !== parentPid) continue;
    children++;
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  if (children === 0) throw new Error(`no child processes of pid ${parentPid} in /proc`);
  return ticks / TICKS_PER_SECOND;
}
