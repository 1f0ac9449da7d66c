// Machine settings changed for tests and the lab are shared by every pagesnap process: a change stays while any
// live process needs it and is undone when the last one lets go — by restoring, by exiting, or by dying (its watchdog
// undoes it, or failing that the next process that finds it dead).
import { describe, it, expect } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { once } from 'node:events';
import { HostSettings } from '../src/host/settings.js';

const KNOB = '/sys/kernel/mm/ksm/sleep_millisecs';
const read = () => readFileSync(KNOB, 'utf8').trim();
const skip = !existsSync(KNOB) ? `${KNOB} is missing (no KSM in this kernel)` : process.getuid?.() !== 0 ? 'needs root' : null;
if (skip) console.log(`host-settings tests skipped: ${skip}`);

async function child(value: string): Promise<ChildProcess> {
  const c = spawn(process.execPath, ['--import', 'tsx', 'test/helpers/settings-child.ts', KNOB, value], { stdio: ['pipe', 'pipe', 'inherit'] });
  const [line] = (await once(c.stdout!, 'data')) as [Buffer];
  expect(line.toString()).toBe('ready\n');
  return c;
}
const finish = async (c: ChildProcess) => {
  const done = once(c, 'exit');
  c.stdin!.end();
  await done;
};

describe.skipIf(skip)('shared machine settings', () => {
  it('a change another process still needs is not undone under it', async () => {
    const orig = read();
    const changed = String(Number(orig) + 7);
    const c = await child(changed);
    const mine = new HostSettings();
    try {
      expect(read()).toBe(changed);
      mine.set(KNOB, changed); // already so: now this process needs it too
      await finish(c);
      expect(read()).toBe(changed);
    } finally {
      mine.restore();
    }
    expect(read()).toBe(orig);
  });

  it('a change only the other process needed is undone when it restores, while this one holds others', async () => {
    const orig = read();
    const mine = new HostSettings();
    try {
      mine.set('/sys/kernel/mm/ksm/pages_to_scan', String(Number(readFileSync('/sys/kernel/mm/ksm/pages_to_scan', 'utf8')) + 1));
      const c = await child(String(Number(orig) + 3));
      await finish(c);
      expect(read()).toBe(orig);
    } finally {
      mine.restore();
    }
  });

  it('a change over another process\'s change of the same setting gives back theirs, and theirs the original', async () => {
    const orig = read();
    const theirs = String(Number(orig) + 11);
    const c = await child(theirs);
    const mine = new HostSettings();
    try {
      mine.set(KNOB, String(Number(orig) + 13));
      mine.restore();
      expect(read()).toBe(theirs);
      // and the other way round: mine over theirs, theirs let go first
      mine.set(KNOB, String(Number(orig) + 17));
      await finish(c);
      expect(read()).toBe(String(Number(orig) + 17));
    } finally {
      mine.restore();
    }
    expect(read()).toBe(orig);
  });

  it('a process killed outright: its watchdog undoes what it needed once it is gone', async () => {
    const orig = read();
    const c = await child(String(Number(orig) + 5));
    c.kill('SIGKILL');
    await once(c, 'exit');
    for (let i = 0; i < 100 && read() !== orig; i++) await new Promise((r) => setTimeout(r, 50));
    expect(read()).toBe(orig);
  });

  it('a process killed outright with its watchdog: the next one undoes what it needed', async () => {
    const orig = read();
    const c = await child(String(Number(orig) + 5));
    const dog = watchdogOf(c.pid!);
    expect(dog).toBeGreaterThan(0);
    process.kill(dog!, 'SIGKILL');
    c.kill('SIGKILL');
    await once(c, 'exit');
    await new Promise((r) => setTimeout(r, 300));
    expect(read()).not.toBe(orig);
    new HostSettings();
    expect(read()).toBe(orig);
  });
});

/** The watchdog shell of `pid`: the one process whose command line would release what `pid` needed. */
function watchdogOf(pid: number): number | undefined {
  return readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).find((p) => {
    try {
      return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(`releaseDead(${pid})`);
    } catch {
      return false;
    }
  });
}
