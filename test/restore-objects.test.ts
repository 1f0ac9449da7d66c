// Shmem objects filled by the main thread and the fill workers together (object-fill.ts): whoever writes a piece,
// the object holds the snapshot's pages; a piece a worker cannot write is written by the main thread, whose error is
// the one reported.
import { describe, it, expect, beforeAll, afterAll, type TestContext } from 'vitest';
import { readSync } from 'node:fs';
import { join } from 'node:path';
import type { Worker } from 'node:worker_threads';
import { Fixture } from '../fixtures/driver.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { FrameDecoder } from '../src/snapshot/frame-decoder.js';
import { RestoreHost } from '../src/restore/host.js';
import { createObject } from '../src/restore/map.js';
import { planRegions, type ObjectPlan } from '../src/restore/plan.js';
import { ObjectFiller, workObjectJob, type ObjectJob } from '../src/restore/object-fill.js';
import { StreamWorkers } from '../src/restore/streamer.js';
import { restore } from '../src/restore/restore.js';
import { cliJson } from './helpers/cli.js';
import { dumpFixture } from './helpers/scenario.js';
import { damageFrame } from './helpers/damage.js';
import { scratchDir } from './helpers/scratch.js';
import { HostSettings } from '../src/host/settings.js';
import { skipBecause } from './helpers/skip.js';

const dir = scratchDir('restore-objects');
let file: string;
/** the same for a hugetlb object (written through a mapping: hugetlbfs takes no write(2)), or why there is none */
const huge: { file?: string; skip?: string } = {};
const settings = new HostSettings();

beforeAll(async () => {
  // 16 MiB of mixed content in a memfd: 12 MiB of it stored data, a dozen pieces
  file = join(dir, 'memfd.psnap');
  await dumpFixture(file, ['bench-shmem'], { shmemMiB: 16 });
  // 4 huge pages shared, 2 of them data (4 MiB: the least that is shared), and as many again for the restore
  huge.skip = settings.reserveHugepages(8) ?? undefined;
  if (huge.skip) return;
  const h = await Fixture.start(['hugetlb-shared']);
  try {
    huge.skip = h.scenario('hugetlb-shared').skip;
    if (huge.skip) return;
    huge.file = join(dir, 'hugetlb.psnap');
    cliJson(['dump', String(h.pid), '-o', huge.file]);
  } finally {
    await h.stop();
  }
}, 60_000);
afterAll(() => settings.restore());

/** The snapshots to fill objects from: the memfd's, and the hugetlb object's where this machine has one. */
const KINDS = [{ kind: 'memfd' }, { kind: 'hugetlb' }] as const;
function snapshotOf(kind: 'memfd' | 'hugetlb', ctx: TestContext): string {
  if (kind === 'memfd') return file;
  return huge.file ?? skipBecause(ctx, 'hugetlb object', huge.skip ?? 'no hugetlb snapshot was made');
}

/** Open `path`, make its object in a fresh host, and call `f`; everything is closed after. */
function withObject<T>(path: string, f: (s: { reader: SnapshotReader; decoder: FrameDecoder; host: RestoreHost; o: ObjectPlan; hostFd: number }) => T): T {
  const reader = SnapshotReader.open(path);
  const source = reader.frameSource();
  const decoder = new FrameDecoder(source.paths, source.frames, reader.pageSize, 4);
  const host = RestoreHost.spawn();
  try {
    const o = planRegions(reader, reader.process()).objects[0]!;
    return f({ reader, decoder, host, o, hostFd: createObject(host, o) });
  } finally {
    host.kill();
    decoder.close();
    reader.close();
  }
}

/** Pages of the object that differ from the snapshot (data unlike its stored page, a zero page not zero). */
function wrongPages(reader: SnapshotReader, o: ObjectPlan, fd: number): string[] {
  const ps = reader.pageSize;
  const page = Buffer.alloc(ps);
  const wrong: string[] = [];
  for (const { run, offset, pages, src } of reader.stretches(o.object)) {
    if (run.verdict !== 'data' && run.verdict !== 'zero') continue;
    for (let i = 0; i < pages; i++) {
      page.fill(0, readSync(fd, page, 0, ps, (offset + i) * ps));
      const ok = run.verdict === 'data' ? page.equals(reader.page(src! + i)) : page.every((b) => b === 0);
      if (!ok) wrong.push(`${run.verdict} page ${offset + i}`);
    }
  }
  return wrong;
}

/** A decoder the main thread may plan with but never decode with: it proves the workers wrote every piece. */
class PlanningOnly extends FrameDecoder {
  override frame(): Buffer {
    throw new Error('the main thread decoded a frame');
  }
}

