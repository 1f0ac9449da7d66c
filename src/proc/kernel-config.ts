/**
 * How swap-entry type numbers are laid out on this kernel. The top of the 5-bit type space is taken by special
 * entries (pte markers, migration, device, hwpoison) whose count depends on the kernel config
 * (include/linux/swap.h), so decoding a pagemap swap frame needs /proc/config.gz or /boot/config-$(uname -r).
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { release } from 'node:os';

export interface SwapTypeLayout {
  /** Real swap areas are types 0 .. maxSwapfiles-1. */
  maxSwapfiles: number;
  hwpoison: number | null;
  migration: { read: number; readExclusive: number; write: number } | null;
  device: { write: number; read: number; exclusive: number } | null;
  marker: number;
  /** Where the layout came from; 'assumed' means no config was readable and types between are ambiguous. */
  source: string;
  /** Types whose meaning could not be established (only when source is 'assumed'). */
  ambiguous: number[];
}

export interface ConfigFlags {
  DEVICE_PRIVATE: boolean;
  MIGRATION: boolean;
  MEMORY_FAILURE: boolean;
  MEM_SOFT_DIRTY: boolean;
}

export function swapTypeLayout(cfg: ConfigFlags, source: string): SwapTypeLayout {
  const deviceNum = cfg.DEVICE_PRIVATE ? 3 : 0;
  const migrationNum = cfg.MIGRATION ? 3 : 0;
  const hwpoisonNum = cfg.MEMORY_FAILURE ? 1 : 0;
  const max = 32 - deviceNum - migrationNum - hwpoisonNum - 1;
  return {
    maxSwapfiles: max,
    hwpoison: hwpoisonNum ? max : null,
    migration: migrationNum ? { read: max + hwpoisonNum, readExclusive: max + hwpoisonNum + 1, write: max + hwpoisonNum + 2 } : null,
    device: deviceNum
      ? { write: max + hwpoisonNum + migrationNum, read: max + hwpoisonNum + migrationNum + 1, exclusive: max + hwpoisonNum + migrationNum + 2 }
      : null,
    marker: 31,
    source,
    ambiguous: [],
  };
}

export function parseConfig(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^CONFIG_([A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

function readConfigText(): { text: string; source: string } | null {
  try {
    return { text: gunzipSync(readFileSync('/proc/config.gz')).toString(), source: '/proc/config.gz' };
  } catch {
    /* fall through */
  }
  const boot = `/boot/config-${release()}`;
  try {
    return { text: readFileSync(boot, 'utf8'), source: boot };
  } catch {
    return null;
  }
}

export interface KernelConfig {
  flags: ConfigFlags | null;
  swapTypes: SwapTypeLayout;
}

let cached: KernelConfig | undefined;

/**
 * Without a config, assume the distro layout (24 real types) and call 24..30 ambiguous: an entry there is
 * certainly not real swap, but whether it is migration, device or hwpoison cannot be said.
 */
export function kernelConfig(): KernelConfig {
  if (cached) return cached;
  const found = readConfigText();
  if (found) {
    const c = parseConfig(found.text);
    const flags: ConfigFlags = {
      DEVICE_PRIVATE: c.DEVICE_PRIVATE === 'y',
      MIGRATION: c.MIGRATION === 'y',
      MEMORY_FAILURE: c.MEMORY_FAILURE === 'y',
      MEM_SOFT_DIRTY: c.MEM_SOFT_DIRTY === 'y',
    };
    cached = { flags, swapTypes: swapTypeLayout(flags, found.source) };
  } else {
    const assumed = swapTypeLayout({ DEVICE_PRIVATE: true, MIGRATION: true, MEMORY_FAILURE: true, MEM_SOFT_DIRTY: false }, 'assumed');
    assumed.hwpoison = null;
    assumed.migration = null;
    assumed.device = null;
    assumed.ambiguous = [24, 25, 26, 27, 28, 29, 30];
    cached = { flags: null, swapTypes: assumed };
  }
  return cached;
}
