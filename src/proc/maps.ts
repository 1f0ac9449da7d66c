/**
 * /proc/PID/maps. The kernel writes `start-end perms offset major:minor inode`, pads to a fixed column, then the
 * name (show_vma_header_prefix + seq_pad): the name starts one character past column 72 on 64-bit, or one past the
 * prefix when the prefix is longer. Taking the name by position (not by splitting on spaces) keeps names with
 * leading or inner spaces intact. A newline in a path is escaped by the kernel as `\012`.
 */
import type { Addr } from '../native/index.js';

export interface Perms {
  read: boolean;
  write: boolean;
  exec: boolean;
  /** 's' (MAP_SHARED) vs 'p' (MAP_PRIVATE) */
  shared: boolean;
}

export interface MapsEntry {
  start: Addr;
  end: Addr;
  perms: Perms;
  /** As printed, e.g. `rw-p` */
  mode: string;
  /** Offset into the file in bytes (vm_pgoff * PAGE_SIZE). */
  offset: bigint;
  /** `major:minor` as printed in hex. */
  dev: string;
  inode: number;
  /** Path or pseudo-name (`[heap]`, `/memfd:x`, `anon_inode:[io_uring]`), without the ` (deleted)` suffix. */
  name: string | null;
  deleted: boolean;
}

export class MapsParseError extends Error {
  constructor(
    readonly line: string,
    readonly lineNo: number,
    reason: string,
  ) {
    super(`maps line ${lineNo}: ${reason}: ${JSON.stringify(line.slice(0, 120))}`);
    this.name = 'MapsParseError';
  }
}

const PREFIX = /^([0-9a-f]+)-([0-9a-f]+) ([r-][w-][x-][ps]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)/;
const NAME_COLUMN = 25 + 8 * 6 - 1; // seq_setwidth(m, 25 + sizeof(void *) * 6 - 1)
/** What the kernel appends to the name of a mapped file that was unlinked. */
const DELETED = ' (deleted)';

/**
 * A name as maps prints it: ` (deleted)` (a mapped file that was unlinked) taken off and said, and `\012` back to
 * the newline it stands for.
 */
export function mappedName(printed: string): { name: string; deleted: boolean } {
  const deleted = printed.endsWith(DELETED);
  const name = deleted ? printed.slice(0, -DELETED.length) : printed;
  return { name: name.includes('\\012') ? name.replace(/\\012/g, '\n') : name, deleted };
}

export function parseMapsLine(line: string, lineNo = 1): MapsEntry {
  const m = PREFIX.exec(line);
  if (!m) throw new MapsParseError(line, lineNo, 'not a maps line');
  const [prefix, s, e, mode, off, dev, ino] = m as unknown as [string, string, string, string, string, string, string];
  const start = BigInt(`0x${s}`);
  const end = BigInt(`0x${e}`);
  if (end <= start) throw new MapsParseError(line, lineNo, 'end is not above start');
  let name: string | null = null;
  let deleted = false;
  if (line.length > prefix.length) {
    const rest = line.slice(prefix.length);
    if (rest[0] !== ' ') throw new MapsParseError(line, lineNo, 'garbage after inode');
    // The name begins after the padding; fall back to trimming if a line was not padded by the kernel's rule.
    const at = Math.max(prefix.length, NAME_COLUMN) + 1;
    const padded = line.length >= at && /^ *$/.test(line.slice(prefix.length, at));
    const printed = padded ? line.slice(at) : rest.trimStart();
    if (printed !== '') ({ name, deleted } = mappedName(printed));
  }
  return {
    start, end, mode, offset: BigInt(`0x${off}`), dev, inode: Number(ino), name, deleted,
    perms: { read: mode[0] === 'r', write: mode[1] === 'w', exec: mode[2] === 'x', shared: mode[3] === 's' },
  };
}

export function parseMaps(text: string): MapsEntry[] {
  const out: MapsEntry[] = [];
  text.split('\n').forEach((line, i) => {
    if (line !== '') out.push(parseMapsLine(line, i + 1));
  });
  return out;
}

/** The object a mapping maps, as maps prints it (`dev inode`): the same for every mapping of it, in any process. */
export const objectKey = (e: Pick<MapsEntry, 'dev' | 'inode'>): string => `${e.dev} ${e.inode}`;

/**
 * The entries of maps `text` that map `object` (an objectKey), parsing only the lines naming it: a process can have
 * thousands.
 */
export function parseMapsOf(text: string, object: string): MapsEntry[] {
  const out: MapsEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.includes(` ${object}`)) continue;
    const e = parseMapsLine(line);
    if (objectKey(e) === object) out.push(e);
  }
  return out;
}

export const MAPS_HEADER = PREFIX;
