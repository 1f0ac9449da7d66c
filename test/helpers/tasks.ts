import { readdirSync } from 'node:fs';
import { readStat } from '../../src/proc/process.js';

/** The state letter of each thread of PID, in thread-id order. */
export function taskStates(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b).map((t) => readStat(t).state);
}

/**
 * The thread states once none is running: a thread let go by a thaw, or one that has just said it is ready, is
 * briefly R on its way back into the call it sleeps in. Gives up after two seconds and returns what it sees.
 */
export async function settledTaskStates(pid: number): Promise<string[]> {
  for (let i = 0; i < 200; i++) {
    const now = taskStates(pid);
    if (!now.includes('R')) return now;
    await new Promise((r) => setTimeout(r, 10));
  }
  return taskStates(pid);
}
