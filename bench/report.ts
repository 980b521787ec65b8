/**
 * What every benchmark returns, and how rows are shown. Kept apart from run.ts so a benchmark module
 * can import the type without importing the runner.
 */

/** One measured figure. `bench` is the module name (`purge-tag` for purge-tag.bench.ts). */
export interface BenchRow {
  bench: string;
  case: string;
  value: number;
  unit: string;
  note?: string;
}

/** The contract of `bench/<name>.bench.ts`. */
export interface BenchModule {
  run(): Promise<BenchRow[]>;
}

export function isBenchModule(value: unknown): value is BenchModule {
  return typeof value === 'object' && value !== null && typeof (value as { run?: unknown }).run === 'function';
}

export function formatValue(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}

/** A plain-text table: text columns left-aligned, values right-aligned, so it reads in any terminal or log. */
export function formatTable(rows: readonly BenchRow[]): string {
  const header = ['bench', 'case', 'value', 'unit', 'note'];
  const cells = rows.map((row) => [row.bench, row.case, formatValue(row.value), row.unit, row.note ?? '']);
  const widths = header.map((title, column) => Math.max(title.length, ...cells.map((line) => (line[column] ?? '').length)));
  const line = (values: readonly string[]): string => values
    .map((value, column) => (column === 2 ? value.padStart(widths[column] ?? 0) : value.padEnd(widths[column] ?? 0)))
    .join('  ')
    .trimEnd();
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...cells.map(line)].join('\n');
}
