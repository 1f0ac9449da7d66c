// ioctl numbers and struct layouts against the values measured with the kernel headers
// (shared/reference/kernel-experiments/out/ioctlnums.txt and kernel-semantics.md §1.3, §3.2).
import { describe, it, expect } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { skipBecause } from './helpers/skip.js';
import {
  PAGEMAP_SCAN, PM_SCAN_ARG, PAGE_REGION, UFFDIO, USERFAULTFD_IOC_NEW, L, UFFD_FEATURE, PAGE_IS, SYS, sysno,
  CACHESTAT, CACHESTAT_RANGE, STATX, decodeUffdMsg, pack,
} from '../src/native/index.js';

/** _IOC(dir, type, nr, size) as the kernel computes it */
const ioc = (dir: number, type: number, nr: number, size: number) => ((dir << 30) | (size << 16) | (type << 8) | nr) >>> 0;
const IOWR = 3, IOR = 2;

describe('ioctl numbers', () => {
  it('match the reference values', () => {
    expect(PAGEMAP_SCAN).toBe(0xc0606610);
    expect(USERFAULTFD_IOC_NEW).toBe(0x0000aa00);
    expect(UFFDIO).toEqual({
      API: 0xc018aa3f, REGISTER: 0xc020aa00, UNREGISTER: 0x8010aa01, WAKE: 0x8010aa02, COPY: 0xc028aa03,
      ZEROPAGE: 0xc020aa04, MOVE: 0xc028aa05, WRITEPROTECT: 0xc018aa06, CONTINUE: 0xc020aa07, POISON: 0xc020aa08,
    });
  });
  it('are the _IOC encoding of each struct size', () => {
    expect(PAGEMAP_SCAN).toBe(ioc(IOWR, 0x66, 16, PM_SCAN_ARG.size));
    expect(UFFDIO.API).toBe(ioc(IOWR, 0xaa, 0x3f, L.api.size));
    expect(UFFDIO.REGISTER).toBe(ioc(IOWR, 0xaa, 0x00, L.register.size));
    expect(UFFDIO.UNREGISTER).toBe(ioc(IOR, 0xaa, 0x01, L.range.size));
    expect(UFFDIO.COPY).toBe(ioc(IOWR, 0xaa, 0x03, L.copy.size));
    expect(UFFDIO.ZEROPAGE).toBe(ioc(IOWR, 0xaa, 0x04, L.zeropage.size));
    expect(UFFDIO.MOVE).toBe(ioc(IOWR, 0xaa, 0x05, L.move.size));
    expect(UFFDIO.WRITEPROTECT).toBe(ioc(IOWR, 0xaa, 0x06, L.writeprotect.size));
    expect(UFFDIO.CONTINUE).toBe(ioc(IOWR, 0xaa, 0x07, L.continue.size));
    expect(UFFDIO.POISON).toBe(ioc(IOWR, 0xaa, 0x08, L.poison.size));
  });
});

describe('struct layouts', () => {
  it('have the reference sizes', () => {
    expect(PM_SCAN_ARG.size).toBe(96);
    expect(PAGE_REGION.size).toBe(24);
    expect([L.msg.size, L.api.size, L.register.size, L.copy.size, L.zeropage.size, L.move.size, L.continue.size, L.poison.size, L.writeprotect.size])
      .toEqual([32, 24, 32, 40, 32, 40, 32, 32, 24]);
    expect(CACHESTAT.size).toBe(40);
    expect(CACHESTAT_RANGE.size).toBe(16);
    expect(STATX.size).toBe(256);
  });
  it('statx has the fields pagesnap reads at their header offsets', () => {
    const at = Object.fromEntries(Object.entries(STATX.fields).map(([k, [off]]) => [k, off]));
    expect(at).toEqual({ mask: 0, ino: 32, size: 40, mtime_sec: 112, mtime_nsec: 120, dev_major: 136, dev_minor: 140, mnt_id: 144 });
  });
  it('pm_scan_arg has every field at its documented offset', () => {
    const names = ['size', 'flags', 'start', 'end', 'walk_end', 'vec', 'vec_len', 'max_pages', 'category_inverted', 'category_mask', 'category_anyof_mask', 'return_mask'] as const;
    names.forEach((n, i) => expect(PM_SCAN_ARG.fields[n][0]).toBe(i * 8));
  });
  it('uffd structs put the result field last', () => {
    expect(L.copy.fields.copy).toEqual([32, 's64']);
    expect(L.zeropage.fields.zeropage).toEqual([24, 's64']);
    expect(L.move.fields.move).toEqual([32, 's64']);
    expect(L.continue.fields.mapped).toEqual([24, 's64']);
    expect(L.poison.fields.updated).toEqual([24, 's64']);
    expect(L.register.fields.ioctls).toEqual([24, 'u64']);
  });
  it('packs little-endian u64 and negative s64', () => {
    const b = pack(L.copy, { dst: 0x7f0000001000n, src: 1, len: 4096, mode: 2, copy: -17 });
    expect(b.readBigUInt64LE(0)).toBe(0x7f0000001000n);
    expect(b.readBigInt64LE(32)).toBe(-17n);
  });
});

