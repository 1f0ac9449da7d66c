// Memory a process marked MADV_DONTDUMP (secure heaps holding keys, guest RAM, buffer pools): core dumps and gcore
// leave it out. A snapshot keeps it by default (a restore needs it) and says so; --exclude-dontdump leaves it out,
// never reading it, and everything that reads the snapshot says what is missing and why.
import { describe, it, expect } from 'vitest';
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { cli, cliJson } from './helpers/cli.js';
import { withHeldRestore } from './helpers/restored.js';
import { scratchDir } from './helpers/scratch.js';
import { useScenario, liveBytes } from './helpers/scenario.js';

const dir = scratchDir('dontdump');
const sc = useScenario('dontdump');
const hex = (a: bigint) => `0x${a.toString(16)}`;
const LEFT_OUT = 'left out: the process marked it MADV_DONTDUMP (dump --exclude-dontdump)';

describe('memory marked MADV_DONTDUMP', () => {
  it('is kept by default, and the summary says so', (ctx) => {
    sc.skipIf(ctx);
    const { fx } = sc;
    const file = join(dir, 'kept.psnap');
    const s = cliJson(['dump', String(fx.pid), '-o', file]);
    expect({ dd: s.regionsDontdump, excluded: s.excludeDontdump, objects: s.objects, unreadable: s.pagesUnreadable }).toEqual({ dd: 2, excluded: false, objects: 1, unreadable: 0 });
    const text = cli(['dump', String(fx.pid), '-o', join(dir, 'kept-text.psnap')]).stdout;
    expect(text).toContain('  kept: 2 regions the process marked MADV_DONTDUMP, which core dumps leave out (--exclude-dontdump does too)');
    const snap = SnapshotReader.open(file);
    try {
      for (const name of ['dontdump', 'dontdump-memfd', 'dumped']) {
        const r = fx.region(name);
        expect({ name, same: snap.read(snap.process(), r.start, r.pages * 4096).equals(liveBytes(fx.pid, r)) }).toEqual({ name, same: true });
      }
    } finally {
      snap.close();
    }
  });

  it('--exclude-dontdump: its pages are named as left out, its object is not read, the rest is whole', (ctx) => {
    sc.skipIf(ctx);
    const { fx } = sc;
    const file = join(dir, 'excluded.psnap');
    const s = cliJson(['dump', String(fx.pid), '--exclude-dontdump', '-o', file]);
    // 8 written pages of the private region, and all 16 of the memfd (unopened, its holes are not known either)
    expect({ dd: s.regionsDontdump, excluded: s.excludeDontdump, objects: s.objects, unreadable: s.pagesUnreadable }).toEqual({ dd: 2, excluded: true, objects: 0, unreadable: 24 });
    const show = cliJson(['show', file, '--regions']);
    const region = (name: string) => show.processes[0].regions.find((r: { start: string }) => r.start === hex(fx.region(name).start));
    expect(region('dontdump').pages).toMatchObject({ unreadable: 8, zero: 8, data: 0 });
    expect(region('dontdump-memfd')).toMatchObject({ object: null, pages: { unreadable: 16 } });
    for (const name of ['dontdump', 'dontdump-memfd']) expect(region(name).unreadable).toEqual([LEFT_OUT]);
    // none of their pages stored: 8 written pages of each fewer than a dump that keeps them
    const kept = cliJson(['dump', String(fx.pid), '-o', join(dir, 'kept-again.psnap')]);
    expect(kept.pagesStored - s.pagesStored).toBe(16);
    const w = fx.region('dumped');
    const snap = SnapshotReader.open(file);
    try {
      expect(snap.read(snap.process(), w.start, w.pages * 4096).equals(liveBytes(fx.pid, w))).toBe(true);
    } finally {
      snap.close();
    }
    const c = cli(['cat', file, '--addr', hex(fx.region('dontdump').start), '--len', '16']);
    expect({ code: c.code, stderr: c.stderr }).toEqual({ code: 1, stderr: expect.stringContaining(`not in the snapshot: unreadable at dump time (${LEFT_OUT})`) });
  });

  it('a restore of such a snapshot maps both regions again, says what is lost and why, and gives back the rest', (ctx) => {
    sc.skipIf(ctx);
    const { fx } = sc;
    const file = join(dir, 'excluded-restore.psnap');
    cliJson(['dump', String(fx.pid), '--exclude-dontdump', '-o', file]);
    withHeldRestore(file, ['--verify', '--no-profile'], (r) => {
      expect(r.verify.mismatches).toBe(0);
      const lost = (name: string) => {
        const x = fx.region(name);
        return r.lost.filter((l: { start: string }) => BigInt(l.start) >= x.start && BigInt(l.start) < x.start + BigInt(x.pages * 4096))
          .map((l: { len: number; why: string }) => [l.len / 4096, l.why]);
      };
      expect(lost('dontdump')).toEqual([[8, `unreadable at dump time: ${LEFT_OUT}`]]);
      expect(lost('dontdump-memfd')).toEqual([[16, `unreadable at dump time: ${LEFT_OUT}`]]);
      expect(r.notes).toContain(`${hex(fx.region('dontdump-memfd').start)} was shared memory (/memfd:pagesnap-dontdump); what the snapshot holds of it is restored as private memory, the rest is lost (its object is not in the snapshot)`);
      const w = fx.region('dumped');
      expect(liveBytes(r.hostPid, w).equals(liveBytes(fx.pid, w))).toBe(true);
      // and the host's region is marked again, for whoever dumps it next
      const smaps = readFileSync(`/proc/${r.hostPid}/smaps`, 'utf8');
      const at = smaps.indexOf(`${fx.region('dontdump').start.toString(16)}-`);
      expect(smaps.slice(at, smaps.indexOf('VmFlags:', at) + 200).split('\n').find((l) => l.startsWith('VmFlags:'))).toMatch(/ dd\b/);
    });
  });
});
