// Golden snapshots: files written by earlier versions must read the same forever.
import { describe, it, expect } from 'vitest';
import { fileURLToPath } from 'node:url';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { patternPage } from '../fixtures/pattern.js';
import { BASE } from './helpers/synthetic.js';
import { cli, cliJson } from './helpers/cli.js';

const GOLDEN_V1 = fileURLToPath(new URL('../snapshots/golden-v1.psnap', import.meta.url));

describe('golden-v1.psnap (format 1)', () => {
  it('verifies and reads back its layout', () => {
    const r = SnapshotReader.open(GOLDEN_V1);
    try {
      expect(r.header.version).toBe(1);
      expect(r.verify()).toBeNull();
      const p = r.process(42);
      expect(p.comm).toBe('synthetic');
      const page = (n: number) => r.read(p, BASE + BigInt(n) * 4096n, 4096);
      expect(page(0).equals(patternPage(1, 0))).toBe(true);
      expect(page(1).equals(patternPage(2, 0))).toBe(true);
      expect(page(2).equals(patternPage(1, 0))).toBe(true);
      for (const z of [3, 4, 5, 6]) expect(page(z).every((b) => b === 0)).toBe(true);
      expect(() => page(7)).toThrow(/clean page of the mapped file/);
      [3, 4, 5, 6].forEach((seed, i) => expect(page(8 + i).equals(patternPage(seed, 0))).toBe(true));
      expect(r.storedPages).toBe(6);
    } finally {
      r.close();
    }
  });

  it('the CLI shows and verifies it', () => {
    expect(cli(['verify', GOLDEN_V1]).code).toBe(0);
    const s = cliJson(['show', GOLDEN_V1]);
    expect(s.processes[0]).toMatchObject({ pid: 42, totals: { data: 7, zero: 2, hole: 2, file: 1 } });
  });
});

const GOLDEN_V2 = fileURLToPath(new URL('../snapshots/golden-v2-child.psnap', import.meta.url));

describe('golden-v2-child.psnap (format 2: incremental, its parent golden-v1.psnap beside it)', () => {
  it('opens its parent by relative path, verifies the chain, and reads changed and unchanged pages', () => {
    const r = SnapshotReader.open(GOLDEN_V2);
    try {
      expect(r.header.version).toBe(2);
      expect(r.parent?.path).toBe(GOLDEN_V1);
      expect(r.storedPages).toBe(2);
      expect(r.verify()).toBeNull();
      const p = r.process(42);
      const page = (n: number) => r.read(p, BASE + BigInt(n) * 4096n, 4096);
      [1, 7, 1].forEach((seed, i) => expect(page(i).equals(patternPage(seed, 0))).toBe(true));
      [8, 4, 5, 6].forEach((seed, i) => expect(page(8 + i).equals(patternPage(seed, 0))).toBe(true));
      for (const z of [3, 4, 5, 6]) expect(page(z).every((b) => b === 0)).toBe(true);
    } finally {
      r.close();
    }
  });

  it('diff against its parent names the two changed pages', () => {
    const d = cliJson(['diff', GOLDEN_V1, GOLDEN_V2]);
    expect(d.totals).toMatchObject({ changed: 2, added: 0, removed: 0, unchanged: 5 });
    expect(d.regions[0].ranges.map((x: { start: string; pages: number }) => [x.start, x.pages])).toEqual([
      [`0x${(BASE + 4096n).toString(16)}`, 1], [`0x${(BASE + 8n * 4096n).toString(16)}`, 1],
    ]);
  });
});

const GOLDEN_V3 = fileURLToPath(new URL('../snapshots/golden-v3.psnap', import.meta.url));

describe('golden-v3.psnap (format 3: a region past 2^32 pages, its runs in narrow and wide blocks)', () => {
  it('verifies and reads back its layout', () => {
    const r = SnapshotReader.open(GOLDEN_V3);
    try {
      expect([r.header.version, r.manifest.format]).toEqual([3, 3]);
      expect(r.verify()).toBeNull();
      const p = r.process(43);
      const reg = p.regions[0]!;
      expect(Array.isArray(reg.runs) ? null : reg.runs.blocks.map((b) => [b.firstOffset, b.wide === true])).toEqual([[0, false], [2 ** 32, true], [2 ** 32 + 3, true]]);
      const page = (n: number) => r.read(p, BASE + BigInt(n) * 4096n, 4096);
      expect(page(0).equals(patternPage(1, 0))).toBe(true);
      expect(page(2 ** 32).equals(patternPage(2, 0))).toBe(true);
      expect(page(2 ** 33 + 3).equals(patternPage(1, 0))).toBe(true);
      for (const z of [1, 2 ** 32 - 1, 2 ** 32 + 1, 2 ** 32 + 2, 2 ** 33 + 2]) expect(page(z).every((b) => b === 0)).toBe(true);
      expect(r.storedPages).toBe(2);
    } finally {
      r.close();
    }
  });

  it('the CLI shows and verifies it', () => {
    expect(cli(['verify', GOLDEN_V3]).code).toBe(0);
    const s = cliJson(['show', GOLDEN_V3]);
    expect(s.processes[0]).toMatchObject({ pid: 43, totals: { data: 3, zero: 2, hole: 2 ** 33 - 1 } });
  });
});
