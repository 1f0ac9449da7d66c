/** The regions (VMAs) of a live process: maps line, smaps counters, VmFlags and what kind of memory each is. */
import { SmapsParser, type SmapsEntry } from './smaps.js';
import { classifyRegion, type RegionClass } from './region-kind.js';
import { readProcChunks, readProcChunksAhead, readProcText } from './process.js';
import { parseMapsLine } from './maps.js';
import type { Addr } from '../native/index.js';
import { fsTypesOf } from './mounts.js';

export interface Region extends SmapsEntry, RegionClass {
  /** the type of the file system a mapped file lies on, from the process's mount table */
  fsType?: string;
}

export function readRegions(pid: number): Region[] {
  const batches = new RegionBatches(pid);
  const out: Region[] = [];
  for (const text of readProcChunks(pid, 'smaps')) out.push(...batches.push(text));
  out.push(...batches.finish());
  return out;
}

/**
 * The regions a batch at a time (those of each piece of smaps read: 256 KiB, some 350 regions), for a reader that
 * need not hold them all (the dump of a process of 60000 regions held 50 MB of them). The next piece is read on
 * another thread while this batch is worked on (see readProcChunksAhead).
 */
export async function* regionBatches(pid: number): AsyncGenerator<Region[]> {
  const batches = new RegionBatches(pid);
  for await (const text of readProcChunksAhead(pid, 'smaps')) {
    const batch = batches.push(text);
    if (batch.length) yield batch;
  }
  const rest = batches.finish();
  if (rest.length) yield rest;
}

/**
 * A process's regionBatches, started at once: the kernel makes the first piece of its smaps (a walk of every page
 * table, ~15 ms for a server's backend) on another thread while the caller still works on something else — the dump
 * of the process before it. Iterate it once, or close it.
 */
export class RegionsAhead implements AsyncIterable<Region[]> {
  private readonly batches: AsyncGenerator<Region[]>;
  private readonly first: Promise<IteratorResult<Region[]>>;

  constructor(readonly pid: number) {
    this.batches = regionBatches(pid);
    this.first = this.batches.next();
    this.first.catch(() => {}); // (thrown where it is iterated)
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<Region[]> {
    try {
      const first = await this.first;
      if (first.done) return;
      yield first.value;
      yield* this.batches;
    } finally {
      await this.close();
    }
  }

  /** End the reading (a read in flight first): its descriptor is closed. */
  async close(): Promise<void> {
    await this.batches.return(undefined).catch(() => {});
  }

  /**
   * Each of `items` with its process's regions, those of the next one already being read while the caller works on
   * this one. Each is closed once the caller moves on, or stops.
   */
  static async *each<T>(items: readonly T[], pidOf: (item: T) => number): AsyncGenerator<[T, RegionsAhead]> {
    let next = items.length ? new RegionsAhead(pidOf(items[0]!)) : undefined;
    try {
      for (const [i, item] of items.entries()) {
        const regions = next!;
        next = i + 1 < items.length ? new RegionsAhead(pidOf(items[i + 1]!)) : undefined;
        try {
          yield [item, regions];
        } finally {
          await regions.close();
        }
      }
    } finally {
      await next?.close();
    }
  }
}

/** smaps text in, classified regions out: those whose text is complete, a batch per piece of text. */
class RegionBatches {
  private readonly parser = new SmapsParser();
  private readonly fsTypes: Map<string, string>;

  constructor(pid: number) {
    this.fsTypes = fsTypesOf(pid);
  }

  push(text: string): Region[] {
    return this.parser.push(text).take().map((e) => this.classify(e));
  }

  finish(): Region[] {
    return this.parser.finish().map((e) => this.classify(e));
  }

  private classify(e: SmapsEntry): Region {
    const fsType = e.name?.startsWith('/') ? this.fsTypes.get(e.dev) : undefined;
    // Only a shared mapping's file system decides its kind: tmpfs is shmem (dump the object), else an ordinary file.
    const c = classifyRegion(e, e.vmFlags, e.perms.shared ? fsType : undefined);
    // (set one by one: Object.assign took 1 KiB a region, of a dump's 60000)
    const r = e as Region;
    r.kind = c.kind;
    r.backing = c.backing;
    if (c.shmem) r.shmem = c.shmem;
    if (fsType) r.fsType = fsType;
    return r;
  }
}

/** Where the process's vDSO is, from maps (no page-table walk, unlike smaps); undefined if it has none. */
export function vdsoOf(pid: number): { start: Addr; end: Addr } | undefined {
  const text = readProcText(pid, 'maps');
  const at = text.indexOf(' [vdso]');
  if (at < 0) return undefined;
  const e = parseMapsLine(text.slice(text.lastIndexOf('\n', at) + 1, at + ' [vdso]'.length));
  return { start: e.start, end: e.end };
}
