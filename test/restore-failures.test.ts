// Restore when things go wrong: damaged frames become poisoned pages (never wrong or zero memory), a host or a
// pagesnap that dies mid-restore leaves nothing behind, regions that collide are named or relocated, and a
// moved restore keeps huge pages whole.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, chownSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { restore } from '../src/restore/restore.js';
import { RestoreHost } from '../src/restore/host.js';
import { collisions, collisionError, mapRegions } from '../src/restore/map.js';
import type { RegionsPlan } from '../src/restore/plan.js';
import type { SnapshotRegion } from '../src/snapshot/manifest.js';
import { MAP, PROT, processVmReadv } from '../src/native/index.js';
import { cli, cliJson, RUN_JS } from './helpers/cli.js';
import { withHeldRestore, killHost } from './helpers/restored.js';
import { dumpFixture } from './helpers/scenario.js';
import { prepareHost, type Prepared } from './helpers/host.js';
import { HostSettings } from '../src/host/settings.js';
import { scratchDir } from './helpers/scratch.js';
import { damageFrame } from './helpers/damage.js';
import { skipBecause } from './helpers/skip.js';

const dir = scratchDir('restore-fail');
let fx: Fixture;
let file: string;
let prepared: Prepared;

beforeAll(async () => {
  prepared = prepareHost();
  fx = await Fixture.start(['thp', 'big'], { sizeMiB: 256 });
  file = join(dir, 'f.psnap');
  cliJson(['dump', String(fx.pid), '-o', file]);
}, 60_000);
afterAll(async () => {
  await fx.stop();
  prepared.host.restore();
});

/** Gone, or a zombie nobody reaps: either way it runs no more. */
function dead(pid: number): boolean {
  if (!existsSync(`/proc/${pid}/stat`)) return true;
  const state = readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '')[0];
  return state === 'Z' || state === 'X';
}

async function eventually(f: () => boolean, ms = 5000): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) if (f()) return true;
  return f();
}


