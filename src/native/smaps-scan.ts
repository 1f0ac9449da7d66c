/**
 * /proc/PID/smaps read and parsed by native/smaps.c, a piece at a time: the regular VMAs come back as numbers and
 * places in the text, the others as the span of their text (src/proc/smaps.ts turns both into entries). The next piece
 * can be read and parsed on another thread while the caller works on this one.
 */
import type koffi from 'koffi';
import { constants } from 'node:os';
import { NativeError } from './errors.js';
import { nativeLibrary } from './pagescan.js';

// (the layout of native/smaps.c)
const MAX_FIELDS = 48;
const FIELD_NAME_MAX = 32;
const ORDER_BYTES = 4 + MAX_FIELDS + MAX_FIELDS * FIELD_NAME_MAX;
const HEADER = 5;
const H = { Records: 0, Parsed: 1, Filled: 2, Eof: 3, Lines: 4 } as const;
/**
 * Words of a record: start, end and offset are uint64, the others doubles. Regular: 1 when parsed (else only Text,
 * TextEnd and Line are set); Text..TextEnd: the VMA's bytes; Line: the lines before its header, in the piece;
 * NameLen and FlagsLen are -1 when there is no name or no VmFlags line; Values: the fields, in the piece's `names`.
 */
export const R = { Start: 0, End: 1, Offset: 2, Regular: 3, Text: 4, TextEnd: 5, Line: 6, Inode: 7, ModeAt: 8, DevAt: 9, DevLen: 10, NameAt: 11, NameLen: 12, FlagsAt: 13, FlagsLen: 14, Values: 15 } as const;
const RECORD = R.Values + MAX_FIELDS;
/** Records a piece can hold: a VMA's smaps is ~700 bytes, so a piece of 256 KiB has ~370 (more wait for the next). */
const MAX_RECORDS = 512;

type Fn = ReturnType<ReturnType<typeof koffi.load>['func']>;
let next: Fn | undefined;

function fn(): Fn {
  return (next ??= nativeLibrary().func('long pagesnap_smaps_next(int fd, void *carry, size_t carry_len, void *buf, size_t cap, void *out, size_t max_records, void *order)'));
}

/** A piece of smaps: its text, and a record for each whole VMA in it. Valid until the next-but-one read. */
export interface SmapsPiece {
  text: Buffer;
  records: number;
  /** the records' words, as doubles and as uint64 (record i starts at word `recordAt(i)`) */
  f64: Float64Array;
  u64: BigUint64Array;
  /** lines of the file before `text` starts (a record's R.Line counts from there) */
  lineBase: number;
  /** the field names of every regular VMA, in order (null until the first) */
  names: string[] | null;
  /** the last piece: every VMA of the file has been given */
  eof: boolean;
}

export const recordAt = (i: number): number => HEADER + i * RECORD;

interface Slot {
  text: Buffer;
  out: Float64Array;
  u64: BigUint64Array;
}

/** (not zero-filled: a dump of a tree makes a scanner per process, and C writes every word it gives back) */
function newSlot(chunk: number): Slot {
  const words = Buffer.allocUnsafeSlow((HEADER + MAX_RECORDS * RECORD) * 8).buffer;
  return { text: Buffer.allocUnsafeSlow(chunk), out: new Float64Array(words), u64: new BigUint64Array(words) };
}

export class SmapsScanner {
  /** two, the second made only for a file longer than one piece (a few hundred regions' smaps fit in one) */
  private readonly slots: Slot[] = [];
  private turn = 0;
  /** the text after the last whole VMA, to be parsed with what is read next */
  private carry: Buffer = Buffer.alloc(0);
  private lines = 0;
  private readonly order = Buffer.alloc(ORDER_BYTES);
  private names: string[] | null = null;
  private ended = false;

  constructor(private readonly fd: number, private readonly what: string, private readonly chunk = 1 << 18) {
    fn();
  }

  /** The next piece. */
  read(): SmapsPiece {
    const slot = this.begin();
    return this.piece(slot, Number(fn()(...this.args(slot))));
  }

  /** The next piece, read and parsed on one of koffi's threads. Not called again before it settles. */
  readAsync(): Promise<SmapsPiece> {
    const slot = this.begin();
    return new Promise((resolve, reject) => {
      fn().async(...this.args(slot), (err: unknown, rc: number | bigint) => {
        if (err) reject(err);
        else {
          try {
            resolve(this.piece(slot, Number(rc)));
          } catch (e) {
            reject(e);
          }
        }
      });
    });
  }

  /** pagesnap_smaps_next's arguments for a read into `slot` */
  private args(slot: Slot) {
    return [this.fd, this.carry, this.carry.length, slot.text, slot.text.length, slot.out, MAX_RECORDS, this.order] as const;
  }

  private begin(): Slot {
    if (this.ended) throw new Error('SmapsScanner: read past the end');
    const slot = (this.slots[this.turn] ??= newSlot(this.chunk));
    this.turn ^= 1;
    return slot;
  }

  private piece(slot: Slot, rc: number): SmapsPiece {
    if (rc < 0) throw new NativeError('read', -rc, this.what);
    const o = slot.out;
    const records = o[H.Records]!;
    const eof = o[H.Eof] === 1;
    // a whole buffer holding no VMA's end: no VMA's text is that long, so this is not smaps
    if (records === 0 && !eof && o[H.Filled] === slot.text.length) throw new NativeError('read', constants.errno.EOVERFLOW, `${this.what}: one entry is longer than ${slot.text.length} bytes`);
    // (read here, between calls: the call that sets them writes them while the caller may be busy with a piece)
    if (this.names === null && this.order.readUInt32LE(0) > 0) {
      const at = (i: number) => 4 + MAX_FIELDS + i * FIELD_NAME_MAX;
      this.names = Array.from({ length: this.order.readUInt32LE(0) }, (_, i) => this.order.toString('latin1', at(i), at(i) + this.order[4 + i]!));
    }
    const lineBase = this.lines;
    this.lines += o[H.Lines]!;
    this.carry = slot.text.subarray(o[H.Parsed]!, o[H.Filled]!);
    this.ended = eof;
    return { text: slot.text, records, f64: o, u64: slot.u64, lineBase, names: this.names, eof };
  }
}
