import { closeSync } from 'node:fs';
import type { TestContext } from 'vitest';
import { memfdCreate, cachestat, isErrno, MFD } from '../../src/native/index.js';
import { skipBecause } from './skip.js';

/** Skip the test, with the reason printed, on a kernel without cachestat(2) (before 6.5). */
export function requireCachestat(ctx: TestContext): void {
  const fd = memfdCreate('pagesnap-probe', MFD.CLOEXEC);
  try {
    cachestat(fd, 0, 0);
  } catch (e) {
    if (!isErrno(e, 'ENOSYS', 'EOPNOTSUPP')) throw e;
    const why = `cachestat(2) is not available (${(e as { code?: string }).code}; Linux 6.5+)`;
    skipBecause(ctx, ctx.task.name, why);
  } finally {
    closeSync(fd);
  }
}

/**
 * Run `f` on a shmem file while no page of it moves to swap, and say which of its first `pages` pages are swapped out
 * (cachestat's evicted, per page). The machine swaps idle pages on its own (kdamond), even allocated pages never
 * written, and a swapped page is other evidence (S3, not S5); so `f` is run again until the state before and after
 * agree.
 */
export function withSwapState<T>(fd: number, pages: number, f: () => T, ps = 4096): { result: T; swapped: boolean[] } {
  const state = () => Array.from({ length: pages }, (_, p) => cachestat(fd, p * ps, ps).evicted > 0);
  for (let i = 0; ; i++) {
    const before = state();
    const result = f();
    const after = state();
    if (before.every((s, p) => s === after[p]) || i === 4) return { result, swapped: after };
  }
}

/** Per-page values merged into [offset, pages, ...value] runs, as run tables list them. */
export function runsOf(perPage: readonly (readonly unknown[])[]): unknown[][] {
  const out: unknown[][] = [];
  perPage.forEach((v, p) => {
    const last = out[out.length - 1];
    if (last && (last[0] as number) + (last[1] as number) === p && v.every((x, i) => x === last[2 + i])) last[1] = (last[1] as number) + 1;
    else out.push([p, 1, ...v]);
  });
  return out;
}
