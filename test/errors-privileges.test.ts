// Bad input, vanished targets, missing privileges and a kernel without PAGEMAP_SCAN: one clear line or the fallback.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readlinkSync, readFileSync, rmSync, copyFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { Pagemap, readRegions } from '../src/proc/index.js';
import { cli, cliJson, RUN_JS } from './helpers/cli.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';

const NOBODY = 65534;
/** Another user runs with a HOME of its own (as sudo sets it), not root's. */
const asNobody = { uid: NOBODY, gid: NOBODY, env: { HOME: '/tmp' } };
const oneLine = (s: string) => s.trim().split('\n').length === 1;

describe('errors are one line with a non-zero exit', () => {
  it('nonexistent pid', () => {
    const r = cli(['inspect', '4194000']);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe(true);
    expect(r.stderr).toMatch(/^pagesnap inspect: process 4194000 does not exist \(\/proc\/4194000\/stat: ENOENT\) — check the pid/);
    expect(r.stdout).toBe('');
  });
  it('nonexistent pid with --json also prints a JSON error on stdout', () => {
    const r = cli(['inspect', '4194000', '--json']);
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'ENOENT', hint: expect.stringMatching(/check the pid/) } });
  });
  it('a pid that is not a number, a bad range, an unknown flag', () => {
    for (const [args, re, code] of [
      [['inspect', 'abc'], /not a pid: "abc"/, 1],
      [['inspect', String(process.pid), '--pages', 'xyz'], /not an address: "xyz"/, 1],
      [['inspect', String(process.pid), '--pages', '2000-1000'], /empty page range/, 1],
      [['inspect', String(process.pid), '--frobnicate'], /Nonexistent flag: --frobnicate/, 2],
      [['inspect', String(process.pid), '--method', 'magic'], /Expected --method=magic to be one of/, 2],
    ] as const) {
      const r = cli([...args]);
      expect(r.code, r.stderr).toBe(code);
      expect(oneLine(r.stderr), r.stderr).toBe(true);
      expect(r.stderr).toMatch(re);
    }
  });
  it('a kernel thread has no user memory: inspect, audit and dump say so (dump before trying to freeze it)', () => {
    for (const cmd of ['inspect', 'audit', 'dump']) {
      const r = cli([cmd, '2']); // kthreadd
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toMatch(new RegExp(`^pagesnap ${cmd}: process 2 is a kernel thread: it has no user memory .*— give the pid of a user process$`));
    }
  });
  it('a thread\'s id is not a process\'s: inspect, audit and dump name the process; dump refuses pagesnap itself', () => {
    // (this test's own process has threads: V8's and libuv's)
    const tid = readdirSync(`/proc/${process.pid}/task`).map(Number).find((t) => t !== process.pid)!;
    expect(tid).toBeDefined();
    for (const cmd of ['inspect', 'audit', 'dump']) {
      // (no file is written either way: the pid is refused first, and /dev/null/never cannot be made)
      const r = cli([cmd, String(tid), ...(cmd === 'dump' ? ['-o', '/dev/null/never'] : [])]);
      expect(r.code, r.stderr).toBe(1);
      expect(r.stderr.trim()).toMatch(new RegExp(`^pagesnap ${cmd}: ${tid} is a thread of process ${process.pid} \\(.+\\), not a process \\(/proc/${tid}/status: Tgid ${process.pid}\\): EINVAL — give the process's id, ${process.pid}$`));
    }
    // before, the snapshot of pagesnap by itself was written: empty, and exit 0
    const self = spawnSync('sh', ['-c', `exec "${process.execPath}" "${RUN_JS}" dump $$ -o /dev/null/never`], { encoding: 'utf8' });
    expect(self.status, self.stderr).toBe(1);
    expect(self.stderr.trim()).toMatch(/^pagesnap dump: process (\d+) is this pagesnap itself: a process cannot trace or stop itself \(EPERM\) — give the pid of another process$/);
  });
  it('a zombie has no memory: inspect, audit and dump say so; dump --tree leaves out a zombie child', async () => {
    // the shell's child is never waited for once sleep replaces the shell: a zombie until its parent exits
    const parent = spawn('sh', ['-c', 'sleep 0 & exec sleep 60'], { stdio: 'ignore' });
    const file = join(tmpdir(), `pagesnap-zombie-${process.pid}.psnap`);
    try {
      const zombieChild = () => readdirSync('/proc').filter((e) => /^\d+$/.test(e)).map(Number).find((p) => {
        try {
          const st = readFileSync(`/proc/${p}/stat`, 'utf8');
          const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
          return f[0] === 'Z' && Number(f[1]) === parent.pid;
        } catch {
          return false;
        }
      });
      let zombie: number | undefined;
      for (let i = 0; i < 500 && (zombie = zombieChild()) === undefined; i++) await new Promise((r) => setTimeout(r, 10));
      expect(zombie).toBeDefined();
      for (const cmd of ['inspect', 'audit', 'dump']) {
        const r = cli([cmd, String(zombie), ...(cmd === 'dump' ? ['-o', file] : [])]);
        expect(r.code).toBe(1);
        expect(r.stderr.trim()).toBe(`pagesnap ${cmd}: process ${zombie} has exited: a zombie, kept only until its parent (${parent.pid}) reaps it, with no memory left: ESRCH — give the pid of a live process`);
      }
      expect(cliJson(['dump', String(parent.pid), '--tree', '-o', file]).processes).toEqual([parent.pid]);
    } finally {
      parent.kill('SIGKILL');
      rmSync(file, { force: true });
    }
  });
  it('as root, a process root may not trace (another user namespace\'s, or an LSM\'s): the error says so, not "run as root"', (ctx) => {
    // pid 1 of a container or a sandboxed VM belongs to a user namespace above ours; elsewhere root reads it
    try {
      readFileSync('/proc/1/pagemap').subarray(0, 8);
      const why = 'root may read pid 1 here: no process above pagesnap\'s user namespace to try';
      skipBecause(ctx, ctx.task.name, why);
    } catch {
      /* the case */
    }
    for (const cmd of ['inspect', 'dump']) {
      const r = cli([cmd, '1', ...(cmd === 'dump' ? ['-o', join(tmpdir(), `pagesnap-pid1-${process.pid}.psnap`)] : [])]);
      expect(r.code).toBe(1);
      expect(oneLine(r.stderr), r.stderr).toBe(true);
      expect(r.stderr.trim()).toMatch(/— pagesnap runs as root but may not trace process 1: it belongs to a user namespace above pagesnap's, or a security module \(Yama, SELinux, AppArmor\) forbids it$/);
    }
  });

  it('too few open files allowed: one line saying so before anything is done (it was a module "not found", or a worker\'s stack trace)', () => {
    for (const command of ['dump 1 -o x.psnap', 'restore x.psnap']) {
      const r = spawnSync('sh', ['-c', `ulimit -n 64 && exec "${process.execPath}" "${RUN_JS}" ${command}`], { encoding: 'utf8' });
      expect({ code: r.status, stdout: r.stdout, oneLine: oneLine(r.stderr) }).toEqual({ code: 1, stdout: '', oneLine: true });
      expect(r.stderr).toBe(`pagesnap ${command.split(' ')[0]}: this process may open only 64 files (EMFILE), and pagesnap needs 128 — raise the limit (ulimit -n 1024) and run it again\n`);
    }
  });
  it('a usage error is one line that says what is wrong (oclif spreads its over several), and exit 2', () => {
    for (const [args, line] of [
      [['inspect'], 'pagesnap inspect: missing 1 required arg: pid (process id to inspect) — see pagesnap inspect --help'],
      [['dump', '1', '--level', '0'], 'pagesnap dump: --level: Expected an integer greater than or equal to 1 but received: 0 — see pagesnap dump --help'],
      [['diff', 'a.psnap'], 'pagesnap diff: missing 1 required arg: b (the later snapshot) — see pagesnap diff --help'],
      [['dump', '1', '--split-huge'], 'pagesnap dump: All of the following must be provided when using --split-huge: --precopy — see pagesnap dump --help'],
      [['dumpp', '1'], 'pagesnap: "dumpp" is not a command — did you mean dump? commands: audit, autocomplete, cat, diff, dump, flatten, help, inspect, lab, restore, serve, show, verify (pagesnap --help)'],
    ] as const) {
      const r = cli([...args]);
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 2, stderr: `${line}\n` });
    }
    expect(JSON.parse(cli(['inspect', '--json']).stdout)).toEqual({ error: { message: 'missing 1 required arg: pid (process id to inspect)', code: null, hint: 'see pagesnap inspect --help' } });
  });
});

