/**
 * The dump's native helpers (native/pagescan.c): zero check and XXH3-64 of a batch of pages in one call, and
 * process_vm_readv on a worker thread.
 */
import koffi from 'koffi';
import { PagesnapError, NativeError } from './errors.js';
import { nativeBuild } from './package-root.js';
import { processVmIovecs, type RemoteRange } from './syscalls.js';

type ScanFn = (buf: Uint8Array, pages: number, pageSize: number, seed: number, hashes: Uint8Array | BigUint64Array, zero: Uint8Array) => number | bigint;
type ReadFn = ReturnType<ReturnType<typeof koffi.load>['func']>;
let scan: ScanFn | undefined;
let readv: ReadFn | undefined;
let closeFn: ReadFn | undefined;
let preadPieces: ReadFn | undefined;

let lib: ReturnType<typeof koffi.load> | undefined;

/** libpagesnap.so (native/), loaded once; a clear error where it was not built. */
export function nativeLibrary(): ReturnType<typeof koffi.load> {
  if (lib) return lib;
  const path = nativeBuild('libpagesnap.so');
  try {
    lib = koffi.load(path);
  } catch (e) {
    throw new PagesnapError(`cannot load ${path} (${(e as Error).message.split('\n')[0]})`, {
      code: 'ENOENT', hint: 'build it with `make -C native` (needs cc and libxxhash0), or reinstall pagesnap', cause: e,
    });
  }
  return lib;
}

function load(): ScanFn {
  if (scan) return scan;
  const lib = nativeLibrary();
  scan = lib.func('size_t pagesnap_scan_pages(void *buf, size_t pages, size_t page_size, uint64_t seed, void *hashes, void *zero)') as ScanFn;
  readv = lib.func('long pagesnap_vm_readv(int pid, void *local, unsigned long nlocal, void *remote, unsigned long nremote)');
  closeFn = lib.func('long pagesnap_close(int fd)');
  preadPieces = lib.func('size_t pagesnap_pread_pieces(int fd, void *buf, void *pieces, size_t n)');
  return scan;
}

/**
 * For each of `pages` pages in `buf`: zero[i] = 1 when the page is all zero, else hashes[i] = XXH3-64(page, seed).
 * Returns the number of pages that are not zero.
 */
export function scanPages(buf: Uint8Array, pages: number, pageSize: number, seed: number, hashes: BigUint64Array, zero: Uint8Array): number {
  if (hashes.length < pages || zero.length < pages || buf.length < pages * pageSize) throw new RangeError('scanPages: buffers too small');
  return Number(load()(buf, pages, pageSize, seed, hashes, zero));
}

/**
 * process_vm_readv(2) of `remote` into `buf`, run on koffi's worker pool so the caller can work meanwhile. Resolves
 * to the bytes read (short at the first unreadable page); rejects with the NativeError of a failed call. `buf`
 * must stay untouched until it settles.
 */
export function processVmReadvAsync(pid: number, buf: Buffer, remote: readonly RemoteRange[]): Promise<number> {
  load();
  const { liov, riov } = processVmIovecs('process_vm_readv', [buf], remote);
  return new Promise((resolve, reject) => {
    readv!.async(pid, liov, 1, riov, remote.length, (err: unknown, rc: number | bigint) => {
      // (the iovec buffers live in this closure until the call is done)
      void liov;
      void riov;
      if (err) reject(err);
      else if (Number(rc) < 0) reject(new NativeError('process_vm_readv', -Number(rc), `pid ${pid} at 0x${remote[0]?.addr.toString(16)}`));
      else resolve(Number(rc));
    });
  });
}

/**
 * pread(2) of the pieces of `fd` that `pieces` lists (offset and length pairs, in bytes) into `buf`, one after another,
 * on koffi's worker pool: a call from JavaScript for each costs more than the read of a page does. Resolves to the
 * bytes read, short where a piece was (the end of the file, or an error: read it again to learn which). `buf` and
 * `pieces` must stay untouched until it settles.
 */
export function preadPiecesAsync(fd: number, buf: Buffer, pieces: BigUint64Array): Promise<number> {
  load();
  const count = pieces.length >> 1;
  let bytes = 0n;
  for (let k = 0; k < count; k++) bytes += pieces[2 * k + 1]!;
  if (bytes > BigInt(buf.length)) throw new RangeError('preadPiecesAsync: pieces too long for the buffer');
  return new Promise((resolve, reject) => {
    preadPieces!.async(fd, buf, pieces, count, (err: unknown, rc: number | bigint) => {
      if (err) reject(err);
      else resolve(Number(rc));
    });
  });
}

/**
 * close(2) of `fd` on koffi's worker pool: closing a userfaultfd unregisters its memory and clears the write
 * protection of every page (~30 ms for a server's process), which several threads do side by side. At most
 * CLOSES_IN_FLIGHT at once, the rest queued: koffi refuses more than ~250 calls in flight, and a dump of a large
 * tree closes one per process.
 */
export function closeAsync(fd: number, what: string): Promise<void> {
  load();
  return new Promise<void>((resolve, reject) => {
    closeQueue.push(() => closeFn!.async(fd, (err: unknown, rc: number | bigint) => {
      closesInFlight--;
      nextClose();
      if (err) reject(err);
      else if (Number(rc) < 0) reject(new NativeError('close', -Number(rc), what));
      else resolve();
    }));
    nextClose();
  });
}

const CLOSES_IN_FLIGHT = 16;
const closeQueue: (() => void)[] = [];
let closesInFlight = 0;

function nextClose(): void {
  while (closesInFlight < CLOSES_IN_FLIGHT && closeQueue.length) {
    closesInFlight++;
    closeQueue.shift()!();
  }
}