describe('restore failures', () => {
  it('a damaged frame: its pages are poisoned and reported (exit 3), the rest is restored and verified', () => {
    const damaged = join(dir, 'damaged.psnap');
    const k = 2;
    damageFrame(file, damaged, k);
    const res = cli(['restore', damaged, '--hold', '--verify', '--json']);
    expect(res.code, res.stderr).toBe(3);
    expect(res.stderr).toMatch(/^pagesnap restore: .*damaged\.psnap: 1 damaged frames; their pages were poisoned/);
    const r = JSON.parse(res.stdout);
    try {
      expect(r.damage.length).toBeGreaterThan(0);
      expect(r.damage.every((d: { frame: number }) => d.frame === k)).toBe(true);
      expect(r.verify.mismatches).toBe(0);
      // the poisoned pages cannot be read; their neighbours can
      const addr = BigInt(r.damage[0].addr);
      expect(() => processVmReadv(r.hostPid, [Buffer.alloc(4096)], [{ addr, len: 4096 }])).toThrow(/EFAULT|EIO/);
    } finally {
      killHost(r.hostPid);
    }
  });

  it('pages stored once and placed many times (gathered, a stretch at a time): restored and verified; where the frame of their original is damaged, each of them is poisoned, nothing else', async () => {
    // every eighth random page repeats one of 256 originals, stored in the first frames: the data comes in stretches
    // of short segments (4, 1, 7, 1, ... pages), which the fill threads gather and place by one copy each
    const snap = join(dir, 'repeats.psnap');
    const rep = await dumpFixture(snap, ['bench-repeats'], { sizeMiB: 8 });
    for (const mode of [[], ['--lazy']]) {
      const ok = cliJson<{ verify: { mismatches: number; pages: number } }>(['restore', snap, '--verify', '--no-profile', ...mode]);
      expect(ok.verify.mismatches).toBe(0);
      expect(ok.verify.pages).toBeGreaterThanOrEqual(1536); // the region alone: 8 MiB, a quarter zero pages
    }
    const r0 = SnapshotReader.open(snap);
    const k = 1;
    const f = r0.manifest.frames;
    const region = r0.process().regions.find((x) => x.start === BigInt(rep.region('bench-repeats').start))!;
    // the pages whose stored page is in frame k: its own, and every repeat of one of them
    const inFrame: number[] = [];
    for (let p = 0; p < r0.pagesOf(region); p++) {
      const src = r0.regionPage(region, p);
      if (src.kind === 'stored' && src.page >= f.firstPage[k]! && src.page < f.firstPage[k]! + f.pages[k]!) inFrame.push(p);
    }
    expect(inFrame.length).toBeGreaterThan(f.pages[k]!); // repeats of its pages too
    r0.close();
    const damaged = join(dir, 'repeats-damaged.psnap');
    damageFrame(snap, damaged, k);
    const res = cli(['restore', damaged, '--hold', '--verify', '--json', '--no-profile']);
    expect(res.code, res.stderr).toBe(3);
    const r = JSON.parse(res.stdout) as { hostPid: number; damage: { frame: number; addr: string; pages: number }[]; verify: { mismatches: number } };
    try {
      expect(r.damage.every((d) => d.frame === k)).toBe(true);
      const poisoned = r.damage.flatMap((d) => Array.from({ length: d.pages }, (_, i) => Number((BigInt(d.addr) - region.start) / 4096n) + i)).sort((a, b) => a - b);
      expect(poisoned).toEqual(inFrame);
      expect(r.verify.mismatches).toBe(0);
    } finally {
      killHost(r.hostPid);
    }
  });

  it('the host killed mid-restore: the restore fails at once with the reason, nothing is left running', async () => {
    let host = 0;
    const run = restore(file, {
      lazy: true, threads: 1, profile: false,
      onReady: (pid) => {
        host = pid;
        process.kill(pid, 'SIGKILL');
      },
    });
    await expect(run).rejects.toThrow(/the restore host exited before the restore was complete/);
    expect(await eventually(() => dead(host))).toBe(true);
  });

  it.for(['SIGKILL', 'SIGINT'] as const)('pagesnap killed (%s) mid-restore takes its host with it', async (sig) => {
    const p = spawn(process.execPath, [RUN_JS, 'restore', file, '--lazy', '--threads', '1', '--no-profile'], { stdio: ['ignore', 'ignore', 'pipe'] });
    const host = await new Promise<number>((resolve, reject) => {
      let err = '';
      p.stderr!.on('data', (d) => {
        err += d;
        const m = /host (\d+) ready/.exec(err);
        if (m) resolve(Number(m[1]));
      });
      p.once('exit', () => reject(new Error(`restore exited early: ${err}`)));
    });
    p.kill(sig);
    await new Promise((r) => p.once('exit', r));
    expect(await eventually(() => dead(host))).toBe(true);
  });
});

describe('more regions than this machine lets a process have', () => {
  it('says so, with the vm.max_map_count that would do', async (ctx) => {
    const many = await Fixture.start(['bench-regions']);
    const settings = new HostSettings();
    try {
      const sc = many.scenario('bench-regions');
      if (sc.skip) {
        skipBecause(ctx, 'max_map_count', sc.skip);
      }
      const snap = join(dir, 'regions.psnap');
      cliJson(['dump', String(many.pid), '-o', snap]);
      settings.set('/proc/sys/vm/max_map_count', '30000'); // the snapshot has 60025 regions
      const r = cli(['restore', snap, '--no-profile']);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(/^pagesnap restore: cannot (map|mprotect) region .* in the restore host: ENOMEM — the process had 600\d\d regions and vm\.max_map_count lets a process have 30000: raise it \(sysctl -w vm\.max_map_count=120\d\d\d\) and retry$/);
    } finally {
      settings.restore();
      await many.stop();
    }
  });
});

