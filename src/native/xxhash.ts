/**
 * XXH3-64 of one buffer (the manifest checksum) from the system's libxxhash (Debian: libxxhash0). Pages are hashed
 * in batches by native/pagescan.c, which links the same library.
 */
import koffi from 'koffi';
import { PagesnapError } from './errors.js';

let xxh3: ((addr: bigint, len: number, seed: number) => number | bigint) | undefined;

function load(): NonNullable<typeof xxh3> {
  if (xxh3) return xxh3;
  let lib: ReturnType<typeof koffi.load>;
  try {
    lib = koffi.load('libxxhash.so.0');
  } catch (e) {
    throw new PagesnapError(`cannot load libxxhash.so.0 (${(e as Error).message.split('\n')[0]})`, {
      code: 'ENOENT', hint: 'install the xxHash library (Debian/Ubuntu: apt-get install libxxhash0)', cause: e,
    });
  }
  xxh3 = lib.func('uint64_t XXH3_64bits_withSeed(uint64_t input, size_t len, uint64_t seed)') as NonNullable<typeof xxh3>;
  return xxh3;
}

/** XXH3-64 of `len` bytes at `offset` in `buf`. */
export function xxh3_64(buf: Uint8Array, seed = 0, offset = 0, len = buf.length - offset): bigint {
  const f = load();
  return BigInt(f(koffi.address(buf) + BigInt(offset), len, seed));
}
