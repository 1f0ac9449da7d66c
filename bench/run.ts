/** Runs every benchmark and prints one table of ratios against baselines measured in the same invocation. */
import { release, cpus } from 'node:os';
import { printRows, type Row } from './lib.js';

const rows: Row[] = [];
console.log(`pagesnap benchmarks · kernel ${release()} · ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'} · node ${process.version}`);
// `npm run bench [pagemap|audit|dump[:mixed,busy,heap,shared,postgres,regions,sparse,pieces]|chain|restore[:eager,shared,repeats,regions,move,faults,huge]]`
const only = process.argv[2];
// Each is loaded only when it runs: some make their working directory as they load.
if (!only || only === 'pagemap') rows.push(...(await (await import('./pagemap.js')).benchPagemap()));
if (!only || only === 'audit') rows.push(...(await (await import('./audit.js')).benchAudit()));
if (!only || only.startsWith('dump')) rows.push(...(await (await import('./dump.js')).benchDump(only?.split(':')[1]?.split(','))));
if (!only || only === 'chain') rows.push(...(await (await import('./chain.js')).benchChain()));
if (!only || only.startsWith('restore')) rows.push(...(await (await import('./restore.js')).benchRestore(only?.split(':')[1]?.split(','))));
printRows(rows);
