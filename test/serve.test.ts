// Acceptance for `serve`: the bundled client (fixtures/uffd-client.c) hands its userfaultfd to a live server and
// gets a snapshot's memory: prefetched or on fault, across REMOVE, REMAP and FORK events; strangers are refused;
// a server that dies leaves the client a clean way out.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createConnection } from 'node:net';
import { createInterface } from 'node:readline';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { Fixture, type FixtureRegion } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { parseHello } from '../src/restore/serve-protocol.js';
import { planClient } from '../src/restore/serve-plan.js';
import { cli, cliJson, RUN_JS } from './helpers/cli.js';
import { HostSettings } from '../src/host/settings.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';

const CLIENT = join(import.meta.dirname, '..', 'fixtures', 'bin', 'uffd-client');
const dir = scratchDir('serve', 0o755);
let fx: Fixture;
let file: string;
let thp: FixtureRegion;
let reader: SnapshotReader;

beforeAll(async () => {
  fx = await Fixture.start(['anon', 'thp']);
  thp = fx.region('thp');
  file = join(dir, 'served.psnap');
  cliJson(['dump', String(fx.pid), '-o', file]);
  reader = SnapshotReader.open(file);
}, 60_000);
afterAll(async () => {
  reader.close();
  await fx.stop();
});

