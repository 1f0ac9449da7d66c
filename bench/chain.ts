/**
 * Incremental snapshots and diff, on a process holding 1 GiB of bench content that then changes 5% of its pages
 * (fresh random bytes, in pieces spread over the region):
 * - `dump --parent` against a full `dump` of the same process, both as users run them: size (goal ≤ 10% of the
 *   full dump's) and wall time (goal ≤ 0.5×; every page is still read and hashed, as the kernel has no
 *   soft-dirty bits, but only the changed ones are compressed and written);
 * - `diff` of the full snapshot and the incremental one against opening one snapshot (reading its manifest).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Fixture } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { diffSnapshots } from '../src/analyze/diff.js';
import { median, type Row } from './lib.js';

const RUN = fileURLToPath(new URL('../bin/run.js', import.meta.url));
const REPS = 3;

function dump(pid: number, out: string, extra: string[] = []): { wallMs: number; fileBytes: number } {
  const t = performance.now();
  const r = spawnSync(process.execPath, [RUN, 'dump', String(pid), '-o', out, '--force', '--json', ...extra], { encoding: 'utf8' });
  const wallMs = performance.now() - t;
  if (r.status !== 0) throw new Error(`pagesnap dump failed: ${r.stderr}`);
  return { wallMs, fileBytes: (JSON.parse(r.stdout) as { fileBytes: number }).fileBytes };
}

export async function benchChain(): Promise<Row[]> {
  const dir = mkdtempSync(join(tmpdir(), 'pagesnap-bench-chain-'));
  const fx = await Fixture.start(['bench-mix'], { sizeMiB: 1024 });
  try {
    const r = fx.region('bench-mix');
    const parent = join(dir, 'a.psnap');
    dump(fx.pid, parent);
    // 5% of the pages, as 64 pieces spread evenly
    const pieces = 64;
    const per = Math.round((r.pages * 0.05) / pieces);
    for (let i = 0; i < pieces; i++) {
      const at = r.start + BigInt(Math.floor((r.pages / pieces) * i) * 4096);
      if ((await fx.send(`random ${at.toString(16)} ${per}`)) !== 'ok') throw new Error('fixture refused to write');
    }
    const full: ReturnType<typeof dump>[] = [];
    const inc: ReturnType<typeof dump>[] = [];
    for (let i = 0; i < REPS; i++) {
      full.push(dump(fx.pid, join(dir, 'full.psnap')));
      inc.push(dump(fx.pid, join(dir, 'inc.psnap'), ['--parent', parent]));
    }
    const fw = median(full.map((x) => x.wallMs));
    const iw = median(inc.map((x) => x.wallMs));
    const fb = full[0]!.fileBytes;
    const ib = inc[0]!.fileBytes;
    const open: number[] = [];
    const diff: number[] = [];
    for (let i = 0; i < REPS + 1; i++) {
      let t = performance.now();
      SnapshotReader.open(join(dir, 'full.psnap')).close();
      const o = performance.now() - t;
      t = performance.now();
      const a = SnapshotReader.open(parent);
      const b = SnapshotReader.open(join(dir, 'inc.psnap'));
      diffSnapshots(a, b);
      a.close();
      b.close();
      if (i > 0) {
        open.push(o);
        diff.push(performance.now() - t);
      }
    }
    return [
      { bench: 'chain', case: `incremental dump, 5% of 1 GiB changed: size`, value: `${(ib / 1e6).toFixed(1)} MB`, baseline: `full ${(fb / 1e6).toFixed(0)} MB`, ratio: ib / fb, goal: '≤ 0.1' },
      { bench: 'chain', case: `incremental dump, 5% of 1 GiB changed: wall`, value: `${iw.toFixed(0)} ms`, baseline: `full ${fw.toFixed(0)} ms`, ratio: iw / fw, goal: '≤ 0.5' },
      { bench: 'chain', case: `diff of two 1 GiB snapshots (a chain)`, value: `${median(diff).toFixed(0)} ms`, baseline: `open one ${median(open).toFixed(1)} ms`, ratio: median(diff) / median(open) },
    ];
  } finally {
    await fx.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
