/** JSON shapes: bigints (addresses, PFNs, raw entries) become "0x…" strings, so any JSON reader can take them. */
export type Jsonable = string | number | boolean | null | Jsonable[] | { [k: string]: Jsonable };

export function toJson(v: unknown): Jsonable {
  if (typeof v === 'bigint') return `0x${v.toString(16)}`;
  if (v === undefined) return null;
  if (v === null || typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') return v;
  if (Array.isArray(v)) return v.map(toJson);
  if (typeof v === 'object') {
    const out: Record<string, Jsonable> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (x !== undefined) out[k] = toJson(x);
    return out;
  }
  return String(v);
}
