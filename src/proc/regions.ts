/** The regions (VMAs) of a live process: maps line, smaps counters, VmFlags and what kind of memory each is. */
import { closeSync } from 'node:fs';
import { SmapsRecords, type SmapsEntry } from './smaps.js';
import { classifyRegion, type RegionClass } from './region-kind.js';
import { openProc, procPath, readProcText, targetError } from './process.js';
import { parseMapsLine } from './maps.js';
import { SmapsScanner, type Addr, type SmapsPiece } from '../native/index.js';
import { fsTypesOf } from './mounts.js';

export interface Region extends SmapsEntry, RegionClass {
  /** the type of the file system a mapped file lies on, from the process's mount table */
  fsType?: string;
}

export function readRegions(pid: number): Region[] {
  const smaps = new Smaps(pid);
  try {
    const out: Region[] = [];
    for (;;) {
      const piece = smaps.read();
      for (const r of smaps.regions(piece)) out.push(r);
      if (piece.eof) return out;
    }
  } finally {
    smaps.close();
  }
}

/**
 * The regions a batch at a time (those of each piece of smaps read: 256 KiB, some 350 regions), for a reader that
 * need not hold them all (the dump of a process of 60000 regions held 50 MB of them). The next piece is read and
 * parsed on another thread while this batch is worked on: the kernel's making of smaps (170 ms for 60000 regions)
 * overlaps the dump of the regions already read, which a freeze otherwise waits through.
 */
export async function* regionBatches(pid: number): AsyncGenerator<Region[]> {
  const smaps = new Smaps(pid);
  let next: Promise<SmapsPiece> | undefined = smaps.readAsync();
  try {
    for (;;) {
      const piece: SmapsPiece = await next!;
      next = piece.eof ? undefined : smaps.readAsync();
      // (made now, while the next piece is read into the other buffer: the read after that reuses this piece's)
      const batch = smaps.regions(piece);
      if (batch.length) yield batch;
      if (piece.eof) return;
    }
  } finally {
    // a read still in flight on another thread must end before its descriptor is closed
    await next?.catch(() => {});
    smaps.close();
  }
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

/** A process's smaps, read a piece at a time (SmapsScanner), and its regions classified. */
class Smaps {
  private readonly fd: number;
  private readonly scanner: SmapsScanner;
  private readonly records = new SmapsRecords();
  private readonly fsTypes: Map<string, string>;

  constructor(private readonly pid: number) {
    this.fsTypes = fsTypesOf(pid);
    this.fd = openProc(pid, 'smaps');
    try {
      this.scanner = new SmapsScanner(this.fd, procPath(pid, 'smaps'));
    } catch (e) {
      closeSync(this.fd);
      throw e;
    }
  }

  read(): SmapsPiece {
    try {
      return this.scanner.read();
    } catch (e) {
      throw targetError(this.pid, 'smaps', e);
    }
  }

  readAsync(): Promise<SmapsPiece> {
    const p = this.scanner.readAsync().catch((e: unknown) => {
      throw targetError(this.pid, 'smaps', e);
    });
    p.catch(() => {}); // (a failure is thrown where the piece is awaited; the caller may be busy meanwhile)
    return p;
  }

  regions(piece: SmapsPiece): Region[] {
    return this.records.entries(piece).map((e) => this.classify(e));
  }

  close(): void {
    closeSync(this.fd);
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
