/**
 * `npm run bench [-- name...]`: runs `bench/<name>.bench.ts` (default: all of them) one after another,
 * prints a table and saves the rows to bench/results.json. Benchmarks run serially because they
 * measure wall time and would disturb each other.
 */
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { formatTable, isBenchModule, type BenchRow } from './report.js';

const benchDir = path.dirname(fileURLToPath(import.meta.url));
const resultsFile = path.join(benchDir, 'results.json');
const SUFFIX = '.bench.ts';

async function available(): Promise<string[]> {
  const names = await fs.readdir(benchDir);
  return names.filter((name) => name.endsWith(SUFFIX)).map((name) => name.slice(0, -SUFFIX.length)).sort();
}

async function runOne(name: string): Promise<BenchRow[]> {
  const loaded: unknown = await import(pathToFileURL(path.join(benchDir, name + SUFFIX)).href);
  if (!isBenchModule(loaded)) throw new Error(`bench/${name}${SUFFIX} does not export run()`);
  console.error(`bench: ${name}...`);
  return loaded.run();
}

/** Rows of benchmarks not run this time are kept, so running one benchmark does not erase the others. */
async function save(rows: readonly BenchRow[], ran: readonly string[]): Promise<void> {
  let previous: BenchRow[] = [];
  try {
    previous = JSON.parse(await fs.readFile(resultsFile, 'utf8')) as BenchRow[];
  } catch {
    // No earlier results (or unreadable ones): start afresh.
  }
  const kept = previous.filter((row) => !ran.includes(row.bench));
  await fs.writeFile(resultsFile, `${JSON.stringify([...kept, ...rows], null, 2)}\n`);
}

async function main(): Promise<void> {
  const all = await available();
  const requested = process.argv.slice(2);
  const unknown = requested.filter((name) => !all.includes(name));
  if (unknown.length > 0) throw new Error(`unknown benchmark ${unknown.join(', ')}; available: ${all.join(', ')}`);
  const names = requested.length > 0 ? requested : all;

  const rows: BenchRow[] = [];
  for (const name of names) rows.push(...(await runOne(name)));
  console.log(formatTable(rows));
  await save(rows, names);
}

await main();
