/**
 * /proc/PID/smaps: a maps header line per VMA followed by `Field:   N kB` counters, `THPeligible: 0|1`,
 * `ProtectionKey: N` and `VmFlags: rd wr ...`. Unknown fields are kept (kernels add them); sizes become bytes.
 */
import { parseMapsLine, mappedName, MAPS_HEADER, MapsParseError, type MapsEntry, type Perms } from './maps.js';
import { R, recordAt, type SmapsPiece } from '../native/index.js';

export interface SmapsEntry extends MapsEntry {
  /** Every counter, in bytes for `kB` fields and as-is otherwise: Rss, Pss, Swap, AnonHugePages, KSM, ... */
  fields: Record<string, number>;
  vmFlags: string[];
}

const NO_FIELDS: Record<string, number> = {};
const NO_FLAGS: string[] = [];
const FIELD = /^([A-Za-z_][A-Za-z0-9_]*):\s+(\d+)(?: kB)?\s*$/;
const isHex = (c: number) => (c >= 48 && c <= 57) || (c >= 97 && c <= 102);

/**
 * Parsed by hand for the common field lines (a process of 60000 regions has 1.5 million of them, and a regex
 * match each was most of a dump's time in parsing); anything unusual goes through the strict regex. Every VMA
 * lists the same fields in the same order: names are matched against the first VMA's instead of cut out of the
 * text again, and each VMA's counters are a copy of one template object (a map built key by key is a dictionary:
 * 1.6 KiB a region, against 0.2 KiB). VmFlags lines repeat too, and share one array each. Fed in chunks, so the
 * text of 60000 regions (43 MB) is never one string.
 */
export class SmapsParser {
  private readonly entries: SmapsEntry[] = [];
  private cur: SmapsEntry | null = null;
  /** the end of the last chunk, when it ended inside a line */
  private partial = '';
  /** the first VMA's field names in order, and a counter map with those keys to copy */
  private order: string[] | null = null;
  private template: Record<string, number> | null = null;
  private readonly flags = new Map<string, string[]>();
  // the current VMA's fields, and whether they are so far exactly `order`'s
  private readonly keys: string[] = [];
  private readonly values: number[] = [];
  private n = 0;
  private same = true;

  /** `lineNo`: the lines before the text (for the line an error names) */
  constructor(private lineNo = 0) {}

  push(chunk: string): this {
    const text = this.partial + chunk;
    const last = text.lastIndexOf('\n');
    this.partial = text.slice(last + 1);
    this.lines(text, last + 1);
    return this;
  }

  /** The entries complete so far (all but the one being read), taken out of `entries`. */
  take(): SmapsEntry[] {
    return this.entries.splice(0, Math.max(0, this.entries.length - 1));
  }

  /** The rest of the entries, once all the text is in. */
  finish(): SmapsEntry[] {
    if (this.partial) this.lines(this.partial, this.partial.length);
    this.partial = '';
    this.close();
    return this.entries;
  }

  private close(): void {
    const cur = this.cur;
    if (!cur) return;
    if (this.order === null) {
      this.order = this.keys.slice(0, this.n);
      this.template = JSON.parse(JSON.stringify(Object.fromEntries(this.order.map((k) => [k, 0])))) as Record<string, number>;
    }
    const f = this.same && this.n === this.order.length ? { ...this.template! } : {};
    for (let i = 0; i < this.n; i++) f[this.keys[i]!] = this.values[i]!;
    cur.fields = f;
  }

  /** The lines of text[0, end). */
  private lines(text: string, end: number): void {
    for (let pos = 0; pos < end; ) {
      let nl = text.indexOf('\n', pos);
      if (nl < 0 || nl > end) nl = end;
      this.lineNo++;
      const from = pos;
      pos = nl + 1;
      if (nl > from) this.line(text, from, nl);
    }
  }

  private line(text: string, from: number, nl: number): void {
    const lineNo = this.lineNo;
    // mapping lines start with the start address (lowercase hex); field names with a capital
    if (isHex(text.charCodeAt(from))) {
      // a copy of the line, not a slice of the text: the region's name would keep the whole chunk alive; a
      // concatenation is flattened into a string of its own when it is sliced
      const line = `${text.slice(from, nl)} `.slice(0, -1);
      if (!MAPS_HEADER.test(line)) throw new MapsParseError(line, lineNo, 'malformed smaps field');
      this.close();
      // (properties added to the parsed entry, not spread into a new object: the spread cost 1 KiB and 4 µs a region)
      const cur = parseMapsLine(line, lineNo) as SmapsEntry;
      cur.fields = NO_FIELDS;
      cur.vmFlags = NO_FLAGS;
      this.cur = cur;
      this.entries.push(this.cur);
      this.n = 0;
      this.same = true;
      return;
    }
    const cur = this.cur;
    if (!cur) throw new MapsParseError(text.slice(from, nl), lineNo, 'smaps field before any mapping');
    const known = this.same && this.order !== null ? this.order[this.n] : undefined;
    let key: string;
    let colon: number;
    if (known !== undefined && text.startsWith(known, from) && text.charCodeAt(from + known.length) === 58) {
      key = known;
      colon = from + known.length;
    } else {
      colon = text.indexOf(':', from);
      key = colon > from && colon < nl ? text.slice(from, colon) : '';
      if (this.order !== null && key !== 'VmFlags') this.same = false;
    }
    if (key === 'VmFlags') {
      const list = text.slice(colon + 1, nl);
      let f = this.flags.get(list);
      if (!f) this.flags.set(list, (f = list.trim().split(/\s+/).filter(Boolean)));
      cur.vmFlags = f;
      return;
    }
    // `Key:<spaces>digits` then nothing or ` kB`
    let i = colon + 1;
    while (i < nl && text.charCodeAt(i) === 32) i++;
    let value = 0;
    const digits = i;
    for (let c = text.charCodeAt(i); i < nl && c >= 48 && c <= 57; c = text.charCodeAt(++i)) value = value * 10 + (c - 48);
    let kB = i < nl;
    if (!(key !== '' && i > digits && i - digits < 16 && i > colon + 1 && (i === nl || (nl - i === 3 && text.startsWith(' kB', i))))) {
      const line = text.slice(from, nl);
      const m = FIELD.exec(line);
      if (!m) throw new MapsParseError(line, lineNo, 'malformed smaps field');
      key = m[1]!;
      value = Number(m[2]);
      kB = line.trimEnd().endsWith(' kB');
      if (this.order !== null) this.same = false;
    }
    this.keys[this.n] = key;
    this.values[this.n++] = kB ? value * 1024 : value;
  }
}

