// The dump's promises on bad days: targets left exactly as found, no file under the final name, one error line.
import { describe, it, expect, beforeAll, afterAll, type TestContext } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readdirSync, readFileSync, mkdirSync, writeFileSync, rmdirSync, symlinkSync, lstatSync, readlinkSync, openSync, readSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { cgroup2Mount, freeze } from '../src/dump/freeze.js';
import { readStat } from '../src/proc/process.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { ptraceSeize, ptraceInterrupt, ptraceDetach, waitpid, WAIT, mmap, munmap, PROT, MAP } from '../src/native/index.js';
import { cli, cliJson, RUN_JS } from './helpers/cli.js';
import { settledTaskStates } from './helpers/tasks.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';

const dir = scratchDir('fail');

const state = (pid: number) => readStat(pid).state;
const tracer = (pid: number) => Number(/^TracerPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
/** What `dir` holds of a snapshot `file`: its name, or a hidden temporary name beside it. */
const entriesOf = (file: string) => readdirSync(dir).filter((f) => f === basename(file) || (f.startsWith(`.${basename(file)}.`) && f.endsWith('.tmp')));
/** The file in `dir` that process `pid` has open (the snapshot it writes), as /proc shows it; undefined if none. */
const writing = (pid: number) => readdirSync(`/proc/${pid}/fd`).map((fd) => {
  try {
    return readlinkSync(`/proc/${pid}/fd/${fd}`);
  } catch {
    return '';
  }
}).find((l) => l.startsWith(`${dir}/`));

describe('each freeze method leaves the target as it found it', () => {
  let fx: Fixture;
  beforeAll(async () => { fx = await Fixture.start(['anon']); });
  afterAll(async () => { await fx.stop(); });

  for (const method of ['ptrace', 'sigstop', 'none'] as const) {
    it(`${method}: running before, running after; the manifest says how`, () => {
      const file = join(dir, `freeze-${method}.psnap`);
      const s = cliJson(['dump', String(fx.pid), '--freeze', method, '-o', file]);
      expect(s.freeze).toBe(method);
      expect(['S', 'R']).toContain(state(fx.pid));
      expect(tracer(fx.pid)).toBe(0);
      const show = cliJson(['show', file]);
      expect(show.freeze).toMatchObject({ method, fuzzy: method === 'none' });
    });
  }

  it('ptrace: a signal that comes as the target is frozen is delivered, not swallowed by the stop', async () => {
    // Thousands of freezes under a stream of real-time signals (they queue one by one: a lost one shows). A signal
    // that beats the interrupt stops the thread for its delivery; held there and let go, the thread lost it.
    const SIGRTMIN = 34;
    const count = async () => Number(await fx.send('signals'));
    const before = await count();
    const sender = spawn(process.execPath, ['-e', `let sent = 0; const end = Date.now() + 2000;
      const tick = () => {
        if (Date.now() >= end) return console.log(sent);
        for (let i = 0; i < 20; i++) try { process.kill(${fx.pid}, ${SIGRTMIN}); sent++; } catch {}
        setTimeout(tick, 1);
      };
      tick();`], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    sender.stdout.on('data', (d) => (out += d));
    const closed = new Promise((r) => sender.on('close', r));
    let running = true;
    void closed.then(() => (running = false));
    let freezes = 0;
    while (running) {
      // (the threads' freeze alone: a look over /proc for processes sharing the memory would halve the freezes made)
      for (let i = 0; i < 20; i++, freezes++) freeze([fx.pid], 'ptrace', { sharers: false }).thaw();
      await new Promise((r) => setTimeout(r, 0));
    }
    const sent = Number(out);
    for (let i = 0; i < 1000 && (await count()) - before < sent; i++) await new Promise((r) => setTimeout(r, 5));
    expect(freezes).toBeGreaterThan(500);
    expect({ sent, delivered: (await count()) - before }).toEqual({ sent, delivered: sent });
  }, 30_000);

  it('ptrace stops every thread of a process of 200, running or asleep, and lets them all go', async () => {
    const busy = await Fixture.start(['threads']);
    try {
      const tids = () => readdirSync(`/proc/${busy.pid}/task`).map(Number);
      const taskState = (tid: number) => {
        const st = readFileSync(`/proc/${busy.pid}/task/${tid}/stat`, 'utf8');
        return st.slice(st.lastIndexOf(')') + 2).split(' ')[0];
      };
      expect(tids().length).toBeGreaterThan(200);
      const frozen = freeze([busy.pid], 'ptrace');
      try {
        expect(tids().filter((t) => taskState(t) !== 't')).toEqual([]);
      } finally {
        frozen.thaw();
      }
      expect(tids().filter((t) => taskState(t) === 't')).toEqual([]);
      expect(tracer(busy.pid)).toBe(0);
    } finally {
      await busy.stop();
    }
  });

  it('a thread in vfork() whose child is stopped cannot be frozen: the error says so and why, and nothing is changed', async (ctx) => {
    const vf = await Fixture.start(['vfork-stopped']);
    try {
      const why = vf.scenario('vfork-stopped').skip;
      if (why) {
        return skipBecause(ctx, 'vfork-stopped', why);
      }
      const before = await settledTaskStates(vf.pid);
      expect([...before].sort()).toEqual(['D', 'S']);
      for (const method of ['ptrace', 'sigstop'] as const) {
        const r = cli(['dump', String(vf.pid), '--freeze', method, '-o', join(dir, `vfork-${method}.psnap`)]);
        expect(r.code).toBe(1);
        expect(r.stderr.trim()).toMatch(/^pagesnap dump: (thread \d+ of )?process \d+ did not stop within 5 s: it waits in vfork\(\) for its child \d+, which is stopped, to exec or exit: ETIMEDOUT — let the child run on, or use --freeze none/);
        expect(existsSync(join(dir, `vfork-${method}.psnap`))).toBe(false);
        expect({ method, tasks: await settledTaskStates(vf.pid), tracer: tracer(vf.pid), pending: /^ShdPnd:\s+0+$/m.test(readFileSync(`/proc/${vf.pid}/status`, 'utf8')) })
          .toEqual({ method, tasks: before, tracer: 0, pending: true });
      }
      expect(cliJson(['dump', String(vf.pid), '--freeze', 'none', '-o', join(dir, 'vfork-none.psnap')]).freeze).toBe('none');
    } finally {
      await vf.stop();
    }
  }, 30_000);

  it('a process running in the target\'s memory (clone with CLONE_VM) is frozen with it, named, and let go', async (ctx) => {
    const cv = await Fixture.start(['clone-vm']);
    try {
      const sc = cv.scenario('clone-vm');
      if (sc.skip) return skipBecause(ctx, 'clone-vm', sc.skip);
      const reg = sc.regions[0]!;
      const counter = sc.children.find((c) => c.role === 'clone-vm')!.pid;
      const firstAt = reg.start;
      const lastAt = reg.end - 4096n;
      const live = (at: bigint) => {
        const b = Buffer.alloc(8);
        const fd = openSync(`/proc/${cv.pid}/mem`, 'r');
        try {
          readSync(fd, b, 0, 8, Number(at));
        } finally {
          closeSync(fd);
        }
        return b.readBigUInt64LE(0);
      };
      for (const method of ['ptrace', 'sigstop'] as const) {
        const file = join(dir, `clone-vm-${method}.psnap`);
        const sharers = [{ pid: counter, comm: 'scenario', of: cv.pid }];
        const s = cliJson(['dump', String(cv.pid), '--freeze', method, '-o', file]);
        expect({ method, sharers: s.sharers }).toEqual({ method, sharers });
        expect(cliJson(['show', file]).freeze.sharers).toEqual(sharers);
        // The counter writes the first page, then the last; the pages between take several batches to read. Read
        // while it ran on, the last would be far ahead of the first.
        const r = SnapshotReader.open(file);
        try {
          const p = r.process(cv.pid);
          const first = r.read(p, firstAt, 8).readBigUInt64LE(0);
          const last = r.read(p, lastAt, 8).readBigUInt64LE(0);
          expect({ method, behind: first - last }).toSatisfy(({ behind }: { behind: bigint }) => behind === 0n || behind === 1n);
        } finally {
          r.close();
        }
        expect({ method, state: state(counter), tracer: tracer(counter) }).toEqual({ method, state: 'R', tracer: 0 });
        // counting again (given time: on a busy machine it may wait for a CPU)
        const before = live(firstAt);
        for (let i = 0; i < 200 && live(firstAt) === before; i++) await new Promise((res) => setTimeout(res, 10));
        expect(live(firstAt)).toBeGreaterThan(before);
      }
      // nothing is frozen with --freeze none, and no process is said to be
      expect(cliJson(['dump', String(cv.pid), '--freeze', 'none', '-o', join(dir, 'clone-vm-none.psnap')]).sharers).toEqual([]);
    } finally {
      await cv.stop();
    }
  });

  it('shared memory that processes not frozen map writable is named (summary, JSON, show); not when they are dumped too, nor readers', async () => {
    const sf = await Fixture.start(['shmem-fork']);
    try {
      const child = sf.scenario('shmem-fork').children[0]!.pid;
      const reg = sf.scenario('shmem-fork').regions[0]!;
      const file = join(dir, 'outside.psnap');
      const s = cliJson(['dump', String(sf.pid), '-o', file]);
      expect(s.outsideWriters).toEqual([{ object: 0, name: '/memfd:pagesnap-forked', pids: [child] }]);
      expect(cliJson(['show', file]).freeze.outsideWriters).toEqual([{ object: 0, pids: [child] }]);
      expect(cli(['show', file]).stdout).toContain(`  read while processes not frozen map them writable, so may have changed meanwhile (dump them together, as a --tree, for one instant):\n    object 0 (/memfd:pagesnap-forked): process ${child}\n`);
      expect(cliJson(['dump', String(sf.pid), '--tree', '-o', join(dir, 'outside-tree.psnap')]).outsideWriters).toEqual([]);
      // this test's process maps the object too: read-only it cannot change it; writable it could
      const fd = openSync(`/proc/${sf.pid}/map_files/${reg.start.toString(16)}-${reg.end.toString(16)}`, 'r+');
      try {
        const len = Number(reg.end - reg.start);
        for (const [prot, writers] of [[PROT.READ, []], [PROT.READ | PROT.WRITE, [process.pid]]] as const) {
          const at = mmap(len, prot, MAP.SHARED, fd);
          try {
            const t = cliJson(['dump', String(sf.pid), '--tree', '-o', join(dir, `outside-${prot}.psnap`)]);
            expect({ prot, outside: t.outsideWriters }).toEqual({ prot, outside: writers.length ? [{ object: 0, name: '/memfd:pagesnap-forked', pids: writers }] : [] });
          } finally {
            munmap(at, len);
          }
        }
      } finally {
        closeSync(fd);
      }
    } finally {
      await sf.stop();
    }
  });

  it('a target that was already stopped stays stopped (ptrace and sigstop)', () => {
    process.kill(fx.pid, 'SIGSTOP');
    try {
      for (const method of ['ptrace', 'sigstop'] as const) {
        cliJson(['dump', String(fx.pid), '--freeze', method, '-o', join(dir, `stopped-${method}.psnap`)]);
        expect(state(fx.pid)).toBe('T');
      }
    } finally {
      process.kill(fx.pid, 'SIGCONT');
    }
  });

  it('a target stopped in a debugger: ptrace names the debugger; sigstop dumps it and leaves it stopped, traced', () => {
    // this test process is the debugger: it attaches and stops the target as a breakpoint would
    ptraceSeize(fx.pid);
    try {
      ptraceInterrupt(fx.pid);
      expect(waitpid(fx.pid, WAIT.WALL)?.stopped).toBe(true);
      const r = cli(['dump', String(fx.pid), '-o', join(dir, 'traced.psnap')]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`pagesnap dump: process ${fx.pid} is already traced by process ${process.pid} (${readStat(process.pid).comm}): EBUSY — detach the debugger, or use --freeze sigstop or --freeze none`);
      const s = cliJson(['dump', String(fx.pid), '--freeze', 'sigstop', '-o', join(dir, 'traced.psnap')]);
      expect(s.freeze).toBe('sigstop');
      expect(state(fx.pid)).toBe('t');
      expect(tracer(fx.pid)).toBe(process.pid);
    } finally {
      ptraceDetach(fx.pid);
    }
    expect(['S', 'R']).toContain(state(fx.pid));
  });

  it('cgroup: freezes the target\'s own cgroup and thaws it; refuses one pagesnap runs in; one already frozen stays so', async (ctx) => {
    const mount = cgroup2Mount();
    if (!mount) {
      console.log('SKIP cgroup freeze: no cgroup2 mount');
      return ctx.skip('no cgroup2 mount');
    }
    const g = join(mount, `pagesnap-test-${process.pid}`);
    mkdirSync(g);
    try {
      writeFileSync(join(g, 'cgroup.procs'), String(fx.pid));
      cliJson(['dump', String(fx.pid), '--freeze', 'cgroup', '-o', join(dir, 'cgroup.psnap')]);
      expect(readFileSync(join(g, 'cgroup.freeze'), 'utf8').trim()).toBe('0');
      expect(['S', 'R']).toContain(state(fx.pid));
      const root = cli(['dump', String(process.pid), '--freeze', 'cgroup', '-o', join(dir, 'self.psnap')]);
      expect(root.code).toBe(1);
      expect(root.stderr).toMatch(/cannot be frozen|pagesnap itself runs in it/);
      // a cgroup someone else froze: the target is still already (and deaf to SIGSTOP): every method dumps it and
      // leaves it frozen
      writeFileSync(join(g, 'cgroup.freeze'), '1');
      try {
        for (const method of ['ptrace', 'sigstop', 'cgroup'] as const) {
          const r = cli(['dump', String(fx.pid), '--freeze', method, '-o', join(dir, `frozen-${method}.psnap`)]);
          expect({ method, code: r.code, stderr: r.stderr }).toEqual({ method, code: 0, stderr: '' });
          expect({ method, freeze: readFileSync(join(g, 'cgroup.freeze'), 'utf8').trim(), frozen: /^frozen 1$/m.test(readFileSync(join(g, 'cgroup.events'), 'utf8')) })
            .toEqual({ method, freeze: '1', frozen: true });
        }
        // nothing to copy while it runs: it does not run (and a thread there could not be stopped to track it)
        const pre = cliJson(['dump', String(fx.pid), '--precopy', '-o', join(dir, 'frozen-precopy.psnap')]);
        expect({ precopied: pre.pagesPrecopied, skipped: pre.precopySkipped, freeze: readFileSync(join(g, 'cgroup.freeze'), 'utf8').trim() }).toEqual({ precopied: 0, skipped: [], freeze: '1' });
      } finally {
        writeFileSync(join(g, 'cgroup.freeze'), '0');
      }
      expect(/^ShdPnd:\s+0+$/m.test(readFileSync(`/proc/${fx.pid}/status`, 'utf8'))).toBe(true);
    } finally {
      writeFileSync(join(mount, 'cgroup.procs'), String(fx.pid));
      rmdirSync(g);
    }
  });
});

describe('failures leave no file and a running target', () => {
  it('a nonexistent pid: one line, nothing written', () => {
    const file = join(dir, 'none.psnap');
    const r = cli(['dump', '4194000', '-o', file]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toMatch(/^pagesnap dump: process 4194000 does not exist/);
    expect(entriesOf(file)).toEqual([]);
  });

  it('an existing output file is kept unless --force', async () => {
    const fx = await Fixture.start(['anon']);
    try {
      const file = join(dir, 'exists.psnap');
      writeFileSync(file, 'precious');
      const r = cli(['dump', String(fx.pid), '-o', file]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`pagesnap dump: ${file} already exists: EEXIST — choose another name or pass --force to replace it`);
      expect(readFileSync(file, 'utf8')).toBe('precious');
      cliJson(['dump', String(fx.pid), '-o', file, '--force']);
      expect(readFileSync(file).subarray(0, 8).toString()).toBe('PAGESNAP');
    } finally {
      await fx.stop();
    }
  });

  /** Start a dump of a big target and act once the dump is under way (target frozen, temporary file created). */
  async function midDump(act: (dumpPid: number, targetPid: number) => void, freezeMethod: 'ptrace' | 'sigstop' = 'ptrace') {
    const fx = await Fixture.start(['bench-mix'], { sizeMiB: 512 });
    const file = join(dir, `mid-${fx.pid}.psnap`);
    const child = spawn(process.execPath, [RUN_JS, 'dump', String(fx.pid), '-o', file, '--level', '19', '--freeze', freezeMethod], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const frozen = () => (freezeMethod === 'ptrace' ? tracer(fx.pid) === child.pid : state(fx.pid) === 'T');
    for (let i = 0; i < 20000 && !(frozen() && writing(child.pid!)); i++) await new Promise((r) => setTimeout(r, 1));
    expect(frozen()).toBe(true);
    // written with no name (O_TMPFILE): whatever happens next, nothing of it can stay in the directory
    expect(writing(child.pid!)).toMatch(new RegExp(`^${dir}/#\\d+ \\(deleted\\)$`));
    act(child.pid!, fx.pid);
    const code = await exited;
    return { fx, file, code, stderr };
  }

  it('--force never puts a snapshot in place of what is not a regular file; a missing directory is named', async () => {
    const fx = await Fixture.start(['anon']);
    try {
      const sub = join(dir, 'not-files');
      mkdirSync(sub);
      // a device node of its own (1:3, as /dev/null), a FIFO, a symbolic link and a directory
      const dev = join(sub, 'null');
      const fifo = join(sub, 'fifo');
      expect(spawnSync('mknod', [dev, 'c', '1', '3']).status).toBe(0);
      expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
      symlinkSync(dev, join(sub, 'link'));
      mkdirSync(join(sub, 'dir'));
      for (const [name, what, code] of [['null', 'a character device', 'EEXIST'], ['fifo', 'a FIFO', 'EEXIST'], ['link', 'a symbolic link', 'EEXIST'], ['dir', 'a directory', 'EISDIR']]) {
        const out = join(sub, name!);
        const r = cli(['dump', String(fx.pid), '-o', out, '--force']);
        expect(r.code).toBe(1);
        expect(r.stderr.trim()).toBe(`pagesnap dump: ${out} is ${what}, not a regular file: ${code} — give the name of a file to write the snapshot to`);
      }
      expect(lstatSync(dev).isCharacterDevice()).toBe(true);
      expect(lstatSync(fifo).isFIFO()).toBe(true);
      expect(readdirSync(sub).sort()).toEqual(['dir', 'fifo', 'link', 'null']);
      const r = cli(['dump', String(fx.pid), '-o', join(dir, 'nowhere', 'x.psnap')]);
      expect(r.stderr.trim()).toBe(`pagesnap dump: ${join(dir, 'nowhere')} does not exist: ENOENT — create the directory first, or write the snapshot elsewhere`);
    } finally {
      await fx.stop();
    }
  });

  it('the target dies mid-dump: a clear error, no file', async () => {
    const { fx, file, code, stderr } = await midDump((_, target) => process.kill(target, 'SIGKILL'));
    await fx.stop();
    expect(code).toBe(1);
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toMatch(/process \d+ exited while it was being read/);
    expect(entriesOf(file)).toEqual([]);
  });

  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    it(`${sig} to pagesnap mid-dump: the target runs on, no file`, async () => {
      const { fx, file, code } = await midDump((dumper) => process.kill(dumper, sig));
      try {
        expect(code).not.toBe(0);
        expect(tracer(fx.pid)).toBe(0);
        expect(['S', 'R']).toContain(state(fx.pid));
        expect(entriesOf(file)).toEqual([]);
      } finally {
        await fx.stop();
      }
    });
  }

  it('a second dump of a target one is dumping names the first and says to wait, and writes nothing', async () => {
    let second: ReturnType<typeof cli> | undefined;
    const { fx, code } = await midDump((dumper, target) => {
      second = cli(['dump', String(target), '-o', join(dir, 'second.psnap')]);
      process.kill(dumper, 'SIGINT'); // (the first would take a while at --level 19)
    });
    try {
      expect({ code: second!.code, stderr: second!.stderr }).toEqual({
        code: 1, stderr: expect.stringMatching(/^pagesnap dump: process \d+ is being dumped by another pagesnap \(process \d+\): EBUSY — wait for that dump to finish\n$/),
      });
      expect(code).not.toBe(0); // interrupted as asked, not by the second
      expect(existsSync(join(dir, 'second.psnap'))).toBe(false);
      expect(tracer(fx.pid)).toBe(0);
    } finally {
      await fx.stop();
    }
  });

  /** A tmpfs of its own at DIR/NAME mounted with `options` (root only: skips saying so otherwise). */
  function tmpfs(ctx: TestContext, name: string, options: string): { path: string; unmount(): void } {
    if (process.getuid?.() !== 0) {
      skipBecause(ctx, ctx.task.name, 'mounting a tmpfs needs root');
    }
    const path = join(dir, name);
    mkdirSync(path);
    const mount = spawnSync('mount', ['-t', 'tmpfs', '-o', options, 'tmpfs', path], { encoding: 'utf8' });
    expect(mount.status, mount.stderr).toBe(0);
    return { path, unmount: () => spawnSync('umount', [path]) };
  }

  it('the disk fills up mid-dump: one line naming ENOSPC, nothing left on it, the target runs on', async (ctx) => {
    const small = tmpfs(ctx, 'small', 'size=4m');
    let fx: Fixture | undefined;
    try {
      fx = await Fixture.start(['bench-mix'], { sizeMiB: 32 }); // about 16 MB compressed
      const r = cli(['dump', String(fx.pid), '-o', join(small.path, 'full.psnap')]);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(/^pagesnap dump: write .* ENOSPC \(no space left on device\) — free some space, or write elsewhere$/m);
      expect(readdirSync(small.path)).toEqual([]);
      expect(tracer(fx.pid)).toBe(0);
      expect(['S', 'R']).toContain(state(fx.pid));
    } finally {
      await fx?.stop();
      small.unmount();
    }
  });

  it('a read-only file system: one line naming the file asked for and what to do', async (ctx) => {
    const ro = tmpfs(ctx, 'ro', 'ro,size=1m');
    let fx: Fixture | undefined;
    try {
      fx = await Fixture.start(['anon']);
      const r = cli(['dump', String(fx.pid), '-o', join(ro.path, 'x.psnap')]);
      expect({ code: r.code, stderr: r.stderr }).toEqual({
        code: 1, stderr: `pagesnap dump: open ${join(ro.path, 'x.psnap')}: EROFS (read-only file system) — the file system is read-only: write elsewhere\n`,
      });
      expect(['S', 'R']).toContain(state(fx.pid));
    } finally {
      await fx?.stop();
      ro.unmount();
    }
  });

  it('SIGKILL of pagesnap mid-dump with --freeze sigstop: the watchdog sends SIGCONT', async () => {
    const { fx, file } = await midDump((dumper) => process.kill(dumper, 'SIGKILL'), 'sigstop');
    try {
      for (let i = 0; i < 2000 && state(fx.pid) === 'T'; i++) await new Promise((r) => setTimeout(r, 1));
      expect(['S', 'R']).toContain(state(fx.pid));
      expect(entriesOf(file)).toEqual([]);
    } finally {
      await fx.stop();
    }
  });

  it('SIGKILL of pagesnap mid-dump: the kernel detaches the tracee, which runs on', async () => {
    const { fx, file } = await midDump((dumper) => process.kill(dumper, 'SIGKILL'));
    try {
      expect(tracer(fx.pid)).toBe(0);
      expect(['S', 'R']).toContain(state(fx.pid));
      expect(entriesOf(file)).toEqual([]);
    } finally {
      await fx.stop();
    }
  });
});

describe('the default output name', () => {
  it('is pagesnap-PID-TIME.psnap in the working directory; dumps in the same second get -2, -3 rather than failing', async () => {
    const fx = await Fixture.start(['anon']);
    const cwd = mkdtempSync(join(dir, 'default-'));
    try {
      for (let i = 0; i < 3; i++) {
        const r = cli(['dump', String(fx.pid)], { cwd });
        expect(r.code, r.stderr).toBe(0);
      }
      const names = readdirSync(cwd).sort();
      expect(names).toHaveLength(3);
      for (const n of names) expect(n).toMatch(new RegExp(`^pagesnap-${fx.pid}-\\d{4}-\\d\\d-\\d\\dT\\d{6}(-[23])?\\.psnap$`));
    } finally {
      await fx.stop();
    }
  });
});

describe('without root', () => {
  it('dumps its own process: shmem through the fd it holds, otherwise the mapped pages and the reason for the rest', async () => {
    const NOBODY = 65534;
    const fx = await Fixture.start(['shmem'], { runAs: NOBODY });
    const own = mkdtempSync(join(tmpdir(), 'pagesnap-nobody-'));
    try {
      const { chownSync } = await import('node:fs');
      chownSync(own, NOBODY, NOBODY);
      const file = join(own, 'own.psnap');
      // ptrace of a non-child needs privilege under Yama; SIGSTOP works for one's own processes everywhere.
      const s = cliJson(['dump', String(fx.pid), '--freeze', 'sigstop', '-o', file], { uid: NOBODY, gid: NOBODY, env: { HOME: '/tmp' } });
      expect(s.processes).toEqual([fx.pid]);
      const show = cliJson(['show', file, '--regions'], { uid: NOBODY, gid: NOBODY, env: { HOME: '/tmp' } });
      const region = (name: string) => show.processes[0].regions.find((r: { start: string }) => r.start === `0x${fx.region(name).start.toString(16)}`);
      // memfd: the fixture holds its fd, so the object is read whole
      expect(region('memfd')).toMatchObject({ object: expect.any(Number), pages: { object: 16 } });
      // shared anonymous memory has no fd: the 8 mapped pages are stored, the rest is said to be unreadable, with why
      expect(region('shared-anon').pages).toMatchObject({ data: 8, unreadable: 8 });
      expect(region('shared-anon').unreadable.join(' ')).toMatch(/shmem object cannot be opened .*needs CAP_SYS_ADMIN/);
      // a restore gives back the pages it holds (it used to skip the region, losing them), and says what is lost
      const sa = fx.region('shared-anon');
      const r = cliJson(['restore', file, '--verify', '--no-profile']);
      expect(r.verify.mismatches).toBe(0);
      expect(r.notes).toContain(`0x${sa.start.toString(16)} was shared memory (/dev/zero); what the snapshot holds of it is restored as private memory, the rest is lost (its object is not in the snapshot)`);
      const lost = r.lost.filter((x: { start: string }) => BigInt(x.start) >= sa.start && BigInt(x.start) < sa.start + BigInt(sa.pages * 4096));
      expect(lost.reduce((n: number, x: { len: number }) => n + x.len, 0)).toBe(8 * 4096);
      expect(lost[0].why).toMatch(/^unreadable at dump time: .*shmem object cannot be opened/);
    } finally {
      await fx.stop();
      rmSync(own, { recursive: true, force: true });
    }
  });
});
