// The dump's record writer must write the bytes the general encoder writes with the manifest's options, for every
// kind of value and header width, wherever its chunks end; and refuse what it cannot write rather than write it wrong.
import { describe, it, expect } from 'vitest';
import { encode } from '@msgpack/msgpack';
import { MsgpackChunks } from '../src/snapshot/msgpack-writer.js';
import { EncodedRegions, encodeManifest, type SnapshotRegion, type WrittenManifest } from '../src/snapshot/manifest.js';

const OPTS = { useBigInt64: true, ignoreUndefined: true } as const;

function written(values: unknown[], chunkBytes?: number): Buffer {
  const w = new MsgpackChunks(chunkBytes);
  for (const v of values) w.write(v);
  return Buffer.concat(w.bytes());
}

const expected = (values: unknown[]) => Buffer.concat(values.map((v) => encode(v, OPTS)));

/** Every header width (fix, 8, 16 and 32 bits) and every number form, and the edges between them. */
const EVERY_KIND: unknown[] = [
  0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1,
  -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, -(2 ** 40), 1.5, -0.25, -0, NaN, Infinity, -Infinity,
  0n, 1n, 2n ** 64n - 1n, -1n, -(2n ** 63n),
  '', 'a', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(255), 'z'.repeat(256), 'w'.repeat(65535), 'w'.repeat(65536), 'é', 'é'.repeat(16), '☃x', '😀'.repeat(20), 'ab\u0000c',
  true, false, null, undefined,
  new Uint8Array(0), new Uint8Array(255).fill(3), new Uint8Array(256), new Uint8Array(65536).fill(9), Uint32Array.of(1, 2, 0xffffffff),
  new Uint32Array(10).fill(7).subarray(3, 8), BigUint64Array.of(2n ** 64n - 1n, 5n), new Float64Array([1.5, -2]),
  [], [1, 'a', [2, [3]]], Array.from({ length: 15 }, (_, i) => i), Array.from({ length: 16 }, (_, i) => i * 1000), Array.from({ length: 65536 }, (_, i) => i & 0xff),
  {}, { a: 1 }, { 7: 'numeric key first', b: 2 }, { a: undefined, b: null, c: [undefined] },
  Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, i])),
  Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])),
  // 17 keys of which 2 are undefined: 15 entries, a fixmap header
  Object.fromEntries(Array.from({ length: 17 }, (_, i) => [`k${i}`, i % 8 === 0 ? undefined : i])),
  Object.fromEntries(Array.from({ length: 70000 }, (_, i) => [`key${i}`, i])),
];

const FLAGS = [['rd', 'wr', 'mr', 'mw', 'me', 'ac'], ['rd', 'mr', 'mw', 'me', 'sd']];

/** A region record as the dump makes one: its fields in its literal's order, optional ones absent or undefined. */
function region(i: number): SnapshotRegion {
  return {
    start: 0x7f0000000000n + BigInt(i) * 4096n, end: 0x7f0000001000n + BigInt(i) * 4096n, mode: i % 2 ? 'rw-p' : 'r--s', offset: BigInt(i * 4096),
    dev: 'fe:00', inode: i * 7919, path: i % 3 ? null : `/lib/libé${i}.so`, deleted: i % 5 === 0, kind: 'anon-private', backing: 'anon',
    shmem: i % 4 ? undefined : 'memfd', vmFlags: i % 5 ? FLAGS[i % 2]! : ['rd', `x${i}`], file: i % 3 ? undefined : { size: i * 100, mtimeNs: BigInt(i) << 40n },
    smaps: { KernelPageSize: 4096, Rss: i * 4096, Pss: (i * 4096) / 3 },
    object: i % 6 ? undefined : { id: i, offset: BigInt(i) * 4096n },
    runs: i % 11
      ? [{ offset: 0, pages: 1 + (i % 3), verdict: 'data', case: 'A3' }, { offset: 4, pages: 2, verdict: 'unreadable', case: 'U1', reason: 'EIO' }]
      : { blocks: [{ offset: i, size: 40, count: 3, firstOffset: 0, dataBefore: 0, dataPages: 7 }], cases: ['A3'], reasons: [] },
    refs: i % 7 ? Uint32Array.from({ length: i % 40 }, (_, j) => i + j) : [{ offset: i * 512, size: 77, count: 3 }],
  } as SnapshotRegion;
}

