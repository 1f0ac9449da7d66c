/**
 * /proc/PID/smaps: a maps header line per VMA followed by `Field:   N kB` counters, `THPeligible: 0|1`,
 * `ProtectionKey: N` and `VmFlags: rd wr ...`. Unknown fields are kept (kernels add them); sizes become bytes.
 */
import { parseMapsLine, MAPS_HEADER, MapsParseError, type MapsEntry } from './maps.js';

export interface SmapsEntry extends MapsEntry {
  /** Every counter, in bytes for `kB` fields and as-is otherwise: Rss, Pss, Swap, AnonHugePages, KSM, ... */
  fields: Record<string, number>;
  vmFlags: string[];
}

const FIELD = /^([A-Za-z_][A-Za-z0-9_]*):\s+(\d+)(?: kB)?\s*$/;

export function parseSmaps(text: string): SmapsEntry[] {
  const out: SmapsEntry[] = [];
  let cur: SmapsEntry | null = null;
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line === '') continue;
    if (MAPS_HEADER.test(line)) {
      cur = { ...parseMapsLine(line, i + 1), fields: {}, vmFlags: [] };
      out.push(cur);
      continue;
    }
    if (!cur) throw new MapsParseError(line, i + 1, 'smaps field before any mapping');
    if (line.startsWith('VmFlags:')) {
      cur.vmFlags = line.slice(8).trim().split(/\s+/).filter(Boolean);
      continue;
    }
    const m = FIELD.exec(line);
    if (!m) throw new MapsParseError(line, i + 1, 'malformed smaps field');
    const value = Number(m[2]);
    cur.fields[m[1]!] = line.trimEnd().endsWith(' kB') ? value * 1024 : value;
  }
  return out;
}
