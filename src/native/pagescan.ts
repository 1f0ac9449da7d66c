/** The native page scanner (native/pagescan.c): zero check and XXH3-64 of a batch of pages in one call. */
import koffi from 'koffi';
import { PagesnapError } from './errors.js';
import { nativeBuild } from './package-root.js';

type ScanFn = (buf: Uint8Array, pages: number, pageSize: number, seed: number, hashes: Uint8Array | BigUint64Array, zero: Uint8Array) => number | bigint;
let scan: ScanFn | undefined;

function load(): ScanFn {
  if (scan) return scan;
  const path = nativeBuild('libpagesnap.so');
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load(path);
  } catch (e) {
    throw new PagesnapError(`cannot load ${path} (${(e as Error).message.split('\n')[0]})`, {
      code: 'ENOENT', hint: 'build it with `make -C native` (needs cc and libxxhash0), or reinstall pagesnap', cause: e,
    });
  }
  scan = lib.func('size_t pagesnap_scan_pages(void *buf, size_t pages, size_t page_size, uint64_t seed, void *hashes, void *zero)') as ScanFn;
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
