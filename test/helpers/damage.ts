import { copyFileSync, openSync, readSync, writeSync, closeSync } from 'node:fs';
import { SnapshotReader } from '../../src/snapshot/reader.js';

/** A copy of snapshot `from` at `to` with one byte flipped in the middle of frame `k` (its checksum then fails). */
export function damageFrame(from: string, to: string, k: number): void {
  const r = SnapshotReader.open(from);
  const at = r.manifest.frames.offset[k]! + Math.floor(r.manifest.frames.size[k]! / 2);
  r.close();
  copyFileSync(from, to);
  const fd = openSync(to, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, at);
    b[0]! ^= 0x5a;
    writeSync(fd, b, 0, 1, at);
  } finally {
    closeSync(fd);
  }
}
