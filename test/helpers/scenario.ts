import { beforeAll, afterAll, expect, type TestContext } from 'vitest';
import { Fixture, type FixtureRegion } from '../../fixtures/driver.js';
import { createHash } from 'node:crypto';
import { processVmReadv } from '../../src/native/index.js';
import { SnapshotReader } from '../../src/snapshot/reader.js';
import type { Prepared } from './host.js';
import { skipBecause } from './skip.js';
import { cliJson } from './cli.js';

/** The machine feature a scenario needs, so a skip can say why. */
export const NEEDS: Record<string, keyof Prepared['unavailable']> = { swap: 'swap', seed: 'swap', ksm: 'ksm', thp: 'thp', hugetlb: 'hugetlb' };

/** Why scenario `name` cannot run on this machine, or undefined. */
export function unavailable(name: string, prepared: Prepared): string | undefined {
  const need = NEEDS[name];
  return need ? (prepared.unavailable[need] ?? undefined) : undefined;
}

/**
 * Start scenario `name` once for the tests of the enclosing describe block and stop it after them. Each test calls
 * skipIf(ctx) first: it is skipped, with the reason printed, when the machine or the scenario cannot provide it.
 * `prepared`: the host's preparation, for a scenario that needs swap, KSM, THP or hugetlb.
 */
export function useScenario(name: string, prepared?: () => Prepared) {
  let fx: Fixture | undefined;
  let skip: string | undefined;
  beforeAll(async () => {
    skip = prepared && unavailable(name, prepared());
    if (skip) return;
    fx = await Fixture.start([name]);
    skip = fx.scenario(name).skip;
  }, 60_000);
  afterAll(async () => {
    await fx?.stop();
  });
  return {
    get fx(): Fixture {
      return fx!;
    },
    skipIf(ctx: TestContext): void {
      if (skip) {
        skipBecause(ctx, name, skip);
      }
    },
  };
}

/** A fixture region's bytes as process `pid` holds them now (the fixture's, or a restore host's at the same place). */
export function liveBytes(pid: number, r: FixtureRegion): Buffer {
  const b = Buffer.alloc(r.pages * 4096);
  expect(processVmReadv(pid, [b], [{ addr: r.start, len: b.length }])).toBe(b.length);
  return b;
}

/** Skip a precopy test where system calls cannot be injected into a target (x86-64 only), saying so. */
export function skipUnlessX64(ctx: TestContext, what: string): void {
  if (process.arch !== 'x64') {
    skipBecause(ctx, what, `system calls are injected on x86-64 only (this is ${process.arch})`);
  }
}

/**
 * What a snapshot records of processes: each region's start, VmFlags and runs (with the case that decided each), and
 * a hash of the bytes of each run held in `still` regions (a scenario's own: the rest of a fixture's memory may
 * change under its runtime between two dumps).
 */
export function recordsOf(file: string, procs: readonly { pid: number; still: readonly { start: bigint }[] }[]) {
  const r = SnapshotReader.open(file);
  try {
    return procs.map((p) => {
      const proc = r.process(p.pid);
      return proc.regions.map((x) => {
        const runs = [...r.runsOf(x.runs, r.pagesOf(x))];
        const held = p.still.some((f) => f.start === x.start) ? runs.filter((u) => u.verdict === 'data' || u.verdict === 'zero') : [];
        const bytes = held.map((u) => createHash('sha256').update(r.read(proc, x.start + BigInt(u.offset) * 4096n, u.pages * 4096)).digest('hex'));
        return { start: x.start, vmFlags: x.vmFlags, runs: runs.map((u) => [u.offset, u.pages, u.verdict, u.case]), bytes };
      });
    });
  } finally {
    r.close();
  }
}

/**
 * A snapshot of known content: a fixture of `names` started, dumped into `file` by the CLI as a user would, and
 * stopped. Returns the fixture, for the layout it reported.
 */
export async function dumpFixture(file: string, names: string[], opts: Parameters<typeof Fixture.start>[1] = {}): Promise<Fixture> {
  const fx = await Fixture.start(names, opts);
  try {
    cliJson(['dump', String(fx.pid), '-o', file]);
  } finally {
    await fx.stop();
  }
  return fx;
}
