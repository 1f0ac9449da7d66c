// `--json` output is written as it is made (a report of 60000 regions is 36 MB of JSON): it must be exactly the text
// JSON.stringify gives for the report (bigints as hex strings), whatever the report holds.
import { describe, it, expect } from 'vitest';
import { hexBigints, writeJson } from '../src/render/json.js';

function written(v: unknown): { text: string; pieces: number } {
  const pieces: string[] = [];
  writeJson(v, (t) => pieces.push(t));
  return { text: pieces.join(''), pieces: pieces.length };
}

const expected = (v: unknown) => JSON.stringify(v, hexBigints, 2) ?? 'null';

describe('JSON written a chunk at a time', () => {
  it.for([
    ['scalars', [0, -1.5, 1e300, NaN, Infinity, '', 'a"b\\c\n\u0001é😀', true, false, null, undefined, 2n ** 64n - 1n, 0n]],
    ['empty containers', { a: {}, b: [], c: [[]], d: [{}] }],
    ['undefined in objects is left out, in arrays is null', { a: undefined, b: [undefined, 1], c: { d: undefined } }],
    ['keys that need escaping, and Object.prototype names', { 'a"b': 1, '\n': 2, constructor: 3, __proto__x: 4, toString: 5 }],
    ['typed arrays, buffers, dates and maps as JSON.stringify has them', { u: Uint32Array.of(1, 2), b: Buffer.from('hi'), d: new Date(0), m: new Map([[1, 2]]) }],
    ['nesting', { a: [{ b: [1, { c: 2n }] }, [[3]]], e: { f: { g: { h: [] } } } }],
    ['plain containers deep inside, with what needs escaping', { a: { b: { c: 'x"y\ud800', d: [1, 'z', null, -0], e: {}, f: [] } }, g: [['\t', 1e21]] }],
  ] as const)('%s: the text JSON.stringify gives', ([, v]) => {
    expect(written(v).text).toBe(expected(v));
  });

  it('a report far larger than a chunk: the same text, handed on in pieces', () => {
    const regions = Array.from({ length: 20000 }, (_, i) => ({ start: BigInt(i) << 12n, end: (BigInt(i) + 1n) << 12n, kind: 'anon', pages: { changed: i % 3, unchanged: 1 }, ranges: [] }));
    const report = { regions, totals: { changed: 1 } };
    const w = written(report);
    expect(w.text).toBe(expected(report));
    expect(w.pieces).toBeGreaterThan(1);
  });

  it('a long array of long arrays, and what JSON.stringify leaves out of an object', () => {
    const v = { rows: Array.from({ length: 300 }, (_, i) => Array.from({ length: 300 }, (_, j) => (i * j) % 7)), f: () => 1, s: Symbol('x'), big: Buffer.alloc(1000, 1) };
    expect(written(v).text).toBe(expected(v));
  });
});
