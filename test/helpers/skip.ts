import type { TestContext } from 'vitest';

/** Skip the running test, printing why first (vitest's summary counts a skip but does not say why). */
export function skipBecause(ctx: TestContext, what: string, why: string): never {
  console.log(`SKIP ${what}: ${why}`);
  return ctx.skip(why);
}
