/**
 * PAGEMAP_SCAN path vs the pread path, on a process with 1 GiB resident and on one that reserves 64 GiB and
 * touches 16 pages. Ratio = pread time / scan time (above 1: the scan path is faster).
 */
import { Fixture } from '../fixtures/driver.js';
import { Pagemap, readRegions, type Region } from '../src/proc/index.js';
import { inspect } from '../src/analyze/inspect.js';
import { interleave, median, type Row } from './lib.js';

function readAll(pid: number, method: 'scan' | 'pread', regions: Region[]): void {
  const pm = new Pagemap(pid, { method });
  try {
    for (const r of regions) if (r.kind !== 'vsyscall') pm.runs(r);
  } finally {
    pm.close();
  }
}

export async function benchPagemap(reps = 9): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [label, names, opts] of [
    ['1 GiB resident', ['big'], { sizeMiB: 1024 }],
    ['64 GiB reserved, 16 pages touched', ['sparse'], {}],
  ] as const) {
    const fx = await Fixture.start([...names], opts);
    try {
      const regions = readRegions(fx.pid);
      const t = interleave({
        scan: () => readAll(fx.pid, 'scan', regions),
        pread: () => readAll(fx.pid, 'pread', regions),
        inspectScan: () => inspect(fx.pid, { method: 'scan' }),
        inspectPread: () => inspect(fx.pid, { method: 'pread' }),
      }, reps);
      const ms = (k: string) => median(t[k]!);
      rows.push({ bench: 'pagemap', case: `${label}: pagemap only`, value: `scan ${ms('scan').toFixed(2)} ms`, baseline: `pread ${ms('pread').toFixed(2)} ms`, ratio: ms('pread') / ms('scan') });
      rows.push({ bench: 'pagemap', case: `${label}: inspect (smaps+pagemap)`, value: `scan ${ms('inspectScan').toFixed(2)} ms`, baseline: `pread ${ms('inspectPread').toFixed(2)} ms`, ratio: ms('inspectPread') / ms('inspectScan') });
    } finally {
      await fx.stop();
    }
  }
  return rows;
}