/** A running `pagesnap serve --json`: its events as they come. */
class Server {
  readonly events: Record<string, unknown>[] = [];
  private waiters: (() => void)[] = [];
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess, readonly socket: string) {
    createInterface({ input: proc.stdout! }).on('line', (l) => {
      this.events.push(JSON.parse(l) as Record<string, unknown>);
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }
  static async start(name: string, extra: string[] = [], snapshot = file): Promise<Server> {
    const socket = join(dir, `${name}.sock`);
    const proc = spawn(process.execPath, [RUN_JS, 'serve', snapshot, '--socket', socket, '--json', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    const s = new Server(proc, socket);
    await s.until((e) => e.kind === 'listening');
    return s;
  }
  until(pred: (e: Record<string, unknown>) => boolean, ms = 20_000): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no such event within ${ms} ms: ${JSON.stringify(this.events)}`)), ms);
      const check = () => {
        const hit = this.events.find(pred);
        if (hit) {
          clearTimeout(timer);
          resolve(hit);
        } else this.waiters.push(check);
      };
      check();
    });
  }
  async stop(): Promise<void> {
    this.proc.kill('SIGTERM');
    await this.exited;
  }
}

interface ClientRun { code: number | null; out: Record<string, number> | null; stderr: string }

/** A client of `s` touching all of the thp region in order gets exactly its bytes (dumped to NAME.bin). */
async function expectServesThp(s: Server, name: string): Promise<void> {
  const dump = join(dir, `${name}.bin`);
  const r = await client(s, [...range(thp), '--touch', 'seq', '--dump', dump]);
  expect(r.code, r.stderr).toBe(0);
  expect(readFileSync(dump).equals(want(thp))).toBe(true);
}

function client(s: Server, args: string[], opts: { uid?: number } = {}): Promise<ClientRun> {
  return new Promise((resolve) => {
    const p = spawn(CLIENT, ['--socket', s.socket, ...args], { stdio: ['ignore', 'pipe', 'pipe'], uid: opts.uid, gid: opts.uid });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => resolve({ code, out: out.trim() ? (JSON.parse(out.trim()) as Record<string, number>) : null, stderr: err }));
  });
}

const range = (r: FixtureRegion) => ['--snapshot-address', `0x${r.start.toString(16)}`, '--length', String(r.pages * 4096)];
const want = (r: FixtureRegion) => reader.read(reader.process(fx.pid), r.start, r.pages * 4096);

/**
 * Serve `region` into a client's memory of the kind `memory` asks for (uffd-client flags), twice: on fault only, where
 * `faults` faults must be served, and filled in the background. Each time the client must see the snapshot's bytes.
 */
async function servedBothWays(tag: string, region: FixtureRegion, memory: string[], faults: number): Promise<void> {
  const ways = [['faults', ['--threads', '0'], ['--no-prefetch', '--touch', 'random']], ['fill', [], ['--wait-full']]] as const;
  for (const [way, serverArgs, clientArgs] of ways) {
    const s = await Server.start(`${tag}-${way}`, [...serverArgs]);
    try {
      const dump = join(dir, `${tag}-${way}.bin`);
      const r = await client(s, [...range(region), ...memory, ...clientArgs, '--dump', dump]);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(dump).equals(want(region)), way).toBe(true);
      const end = await s.until((e) => e.kind === 'end');
      if (way === 'faults') expect((end.faults as { served: number }).served).toBe(faults);
    } finally {
      await s.stop();
    }
  }
}

describe('serve', () => {
  it('fills a client in the background; the socket is 0600 and goes away with the server', async () => {
    const s = await Server.start('bg');
    try {
      expect(statSync(s.socket).mode & 0o777).toBe(0o600);
      const dump = join(dir, 'bg.bin');
      const r = await client(s, [...range(thp), '--wait-full', '--dump', dump]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.out!.full).toBe(1);
      expect(readFileSync(dump).equals(want(thp))).toBe(true);
      const end = await s.until((e) => e.kind === 'end');
      expect(end.why).toBe('the client went away');
    } finally {
      await s.stop();
    }
    expect(existsSync(s.socket)).toBe(false);
  });

  it('serves every page on fault when the client asks for no prefetch', async () => {
    const s = await Server.start('faults', ['--threads', '0']);
    try {
      const dump = join(dir, 'faults.bin');
      const r = await client(s, [...range(thp), '--no-prefetch', '--touch', 'random', '--dump', dump]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.out!.touched).toBe(thp.pages);
      expect(readFileSync(dump).equals(want(thp))).toBe(true);
      const end = await s.until((e) => e.kind === 'end');
      expect((end.faults as { served: number }).served).toBe(thp.pages);
    } finally {
      await s.stop();
    }
  });

  it('serves every page on fault from a decoded-frame cache smaller than what the client touches', async () => {
    // 8-page frames: the region spans 128 of them, the cache holds 16, so frames are dropped and decoded again
    const small = join(dir, 'small-frames.psnap');
    cliJson(['dump', String(fx.pid), '-o', small, '--frame-pages', '8']);
    const s = await Server.start('small-cache', ['--threads', '0', '--cache-mib', '0'], small);
    try {
      const dump = join(dir, 'small-cache.bin');
      const r = await client(s, [...range(thp), '--no-prefetch', '--touch', 'random', '--dump', dump]);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(dump).equals(want(thp))).toBe(true);
      const end = await s.until((e) => e.kind === 'end');
      expect((end.faults as { served: number }).served).toBe(thp.pages);
    } finally {
      await s.stop();
    }
  });

  it('serves hugetlb memory in whole huge pages, on fault and in the background', async (ctx) => {
    const settings = new HostSettings();
    try {
      const why = settings.reserveHugepages(4);
      if (why) {
        skipBecause(ctx, 'hugetlb serve', why);
      }
      // the snapshot's thp region (two huge pages of data) into a client's private hugetlb memory: a fault per huge page
      await servedBothWays('huge', thp, ['--hugetlb'], thp.pages / 512);
    } finally {
      settings.restore();
    }
  });

  it('serves shared memory (a memfd mapped shared, as a VMM shares guest memory), on fault and in the background', async () => {
    const mixed = fx.region('mixed'); // data and zero pages: COPY and ZEROPAGE into shmem
    await servedBothWays('shmem', mixed, ['--shmem'], mixed.pages);
  });

  it('takes a blocking userfaultfd too (made non-blocking: a drain must never wait in read)', async () => {
    const s = await Server.start('blocking');
    try {
      const dump = join(dir, 'blocking.bin');
      const r = await client(s, [...range(thp), '--blocking', '--touch', 'random', '--wait-full', '--dump', dump]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.out!.full).toBe(1);
      expect(readFileSync(dump).equals(want(thp))).toBe(true);
    } finally {
      await s.stop();
    }
  });

  it('a range the client discarded (REMOVE) reads as zeros, however the fill races it', async () => {
    const s = await Server.start('remove');
    try {
      for (let i = 0; i < 5; i++) {
        const dump = join(dir, `remove-${i}.bin`);
        const off = 4096 * 100;
        const len = 4096 * 300;
        const r = await client(s, [...range(thp), '--events', 'remove', '--remove', `${off}:${len}`, '--touch', 'seq', '--dump', dump]);
        expect(r.code, r.stderr).toBe(0);
        const expected = Buffer.from(want(thp));
        expected.fill(0, off, off + len);
        expect(readFileSync(dump).equals(expected), `run ${i}`).toBe(true);
      }
    } finally {
      await s.stop();
    }
  });

  it('pages the client moved (REMAP) arrive where they went', async () => {
    const s = await Server.start('remap', ['--threads', '0']);
    try {
      const dump = join(dir, 'remap.bin');
      const r = await client(s, [...range(thp), '--events', 'remap,unmap', '--no-prefetch', '--remap', `${4096 * 8}:${4096 * 64}`, '--touch', 'seq', '--dump', dump]);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(dump).equals(want(thp))).toBe(true);
    } finally {
      await s.stop();
    }
  });

  // A forked child's userfaultfd is made by the kernel with the flags the client created its own with (a blocking
  // client's child gets a blocking one, whatever was set on the parent's since).
  it.each([['', []], [', from a client whose userfaultfd blocks', ['--blocking']]] as const)('a forked child (FORK) is served too%s', async (_, extra) => {
    const s = await Server.start('fork', ['--threads', '0']);
    try {
      const dump = join(dir, 'fork.bin');
      const r = await client(s, [...range(thp), '--events', 'fork', '--no-prefetch', '--fork', dump, ...extra]);
      expect(r.code, r.stderr).toBe(0);
      expect(readFileSync(dump).equals(want(thp))).toBe(true);
      await s.until((e) => e.kind === 'start' && e.forkOf !== undefined);
    } finally {
      await s.stop();
    }
  });

  it('refuses a range the snapshot does not have, with one clear reason', async () => {
    const s = await Server.start('refuse');
    try {
      const r = await client(s, ['--snapshot-address', '0x1000', '--length', '8192']);
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(/refused: .*0x1000 is not mapped in process \d+ of the snapshot/);
      await s.until((e) => e.kind === 'refused');
    } finally {
      await s.stop();
    }
  });

  it('a hello that is not what the protocol says is refused with one clear reason', () => {
    const refusal = (text: string) => {
      try {
        parseHello(text);
        return null;
      } catch (e) {
        return (e as Error).message;
      }
    };
    const ok = (r: Record<string, unknown>) => JSON.stringify({ version: 1, ranges: [{ address: '0x1000', length: 4096, snapshotAddress: '0x2000', ...r }] });
    expect(refusal('{')).toBe('hello: not JSON');
    for (const t of ['null', '[]', '5', '"x"']) expect(refusal(t)).toBe('hello: not a JSON object');
    expect(refusal('{"version":1,"ranges":[null]}')).toBe('hello: ranges[0] is not an object');
    expect(refusal(ok({ length: '0x10000000000000000' }))).toBe('hello: ranges[0].length is too large');
    expect(refusal(ok({ pageSize: -1 }))).toMatch(/^hello: ranges\[0\]\.pageSize must be a non-negative integer/);
    expect(refusal(ok({}))).toBeNull();
    const proc = reader.process(fx.pid);
    for (const pageSize of [0, 3000, 2 ** 31]) {
      expect(() => planClient(reader, proc, [{ address: 0x1000n, length: 4096, snapshotAddress: thp.start, pageSize }])).toThrow(/page size \d+ is not a power of two from 4096 to 1 GiB/);
    }
  });

  it('plans a hello of several ranges, in address order, each from its own snapshot region', () => {
    const proc = reader.process(fx.pid);
    const mixed = fx.region('mixed');
    const len = (r: FixtureRegion) => r.pages * 4096;
    // given out of order; the client's addresses need not be the snapshot's
    const plan = planClient(reader, proc, [
      { address: 0x7e0000000000n, length: len(thp), snapshotAddress: thp.start },
      { address: 0x7d0000000000n, length: len(mixed), snapshotAddress: mixed.start },
    ]);
    expect(plan.ranges).toEqual([
      { first: 0x7d0000000000 / 4096, pages: mixed.pages, unitPages: 1 },
      { first: 0x7e0000000000 / 4096, pages: thp.pages, unitPages: 1 },
    ]);
    expect(plan.counts).toEqual({ data: mixed.expect.data! + thp.expect.data!, zero: mixed.expect.zero!, poison: 0 });
    expect(plan.lost).toEqual([]);
    expect(() => planClient(reader, proc, [
      { address: 0x7d0000000000n, length: len(mixed), snapshotAddress: mixed.start },
      { address: 0x7d0000000000n + BigInt(len(mixed) - 4096), length: 4096, snapshotAddress: mixed.start },
    ])).toThrow(/^ranges at 0x7d0000000000 and 0x7d000001f000 overlap$/);
  });

  it('another user cannot connect', async () => {
    const s = await Server.start('stranger');
    try {
      const r = await client(s, range(thp), { uid: 65534 });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/connect: Permission denied/);
    } finally {
      await s.stop();
    }
  });

  it('if the server dies, a waiting client sees the connection close and exits instead of hanging; the next server takes its socket', async () => {
    const s = await Server.start('dies', ['--threads', '0']);
    expect(s.events[0]!.replaced).toBe(false);
    const running = client(s, [...range(thp), '--no-prefetch', '--wait-full']);
    await s.until((e) => e.kind === 'start');
    s.proc.kill('SIGKILL');
    const r = await running;
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/the server went away before the memory was full/);
    // the dead server's socket is left behind; nobody listens on it, so a new server removes it and serves
    expect(statSync(s.socket).isSocket()).toBe(true);
    const next = await Server.start('dies');
    try {
      expect(next.events[0]!.replaced).toBe(true);
      await expectServesThp(next, 'after-death');
    } finally {
      await next.stop();
    }
  });

  it('a client that dies ends its session cleanly; the server serves the next one', async () => {
    const s = await Server.start('client-dies', ['--threads', '0']);
    try {
      const p = spawn(CLIENT, ['--socket', s.socket, ...range(thp), '--no-prefetch', '--wait-full'], { stdio: 'ignore' });
      await s.until((e) => e.kind === 'start');
      p.kill('SIGKILL');
      const end = await s.until((e) => e.kind === 'end');
      expect(end.why).toBe('the client went away');
      await expectServesThp(s, 'next');
    } finally {
      await s.stop();
    }
  });

  it('out of descriptors: a hello whose descriptor cannot be received is refused saying so; a connection that cannot be accepted waits, said once, nothing spinning, and is served once it can be', async (ctx) => {
    if (spawnSync('prlimit', ['--version']).status !== 0) {
      console.log('SKIP out of descriptors: no prlimit(1) here to lower the server\'s limit');
      ctx.skip();
    }
    const s = await Server.start('emfile', ['--threads', '0']);
    const pid = s.proc.pid!;
    const cpu = () => readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ').slice(11, 13).reduce((a, b) => a + Number(b), 0);
    // (the soft limit alone: raising a hard limit again needs more than the tests may have)
    const limit = (n: number) => expect(spawnSync('prlimit', ['--pid', String(pid), `--nofile=${n}:`]).status).toBe(0);
    try {
      // (one served first: its threads have loaded every module they need; then its descriptors settle, the
      // session's threads gone)
      await expectServesThp(s, 'before-emfile');
      await s.until((e) => e.kind === 'end');
      const fds = () => readdirSync(`/proc/${pid}/fd`).sort().join(' ');
      for (let was = ''; was !== fds(); await new Promise((res) => setTimeout(res, 300))) was = fds();
      // the lowest descriptor free in the server: new ones go there, and none may be at or past the limit
      const open = new Set(readdirSync(`/proc/${pid}/fd`).map(Number));
      let free = 0;
      while (open.has(free)) free++;
      // room for the connection, none for the userfaultfd it sends (it was "carried 0 descriptors")
      limit(free + 1);
      const r = await client(s, range(thp));
      expect(r.stderr).toContain('its descriptor did not arrive: this server has none free to receive it in (EMFILE)');
      // no room for the connection
      limit(free);
      const served = expectServesThp(s, 'after-emfile');
      const trouble = await s.until((e) => e.kind === 'trouble');
      expect(trouble.why).toMatch(/^cannot accept a connection: .*EMFILE/);
      const before = cpu();
      await new Promise((res) => setTimeout(res, 1000));
      // (clock ticks of 10 ms: an accept loop that spins takes all of a CPU, 100 a second)
      expect(cpu() - before).toBeLessThan(20);
      expect(s.events.filter((e) => e.kind === 'trouble')).toHaveLength(1);
      limit(1024);
      await served;
    } finally {
      await s.stop();
    }
  });

  it('a client that stalls in the middle of its hello holds up no other client, and is refused after 5 s', async () => {
    const s = await Server.start('stall');
    const stalled = createConnection(s.socket);
    try {
      await new Promise<void>((resolve) => stalled.once('connect', () => resolve()));
      const head = Buffer.alloc(4);
      head.writeUInt32LE(100, 0);
      stalled.write(head); // a 100-byte hello announced, and never sent (nor its descriptor)
      await new Promise((r) => setTimeout(r, 200));
      await expectServesThp(s, 'after-stall');
      // served while the stalled hello was still waiting out its time
      expect(s.events.filter((e) => e.kind === 'refused')).toEqual([]);
      const refused = await s.until((e) => e.kind === 'refused');
      expect(refused.why).toBe('the hello did not arrive whole within 5 s (4 bytes)');
    } finally {
      stalled.destroy();
      await s.stop();
    }
  });

  it('will not take a path that is not a socket, nor a running server\'s socket; a path it cannot bind is named with what to do', async () => {
    const path = join(dir, 'taken.sock');
    spawnSync('touch', [path]);
    const r = cli(['serve', file, '--socket', path]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`pagesnap serve: ${path} exists and is a regular file, not a socket: EEXIST — choose another path\n`);
    const long = join(dir, `${'x'.repeat(120)}.sock`);
    expect(cli(['serve', file, '--socket', long]).stderr).toBe(`pagesnap serve: bind ${long}: ENAMETOOLONG (name too long) — choose a shorter path (a unix socket's is at most 107 bytes)\n`);
    expect(cli(['serve', file, '--socket', join(dir, 'nowhere', 's.sock')]).stderr).toBe(`pagesnap serve: ${join(dir, 'nowhere')} does not exist: ENOENT — create the directory first, or write the socket elsewhere\n`);
    const s = await Server.start('running');
    try {
      const r2 = cli(['serve', file, '--socket', s.socket]);
      expect(r2.code).toBe(1);
      expect(r2.stderr).toBe(`pagesnap serve: ${s.socket} is the socket of a server that is running: EADDRINUSE — stop that server, or choose another path\n`);
      // and that server serves on, none the worse for the look
      await expectServesThp(s, 'still-running');
    } finally {
      await s.stop();
    }
  });
});
