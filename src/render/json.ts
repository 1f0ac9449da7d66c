/**
 * JSON output: JSON.stringify's, with bigints (addresses, PFNs, raw entries) as "0x…" strings so any JSON reader
 * can take them.
 */
export type Jsonable = string | number | boolean | null | Jsonable[] | { [k: string]: Jsonable };

/** A JSON.stringify replacer writing bigints as hex strings. */
export const hexBigints = (_key: string, v: unknown): unknown => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v);

/** `v` as the JSON value its text is. */
export function toJson(v: unknown): Jsonable {
  const text = JSON.stringify(v, hexBigints);
  return text === undefined ? null : (JSON.parse(text) as Jsonable);
}

/** Text gathered before it is handed on: large enough that a write costs nothing, small beside a report. */
const CHUNK = 1 << 20;
/** Items of a long array made at a time. */
const BATCH = 256;

/** Values (array items, object members, however deep) a container may hold to be made whole. */
const SMALL = 4096;

/** Whether the text of `x` is small enough to make whole: it holds fewer than SMALL values, however deep. */
function short(x: object): boolean {
  let left = SMALL;
  const within = (v: unknown): boolean => {
    if (v === null || typeof v !== 'object' || typeof (v as { toJSON?: unknown }).toJSON === 'function') return true;
    if (Array.isArray(v)) return (left -= v.length) >= 0 && v.every(within);
    for (const k in v) if (--left < 0 || !within((v as Record<string, unknown>)[k])) return false;
    return true;
  };
  return within(x);
}

const long = (x: unknown) => x !== null && typeof x === 'object' && !short(x);

/**
 * `JSON.stringify(v, hexBigints, 2)`, handed to `write` a chunk at a time: a report of 60000 regions (36 MB of JSON)
 * was held three times over, as a copy with its bigints converted, that text, and the report itself. Only long
 * arrays (and what holds them) are walked here; their items, a region's record or a page's, are made whole.
 */
export function writeJson(v: unknown, write: (text: string) => void): void {
  let out = '';
  const put = (s: string) => {
    out += s;
    if (out.length >= CHUNK) {
      write(out);
      out = '';
    }
  };
  const value = (x: unknown, indent: string): void => {
    if (x === null || typeof x !== 'object' || short(x)) {
      const text = JSON.stringify(x, hexBigints, 2) ?? 'null';
      return put(indent && typeof x === 'object' ? text.replaceAll('\n', `\n${indent}`) : text);
    }
    const inner = `${indent}  `;
    if (Array.isArray(x)) {
      // items made a batch at a time, but for one too large to make whole
      put('[');
      for (let i = 0; i < x.length; ) {
        put(i ? ',\n' : '\n');
        if (long(x[i])) {
          put(inner);
          value(x[i], inner);
          i++;
          continue;
        }
        let j = i + 1;
        while (j < x.length && j - i < BATCH && !long(x[j])) j++;
        const text = JSON.stringify(x.slice(i, j), hexBigints, 2);
        // "[\n  a,\n  b\n]": the items, two spaces in, to be `inner` in (one call and one re-indent for many)
        put(indent + text.slice(2, -2).replaceAll('\n', `\n${indent}`));
        i = j;
      }
      return put(`\n${indent}]`);
    }
    let first = true;
    for (const [k, item] of Object.entries(x as Record<string, unknown>)) {
      // (what JSON.stringify leaves out of an object)
      if (item === undefined || typeof item === 'function' || typeof item === 'symbol') continue;
      put(`${first ? '{' : ','}\n${inner}${JSON.stringify(k)}: `);
      first = false;
      value(item, inner);
    }
    put(first ? '{}' : `\n${indent}}`);
  };
  value(v, '');
  if (out) write(out);
}
