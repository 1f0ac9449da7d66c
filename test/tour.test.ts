// `npm start` is the first thing a newcomer runs: every step must succeed and show its figures, the diff must find
// exactly the pages the tour changed, and nothing the tour started or wrote may be left behind.
import { describe, it, expect } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { isAlive } from '../src/proc/process.js';
import { tmpdir } from 'node:os';

const tour = (args: string[] = [], as?: number) => spawnSync(process.execPath, ['--import', 'tsx', 'scripts/start.ts', ...args], {
  encoding: 'utf8', timeout: 120_000, ...(as === undefined ? {} : { uid: as, gid: as, env: { ...process.env, HOME: tmpdir() } }),
});

/** What the tour says it made; every one must be named, so that "gone" below cannot pass for want of a name. */
function parse(out: string) {
  const t = {
    dir: /files in (\S+)/.exec(out)?.[1] ?? '',
    workload: Number(/The workload: process (\d+)/.exec(out)?.[1]),
    host: Number(/host (\d+): ready/.exec(out)?.[1]),
    steps: [...out.matchAll(/^ ?\d+\. ([^:(\n]+)/gm)].map((m) => m[1]!.trim()),
  };
  expect(t.dir).toMatch(/pagesnap-tour-/);
  expect(t.workload).toBeGreaterThan(0);
  expect(t.host).toBeGreaterThan(0);
  return t;
}

describe('the tour (npm start)', () => {
  it('runs every step with its figures, finds exactly the changed pages, and leaves nothing behind', () => {
    const r = tour();
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const t = parse(r.stdout);
    expect(t.steps).toEqual(['inspect', 'audit', 'dump', 'show', 'the workload changes some pages', 'dump --parent', 'verify', 'diff', 'restore --lazy --verify']);
    expect(r.stdout).toMatch(/would lose \d+ pages of data \(S2 \d+/);
    expect(r.stdout).toMatch(/written: 3 pages changed, 3 expected ✓/);
    expect(r.stdout).toMatch(/memfd: 2 pages changed, 2 expected ✓/);
    expect(r.stdout).toMatch(/mixed: 1 page removed \(now zero\), 1 expected ✓/);
    expect(r.stdout).toMatch(/verify: all [\d,]+ placed pages match the snapshot ✓/);
    expect(r.stdout).not.toContain('✗');
    expect(existsSync(t.dir)).toBe(false);
    expect(isAlive(t.workload)).toBe(false);
    expect(isAlive(t.host)).toBe(false);
  }, 120_000);

  it('--keep leaves the snapshots (0600) and the heatmap it names', () => {
    const r = tour(['--keep']);
    const kept = /files in (\S+)/.exec(r.stdout)?.[1];
    try {
      expect(r.status, r.stdout + r.stderr).toBe(0);
      const t = parse(r.stdout);
      expect(readFileSync(join(t.dir, 'audit.svg'), 'utf8')).toMatch(/^<svg/);
      for (const f of ['tour-1.psnap', 'tour-2.psnap']) expect(statSync(join(t.dir, f)).mode & 0o777).toBe(0o600);
      expect(isAlive(t.workload)).toBe(false);
    } finally {
      if (kept) rmSync(kept, { recursive: true, force: true });
    }
  }, 120_000);

  /** The tour started, until it has named its directory and workload: then `act` on it; what it left after. */
  async function interrupted(act: (tour: ReturnType<typeof spawn>) => void) {
    const p = spawn(process.execPath, ['--import', 'tsx', 'scripts/start.ts'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let stderr = '';
    p.stderr!.on('data', (d) => (stderr += d));
    await new Promise<void>((resolve) => p.stdout!.on('data', (d) => {
      out += d;
      if (/The workload: process \d+/.test(out)) resolve();
    }));
    const dir = /files in (\S+)/.exec(out)![1]!;
    const workload = Number(/The workload: process (\d+)/.exec(out)![1]);
    const exited = once(p, 'exit') as Promise<[number | null, string | null]>;
    act(p);
    const [code, signal] = await exited;
    const left = () => ({ dir: existsSync(dir), workload: isAlive(workload) || existsSync(`/dev/shm/pagesnap-fixture-${workload}`) });
    for (let i = 0; i < 100 && (left().dir || left().workload); i++) await new Promise((r) => setTimeout(r, 50));
    return { code, signal, stderr, left: left() };
  }

  it('a reader that goes away (npm start | head) ends it quietly, and nothing is left', async () => {
    const r = await interrupted((p) => p.stdout!.destroy());
    expect(r).toEqual({ code: 0, signal: null, stderr: '', left: { dir: false, workload: false } });
  }, 120_000);

  it.for(['SIGINT', 'SIGKILL'] as const)('stopped by %s (Ctrl-C, or killed outright), it leaves no file and no process', { timeout: 120_000 }, async (sig) => {
    const r = await interrupted((p) => p.kill(sig));
    expect(r).toEqual({ code: null, signal: sig, stderr: '', left: { dir: false, workload: false } });
  });

  it('needs no root: as another user it works on a process of its own', () => {
    const r = tour([], 65534);
    expect(r.status, r.stdout + r.stderr).toBe(0);
    const t = parse(r.stdout);
    expect(t.steps).toHaveLength(9);
    expect(r.stdout).toMatch(/verify: all [\d,]+ placed pages match the snapshot ✓/);
    expect(r.stdout).not.toContain('✗');
    expect(existsSync(t.dir)).toBe(false);
    expect(isAlive(t.workload)).toBe(false);
  }, 120_000);
});
