/**
 * `npm start`: the tour. Starts a bundled workload (fixtures/scenario.c: anonymous data, zero pages, THP, shmem of
 * every kind, shmem pagemap cannot see, guard and userfaultfd markers, poison, private file pages), then runs
 * pagesnap on it step by step — inspect, audit (with a heatmap), dump, show, a change to known pages, an
 * incremental dump, verify, diff, a lazy restore with --verify — and prints each step's command and figures.
 * It stops every process it started and removes every file it made (`npm start -- --keep` keeps the files).
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { mkdtempSync } from 'node:fs';
import { tmpdir, release } from 'node:os';
import { basename, join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { bytes } from '../src/render/format.js';
import { ownedTempDir } from '../src/native/index.js';

const RUN = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const keep = process.argv.includes('--keep');

/** a command's --json output, read for a few figures */
type Json = any;

let stepNo = 0;
/** Run one pagesnap command with --json, print its command line and a summary of what it returned. */
function step(title: string, args: string[], summary: (j: Json) => string[]): Json {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [RUN, ...args, '--json'], { encoding: 'utf8' });
  const ms = performance.now() - t0;
  console.log(`\n${String(++stepNo).padStart(2)}. ${title}  (${ms.toFixed(0)} ms)\n    $ pagesnap ${args.join(' ')}`);
  if (r.status !== 0) {
    console.log(`    failed (exit ${r.status}): ${r.stderr.trim()}`);
    throw new Error(`pagesnap ${args[0]} failed`);
  }
  const j = JSON.parse(r.stdout) as Json;
  for (const line of summary(j)) console.log(`    ${line}`);
  return j;
}

const n = (x: number) => x.toLocaleString('en-US');
const byCase = (list: { case: string; pages: number }[]) => list.map((c) => `${c.case} ${n(c.pages)}`).join(', ') || 'none';

