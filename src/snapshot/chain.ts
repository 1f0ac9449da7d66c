/**
 * Incremental snapshots: what a dump against a parent needs from it. The parent's chain is opened (and checked),
 * every page hash it holds goes into a table, and the child stores only pages whose hash the chain does not
 * have; the rest are references into the chain. The kernel here has no soft-dirty bits, so hashes decide.
 */
import { dirname, relative, resolve } from 'node:path';
import { SnapshotReader } from './reader.js';
import { DedupeTable } from './dedupe.js';
import type { ParentRef } from './manifest.js';
import type { WriterParent } from './writer.js';

/** Pages of the parent chain whose hashes are looked up (24 bytes each at most): 16 GiB of snapshot. */
const PARENT_PAGES_INDEXED = 1 << 22;

export interface Parent {
  reader: SnapshotReader;
  /** for the writer: numbering, seed, and the hash lookup */
  writer: WriterParent;
  /** for the child's manifest */
  ref: ParentRef;
}

export function openParent(parentPath: string, childPath: string): Parent {
  const reader = SnapshotReader.open(parentPath, { regions: false });
  const table = new DedupeTable(PARENT_PAGES_INDEXED);
  reader.forEachHash((n, lo, hi) => table.add(lo, hi, n));
  const always = () => true;
  const absolute = resolve(parentPath);
  return {
    reader,
    writer: { pages: reader.totalPages, seed: reader.manifest.hash.seed, find: (lo, hi) => table.find(lo, hi, always) },
    ref: {
      id: reader.manifest.id, manifestHash: reader.footer.manifestHash, pages: reader.totalPages,
      path: relative(dirname(resolve(childPath)), absolute), absolute,
    },
  };
}
