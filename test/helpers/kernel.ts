import { closeSync } from 'node:fs';
import type { TestContext } from 'vitest';
import { memfdCreate, cachestat, isErrno, MFD } from '../../src/native/index.js';

/** Skip the test, with the reason printed, on a kernel without cachestat(2) (before 6.5). */
export function requireCachestat(ctx: TestContext): void {
  const fd = memfdCreate('pagesnap-probe', MFD.CLOEXEC);
  try {
    cachestat(fd, 0, 0);
  } catch (e) {
    if (!isErrno(e, 'ENOSYS', 'EOPNOTSUPP')) throw e;
    const why = `cachestat(2) is not available (${(e as { code?: string }).code}; Linux 6.5+)`;
    console.log(`SKIP ${ctx.task.name}: ${why}`);
    ctx.skip(why);
  } finally {
    closeSync(fd);
  }
}
