// A manifest decoded with its region records left as bytes must be what decoding it whole gives, record for record,
// for every kind of msgpack value; and bytes that are not one msgpack value must be refused, never misread.
import { describe, it, expect } from 'vitest';
import { encode, decode, ExtData } from '@msgpack/msgpack';
import { decodeManifestTree, RecordList } from '../src/snapshot/msgpack-reader.js';

const OPTS = { useBigInt64: true } as const;

/** Every msgpack type and header width: fix, 8-, 16- and 32-bit forms. */
function everyKind(seed: number): unknown {
  return {
    n: [0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32, -1, -32, -33, -129, -32769, -(2 ** 31) - 1, 1.5, -0.25, seed],
    big: [2n ** 63n - 1n, -(2n ** 63n), 2n ** 40n],
    s: ['', 'a', 'x'.repeat(31), 'y'.repeat(32), 'z'.repeat(256), 'w'.repeat(65536), 'é☃'],
    b: [new Uint8Array(0), new Uint8Array(255).fill(seed & 0xff), new Uint8Array(256), new Uint8Array(65536)],
    e: [1, 2, 4, 8, 16, 3, 300, 70000].map((len) => new ExtData(5, new Uint8Array(len).fill(7))),
    flags: [true, false, null],
    when: [new Date(1700000000123), new Date(-1)],
    repeated: ['rd', 'wr', 'rd', 'anon', 'x'.repeat(16), 'x'.repeat(16), 'x'.repeat(17)],
    nested: { a: [[], {}, [[1]], Array.from({ length: 20 }, (_, i) => i), Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`k${i}`, i]))] },
    7: 'a numeric key',
  };
}

describe('decodeManifestTree', () => {
  it('gives what decoding whole gives, with each process\'s regions decoded one at a time', () => {
    const manifest = {
      format: 1, before: everyKind(1),
      processes: [
        { pid: 1, regions: Array.from({ length: 3 }, (_, i) => everyKind(i)), after: everyKind(2) },
        { regions: [], pid: 2 },
        // (more than 65535: the 32-bit array header)
        { pid: 3, regions: Array.from({ length: 70000 }, (_, i) => (i % 3 ? i * 4097 : -i)) },
      ],
      after: everyKind(3),
    };
    const raw = encode(manifest, OPTS);
    const whole = decode(raw, OPTS) as typeof manifest;
    const tree = decodeManifestTree(raw) as { processes: { regions: RecordList }[] };
    for (const [i, p] of tree.processes.entries()) {
      expect(p.regions).toBeInstanceOf(RecordList);
      expect(p.regions.length).toBe(whole.processes[i]!.regions.length);
      const regions = Array.from({ length: p.regions.length }, (_, j) => p.regions.at(j));
      expect({ ...p, regions }).toEqual(whole.processes[i]);
    }
    expect({ ...tree, processes: whole.processes }).toEqual(whole);
  });

  it('decodes as it is what is not a map, an array or a list where one is expected (the checks name it)', () => {
    for (const m of [7, 'x', [1, 2], { processes: 5 }, { processes: [3, { regions: 'no' }] }, { constructor: [1], toString: { regions: [2] } }]) {
      expect(decodeManifestTree(encode(m))).toEqual(m);
    }
  });

  it('refuses bytes that are not one msgpack value: cut short anywhere, followed by more, or an unused byte', () => {
    const raw = encode({ a: 1, processes: [{ pid: 1, regions: [{ x: 'y'.repeat(40) }, { b: new Uint8Array(300) }] }], z: [1.5, 2n ** 60n] }, OPTS);
    for (let n = 0; n < raw.length; n++) expect(() => decodeManifestTree(raw.subarray(0, n)), `cut at ${n}`).toThrow();
    expect(() => decodeManifestTree(Uint8Array.of(...raw, 0))).toThrow(/1 bytes follow the manifest/);
    expect(() => decodeManifestTree(Uint8Array.of(0x81, 0xa1, 0x61, 0xc1))).toThrow();
    expect(() => decodeManifestTree(encode({ ['__proto__']: 1 }))).toThrow(/__proto__/);
    expect(() => decodeManifestTree(Uint8Array.of(0x81, 0xa1, 0x61, ...Array(100).fill(0x91), 0x90))).toThrow(/nest more than 64 deep/);
    // a header claiming more than the bytes hold is found out while skipping, not by allocating
    expect(() => decodeManifestTree(Uint8Array.of(0x81, 0xa9, ...Buffer.from('processes'), 0x91, 0x81, 0xa7, ...Buffer.from('regions'), 0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0))).toThrow(/ends inside a value/);
  });
});
