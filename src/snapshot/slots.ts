/**
 * The compression slots' memory as each thread sees it: one anonymous mapping, viewed at the same address by the
 * main thread and by every compression worker (threads share the address space).
 */
import { view } from '../native/libc.js'; // not native/index: a compression worker needs only this
import type { Addr } from '../native/index.js';

/** Where the slots are, for a worker to view the same memory. */
export interface SlotMemory {
  addr: Addr;
  slots: number;
  /** bytes from one slot's input to the next */
  stride: number;
  /** bytes from a slot's input to its output */
  outputAt: number;
  inputBytes: number;
  outputBytes: number;
}

export const pageAligned = (n: number) => Math.ceil(n / 4096) * 4096;

export function slotViews(m: SlotMemory): { input: Buffer; output: Buffer }[] {
  return Array.from({ length: m.slots }, (_, i) => {
    const at = m.addr + BigInt(i * m.stride);
    return { input: view(at, m.inputBytes), output: view(at + BigInt(m.outputAt), m.outputBytes) };
  });
}
