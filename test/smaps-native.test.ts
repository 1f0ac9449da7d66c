// The native smaps parser (native/smaps.c, through SmapsScanner and SmapsRecords) must give what the JavaScript
// parser gives for the same bytes: for a live process's smaps, for every odd name the kernel prints, and for text it
// leaves to the JavaScript parser (errors and their line numbers included), whatever size its pieces are. And it must
// parse a live process's VMAs itself: one it hands back costs the dump's freeze the JavaScript parser again.
import { describe, it, expect, afterAll } from 'vitest';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SmapsScanner, recordAt, R } from '../src/native/index.js';
import { SmapsRecords, parseSmaps, type SmapsEntry } from '../src/proc/index.js';

const dir = mkdtempSync(join(tmpdir(), 'pagesnap-smaps-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/** `text` read back through the native parser in pieces of `chunk` bytes: the entries, and how many it parsed itself. */
function scanned(text: string | Buffer, chunk: number): { entries: SmapsEntry[]; native: number } {
  const path = join(dir, `smaps-${files++}`);
  writeFileSync(path, text);
  const fd = openSync(path, 'r');
  try {
    const scanner = new SmapsScanner(fd, path, chunk);
    const records = new SmapsRecords();
    const entries: SmapsEntry[] = [];
    let native = 0;
    for (;;) {
      const piece = scanner.read();
      for (let i = 0; i < piece.records; i++) native += piece.f64[recordAt(i) + R.Regular] === 1 ? 1 : 0;
      entries.push(...records.entries(piece));
      if (piece.eof) return { entries, native };
    }
  } finally {
    closeSync(fd);
  }
}

/** What parseSmaps gives, or the message it throws. */
function parsed(text: string): SmapsEntry[] | string {
  try {
    return parseSmaps(text);
  } catch (e) {
    return (e as Error).message;
  }
}

function same(text: string, chunks = [2048, 4099, 1 << 18]): number {
  const want = parsed(text);
  let native = 0;
  for (const chunk of chunks) {
    if (typeof want === 'string') {
      expect(() => scanned(text, chunk), `pieces of ${chunk}`).toThrow(want);
      continue;
    }
    const got = scanned(text, chunk);
    expect(got.entries, `pieces of ${chunk}`).toEqual(want);
    native = got.native;
  }
  return native;
}

const FIELDS = ['Size', 'KernelPageSize', 'MMUPageSize', 'Rss', 'Pss', 'Shared_Clean', 'Private_Dirty', 'Swap', 'Locked'];
const block = (i: number) => `${FIELDS.map((f, k) => `${`${f}:`.padEnd(16)}${String(i * 4 + k).padStart(8)} kB`).join('\n')}\nTHPeligible:    ${i % 2}\nVmFlags: rd wr mr mw me ${i % 3 ? 'ac ' : 'sd '}\n`;
const header = (i: number, name = '') => {
  const prefix = `7f${(i * 16).toString(16).padStart(10, '0')}-7f${(i * 16 + 1).toString(16).padStart(10, '0')} rw-p 00000000 00:00 0 `;
  return name ? `${prefix.padEnd(73)}${name}` : prefix;
};

describe('the native smaps parser', () => {
  it('gives what the JavaScript parser gives for a live process\'s smaps, and parses every VMA of it itself', () => {
    const text = readFileSync('/proc/self/smaps', 'utf8');
    const n = parseSmaps(text).length;
    expect(n).toBeGreaterThan(20);
    expect(same(text)).toBe(n);
  });

  it('gives what the JavaScript parser gives for every odd name the kernel prints (spaces, \\012, deleted, long prefixes)', () => {
    const lines = readFileSync(new URL('./samples/maps.txt', import.meta.url), 'utf8').split('\n').filter(Boolean);
    const text = lines.map((l, i) => `${l}\n${block(i)}`).join('');
    expect(same(text)).toBe(lines.length);
    const names = scanned(text, 4096).entries.map((e) => e.name);
    expect(names).toEqual(expect.arrayContaining(['  two leading spaces.so', '/tmp/new\nline.dat', '[vsyscall]', null]));
  });

  it('hands a VMA in any other form to the JavaScript parser, and parses those after it itself', () => {
    const regular = Array.from({ length: 6 }, (_, i) => `${header(i, i % 2 ? `/lib/x${i}.so` : '')}\n${block(i)}`);
    const manyFields = `${header(24)}\n${Array.from({ length: 60 }, (_, k) => `F${k}:  ${k} kB`).join('\n')}\n`;
    const odd = [
      `${header(10)}\n${block(10).replace('Rss:', 'NotRss:')}`, // a field of another name
      `${header(11)}\n${block(11)}NewCounter:   12 kB\n`, // one more field
      `${header(12)}\n${block(12).replace(/^Swap:.*\n/m, '')}`, // one less
      `${header(25)}\n${block(25).replace(/^THPeligible:.*\n/m, '')}`, // one less, the last: the others as a regular one's
      `${header(13)}\n${block(13).replace(/Locked:.*kB/, 'Locked: 1234567890123456 kB')}`, // 16 digits
      `${header(14)}\n${block(14).replace(/ kB\n/, ' kB  \n')}`, // trailing spaces
      `${header(15)}\n${block(15)}VmFlags: rd \n`, // two VmFlags lines
      `${header(16)}\n${block(16).replace(/VmFlags.*\n/, '')}`, // none
      `7f0000001000-7f0000002000 rw-p 00000000 00:00 0    not padded\n${block(17)}`,
      `7f0000003000-7f0000004000 rw-p 00000000 00:00 123456789012345678\n${block(18)}`, // inode past 15 digits
      `${header(19)}\n\n${block(19)}\n`, // empty lines
      `7f00000000000000a-7f00000000000000b rw-p 00000000 00:00 0 \n${block(20)}`, // 17 hex digits
      `${header(21)}\n${block(21).replace('Rss:', 'Rs:')}`, // a field named as the start of another's name
      `${header(22)}\n${block(22).replace('Rss:', 'Rssx:')}`,
      `7f0000005000-7f0000006000 rw-p 00000000 00:00 0    ${'n'.repeat(60)}\n${block(23)}`, // a name past the column, not padded to it
      manyFields, // more fields than a record holds
    ];
    const text = [...regular, ...odd, ...regular].join('');
    expect(parsed(text)).toBeInstanceOf(Array);
    expect(same(text)).toBe(2 * regular.length + 2 /* the ones with empty lines and with no VmFlags */);
    // the first VMA too many fields for a record: the names are learnt from the next
    expect(same([manyFields, ...regular].join(''))).toBe(regular.length);
  });

  it('throws what the JavaScript parser throws, naming the same line', () => {
    const good = `${header(1)}\n${block(1)}`;
    for (const bad of [
      `Rss: 4 kB\n${good}`,
      `${good}${header(2)}\nRss: lots\n`,
      `${good}${header(3)}\nRss: 4 MB\n`,
      `${good}${header(4)}\n: 4 kB\n`,
      `${good}7f0000002000-7f0000001000 rw-p 00000000 00:00 0 \n${block(5)}`, // end below start
      `${good}${good}7f0000002000-7f0000003000 rw-p 00000000 00:00 0x\n${block(6)}`,
      `${good}abc\n${block(7)}`,
      `${good}7f0000002000-7f0000003000 rw-x 00000000 00:00 0 \n${block(8)}`,
    ]) {
      expect(typeof parsed(bad), bad.slice(0, 60)).toBe('string');
      same(bad);
    }
  });

  it('parses a last VMA without a final newline, an empty file, and pieces smaller than most VMAs', () => {
    const text = Array.from({ length: 40 }, (_, i) => `${header(i, `/x/${'y'.repeat(i * 13)}`)}\n${block(i)}`).join('');
    expect(same(text.slice(0, -1), [1100, 1777, 2500])).toBe(40);
    expect(scanned('', 4096).entries).toEqual([]);
    // more VMAs in a piece than a piece's records hold: the rest in the next, the last one too
    expect(same(Array.from({ length: 3000 }, (_, i) => `${header(i)}\nRss:  4 kB\n`).join(''), [1 << 18])).toBe(3000);
    // a piece too small for a single VMA: an error, not a loop
    expect(() => scanned(text, 256)).toThrow(/longer than 256 bytes/);
  });

  it('keeps bytes that are not UTF-8 as the JavaScript parser decodes them', () => {
    const bytes = Buffer.concat([Buffer.from(header(1, '/tmp/a')), Buffer.from([0xff, 0xc3, 0x28, 0x20]), Buffer.from(`b\n${block(1)}${header(2, '/tmp/\u00e9\u2603')}\n${block(2)}`)]);
    const want = parseSmaps(bytes.toString('utf8'));
    for (const chunk of [1000, 1 << 18]) expect(scanned(bytes, chunk).entries).toEqual(want);
  });

  it('gives what the JavaScript parser gives (entries or the error) for thousands of random changes to real smaps', () => {
    const lines = readFileSync(new URL('./samples/maps.txt', import.meta.url), 'utf8').split('\n').filter(Boolean);
    const base = Buffer.from(lines.slice(0, 8).map((l, i) => `${l}\n${block(i)}`).join(''));
    let seed = 7;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) >>> 0) % n);
    // bytes that matter to a parser: digits, hex, separators, a capital, a space, a newline, a colon, high bytes
    const alphabet = Buffer.from('0123456789abcdefxX- :\nkBVR_\u00ff\u0080');
    for (let i = 0; i < 2000; i++) {
      const b = Buffer.from(base);
      for (let k = 1 + rand(3); k > 0; k--) {
        const at = rand(b.length);
        const op = rand(3);
        if (op === 0) b[at] = alphabet[rand(alphabet.length)]!;
        else if (op === 1) b.copyWithin(at, at + 1 + rand(8)); // (a cut: the end repeats)
        else b[at] = rand(256);
      }
      // (as a dump reads it: bytes, decoded as UTF-8)
      const want = parsed(b.toString('utf8'));
      const got = (() => {
        try {
          return scanned(b, 1 << 18).entries;
        } catch (e) {
          return (e as Error).message;
        }
      })();
      expect(got, `case ${i}`).toEqual(want);
    }
  });
});