export function parseSmaps(text: string): SmapsEntry[] {
  return new SmapsParser().push(text).finish();
}

/**
 * The entries of the pieces of smaps native/smaps.c parsed (SmapsScanner): a regular VMA's made from its numbers, any
 * other's by SmapsParser from its text, so each comes out as parseSmaps would give it.
 */
export class SmapsRecords {
  /** makes a regular VMA's counters: an object literal of the field names (see counters) */
  private counters: ((v: Float64Array, at: number) => Record<string, number>) | null = null;
  private readonly flags = new Map<string, string[]>();
  private readonly perms = new Map<string, Perms>();

  /** The entries of `piece`. */
  entries(piece: SmapsPiece): SmapsEntry[] {
    const { text, f64, u64, names } = piece;
    const out: SmapsEntry[] = new Array(piece.records);
    for (let i = 0; i < piece.records; i++) {
      const b = recordAt(i);
      if (f64[b + R.Regular] !== 1 || names === null) {
        const vma = new SmapsParser(piece.lineBase + f64[b + R.Line]!).push(text.toString('utf8', f64[b + R.Text]!, f64[b + R.TextEnd]!)).finish();
        if (vma.length !== 1) throw new Error(`smaps: a VMA's text gave ${vma.length} entries`);
        out[i] = vma[0]!;
        continue;
      }
      this.counters ??= counters(names);
      const modeAt = f64[b + R.ModeAt]!;
      const mode = text.toString('latin1', modeAt, modeAt + 4);
      const devAt = f64[b + R.DevAt]!;
      const nameLen = f64[b + R.NameLen]!;
      let name: string | null = null;
      let deleted = false;
      if (nameLen >= 0) {
        const at = f64[b + R.NameAt]!;
        ({ name, deleted } = mappedName(text.toString('utf8', at, at + nameLen)));
      }
      const flagsLen = f64[b + R.FlagsLen]!;
      let vmFlags = NO_FLAGS;
      if (flagsLen >= 0) {
        const at = f64[b + R.FlagsAt]!;
        const list = text.toString('utf8', at, at + flagsLen);
        vmFlags = this.flags.get(list) ?? flagList(this.flags, list);
      }
      out[i] = {
        start: u64[b + R.Start]!, end: u64[b + R.End]!, mode, offset: u64[b + R.Offset]!, dev: text.toString('latin1', devAt, devAt + f64[b + R.DevLen]!),
        inode: f64[b + R.Inode]!, name, deleted, perms: this.perms.get(mode) ?? permsOf(this.perms, mode), fields: this.counters(f64, b + R.Values), vmFlags,
      };
    }
    return out;
  }
}

/** A VmFlags list, kept under its text: a process's VMAs have a few different ones. */
function flagList(lists: Map<string, string[]>, text: string): string[] {
  const f = text.trim().split(/\s+/).filter(Boolean);
  lists.set(text, f);
  return f;
}

/** (one object per mode, shared by every entry with it: nothing changes an entry's perms) */
function permsOf(perms: Map<string, Perms>, mode: string): Perms {
  const p = Object.freeze({ read: mode[0] === 'r', write: mode[1] === 'w', exec: mode[2] === 'x', shared: mode[3] === 's' });
  perms.set(mode, p);
  return p;
}

/**
 * A function making the counters of a regular VMA from its values: one object literal with the field names in
 * order. (Every VMA of a process has the same fields: a literal makes each map with one shape at once, where setting
 * 25 keys one by one took a keyed store each, most of the cost of a VMA.) The names are the kernel's, checked by
 * native/smaps.c to be [A-Za-z0-9_] (a `__proto__` is written as a computed key: a counter, not the prototype).
 */
function counters(names: readonly string[]): (v: Float64Array, at: number) => Record<string, number> {
  const keys = names.map((n, i) => `${n === '__proto__' ? `[${JSON.stringify(n)}]` : JSON.stringify(n)}: v[at + ${i}]`);
  return new Function('v', 'at', `return { ${keys.join(', ')} };`) as (v: Float64Array, at: number) => Record<string, number>;
}
