/** Text formatting for terminal output: sizes, addresses, aligned tables. */
export function hex(a: bigint): string {
  return a.toString(16);
}

export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 || Number.isInteger(v) ? v.toFixed(0) : v.toFixed(1)} ${units[u]}`;
}

/** A count for a table cell: '-' for zero keeps busy tables readable. */
export const cell = (n: number | null | undefined): string => (n === null || n === undefined ? '?' : n === 0 ? '-' : String(n));

export interface Column<T> {
  head: string;
  get: (row: T) => string;
  align?: 'left' | 'right';
}

export function table<T>(rows: readonly T[], cols: readonly Column<T>[]): string {
  const cells = rows.map((r) => cols.map((c) => c.get(r)));
  const width = cols.map((c, i) => Math.max(c.head.length, ...cells.map((row) => row[i]!.length)));
  const line = (vals: string[]) =>
    vals
      .map((v, i) => ((cols[i]!.align ?? 'right') === 'left' ? v.padEnd(width[i]!) : v.padStart(width[i]!)))
      .join('  ')
      .trimEnd();
  return [line(cols.map((c) => c.head)), ...cells.map(line)].join('\n');
}
