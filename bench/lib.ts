/** Benchmark helpers: interleaved repetitions, medians, ratios against a baseline measured in the same run. */
export interface Sample {
  name: string;
  ms: number[];
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Run each case `reps` times, interleaved (A B A B …) so machine noise hits all of them alike. */
export function interleave(cases: Record<string, () => void>, reps: number, warmup = 1): Record<string, number[]> {
  const out: Record<string, number[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (let i = 0; i < warmup + reps; i++) {
    for (const [k, f] of Object.entries(cases)) {
      const t = performance.now();
      f();
      const dt = performance.now() - t;
      if (i >= warmup) out[k]!.push(dt);
    }
  }
  return out;
}

export interface Row {
  bench: string;
  case: string;
  value: string;
  baseline: string;
  ratio: number;
  goal?: string;
}

export function printRows(rows: Row[]): void {
  const cols = ['bench', 'case', 'value', 'baseline', 'ratio', 'goal'] as const;
  const cells = rows.map((r) => [r.bench, r.case, r.value, r.baseline, `${r.ratio.toFixed(2)}×`, r.goal ?? '']);
  const w = cols.map((c, i) => Math.max(c.length, ...cells.map((x) => x[i]!.length)));
  console.log(cols.map((c, i) => c.toUpperCase().padEnd(w[i]!)).join('  '));
  for (const c of cells) console.log(c.map((x, i) => x.padEnd(w[i]!)).join('  '));
}