/** A "worker" that does its part of each job at once, as the job is posted (so before the main thread claims any). */
const inline = (change: (j: ObjectJob) => ObjectJob = (j) => j) => ({ postMessage: (job: ObjectJob) => workObjectJob(change(job)) });

describe('an object filled by the main thread and the fill workers', () => {
  it.for(KINDS)('$kind: every piece written by a worker: the object holds the snapshot\'s pages', ({ kind }, ctx) => {
    withObject(snapshotOf(kind, ctx), ({ reader, decoder, host, o, hostFd }) => {
      const planning = new PlanningOnly(reader.frameSource().paths, decoder.frames, reader.pageSize);
      try {
        let wrong: string[] = ['not checked'];
        const pages = new ObjectFiller(reader, planning, [inline()]).fill(host, o, hostFd, (fd) => (wrong = wrongPages(reader, o, fd)));
        expect(pages).toBeGreaterThanOrEqual(1024);
        expect(wrong).toEqual([]);
      } finally {
        planning.close();
      }
    });
  });

  it('a worker that cannot write its pieces: the main thread writes them', () => {
    withObject(file, ({ reader, decoder, host, o, hostFd }) => {
      let posted = 0;
      const broken = inline((j) => {
        posted++;
        return { ...j, paths: j.paths.map((p) => `${p}.missing`) };
      });
      let wrong: string[] = ['not checked'];
      new ObjectFiller(reader, decoder, [broken, broken]).fill(host, o, hostFd, (fd) => (wrong = wrongPages(reader, o, fd)));
      expect(posted).toBe(2);
      expect(wrong).toEqual([]);
    });
  });

  it('a damaged frame, with real workers: the main thread throws its error, naming the frame', async () => {
    const damaged = join(dir, 'damaged.psnap');
    const r0 = SnapshotReader.open(file);
    const o0 = planRegions(r0, r0.process()).objects[0]!;
    const last = [...r0.stretches(o0.object)].filter((s) => s.run.verdict === 'data').at(-1)!;
    const k = r0.frameOfPage(last.src! + last.pages - 1);
    r0.close();
    damageFrame(file, damaged, k);
    const workers = await loaded(new StreamWorkers(2));
    try {
      withObject(damaged, ({ reader, decoder, host, o, hostFd }) => {
        expect(() => new ObjectFiller(reader, decoder, workers.fillers).fill(host, o, hostFd)).toThrow(new RegExp(`frame ${k}\\b`));
      });
    } finally {
      await workers.terminate();
    }
  });

  it.for(KINDS)('$kind: with real fill workers: the object holds the snapshot\'s pages', async ({ kind }, ctx) => {
    const path = snapshotOf(kind, ctx);
    const workers = await loaded(new StreamWorkers(2));
    try {
      withObject(path, ({ reader, decoder, host, o, hostFd }) => {
        let wrong: string[] = ['not checked'];
        new ObjectFiller(reader, decoder, workers.fillers).fill(host, o, hostFd, (fd) => (wrong = wrongPages(reader, o, fd)));
        expect(wrong).toEqual([]);
      });
    } finally {
      await workers.terminate();
    }
  });

  it('restore reports the objects\' bytes as they are written, then the memory\'s', async () => {
    const calls: [number, number, string][] = [];
    const r = await restore(file, { profile: false, onProgress: (done, total, what) => calls.push([done, total, what]) });
    const objects = calls.filter((c) => c[2] === 'objects');
    expect(objects.length).toBeGreaterThan(1);
    expect(objects.at(-1)).toEqual([r.bytes.objects, r.bytes.objects, 'objects']);
    expect(objects.filter(([done, total], i) => done > total || (i > 0 && done < objects[i - 1]![0]))).toEqual([]);
    // every report on the objects comes before any on the memory
    expect(calls.findIndex((c) => c[2] === 'memory')).toBe(objects.length);
    expect(calls.at(-1)![0]).toBe(calls.at(-1)![1]);
  });

  it('restore --verify, eager and lazy: every page of the object verifies', () => {
    for (const lazy of [[], ['--lazy']]) {
      const r = cliJson(['restore', file, '--verify', '--no-profile', ...lazy]);
      expect(r.verify.mismatches, JSON.stringify(r.verify.first)).toBe(0);
      expect(r.bytes.objects).toBeGreaterThanOrEqual(12 << 20);
    }
  });
});

/** The workers once each has loaded (so a job posted now is taken up at once). */
async function loaded(w: StreamWorkers): Promise<StreamWorkers> {
  await Promise.all(w.fillers.map((f: Worker) => new Promise((done) => f.on('message', (m: { kind: string }) => m.kind === 'loaded' && done(null)))));
  return w;
}