// However the tour ends (done, Ctrl-C, a reader gone, killed outright) its directory goes with it, and the workload
// ends itself when the tour does (its parent-death signal); its own files are made in the tour's directory too.
const owned = keep ? null : ownedTempDir('pagesnap-tour-');
const dir = owned?.path ?? mkdtempSync(join(tmpdir(), 'pagesnap-tour-'));
const fx = await Fixture.start(['anon', 'thp', 'shmem', 'shmem-zapped', 'shmem-pwrite', 'guard', 'uffd-wp', 'poison', 'file-private'], { tmpdir: dir });
let failed = false;
// a reader that has gone (`npm start | head`) ends the tour quietly
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code !== 'EPIPE') throw e;
  process.exit(0);
});
try {
  console.log(`pagesnap tour · kernel ${release()} · files in ${dir}${keep ? ' (kept)' : ' (removed at the end; --keep keeps them)'}`);
  console.log(`\nThe workload: process ${fx.pid} (fixtures/bin/scenario), one region per memory state:`);
  for (const s of fx.scenarios) {
    console.log(`    ${s.name.padEnd(13)} ${s.skip ? `not built here: ${s.skip}` : s.regions.map((r) => r.name).join(', ')}`);
  }
  const pid = String(fx.pid);

  step('inspect: the regions, and their pages as pagemap shows them', ['inspect', pid], (j) => {
    const t = j.totals;
    return [
      `${j.regions.length} regions, ${n(t.pages)} pages mapped: ${n(t.present)} present (${n(t.data)} anonymous data, ${n(t.zero)} zero pages, ${n(t.file)} file or shmem, ${n(t.thp)} in huge pages)`,
      `${n(t.guard)} guard, ${n(t.uffdWpMarker)} uffd-wp and ${n(t.poisonMarker)} poison markers; ${n(t.notPresent)} pages with no page-table entry · pagemap via ${j.method === 'scan' ? 'PAGEMAP_SCAN' : 'pread'}`,
    ];
  });

  const svg = join(dir, 'audit.svg');
  step('audit: where pagemap misleads, and what a dumper trusting it would lose', ['audit', pid, '--svg', svg], (j) => [
    `a dumper keeping only what pagemap shows PRESENT or SWAPPED would lose ${n(j.totals.lostPages)} pages of data (${byCase(j.totals.lostByCase)})`,
    `and store ${n(j.totals.needlessPages)} pages for nothing (${byCase(j.totals.needlessByCase)})`,
    `heatmap of the address space, lost pages in red: ${svg}`,
  ]);

  const full = join(dir, 'tour-1.psnap');
  const d1 = step('dump: a snapshot, every page decided by the inaccuracy model', ['dump', pid, '-o', full], (j) => [
    `${n(j.pagesStored)} pages stored (${n(j.pagesShmem)} of them from shmem objects, ${n(j.pagesDeduplicated)} more deduplicated), ${n(j.pagesZero)} zero pages and ${n(j.pagesHole)} holes recorded, ${n(j.pagesFile)} clean file pages referenced`,
    `${bytes(j.bytesRaw)} of data → ${bytes(j.fileBytes)} file · process frozen ${j.frozenMs.toFixed(1)} ms (${j.freeze}) · wall ${j.wallMs.toFixed(0)} ms`,
  ]);

  step('show: what the snapshot holds (manifest only: no page is decompressed)', ['show', full], (j) => [
    `${j.processes.length} process, ${j.processes[0].regions.length} regions, ${j.objects.length} shmem objects, ${j.compression.frames} zstd frames of up to ${j.compression.framePages} pages (level ${j.compression.level})`,
  ]);

  // Known changes, so the diff below can be checked against them.
  const changes = [
    { region: fx.region('written'), at: 2, pages: 3, how: 'write' },
    { region: fx.region('memfd'), at: 0, pages: 2, how: 'write' },
    { region: fx.region('mixed'), at: 4, pages: 1, how: 'zero' },
  ] as const;
  console.log(`\n${String(++stepNo).padStart(2)}. the workload changes some pages`);
  for (const c of changes) {
    const addr = (c.region.start + BigInt(c.at * 4096)).toString(16);
    await fx.send(c.how === 'write' ? `write ${addr} ${c.pages} 4242` : `zero ${addr} ${c.pages}`);
    console.log(`    ${c.how === 'write' ? 'wrote' : 'zeroed'} ${c.pages} page${c.pages > 1 ? 's' : ''} of ${c.region.name} at ${addr}`);
  }

  const incr = join(dir, 'tour-2.psnap');
  step('dump --parent: an incremental snapshot stores only what its parent does not hold', ['dump', pid, '-o', incr, '--parent', full], (j) => [
    `${n(j.pagesStored)} pages stored, ${n(j.pagesFromParent)} referenced in ${full} · ${bytes(j.fileBytes)} against ${bytes(d1.fileBytes)} for the full dump (${(j.fileBytes / d1.fileBytes).toFixed(2)}×)`,
  ]);

  step('verify: every frame, page hash and manifest, through the chain', ['verify', incr], (j) => [
    `intact: ${n(j.frames)} frames and ${n(j.pages)} page hashes checked, in this file and its parent ${j.parents.join(', ')}`,
  ]);

  step('diff: what changed, from manifests and page hashes alone', ['diff', full, incr], (j) => {
    const t = j.totals;
    const lines = [`${n(t.changed)} pages changed, ${n(t.added)} added, ${n(t.removed)} removed (${bytes(t.bytesChanged)}) in ${t.regionsChanged} regions; ${n(t.unchanged)} unchanged`];
    const ours = new Set<Json>();
    for (const c of changes) {
      // the region, and for shmem its object too
      const matches = [...j.regions, ...j.objects].filter((x: Json) => x.b?.start === `0x${c.region.start.toString(16)}` || x.name === `/memfd:pagesnap-${c.region.name}`);
      for (const m of matches) ours.add(m);
      const r = matches[0];
      const seen = r ? (c.how === 'zero' ? r.pages.removed : r.pages.changed) : 0;
      const what = c.how === 'zero' ? 'removed (now zero)' : 'changed';
      lines.push(`${c.region.name}: ${seen} page${seen === 1 ? '' : 's'} ${what}, ${c.pages} expected ${seen === c.pages ? '✓' : '✗'}`);
      if (seen !== c.pages) failed = true;
    }
    const theirs = [...j.regions, ...j.objects].filter((x: Json) => !ours.has(x) && x.pages.changed + x.pages.added + x.pages.removed > 0);
    if (theirs.length) {
      const pages = theirs.reduce((s: number, x: Json) => s + x.pages.changed + x.pages.added + x.pages.removed, 0);
      lines.push(`and ${pages} pages the workload changed itself as it ran the commands: ${[...new Set(theirs.map((x: Json) => basename(x.path ?? x.kind)))].join(', ')}`);
    }
    return lines;
  });

  step('restore --lazy --verify: back into a fresh address space through userfaultfd', ['restore', incr, '--lazy', '--verify'], (j) => {
    const lost = j.lost.reduce((s: number, l: Json) => s + l.len, 0);
    return [
      `host ${j.hostPid}: ready after ${j.timings.readyMs.toFixed(0)} ms (pages stream in as it runs), full after ${j.timings.fullMs.toFixed(0)} ms · ${j.faults.served} faults served`,
      `${bytes(j.bytes.copied)} copied, ${bytes(j.bytes.moved)} moved, ${bytes(j.bytes.zeroed)} as zero pages, ${bytes(j.bytes.objects)} into shmem objects, ${bytes(j.bytes.written)} written in directly${lost ? ` · ${bytes(lost)} not in the snapshot (poisoned)` : ''}`,
      j.verify.mismatches === 0 ? `verify: all ${n(j.verify.pages)} placed pages match the snapshot ✓` : `verify: ${j.verify.mismatches} of ${j.verify.pages} pages differ ✗`,
    ];
  });
} catch (e) {
  failed = true;
  if (!(e instanceof Error && e.message.startsWith('pagesnap '))) throw e;
} finally {
  await fx.stop();
  owned?.remove();
  console.log(`\nStopped the workload${keep ? `; the snapshots and the heatmap are in ${dir}` : ` and removed ${dir}`}.`);
}
if (failed) process.exitCode = 1;