describe('constants', () => {
  it('feature bits and categories', () => {
    expect(UFFD_FEATURE.MOVE).toBe(1 << 16);
    expect(UFFD_FEATURE.WP_ASYNC).toBe(1 << 15);
    expect(Object.values(UFFD_FEATURE).reduce((a, b) => a | b, 0)).toBe(0x1ffff);
    expect(Object.values(PAGE_IS).reduce((a, b) => a | b, 0)).toBe(0x1ff);
  });
  it('syscall numbers (x86_64 reference, arm64 for the old calls)', () => {
    expect(sysno('x64')).toMatchObject({ userfaultfd: 323, cachestat: 451, memfd_create: 319, process_madvise: 440 });
    expect(sysno('arm64').userfaultfd).toBe(282);
    expect(() => sysno('ia32')).toThrow(/supports x86_64 and arm64/);
    expect(SYS).toBe(sysno(process.arch));
  });
  it('every syscall number is the kernel headers\' (x86_64: asm/unistd_64.h, arm64: asm-generic/unistd.h)', (ctx) => {
    const headers = { x64: '/usr/include/x86_64-linux-gnu/asm/unistd_64.h', arm64: '/usr/include/asm-generic/unistd.h' } as const;
    const missing = Object.values(headers).filter((h) => !existsSync(h));
    if (missing.length) return skipBecause(ctx, 'syscall numbers against the headers', `${missing.join(', ')} missing (Debian package linux-libc-dev)`);
    for (const [arch, header] of Object.entries(headers)) {
      const text = readFileSync(header, 'utf8');
      const fromHeader = (name: string) => Number(new RegExp(`^#define __NR_${name}\\s+(\\d+)$`, 'm').exec(text)?.[1]);
      const table: Record<string, number> = sysno(arch);
      // (older headers lack the newest calls: cachestat came in Linux 6.5; the rest all are older than 6.1)
      const known = Object.keys(table).filter((k) => !Number.isNaN(fromHeader(k)));
      expect(Object.keys(table).filter((k) => !known.includes(k))).toSatisfy((lacking: string[]) => lacking.every((k) => k === 'cachestat'));
      expect(Object.fromEntries(known.map((k) => [k, fromHeader(k)]))).toEqual(Object.fromEntries(known.map((k) => [k, table[k]])));
    }
  });
});

describe('uffd_msg decoding', () => {
  const msg = (event: number, fill: (b: Buffer) => void) => {
    const b = Buffer.alloc(32);
    b.writeUInt8(event, 0);
    fill(b);
    return decodeUffdMsg(b);
  };
  it('pagefault', () => {
    expect(msg(0x12, (b) => { b.writeBigUInt64LE(3n, 8); b.writeBigUInt64LE(0x7f00dead0000n, 16); b.writeUInt32LE(4242, 24); }))
      .toEqual({ event: 'pagefault', address: 0x7f00dead0000n, flags: 3, write: true, wp: true, minor: false, ptid: 4242 });
  });
  it('fork, remap, remove, unmap, unknown', () => {
    expect(msg(0x13, (b) => b.writeUInt32LE(9, 8))).toEqual({ event: 'fork', ufd: 9 });
    expect(msg(0x14, (b) => { b.writeBigUInt64LE(0x1000n, 8); b.writeBigUInt64LE(0x9000n, 16); b.writeBigUInt64LE(0x2000n, 24); }))
      .toEqual({ event: 'remap', from: 0x1000n, to: 0x9000n, len: 0x2000 });
    expect(msg(0x15, (b) => { b.writeBigUInt64LE(0x1000n, 8); b.writeBigUInt64LE(0x3000n, 16); })).toEqual({ event: 'remove', start: 0x1000n, end: 0x3000n });
    expect(msg(0x16, (b) => { b.writeBigUInt64LE(0x1000n, 8); b.writeBigUInt64LE(0x3000n, 16); })).toEqual({ event: 'unmap', start: 0x1000n, end: 0x3000n });
    expect(msg(0x77, () => {})).toEqual({ event: 'unknown', code: 0x77 });
  });
});
