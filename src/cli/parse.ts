/** Parsing what users type: addresses (hex, as /proc/PID/maps prints them), sizes and ranges. */
import { PagesnapError } from '../native/index.js';

export function parseAddress(s: string): bigint {
  const t = s.trim().toLowerCase().replace(/^0x/, '').replace(/_/g, '');
  if (!/^[0-9a-f]{1,16}$/.test(t)) throw new PagesnapError(`not an address: ${JSON.stringify(s)}`, { code: 'EINVAL', hint: 'give a hex address such as 7f12a0000000 or 0x7f12a0000000' });
  return BigInt(`0x${t}`);
}

const UNITS: Record<string, bigint> = { '': 1n, k: 1n << 10n, m: 1n << 20n, g: 1n << 30n, t: 1n << 40n };

export function parseSize(s: string): bigint {
  const t = s.trim().toLowerCase();
  if (t.startsWith('0x')) return parseAddress(t);
  const m = /^(\d+)([kmgt]?)(?:i?b)?$/.exec(t);
  if (!m) throw new PagesnapError(`not a size: ${JSON.stringify(s)}`, { code: 'EINVAL', hint: 'give a size such as 4096, 64K, 2M or 0x1000' });
  return BigInt(m[1]!) * UNITS[m[2]!]!;
}

/** `START-END` (hex addresses) or `START+SIZE`; END is exclusive. */
export function parseRange(s: string): { start: bigint; end: bigint } {
  const plus = s.indexOf('+');
  if (plus > 0) {
    const start = parseAddress(s.slice(0, plus));
    return { start, end: start + parseSize(s.slice(plus + 1)) };
  }
  const dash = s.indexOf('-');
  if (dash <= 0) {
    const start = parseAddress(s);
    return { start, end: start + 4096n };
  }
  return { start: parseAddress(s.slice(0, dash)), end: parseAddress(s.slice(dash + 1)) };
}

export function parsePid(s: string): number {
  if (!/^\d+$/.test(s.trim())) throw new PagesnapError(`not a pid: ${JSON.stringify(s)}`, { code: 'EINVAL', hint: 'give a numeric process id' });
  return Number(s);
}
