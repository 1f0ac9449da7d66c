// PageWriter (restore/direct.ts): stored pages written into a file, consecutive positions gathered into one pwritev.
// What it gathers are views of decoded frames, which the decoder reuses for the next frame it decodes; a write
// that stops short goes on from where it stopped.
import { describe, it, expect, beforeAll } from 'vitest';
import { closeSync, ftruncateSync, fstatSync, readSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { FrameDecoder } from '../src/snapshot/frame-decoder.js';
import { PageWriter, writePages } from '../src/restore/direct.js';
import { RestoreHost } from '../src/restore/host.js';
import { memfdCreate, MFD } from '../src/native/index.js';
import { fn } from '../src/native/libc.js';
import { dumpFixture } from './helpers/scenario.js';
import { scratchDir } from './helpers/scratch.js';

const dir = scratchDir('page-writer');
let file: string;

beforeAll(async () => {
  // 1 MiB of bench content in private memory: about 240 stored pages, four frames
  file = join(dir, 'mix.psnap');
  await dumpFixture(file, ['bench-mix'], { sizeMiB: 1 });
}, 60_000);

/** The reader, and a decoder keeping one frame and nothing decoded again (every other frame evicts it). */
function withDecoder<T>(f: (reader: SnapshotReader, decoder: FrameDecoder) => T): T {
  const reader = SnapshotReader.open(file);
  const source = reader.frameSource();
  const decoder = new FrameDecoder(source.paths, source.frames, reader.pageSize, 1, undefined, 0);
  try {
    return f(reader, decoder);
  } finally {
    decoder.close();
    reader.close();
  }
}

const readAt = (fd: number, at: number, len: number) => {
  const b = Buffer.alloc(len);
  b.fill(0, readSync(fd, b, 0, len, at));
  return b;
};

describe('PageWriter', () => {
  it('pages from frames decoded in turn, at consecutive positions: each position holds its page', () => {
    withDecoder((reader, decoder) => {
      expect(decoder.count).toBeGreaterThanOrEqual(4);
      const ps = reader.pageSize;
      // back and forth between frames, as deduplicated pages go: each page written after it evicts the one before
      const { firstPage, pages } = decoder.frames;
      const order = Array.from({ length: 96 }, (_, i) => firstPage[i % 4]! + ((i * 7) % pages[i % 4]!));
      const fd = memfdCreate('page-writer', 0);
      try {
        const out = new PageWriter(decoder, fd, 'the test file');
        order.forEach((src, i) => out.pages(src, 1, i * ps));
        // a stretch of 100 pages across frames, after them
        out.pages(10, 100, order.length * ps);
        out.flush();
        const wrong = [...order, ...Array.from({ length: 100 }, (_, k) => 10 + k)].flatMap((src, i) => (readAt(fd, i * ps, ps).equals(reader.page(src)) ? [] : [i]));
        expect(wrong).toEqual([]);
      } finally {
        closeSync(fd);
      }
    });
  });

  it('a page past `limit` is cut where the file ends', () => {
    withDecoder((reader, decoder) => {
      const ps = reader.pageSize;
      const fd = memfdCreate('page-writer', 0);
      try {
        const limit = 2 * ps + 100;
        const out = new PageWriter(decoder, fd, 'the test file', limit);
        out.pages(0, 4, 0);
        out.flush();
        expect(fstatSync(fd).size).toBe(limit);
        expect(readAt(fd, 2 * ps, 100)).toEqual(reader.page(2).subarray(0, 100));
      } finally {
        closeSync(fd);
      }
    });
  });

  it('a short write: what fits is written, then the error names where the file stopped growing', () => {
    withDecoder((reader, decoder) => {
      const ps = reader.pageSize;
      // a memfd sealed at 5 pages: a write across its end writes what fits, the next one is refused
      const fd = memfdCreate('page-writer', MFD.ALLOW_SEALING);
      try {
        const size = 5 * ps;
        ftruncateSync(fd, size);
        const F_ADD_SEALS = 1033;
        const F_SEAL_GROW = 0x4;
        expect(fn.fcntl(fd, F_ADD_SEALS, 'int', F_SEAL_GROW)).toBe(0);
        const out = new PageWriter(decoder, fd, 'the test file');
        out.pages(0, 8, 0);
        expect(() => out.flush()).toThrow(`write the test file at 0x${size.toString(16)}: EPERM`);
        const wrong = [0, 1, 2, 3, 4].filter((i) => !readAt(fd, i * ps, ps).equals(reader.page(i)));
        expect(wrong).toEqual([]);
        expect(fstatSync(fd).size).toBe(size);
      } finally {
        closeSync(fd);
      }
    });
  });

  it('/proc/PID/mem of a process that has exited: an error, not a write tried for ever', () => {
    // (in a process of its own: a write retried for ever would block this one, where no test timeout can end it)
    const src = (f: string) => JSON.stringify(join(import.meta.dirname, '..', 'src', ...f.split('/')));
    const script = `import { spawn } from 'node:child_process';
      import { openSync } from 'node:fs';
      import { SnapshotReader } from ${src('snapshot/reader.ts')};
      import { FrameDecoder } from ${src('snapshot/frame-decoder.ts')};
      import { PageWriter } from ${src('restore/direct.ts')};
      const sleeper = spawn('sleep', ['100']);
      const fd = openSync('/proc/' + sleeper.pid + '/mem', 'r+');
      sleeper.kill('SIGKILL');
      await new Promise((resolve) => sleeper.once('exit', resolve));
      const reader = SnapshotReader.open(${JSON.stringify(file)});
      const source = reader.frameSource();
      const out = new PageWriter(new FrameDecoder(source.paths, source.frames, reader.pageSize), fd, 'the sleeper');
      out.pages(0, 2, 0x400000);
      try { out.flush(); console.log('written'); } catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 30_000, killSignal: 'SIGKILL' });
    expect({ signal: r.signal, stderr: r.stderr }).toEqual({ signal: null, stderr: '' });
    expect(JSON.parse(r.stdout)).toEqual({ code: 'EIO', message: 'write the sleeper at 0x400000: nothing was written' });
  });
});

describe('writePages', () => {
  it('into a restore host that has exited: says the host is gone', async () => {
    const host = RestoreHost.spawn();
    try {
      process.kill(host.pid, 'SIGKILL');
      await host.exited();
      withDecoder((_, decoder) => {
        expect(() => writePages(host, decoder, [{ addr: 0x400000n, pages: 1, src: 0 }])).toThrow(/^the restore host exited while pages were written into it/);
      });
    } finally {
      host.kill();
    }
  });
});
