/** Runs every benchmark and prints one table of ratios against baselines measured in the same invocation. */
import { release, cpus } from 'node:os';
import { benchPagemap } from './pagemap.js';
import { benchDump } from './dump.js';
import { benchAudit } from './audit.js';
import { benchRestore } from './restore.js';
import { benchChain } from './chain.js';
import { printRows, type Row } from './lib.js';

const rows: Row[] = [];
console.log(`pagesnap benchmarks · kernel ${release()} · ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'} · node ${process.version}`);
// `npm run bench [pagemap|audit|dump|chain|restore[:eager,move,faults]]`
const only = process.argv[2];
if (!only || only === 'pagemap') rows.push(...(await benchPagemap()));
if (!only || only === 'audit') rows.push(...(await benchAudit()));
if (!only || only === 'dump') rows.push(...(await benchDump()));
if (!only || only === 'chain') rows.push(...(await benchChain()));
if (!only || only.startsWith('restore')) rows.push(...(await benchRestore(only?.split(':')[1]?.split(','))));
printRows(rows);
