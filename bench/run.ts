/** Runs every benchmark and prints one table of ratios against baselines measured in the same invocation. */
import { release, cpus } from 'node:os';
import { benchPagemap } from './pagemap.js';
import { printRows, type Row } from './lib.js';

const rows: Row[] = [];
console.log(`pagesnap benchmarks · kernel ${release()} · ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'} · node ${process.version}`);
rows.push(...(await benchPagemap()));
printRows(rows);