describe('more shared memory objects than files a process may open', () => {
  it('are restored one at a time: 1000 objects under a hard limit of 128 files, every one mapped, few held open', async (ctx) => {
    const NOBODY = 65534;
    const many = await Fixture.start(['many-objects']);
    const own = mkdtempSync(join(tmpdir(), 'pagesnap-objects-'));
    let host = 0;
    try {
      const sc = many.scenario('many-objects');
      if (sc.skip) {
        skipBecause(ctx, 'many objects', sc.skip);
      }
      const snap = join(own, 'many.psnap');
      expect(cliJson(['dump', String(many.pid), '-o', snap]).objects).toBe(1000);
      // as a user who may not raise the limit
      chownSync(own, NOBODY, NOBODY);
      chownSync(snap, NOBODY, NOBODY);
      const r = spawnSync('prlimit', ['--nofile=128:128', 'setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', process.execPath, RUN_JS, 'restore', snap, '--verify', '--hold', '--no-profile', '--json'], {
        encoding: 'utf8', env: { ...process.env, HOME: '/tmp' },
      });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { hostPid: number; verify: { mismatches: number; pages: number } };
      host = out.hostPid;
      expect(out.verify.mismatches).toBe(0);
      const objects = readFileSync(`/proc/${host}/maps`, 'utf8').split('\n').filter((l) => l.includes('/memfd:pagesnap:pagesnap-many'));
      expect(objects.length).toBe(1000);
      expect(new Set(objects.map((l) => l.split(/\s+/)[4])).size).toBe(1000); // 1000 distinct inodes
      expect(readdirSync(`/proc/${host}/fd`).length).toBeLessThan(16);
    } finally {
      if (host) process.kill(host, 'SIGKILL');
      await many.stop();
      rmSync(own, { recursive: true, force: true });
    }
  });
});

describe('stream workers', () => {
  // A restore that fails during setup ends the stream workers it started while they may still be loading. Node
  // turns koffi's declarations throwing into a dying worker into a fatal error of the whole process; this happened
  // for about one delay in ten before terminate() waited for each worker to say it had loaded. The workers load in
  // ~80 ms here: the delays sweep that window.
  it('terminated at any point while they load: no fatal error, the process carries on', () => {
    const streamer = new URL('../dist/src/restore/streamer.js', import.meta.url).href;
    const script = join(dir, 'terminate-workers.mjs');
    writeFileSync(script, `import { StreamWorkers } from ${JSON.stringify(streamer)};
      const w = new StreamWorkers(2);
      setTimeout(async () => { await w.terminate(); console.log('carried on'); }, Number(process.argv[2]));`);
    for (let delay = 0; delay <= 150; delay += 5) {
      const r = spawnSync(process.execPath, [script, String(delay)], { encoding: 'utf8', timeout: 30_000 });
      expect(r.stderr, `terminated after ${delay} ms`).not.toMatch(/FATAL/);
      expect(r.stdout.trim(), `terminated after ${delay} ms`).toBe('carried on');
    }
  }, 60_000);
});

