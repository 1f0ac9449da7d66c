// A process in a pid namespace of its own, as a container's processes are, dumped from outside it: the snapshot
// names it by the pid pagesnap sees, and keeps the pid it has in its namespace (the one its container shows).
import { describe, it, expect, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { readIdentity } from '../src/proc/process.js';
import { descendants } from '../src/dump/targets.js';
import { cliJson, cli } from './helpers/cli.js';
import { scratchDir } from './helpers/scratch.js';
import { skipBecause } from './helpers/skip.js';

const dir = scratchDir('namespaces');
const started: number[] = [];
afterAll(() => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // (gone already)
    }
  }
});

describe('dump of a process in a pid namespace of its own', () => {
  it('records the pid it has there, which show prints beside pagesnap\'s', async (ctx) => {
    if (spawnSync('unshare', ['--pid', '--fork', 'true']).status !== 0) {
      const why = 'unshare --pid cannot make a pid namespace here';
      skipBecause(ctx, 'pid namespace', why);
    }
    // unshare stays in pagesnap's namespace; the child it forks is pid 1 of the new one, and its child pid 2
    const unshare = spawn('unshare', ['--pid', '--fork', '--kill-child', 'sh', '-c', 'sleep 1000 & exec sleep 1001'], { stdio: 'ignore' });
    started.push(unshare.pid!);
    // (both there once the shell has made the second and become the first)
    const sleeping = () => descendants([unshare.pid!]).slice(1).filter((pid) => readIdentity(pid).comm === 'sleep');
    for (const until = Date.now() + 10_000; sleeping().length < 2 && Date.now() < until; ) await sleep(20);
    const inner = sleeping();
    expect(inner).toHaveLength(2);
    const file = join(dir, 'ns.psnap');
    cliJson(['dump', String(unshare.pid), '--tree', '-o', file]);
    const snap = SnapshotReader.open(file);
    try {
      expect(snap.process(unshare.pid).nsPids).toBeUndefined();
      expect(snap.process(inner[0]).nsPids).toEqual([1]);
      expect(snap.process(inner[1]).nsPids).toEqual([2]);
    } finally {
      snap.close();
    }
    const shown = cliJson<{ processes: { pid: number; nsPids: number[] }[] }>(['show', file]);
    expect(shown.processes.map((p) => [p.pid, p.nsPids])).toEqual([[unshare.pid, []], [inner[0], [1]], [inner[1], [2]]]);
    expect(cli(['show', file]).stdout).toContain(`process ${inner[0]} (sleep) · pid 1 in its pid namespace · ppid ${unshare.pid}`);
  });
});