describe('MsgpackChunks', () => {
  it('writes what @msgpack/msgpack writes, value for value', () => {
    for (const v of EVERY_KIND) expect(written([v]).equals(encode(v, OPTS)), `value ${String(v).slice(0, 40)}`).toBe(true);
  });

  it('writes region records as the general encoder does, however small its chunks (a value then spans several)', () => {
    const records = Array.from({ length: 500 }, (_, i) => region(i));
    const want = expected(records);
    for (const chunk of [1, 7, 64, 4096, 1 << 20]) expect(written(records, chunk).equals(want), `chunks of ${chunk}`).toBe(true);
    expect(written([...EVERY_KIND, ...records], 13).equals(expected([...EVERY_KIND, ...records]))).toBe(true);
  });

  it('writes region records put in any order in address order (EncodedRegions), as the general encoder writes them', () => {
    const records = Array.from({ length: 500 }, (_, i) => region(i));
    const encoded = new EncodedRegions();
    // (put out of order, as their tables settle: written in order)
    for (let i = records.length - 1; i >= 0; i--) encoded.put(i, records[i]!);
    expect(Buffer.concat(encoded.bytes()).equals(expected(records))).toBe(true);
  });

  it('writes a manifest as the general encoder writes it, with region records encoded earlier spliced in', () => {
    const processes = [0, 1, 2].map((k) => ({ pid: 100 + k, comm: `p${k}`, regions: Array.from({ length: k * 40 }, (_, i) => region(i + k)) }));
    // (processes last: where the manifest writes them)
    const whole = { format: 3, id: Buffer.alloc(16, 7), frames: { offset: Float64Array.of(0, 4096.5), size: Uint32Array.of(9, 10) }, objects: [], parent: undefined, stats: { pagesStored: 70000 }, processes };
    const spliced = { ...whole, processes: processes.map((p, k) => {
      if (k === 1) return p;
      const regions = new EncodedRegions();
      p.regions.forEach((r, i) => regions.put(i, r));
      return { ...p, regions };
    }) };
    expect(encodeManifest(spliced as unknown as WrittenManifest).equals(expected([whole]))).toBe(true);
  });

  it('writes random values as the general encoder does', () => {
    let seed = 12345;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    const value = (depth: number): unknown => {
      switch (rand(depth > 3 ? 6 : 9)) {
        case 0: return rand(2) ? rand(2 ** 31) * (rand(2) ? 1 : -1) : (rand(1000) - 500) / 7;
        case 1: return BigInt(rand(2 ** 31)) * BigInt(rand(2 ** 31)) * (rand(2) ? 1n : -1n);
        case 2: return String.fromCharCode(...Array.from({ length: rand(70) }, () => (rand(10) ? 32 + rand(90) : 0xa0 + rand(3000))));
        case 3: return [true, false, null, undefined][rand(4)];
        case 4: return new Uint8Array(rand(300)).map(() => rand(256));
        case 5: return rand(2 ** 32) * 2 ** rand(30);
        case 6: case 7: return Array.from({ length: rand(20) }, () => value(depth + 1));
        default: return Object.fromEntries(Array.from({ length: rand(20) }, (_, i) => [`${['k', 'é', ''][rand(3)]}${i}`, value(depth + 1)]));
      }
    };
    for (let i = 0; i < 2000; i++) {
      const vs = Array.from({ length: 1 + rand(4) }, () => value(0));
      const chunk = [5, 100, 1 << 16][rand(3)];
      expect(written(vs, chunk).equals(expected(vs)), `case ${i}`).toBe(true);
    }
  });

  it('refuses what it cannot write (a Date, a function, a symbol, a cycle, a bigint past 64 bits) with an error, not wrong bytes', () => {
    const cycle: Record<string, unknown> = {};
    cycle.self = cycle;
    for (const v of [new Date(0), () => 1, Symbol('s'), { a: [Symbol('t')] }, cycle, 2n ** 64n, -(2n ** 63n) - 1n]) expect(() => written([v])).toThrow(/msgpack/);
  });

  it('gives nothing back before anything is written, and every write in order after', () => {
    const w = new MsgpackChunks(4);
    expect(w.bytes()).toEqual([]);
    w.write('abc');
    w.write(1);
    expect(Buffer.concat(w.bytes()).equals(expected(['abc', 1]))).toBe(true);
  });
});
