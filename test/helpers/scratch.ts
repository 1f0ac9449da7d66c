import { afterAll, beforeAll } from 'vitest';
import { chmodSync, mkdirSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A directory of the test file's own, /tmp/pagesnap-NAME-PID-RAND, made before its tests and removed after them.
 * Made in a hook, not as the file loads: a name filter that skips all of a file's tests skips its hooks too, and a
 * directory made at load time would be left behind.
 */
export function scratchDir(name: string, mode = 0o700): string {
  const dir = join(tmpdir(), `pagesnap-${name}-${process.pid}-${randomBytes(3).toString('hex')}`);
  beforeAll(() => {
    mkdirSync(dir);
    chmodSync(dir, mode); // exactly, whatever the umask (0755 lets another user's client reach a socket in it)
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