describe('collisions', () => {
  it('the first host keeps its own mappings at the top of the address space, out of where processes map theirs', () => {
    // A process's largest reservations lie right under its mmap base, a random distance below the top; a host with
    // ASLR put its libraries there too, and a 20 TiB region collided in one restore of five.
    const host = RestoreHost.spawn(0, true);
    try {
      expect(readFileSync(`/proc/${host.pid}/personality`, 'utf8').trim()).toBe('00040000'); // ADDR_NO_RANDOMIZE
      const own = host.maps().filter((m) => m.name !== '[vsyscall]' && !m.name?.includes('pagesnap-host') && m.name !== '[heap]');
      expect(own.length).toBeGreaterThan(0);
      for (const m of own) expect(m.start >= 0x7fff00000000n, `${m.name} at 0x${m.start.toString(16)}`).toBe(true);
    } finally {
      host.kill();
    }
  });


  it('a region on top of the host\'s own mappings is named, or relocated when asked', () => {
    const host = RestoreHost.spawn();
    try {
      const stack = host.maps().find((m) => m.name === '[stack]')!;
      const region = {
        start: stack.start, end: stack.start + 0x10000n, mode: 'rw-p', offset: 0n, dev: '00:00', inode: 0, path: null, deleted: false,
        kind: 'anon-private', backing: 'anon', vmFlags: [], smaps: {}, runs: [], refs: new Uint32Array(0),
      } as SnapshotRegion;
      const plan: RegionsPlan = {
        regions: [{ region, start: region.start, prot: PROT.READ | PROT.WRITE, mapProt: PROT.READ | PROT.WRITE, flags: MAP.PRIVATE | MAP.ANONYMOUS, advice: [], seal: false, apart: false, place: { how: 'anon' } }],
        objects: [], notes: [],
      };
      const clash = collisions(host, plan);
      expect(clash).toHaveLength(1);
      expect(collisionError(clash[0]!).message).toMatch(/^region 0x[0-9a-f]+-0x[0-9a-f]+ \[anon-private\] collides with the restore host's 0x[0-9a-f]+-0x[0-9a-f]+ \[stack\]$/);
      const noObjects = () => {
        throw new Error('the plan has no objects');
      };
      expect(() => mapRegions(host, plan, false, noObjects)).toThrow(/EEXIST|overlaps/);
      const moved = mapRegions(host, plan, true, noObjects);
      expect(moved).toEqual([{ from: region.start, to: plan.regions[0]!.start, len: 0x10000, path: null }]);
      expect(plan.regions[0]!.start).not.toBe(region.start);
    } finally {
      host.kill();
    }
  });
});

describe('host batches', () => {
  it('run in order across messages; an optional failure carries on, any other stops the batch', () => {
    const host = RestoreHost.spawn();
    try {
      const len = 0x10000;
      const at = host.mapRaw(0n, 64 * len, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
      expect(at).toBeGreaterThan(0n);
      // more calls than one message holds (64 KiB of words): the batch is split, and every call runs
      const advise = Array.from({ length: 3000 }, (_, i) => ({ op: 'MADVISE' as const, words: [at + BigInt((i % 64) * len), len, 14 /* MADV_HUGEPAGE */] }));
      expect(host.batch(advise)).toEqual(advise.map(() => 0n));
      const r = host.batch([
        { op: 'MPROTECT', words: [at, len, PROT.READ] },
        { op: 'MADVISE', words: [at + 1n, len, 14], optional: true }, // unaligned: EINVAL, optional
        { op: 'MPROTECT', words: [at + 1n, len, PROT.READ] }, // unaligned: EINVAL, stops the batch
        { op: 'MPROTECT', words: [at + BigInt(len), len, PROT.NONE] }, // never runs
      ]);
      expect(r).toEqual([0n, -22n, -22n]);
      const second = host.maps().find((m) => m.start <= at + BigInt(len) && at + BigInt(len) < m.end)!;
      expect(second.mode.startsWith('rw')).toBe(true);
    } finally {
      host.kill();
    }
  });
});

describe('huge pages', () => {
  it.for(['move', 'copy'] as const)('--mode %s: huge pages come back whole only when moved', (mode, ctx) => {
    if (prepared.unavailable.thp) {
      skipBecause(ctx, 'huge pages whole', prepared.unavailable.thp);
    }
    const thp = fx.region('thp');
    withHeldRestore(file, ['--verify', '--mode', mode, '--no-profile'], (r) => {
      expect(r.verify.mismatches).toBe(0);
      const smaps = readFileSync(`/proc/${r.hostPid}/smaps`, 'utf8');
      const block = smaps.split(/\n(?=[0-9a-f]+-[0-9a-f]+ )/).find((b) => b.startsWith(`${thp.start.toString(16)}-`))!;
      const huge = Number(/AnonHugePages:\s+(\d+) kB/.exec(block)![1]) * 1024;
      if (mode === 'move') {
        expect(huge).toBe(thp.pages * 4096);
        expect(BigInt(r.bytes.moved)).toBe(BigInt(thp.pages * 4096));
      } else expect(huge).toBe(0);
    });
  });
});
