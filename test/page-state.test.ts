// Decoding pagemap entries: the raw values observed on this kernel (kernel-semantics.md §1.1).
import { describe, it, expect } from 'vitest';
import { decodeEntry, swapTypeLayout, detailOf, parseConfig, kernelConfig, type DecodeContext } from '../src/proc/index.js';

const thisKernel = swapTypeLayout({ DEVICE_PRIVATE: false, MIGRATION: true, MEMORY_FAILURE: false, MEM_SOFT_DIRTY: false }, 'test');
const distro = swapTypeLayout({ DEVICE_PRIVATE: true, MIGRATION: true, MEMORY_FAILURE: true, MEM_SOFT_DIRTY: true }, 'test');

const ctx = (o: Partial<DecodeContext> = {}): DecodeContext => ({
  swapTypes: thisKernel, framesVisible: true, zeroPfn: 0x3b34, anonymous: true, hugetlb: false, writeProtected: false, ...o,
});
const dec = (raw: bigint, c = ctx()) => decodeEntry(Number(raw >> 32n), Number(raw & 0xffffffffn), c);

describe('swap type layout', () => {
  it('this kernel: 28 swap areas, migration 28-30, marker 31', () => {
    expect(thisKernel).toMatchObject({ maxSwapfiles: 28, hwpoison: null, migration: { read: 28, readExclusive: 29, write: 30 }, device: null, marker: 31 });
  });
  it('typical distro: 24 areas, hwpoison 24, migration 25-27, device 28-30', () => {
    expect(distro).toMatchObject({ maxSwapfiles: 24, hwpoison: 24, migration: { read: 25, write: 27 }, device: { write: 28, read: 29, exclusive: 30 } });
  });
});

describe('decodeEntry with CAP_SYS_ADMIN', () => {
  it('markers', () => {
    expect(dec(0x420000000000003fn)).toEqual({ state: 'uffd-wp-marker', uffdWp: false });
    expect(dec(0x400000000000005fn).state).toBe('poison-marker');
    expect(dec(0x440000000000009fn).state).toBe('guard');
  });
  it('real swap, migration, zero pages', () => {
    expect(dec(0x4000000000000020n).state).toBe('swap');
    expect(dec(0x400000000226841en).state).toBe('migration');
    expect(dec(0x400000000226841en, ctx({ swapTypes: distro })).state).toBe('device');
    expect(dec(0x8000000000003b34n).state).toBe('zero');
    // the huge zero page claims PM_FILE (case A7): in an anonymous region that is a zero page, not a file page
    expect(dec(0xa000000000572c07n).state).toBe('zero');
    expect(dec(0xa000000000572c07n, ctx({ anonymous: false })).state).toBe('file');
  });
  it('present data keeps the uffd-wp bit; none is none', () => {
    expect(dec(0x8300000000001234n)).toEqual({ state: 'data', uffdWp: true });
    expect(dec(0n).state).toBe('none');
  });
  it('hugetlb shows a uffd-wp marker as bit 57 alone', () => {
    expect(dec(1n << 57n, ctx({ hugetlb: true, anonymous: false })).state).toBe('uffd-wp-marker');
  });
  it('a swap type the config leaves ambiguous is swap-unknown', () => {
    const assumed = { ...distro, hwpoison: null, migration: null, device: null, ambiguous: [24, 25, 26, 27, 28, 29, 30] };
    expect(dec(0x400000000226841en, ctx({ swapTypes: assumed })).state).toBe('swap-unknown');
  });
});

describe('decodeEntry without CAP_SYS_ADMIN (frames read as 0)', () => {
  const c = ctx({ framesVisible: false, zeroPfn: null });
  it('present page shows 0x8100…: data, zero page not detectable', () => {
    expect(dec(0x8100000000000000n, c).state).toBe('data');
  });
  it('swap-like entries cannot be told apart, but guard can', () => {
    expect(dec(0x4000000000000000n, c).state).toBe('swap-unknown');
    expect(dec(0x4400000000000000n, c).state).toBe('guard');
  });
});

describe('detailOf', () => {
  it('splits PFN, swap type and offset', () => {
    const d = detailOf(0x1000n, 0x400000000226841en, ctx(), false, null);
    expect(d).toMatchObject({ swapped: true, present: false, swapType: 30, swapOffset: 0x113420n, pfn: null, state: 'migration' });
    const p = detailOf(0x1000n, 0x8100000000012345n, ctx(), false, null);
    expect(p).toMatchObject({ present: true, exclusive: true, pfn: 0x12345n, swapType: null });
  });
});

describe('kernel config', () => {
  it('parses CONFIG_ lines and ignores the rest', () => {
    expect(parseConfig('# CONFIG_MEMORY_FAILURE is not set\nCONFIG_MIGRATION=y\nCONFIG_NR_CPUS=64\n\nnoise')).toEqual({ MIGRATION: 'y', NR_CPUS: '64' });
  });
  it('this machine has a readable config whose layout puts the pte marker at 31', (ctx) => {
    const k = kernelConfig();
    expect(k.swapTypes.marker).toBe(31);
    const f = k.flags;
    if (f === null) {
      console.log('SKIP kernel config check: no /proc/config.gz or /boot/config-* here');
      return ctx.skip('no kernel config readable here');
    }
    expect(k.swapTypes).toEqual(swapTypeLayout(f, k.swapTypes.source));
    expect(k.swapTypes.maxSwapfiles).toBe(32 - 1 - (f.MIGRATION ? 3 : 0) - (f.DEVICE_PRIVATE ? 3 : 0) - (f.MEMORY_FAILURE ? 1 : 0));
  });
});
