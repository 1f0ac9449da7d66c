// The native wrappers against the running kernel, with the results kernel-semantics.md records.
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { openSync, closeSync, writeSync, readSync, ftruncateSync, mkdtempSync, rmSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import koffi from 'koffi';
import * as n from '../src/native/index.js';
import { Fixture } from '../fixtures/driver.js';
import { patternPage } from '../fixtures/pattern.js';

const PS = 4096;
const anon = (pages: number, prot = n.PROT.READ | n.PROT.WRITE) => n.mmap(pages * PS, prot, n.MAP.PRIVATE | n.MAP.ANONYMOUS);
const addr = (b: Buffer) => koffi.address(b) as bigint;

describe('errors', () => {
  it('carry the call, the subject and the errno name', () => {
    const p = anon(1);
    try {
      n.madvise(p, PS, 9999);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(n.NativeError);
      expect((e as n.NativeError).code).toBe('EINVAL');
      expect((e as Error).message).toMatch(/^madvise 0x[0-9a-f]+\+1000 advice=9999: EINVAL/);
    }
    expect(() => n.munmap(1n, PS)).toThrow(/munmap 0x1\+1000: EINVAL/);
    expect(() => n.pidfdOpen(0x3fffff)).toThrow(/pidfd_open pid 4194303: ESRCH/);
  });
});

describe('closes on other threads', () => {
  it('takes any number at once (koffi refuses more than ~250 calls in flight), and says which failed', async () => {
    const fds = Array.from({ length: 600 }, () => openSync('/dev/null', 'r'));
    // (each resolves only where its close(2) returned 0)
    await Promise.all(fds.map((fd) => n.closeAsync(fd, 'a test descriptor')));
    // (a number no descriptor can have, under this process's limit: a closed one might be open again by now)
    await expect(n.closeAsync(1 << 30, 'no descriptor')).rejects.toThrow(/^close no descriptor: EBADF/);
  });
});

describe('poll', () => {
  it('returns when its timeout is over though signals interrupt it more often than that (a profiler\'s SIGPROF)', () => {
    // Run under `node --cpu-prof`, whose sampler signals the thread every 100 µs here: a poll that began its
    // timeout again after each EINTR never returned (the fork-events thread of a precopy stopped taking commands,
    // and the dump waited for it with its targets frozen).
    const dir = mkdtempSync(join(tmpdir(), 'pagesnap-poll-'));
    try {
      const script = `import { poll, eventfd, POLL } from ${JSON.stringify(join(import.meta.dirname, '..', 'src', 'native', 'index.ts'))};
        const fd = eventfd();
        for (let i = 0; i < 5; i++) if (poll([{ fd, events: POLL.IN }], 20)[0] !== 0) throw new Error('readable');
        console.log('returned');`;
      const r = spawnSync(process.execPath, ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', dir, '--import', 'tsx', '--input-type=module', '-e', script], {
        encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL',
      });
      expect(r.signal, 'killed after 30 s: poll never returned').toBeNull();
      expect(r.stderr).toBe('');
      expect(r.stdout.trim()).toBe('returned');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('memory syscalls', () => {
  it('mmap, mincore, mprotect, madvise(DONTNEED), munmap', () => {
    const p = anon(4);
    expect(Array.from(n.mincore(p, 4 * PS))).toEqual([0, 0, 0, 0]);
    n.view(p, 4 * PS)[PS] = 1;
    expect(Array.from(n.mincore(p, 4 * PS))).toEqual([0, 1, 0, 0]);
    n.madvise(p, 4 * PS, n.MADV.DONTNEED);
    expect(Array.from(n.mincore(p, 4 * PS))).toEqual([0, 0, 0, 0]);
    n.mprotect(p, 4 * PS, n.PROT.READ);
    n.munmap(p, 4 * PS);
    expect(() => n.mincore(p, PS)).toThrow(/ENOMEM/);
  });
  it('memfd: SEEK_DATA/SEEK_HOLE and cachestat see pwrite-only pages', () => {
    const fd = n.memfdCreate('pagesnap-test', n.MFD.CLOEXEC);
    try {
      const page = patternPage(1, 0);
      writeSync(fd, page, 0, PS, 2 * PS);
      writeSync(fd, page, 0, PS, 7 * PS);
      expect(n.seekData(fd, 0)).toBe(2 * PS);
      expect(n.seekHole(fd, 2 * PS)).toBe(3 * PS);
      expect(n.seekData(fd, 3 * PS)).toBe(7 * PS);
      expect(n.seekData(fd, 8 * PS)).toBeNull();
      expect(n.cachestat(fd, 0, 0)).toMatchObject({ cache: 2, dirty: 0, evicted: 0 });
    } finally {
      closeSync(fd);
    }
  });
});

describe('PAGEMAP_SCAN', () => {
  let pm: number;
  beforeAll(() => { pm = openSync('/proc/self/pagemap', 'r'); });
  afterAll(() => closeSync(pm));

  it('reports runs and resumes from walk_end only when the vector is full', () => {
    const p = anon(16);
    const v = n.view(p, 16 * PS);
    for (let i = 0; i < 16; i += 2) v[i * PS] = 1; // 8 isolated pages
    const q = { start: p, end: p + 16n * 4096n, anyof: n.PAGE_IS.PRESENT, returnMask: n.PAGE_IS.PRESENT };
    const full = n.pagemapScan(pm, q, Buffer.alloc(3 * 24));
    expect(full.regions.length).toBe(3);
    expect(full.full).toBe(true);
    expect(full.walkEnd).toBe(p + 0x6000n); // start of the first page that did not fit (selftest value)
    const all = n.pagemapScan(pm, q, Buffer.alloc(64 * 24));
    expect(all.full).toBe(false);
    expect(all.walkEnd).toBe(q.end);
    expect(all.regions.map((r) => Number((r.start - p) / 4096n))).toEqual([0, 2, 4, 6, 8, 10, 12, 14]);
    n.munmap(p, 16 * PS);
  });
  it('validates its arguments as the kernel documents (EINVAL)', () => {
    const p = anon(1);
    expect(() => n.pagemapScan(pm, { start: p + 1n, end: p + 4096n, returnMask: 8 }, Buffer.alloc(24))).toThrow(/EINVAL/);
    expect(() => n.pagemapScan(pm, { start: p, end: p + 4096n, returnMask: 1 << 9 }, Buffer.alloc(24))).toThrow(/EINVAL/);
    const r = n.pagemapScan(pm, { start: p, end: p, returnMask: 8 }, Buffer.alloc(0));
    expect(r).toMatchObject({ regions: [], walkEnd: p });
  });
});

describe('userfaultfd', () => {
  it('both creation paths answer UFFDIO_API with all 17 features', () => {
    for (const via of ['syscall', 'dev'] as const) {
      const fd = n.createUffd({ via });
      expect(n.uffdApi(fd, 0).features).toBe(0x1ffffn);
      expect(() => n.uffdApi(fd, 0)).toThrow(/UFFDIO_API.*EINVAL/); // features can be set once
      closeSync(fd);
    }
  });
  it('REGISTER, COPY (full, EEXIST), ZEROPAGE, POISON, MOVE, UNREGISTER', () => {
    const u = n.createUffd({ nonblock: true });
    n.uffdApi(u, n.UFFD_FEATURE.MOVE | n.UFFD_FEATURE.POISON);
    const p = anon(8);
    expect(n.uffdRegister(u, p, 8 * PS, n.UFFDIO_REGISTER_MODE.MISSING)).toBe(0x13cn);
    const src = patternPage(3, 0);
    expect(n.uffdCopy(u, p, addr(src), PS)).toEqual({ bytes: PS, errno: 0, code: 'OK' });
    expect(n.uffdCopy(u, p, addr(src), PS)).toMatchObject({ bytes: 0, code: 'EEXIST' });
    expect(n.uffdZeropage(u, p + 4096n, PS)).toMatchObject({ bytes: PS, code: 'OK' });
    expect(n.uffdPoison(u, p + 2n * 4096n, PS)).toMatchObject({ bytes: PS, code: 'OK' });
    // MOVE: from a private staging page of ours into the registered range (same mm).
    const stage = anon(1);
    n.view(stage, PS).set(patternPage(4, 0));
    expect(n.uffdMove(u, p + 3n * 4096n, stage, PS)).toMatchObject({ bytes: PS, code: 'OK' });
    expect(Array.from(n.mincore(stage, PS))).toEqual([0]); // the source is a hole now
    // partial progress (A.4): 2 pages requested, the second already populated -> EAGAIN with 4096 done,
    // and the retry at the rest gives EEXIST
    expect(n.uffdZeropage(u, p + 5n * 4096n, PS).code).toBe('OK');
    expect(n.uffdCopy(u, p + 4n * 4096n, addr(Buffer.concat([src, src])), 2 * PS)).toEqual({ bytes: PS, errno: 11, code: 'EAGAIN' });
    expect(n.uffdCopy(u, p + 5n * 4096n, addr(src), PS)).toMatchObject({ bytes: 0, code: 'EEXIST' });
    const v = n.view(p, 4 * PS);
    expect(v.subarray(0, PS).equals(src)).toBe(true);
    expect(v.subarray(PS, 2 * PS).every((b) => b === 0)).toBe(true);
    expect(v.subarray(3 * PS, 4 * PS).equals(patternPage(4, 0))).toBe(true);
    n.uffdUnregister(u, p, 8 * PS);
    closeSync(u);
  });
  it('MINOR + CONTINUE maps an existing shmem page; WAKE on an idle range succeeds', () => {
    const u = n.createUffd({ nonblock: true });
    n.uffdApi(u, n.UFFD_FEATURE.MINOR_SHMEM);
    const fd = n.memfdCreate('pagesnap-minor', n.MFD.CLOEXEC);
    ftruncateSync(fd, 2 * PS); // page 1 is a hole inside the file (beyond EOF would be EINVAL)
    writeSync(fd, patternPage(5, 0), 0, PS, 0); // in the page cache, never mapped here
    const p = n.mmap(2 * PS, n.PROT.READ | n.PROT.WRITE, n.MAP.SHARED, fd, 0);
    expect(n.uffdRegister(u, p, 2 * PS, n.UFFDIO_REGISTER_MODE.MINOR) & (1n << 7n)).toBe(1n << 7n); // CONTINUE allowed
    expect(n.uffdContinue(u, p, PS)).toMatchObject({ bytes: PS, code: 'OK' });
    expect(n.uffdContinue(u, p + 4096n, PS)).toMatchObject({ bytes: 0, code: 'EFAULT' }); // a file hole
    n.uffdWake(u, p, 2 * PS);
    expect(n.view(p, PS).equals(patternPage(5, 0))).toBe(true);
    n.munmap(p, 2 * PS);
    closeSync(fd);
    closeSync(u);
  });
  it('COPY into an unregistered range is ENOENT; the result field stays at the preset 0 on EINVAL', () => {
    const u = n.createUffd();
    n.uffdApi(u, 0);
    const p = anon(1);
    const src = Buffer.alloc(PS, 1);
    expect(n.uffdCopy(u, p, addr(src), PS)).toMatchObject({ bytes: 0, code: 'ENOENT' });
    expect(n.uffdCopy(u, p + 1n, addr(src), PS)).toMatchObject({ bytes: 0, code: 'EINVAL' });
    closeSync(u);
  });
  it('WRITEPROTECT over a hole installs uffd-wp markers (pagemap 0x420000000000003f)', () => {
    const u = n.createUffd();
    n.uffdApi(u, n.UFFD_FEATURE.WP_UNPOPULATED);
    const p = anon(2);
    n.uffdRegister(u, p, 2 * PS, n.UFFDIO_REGISTER_MODE.WP);
    n.uffdWriteprotect(u, p, 2 * PS, n.UFFDIO_WRITEPROTECT_MODE.WP);
    const pm = openSync('/proc/self/pagemap', 'r');
    const b = Buffer.alloc(8);
    readSync(pm, b, 0, 8, Number((p / 4096n) * 8n));
    expect(b.readBigUInt64LE(0)).toBe(0x420000000000003fn);
    closeSync(pm);
    closeSync(u);
  });
});


describe('other processes', () => {
  let fx: Fixture;
  beforeAll(async () => { fx = await Fixture.start(['anon']); });
  afterAll(async () => { await fx.stop(); });

  it('process_vm_readv reads the fixture pattern; a hole in the middle stops the read short', () => {
    const r = fx.region('written');
    const bufs = [Buffer.alloc(PS), Buffer.alloc(3 * PS)];
    expect(n.processVmReadv(fx.pid, bufs, [{ addr: r.start, len: 4 * PS }])).toBe(4 * PS);
    expect(bufs[0]!.equals(patternPage(r.seed, 0))).toBe(true);
    expect(bufs[1]!.subarray(2 * PS).equals(patternPage(r.seed, 3))).toBe(true);
    const gap = fx.region('written').end; // the PROT_NONE page after the region
    expect(n.processVmReadv(fx.pid, [Buffer.alloc(2 * PS)], [{ addr: gap - 4096n, len: 2 * PS }])).toBe(PS);
  });
  it('pidfd_open, pidfd_getfd, pidfd_send_signal(0)', () => {
    const pfd = n.pidfdOpen(fx.pid);
    const fd = n.pidfdGetfd(pfd, 1); // the fixture's stdout pipe
    expect(fd).toBeGreaterThan(2);
    n.pidfdSendSignal(pfd, 0);
    closeSync(fd);
    closeSync(pfd);
  });
  it('ptrace seize, interrupt, waitpid stop, detach', async () => {
    const c = spawn('sleep', ['30']);
    await new Promise((r) => c.once('spawn', r));
    try {
      n.ptraceSeize(c.pid!);
      n.ptraceInterrupt(c.pid!);
      const st = n.waitpid(c.pid!, n.WAIT.WALL);
      expect(st).toMatchObject({ pid: c.pid, stopped: true, ptraceEvent: 128 /* PTRACE_EVENT_STOP */ });
      n.ptraceDetach(c.pid!);
      expect(() => n.ptraceInterrupt(c.pid!)).toThrow(/ESRCH/); // no longer traced by us
    } finally {
      c.kill('SIGKILL');
    }
  });
  it('process_madvise(COLD) on another process, EINVAL for advice not allowed remotely', () => {
    const pfd = n.pidfdOpen(fx.pid);
    const r = fx.region('written');
    expect(n.processMadvise(pfd, [{ addr: r.start, len: PS }], n.MADV.COLD)).toBe(PS);
    expect(() => n.processMadvise(pfd, [{ addr: r.start, len: PS }], n.MADV.DONTNEED)).toThrow(/EINVAL/);
    closeSync(pfd);
  });
});

describe('PAGEMAP_SCAN walk_end quirk (6.18)', () => {
  it('a vector longer than 512 that fills exactly at `end` gets walk_end behind its last region', (ctx) => {
    // Recorded so a kernel that fixes this is noticed; src/proc/pagemap.ts resumes from max(walk_end, last end).
    const pages = 2048;
    const p = anon(pages);
    const v = n.view(p, pages * PS);
    for (let i = 0; i < pages; i += 2) v[i * PS] = 1;
    const pm = openSync('/proc/self/pagemap', 'r');
    const r = n.pagemapScan(pm, { start: p, end: p + BigInt(pages) * 4096n, anyof: n.PAGE_IS.PRESENT, returnMask: n.PAGE_IS.PRESENT }, Buffer.alloc(1024 * 24));
    closeSync(pm);
    expect(r.regions.length).toBe(1024);
    expect(r.regions.at(-1)!.end).toBe(p + 2047n * 4096n);
    if (r.walkEnd >= r.regions.at(-1)!.end) {
      console.log('SKIP walk_end quirk: this kernel reports walk_end correctly');
      ctx.skip('this kernel reports walk_end correctly');
    }
    expect(r.walkEnd).toBe(p + 1024n * 4096n); // one 512-entry bounce buffer (1024 pages here) short
    n.munmap(p, pages * PS);
  });
});
