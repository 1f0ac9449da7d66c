// The snapshot's output stream: bytes read back while later ones are still being written (the dedupe path reads
// stored frames back to compare pages), across the boundaries of its two staging buffers.
import { describe, it, expect } from 'vitest';
import { readFileSync, readdirSync, openSync } from 'node:fs';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { OutputFile } from '../src/snapshot/output.js';
import { SnapshotWriter } from '../src/snapshot/writer.js';
import { scanPages } from '../src/native/index.js';
import { scratchDir } from './helpers/scratch.js';

const dir = scratchDir('output');

/** A deterministic generator, so a failure can be replayed. */
function lcg(seed: number): (n: number) => number {
  let x = seed >>> 0;
  return (n) => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return x % n;
  };
}

describe('OutputFile', () => {
  it('reads back any appended range, including ranges across both buffers and the file, while appends go on', async () => {
    const path = join(dir, 'stream');
    const out = OutputFile.create(path);
    const rand = lcg(7);
    const expected = Buffer.alloc(40 << 20);
    let size = 0;
    const check = (pos: number, len: number) => {
      const got = out.readAt(pos, len);
      if (!got?.equals(expected.subarray(pos, pos + len))) throw new Error(`read back [${pos}, ${pos + len}) of ${size} differs`);
    };
    while (size < expected.length - (3 << 20)) {
      const chunk = randomBytes(1 + rand(3 << 20));
      chunk.copy(expected, size);
      // the append may wait for a buffer's write: reads of what came before must hold meanwhile
      const appended = out.append(chunk);
      for (let k = 0; k < 4 && size > 0; k++) {
        const pos = rand(size);
        check(pos, 1 + rand(Math.min(size - pos, 1 << 20)));
      }
      expect(await appended).toBe(size);
      size += chunk.length;
      check(Math.max(0, size - chunk.length - 4096), Math.min(size, chunk.length + 4096)); // across the newest bytes
    }
    for (let edge = 8 << 20; edge < size; edge += 8 << 20) check(edge - 5000, 10000);
    expect(() => out.readAt(size - 10, 11)).toThrow(/beyond/);
    expect(await out.finish()).toBe(size);
    await out.close();
    expect(readFileSync(path).equals(expected.subarray(0, size))).toBe(true);
  });
});

describe('OutputFile as a stream', () => {
  it('writes every byte in order to a pipe, and reads back only what its buffers still hold', async () => {
    const fifo = join(dir, 'fifo');
    const copy = join(dir, 'copied');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const reader = spawn('sh', ['-c', `cat '${fifo}' > '${copy}'`]);
    const fd = openSync(fifo, 'w'); // (waits for cat to open its end)
    const out = OutputFile.stream(fd, 'the pipe', { ownsFd: true, regularFile: false });
    const rand = lcg(11);
    const expected = Buffer.alloc(40 << 20);
    let size = 0;
    while (size < expected.length - (3 << 20)) {
      const chunk = randomBytes(1 + rand(3 << 20));
      chunk.copy(expected, size);
      expect(await out.append(chunk)).toBe(size);
      size += chunk.length;
      // the newest bytes are always still in the buffers (at least the one filling)
      const tail = Math.min(size, 1 << 20);
      expect(out.readAt(size - tail, tail)?.equals(expected.subarray(size - tail, size))).toBe(true);
    }
    expect(out.readAt(0, 4096)).toBeNull();
    expect(await out.finish()).toBe(size);
    await out.close();
    expect(await new Promise((done) => reader.on('close', done))).toBe(0);
    expect(readFileSync(copy).equals(expected.subarray(0, size))).toBe(true);
  });
});

describe('SnapshotWriter dedupe', () => {
  it('finds a repeat of a page whose frame straddles a staging-buffer boundary', async () => {
    // 96 frames of incompressible pages (each ~256 KiB compressed, so frames cross every 8 MiB boundary), then a
    // repeat of one page of every frame: each must be found (read back from the output) and stored once.
    const path = join(dir, 'dedupe.psnap');
    const w = SnapshotWriter.create(path, { framePages: 64 });
    const frames = 96;
    const pages = randomBytes(frames * 64 * 4096);
    const store = async (buf: Buffer) => {
      const n = buf.length / 4096;
      const words = new Uint32Array(2 * n);
      scanPages(buf, n, 4096, w.seed, new BigUint64Array(words.buffer), new Uint8Array(n));
      const refs = new Uint32Array(n);
      await w.store(buf, n, words, refs);
      return refs;
    };
    await store(pages);
    const repeats = Buffer.concat(Array.from({ length: frames }, (_, f) => pages.subarray((f * 64 + 13) * 4096, (f * 64 + 14) * 4096)));
    const refs = await store(repeats);
    expect(Array.from(refs)).toEqual(Array.from({ length: frames }, (_, f) => f * 64 + 13));
    expect(w.dedupedPages).toBe(frames);
    expect(w.storedPages).toBe(frames * 64);
    await w.abort();
  });
});

describe('SnapshotWriter dedupe within one call', () => {
  it('finds a repeat of a page stored earlier in the same call, before and after it reaches the frame', async () => {
    const w = SnapshotWriter.create(join(dir, 'same-call.psnap'), { framePages: 4 });
    const [a, b, c, d, e] = Array.from({ length: 5 }, () => randomBytes(4096));
    // frames of 4: a b c d | e ...; repeats of b (still uncopied, then in the frame), of a (in flight) and of e
    const buf = Buffer.concat([a!, b!, b!, c!, d!, a!, e!, e!, c!]);
    const n = buf.length / 4096;
    const words = new Uint32Array(2 * n);
    scanPages(buf, n, 4096, w.seed, new BigUint64Array(words.buffer), new Uint8Array(n));
    const refs = new Uint32Array(n);
    await w.store(buf, n, words, refs);
    expect(Array.from(refs)).toEqual([0, 1, 1, 2, 3, 0, 4, 4, 2]);
    expect(w.storedPages).toBe(5);
    expect(w.dedupedPages).toBe(4);
    await w.abort();
  });
});

describe('SnapshotWriter abort', () => {
  it('refuses to store afterwards, even a page it would only compare with one in a (now unmapped) frame slot', async () => {
    const w = SnapshotWriter.create(join(dir, 'aborted.psnap'), { framePages: 64 });
    const page = randomBytes(4096);
    const words = new Uint32Array(2);
    scanPages(page, 1, 4096, w.seed, new BigUint64Array(words.buffer), new Uint8Array(1));
    await w.store(page, 1, words, new Uint32Array(1)); // stays in the frame being filled
    await w.abort();
    await expect(w.store(page, 1, words, new Uint32Array(1))).rejects.toThrow(/aborted/);
    expect(readdirSync(dir).filter((f) => f.includes('aborted'))).toEqual([]);
  });
});