describe('a target that exits during inspection', () => {
  it('library: a pagemap reader whose process died says so', async () => {
    const fx = await Fixture.start(['anon']);
    const regions = readRegions(fx.pid);
    for (const method of ['scan', 'pread'] as const) {
      const pm = new Pagemap(fx.pid, { method });
      if (method === 'pread') {
        process.kill(fx.pid, 'SIGKILL');
        await fx.stop();
      }
      if (method === 'scan') {
        pm.close();
        continue;
      }
      expect(() => regions.forEach((r) => pm.runs(r))).toThrow(/process \d+ exited while it was being read/);
      pm.close();
    }
    const pm = new Pagemap(process.pid, { method: 'scan' });
    pm.close();
  });

  it('library: the scan path says so too, whatever errno the ioctl gives for a process gone (ESRCH, or EFAULT)', async () => {
    const fx = await Fixture.start(['anon']);
    const regions = readRegions(fx.pid);
    const pm = new Pagemap(fx.pid, { method: 'scan' });
    process.kill(fx.pid, 'SIGKILL');
    await fx.stop();
    expect(() => regions.forEach((r) => pm.runs(r))).toThrow(/process \d+ exited while it was being read \(ESRCH\)/);
    pm.close();
  });

  it('CLI: killed while its pagemap is being read (64 GiB sparse target, pread path)', async () => {
    const fx = await Fixture.start(['sparse']);
    const child = spawn(process.execPath, [RUN_JS, 'inspect', String(fx.pid), '--method', 'pread'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const target = `/proc/${fx.pid}/pagemap`;
    // Wait until the CLI holds the target's pagemap open, then kill the target.
    for (let i = 0; i < 20000; i++) {
      let open = false;
      try {
        open = readdirSync(`/proc/${child.pid}/fd`).some((f) => {
          try { return readlinkSync(`/proc/${child.pid}/fd/${f}`) === target; } catch { return false; }
        });
      } catch { break; }
      if (open) break;
      await new Promise((r) => setImmediate(r));
    }
    process.kill(fx.pid, 'SIGKILL');
    const code = await new Promise((r) => child.once('exit', r));
    await fx.stop();
    expect(code).toBe(1);
    expect(oneLine(stderr)).toBe(true);
    expect(stderr).toMatch(/process \d+ exited while it was being read \((ESRCH|ENOENT)\) — nothing was changed/);
  });
});

describe('a kernel without PAGEMAP_SCAN (forced fallback)', () => {
  let fx: Fixture;
  beforeAll(async () => { fx = await Fixture.start(['anon']); });
  afterAll(async () => { await fx.stop(); });

  it('auto falls back to pread and reports the same counts', () => {
    const env = { PAGESNAP_NO_PAGEMAP_SCAN: '1' };
    const fallback = cliJson(['inspect', String(fx.pid)], { env });
    const scan = cliJson(['inspect', String(fx.pid)]);
    expect(fallback.method).toBe('pread');
    expect(scan.method).toBe('scan');
    expect(fallback.regions).toEqual(scan.regions);
  });
  it('asking for scan explicitly is a clear error', () => {
    const r = cli(['inspect', String(fx.pid), '--method', 'scan'], { env: { PAGESNAP_NO_PAGEMAP_SCAN: '1' } });
    expect(r.code).toBe(1);
    expect(r.stderr.trim()).toBe('pagesnap inspect: this kernel has no PAGEMAP_SCAN ioctl (Linux 6.7+): ENOTTY — use --method pread');
  });
});

describe('without root', () => {
  const dir = scratchDir('privileges', 0o755);
  let own: Fixture;
  let root: Fixture;
  beforeAll(async () => {
    root = await Fixture.start(['anon']);
    own = await startAs(NOBODY, ['anon', 'guard']);
  });
  afterAll(async () => {
    await root.stop();
    await own.stop();
  });

  it('cannot inspect another user\'s process: one line naming the file, EACCES and what to do', () => {
    const r = cli(['inspect', String(root.pid)], asNobody);
    expect(r.code).toBe(1);
    expect(oneLine(r.stderr)).toBe(true);
    expect(r.stderr).toMatch(/cannot read \/proc\/\d+\/\w+: (EACCES|EPERM) — run pagesnap as root or as the owner/);
  });

  it('cannot read another user\'s snapshot (0600): one line saying whose it is to read', () => {
    const snap = join(dir, 'root-only.psnap');
    copyFileSync(join(import.meta.dirname, '..', 'snapshots', 'golden-v1.psnap'), snap);
    chmodSync(snap, 0o600);
    const r = cli(['show', snap], asNobody);
    expect({ code: r.code, stderr: r.stderr }).toEqual({
      code: 1, stderr: `pagesnap show: cannot open ${snap}: EACCES — snapshots are readable by their owner only (0600): run as that user, or as root\n`,
    });
  });

  it('its own process that is not dumpable: inspect and dump say why only root may read it', async () => {
    const locked = await Fixture.start(['anon'], { runAs: NOBODY, notDumpable: true });
    try {
      for (const cmd of [['inspect'], ['dump', '-o', join(tmpdir(), `pagesnap-nd-${process.pid}.psnap`)]]) {
        const r = cli([cmd[0]!, String(locked.pid), ...cmd.slice(1)], asNobody);
        expect(r.code).toBe(1);
        expect(oneLine(r.stderr), r.stderr).toBe(true);
        expect(r.stderr.trim()).toMatch(new RegExp(`— process ${locked.pid} is not dumpable \\(PR_SET_DUMPABLE 0, or it changed credentials\\): only root can read its memory$`));
      }
    } finally {
      await locked.stop();
    }
  });

  it('inspects its own process, with PFN-dependent fields marked unavailable', () => {
    const rep = cliJson(['inspect', String(own.pid)], asNobody);
    expect(rep.framesVisible).toBe(false);
    expect(rep.caveats.join(' ')).toMatch(/not running with CAP_SYS_ADMIN/);
    // PAGEMAP_SCAN needs no privilege: zero pages, data and guards are still told apart.
    const counts = (name: string) => rep.regions.find((r: { start: string }) => r.start === `0x${own.region(name).start.toString(16)}`).counts;
    expect(counts('written')).toMatchObject({ data: 16, zero: 0 });
    expect(counts('zero')).toMatchObject({ zero: 16, data: 0 });
    expect(counts('anon-guard')).toMatchObject({ data: 12, guard: 4 });
  });

  it('the pread path without PFNs says which states it cannot tell apart', () => {
    const rep = cliJson(['inspect', String(own.pid), '--method', 'pread'], asNobody);
    expect(rep.caveats.join(' ')).toMatch(/cannot tell zero pages or PMD mappings without PFNs/);
    const zero = rep.regions.find((r: { start: string }) => r.start === `0x${own.region('zero').start.toString(16)}`).counts;
    expect(zero).toMatchObject({ present: 16, data: 16, zero: 0 });
  });

  it('--pages shows no PFN and no kpageflags, and says why', () => {
    const r = own.region('written');
    const rep = cliJson(['inspect', String(own.pid), '--pages', `${r.start.toString(16)}+8K`], asNobody);
    expect(rep.kpageflags).toMatch(/needs root/);
    for (const p of rep.pages) expect(p).toMatchObject({ state: 'data', present: true, pfn: null, kpageflags: null, kpagecount: null });
  });
});

const startAs = (uid: number, names: string[]) => Fixture.start(names, { runAs: uid });
