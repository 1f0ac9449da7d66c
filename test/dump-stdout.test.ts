// `dump -o -`: the snapshot sent to standard output as it is made, for `| ssh host 'cat > f'` and the like. It used to
// write a file named "-" in the working directory.
import { describe, it, expect, beforeAll, afterAll, type TestContext } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { FORMAT_VERSION } from '../src/snapshot/format.js';
import { readStat } from '../src/proc/process.js';
import { cli, cliJson, RUN_JS } from './helpers/cli.js';
import { liveBytes } from './helpers/scenario.js';
import { scratchDir } from './helpers/scratch.js';

const dir = scratchDir('stdout');
const pagesnap = `${process.execPath} ${RUN_JS}`;
const bash = (script: string) => spawnSync('bash', ['-c', script], { encoding: 'utf8', cwd: dir, timeout: 60_000 });
const tracer = (pid: number) => Number(/^TracerPid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

/** SIGSTOP `pid` and wait until it has stopped. */
async function stop(pid: number) {
  process.kill(pid, 'SIGSTOP');
  while (readStat(pid).state !== 'T') await new Promise((r) => setTimeout(r, 5));
}

/** Every region's bytes in both snapshots are the same, and (unless `sameCounts` is false) so are their page counts. */
function expectSameSnapshot(streamed: string, written: string, sameCounts = true) {
  const [a, b] = [SnapshotReader.open(streamed), SnapshotReader.open(written)];
  try {
    const [pa, pb] = [a.process(), b.process()];
    expect(pa.regions.map((r) => [r.start, r.end, r.kind])).toEqual(pb.regions.map((r) => [r.start, r.end, r.kind]));
    for (const r of pa.regions.filter((x) => x.kind !== 'special' && x.end - x.start <= 1n << 24n)) {
      const len = Number(r.end - r.start);
      let [x, y]: (Buffer | string)[] = ['', ''];
      try {
        x = a.read(pa, r.start, len);
      } catch (e) {
        x = (e as Error).message.replace(streamed, 'FILE');
      }
      try {
        y = b.read(pb, r.start, len);
      } catch (e) {
        y = (e as Error).message.replace(written, 'FILE');
      }
      expect({ region: r.start, name: r.path, kind: r.kind, same: typeof x === 'string' ? x === y : Buffer.isBuffer(y) && x.equals(y) }).toEqual({ region: r.start, name: r.path, kind: r.kind, same: true });
    }
    const counts = (m: typeof a.manifest) => ({ ...m.stats, bytesCompressed: 0 });
    if (sameCounts) expect(counts(a.manifest)).toEqual(counts(b.manifest));
  } finally {
    a.close();
    b.close();
  }
}

describe('dump -o -', () => {
  let fx: Fixture;
  let written: string;
  beforeAll(async () => {
    fx = await Fixture.start(['anon', 'shmem-pwrite']);
    // stopped, so that every dump of it holds the same memory (a dump leaves a stopped process stopped)
    await stop(fx.pid);
    written = join(dir, 'written.psnap');
    cliJson(['dump', String(fx.pid), '-o', written]);
  }, 60_000);
  afterAll(async () => {
    if (fx) process.kill(fx.pid, 'SIGCONT');
    await fx?.stop();
  });

  it('through a pipe: the same snapshot as a file dump holds, declaring the newest version; the summary on stderr', () => {
    const r = bash(`${pagesnap} dump ${fx.pid} -o - | cat > piped.psnap`);
    expect({ status: r.status, stderr: r.stderr.split('\n')[0] }).toEqual({ status: 0, stderr: expect.stringMatching(/^sent [\d.]+ KiB to standard output$/) });
    const file = join(dir, 'piped.psnap');
    // its header went out before the end could say which version the file needs
    expect(readFileSync(file).readUInt16LE(8)).toBe(FORMAT_VERSION);
    expect(cli(['verify', file]).code).toBe(0);
    expectSameSnapshot(file, written);
    const snap = SnapshotReader.open(file);
    try {
      const w = fx.region('written');
      expect(snap.read(snap.process(), w.start, w.pages * 4096).equals(liveBytes(fx.pid, w))).toBe(true);
    } finally {
      snap.close();
    }
  });

  it('to a socket (how a parent process reads a child): --json goes to stderr, stdout is the snapshot alone', async () => {
    const child = spawn(process.execPath, [RUN_JS, 'dump', String(fx.pid), '-o', '-', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    const code = await new Promise((done) => child.on('close', done));
    expect(code).toBe(0);
    const summary = JSON.parse(err);
    const bytes = Buffer.concat(out);
    expect({ path: summary.path, fileBytes: summary.fileBytes }).toEqual({ path: '-', fileBytes: bytes.length });
    const file = join(dir, 'socket.psnap');
    writeFileSync(file, bytes);
    expect(cli(['verify', file]).code).toBe(0);
    expectSameSnapshot(file, written);
  });

  it('to a file the shell made for it: 0600 (snapshots hold secrets), complete and durable', () => {
    expect(bash(`umask 022; ${pagesnap} dump ${fx.pid} -o - 2>/dev/null > redirected.psnap`).status).toBe(0);
    const file = join(dir, 'redirected.psnap');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expectSameSnapshot(file, written);
  });

  it('to a file that holds something already: written from where the shell left it, the file\'s mode untouched', () => {
    expect(bash(`umask 022; { printf x; ${pagesnap} dump ${fx.pid} -o - 2>/dev/null; } > after.psnap`).status).toBe(0);
    const file = join(dir, 'after.psnap');
    expect(statSync(file).mode & 0o777).toBe(0o644);
    expect(readFileSync(file).subarray(0, 9).toString('latin1')).toBe('xPAGESNAP');
    expect(bash(`tail -c +2 after.psnap > tail.psnap && ${pagesnap} verify tail.psnap`).status).toBe(0);
  });

  it('an incremental snapshot streams too, naming its parent from the working directory', () => {
    const r = bash(`${pagesnap} dump ${fx.pid} --parent written.psnap -o - > child.psnap`);
    expect(r.status).toBe(0);
    const v = cliJson(['verify', join(dir, 'child.psnap')]);
    expect(v.ok).toBe(true);
    const show = cliJson(['show', join(dir, 'child.psnap')]);
    expect(show.chain.map((x: { file: string }) => x.file)).toEqual([written]);
  });

  it('a reader that stops early: one error line, exit 1, the target running and untraced', async () => {
    // clean file pages too: more than a pipe's 64 KiB, so the writes meet the closed pipe
    process.kill(fx.pid, 'SIGCONT');
    try {
      const r = bash(`${pagesnap} dump ${fx.pid} --include-file-pages -o - | head -c 100 > /dev/null; exit \${PIPESTATUS[0]}`);
      expect({ status: r.status, lines: r.stderr.trim().split('\n').length }).toEqual({ status: 1, lines: 1 });
      expect(r.stderr).toMatch(/^pagesnap dump: write standard output: EPIPE .* — the program reading the output stopped before it was complete\n$/);
      expect(['S', 'R']).toContain(readStat(fx.pid).state);
      expect(tracer(fx.pid)).toBe(0);
    } finally {
      await stop(fx.pid);
    }
  });

  it('a pipe whose reader has gone is refused before the target is frozen', () => {
    const r = bash(`{ sleep 0.3; ${pagesnap} dump ${fx.pid} -o -; } | true; exit \${PIPESTATUS[0]}`);
    expect({ status: r.status, stderr: r.stderr }).toEqual({ status: 1, stderr: 'pagesnap dump: standard output is a pipe nobody reads (EPIPE) — start the program that reads it first, and keep it reading\n' });
  });

  it('is refused on a terminal, in one line, writing nothing', (ctx: TestContext) => {
    if (!existsSync('/usr/bin/script')) {
      console.log('SKIP terminal: util-linux script(1) is not installed to give the command a terminal');
      return ctx.skip();
    }
    const r = spawnSync('script', ['-qec', `${pagesnap} dump ${fx.pid} -o -`, '/dev/null'], { encoding: 'utf8', cwd: dir, timeout: 60_000 });
    expect(r.status).toBe(1);
    expect(r.stdout.trim()).toBe('pagesnap dump: standard output is a terminal, and a snapshot is binary: EINVAL — redirect it (-o - > app.psnap, -o - | ssh host \'cat > app.psnap\') or give a file name with -o');
    expect(existsSync(join(dir, '-'))).toBe(false);
  });

  it('a usage error with --json does not write into the pipe meant for the snapshot', () => {
    const r = cli(['dump', String(fx.pid), '--level', '0', '-o', '-', '--json']);
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    expect(JSON.parse(r.stderr.split('\n')[1]!).error.message).toMatch(/^--level: /);
  });
});

describe('dump -o - of pages repeated far apart', () => {
  it('stores again a page whose first copy has left its buffers, and the snapshot holds the same bytes', async () => {
    // 40 MiB of random bytes, then the same 40 MiB again: each page of the copy repeats one 40 MiB before it, further
    // back than a stream can read (a file reads it back and stores it once)
    const script = "const a = require('crypto').randomBytes(40 << 20); globalThis.k = [a, Buffer.from(a)]; console.log('ready'); process.stdin.resume();";
    const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      await new Promise((done) => child.stdout.once('data', done));
      await stop(child.pid!);
      const written = join(dir, 'far-written.psnap');
      const w = cliJson(['dump', String(child.pid), '-o', written]);
      expect(w.pagesDeduplicated).toBeGreaterThanOrEqual(10240);
      const r = bash(`${pagesnap} dump ${child.pid} -o - --json 2>summary.json > far-streamed.psnap`);
      expect(r.status).toBe(0);
      const s = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
      expect(s.pagesDeduplicated).toBeLessThan(w.pagesDeduplicated - 10000);
      expect(s.pagesStored + s.pagesDeduplicated).toBe(w.pagesStored + w.pagesDeduplicated);
      expect(cli(['verify', join(dir, 'far-streamed.psnap')]).code).toBe(0);
      expectSameSnapshot(join(dir, 'far-streamed.psnap'), written, false);
    } finally {
      child.kill('SIGKILL');
    }
  }, 60_000);
});
