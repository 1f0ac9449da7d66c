/** Where pagesnap's own files are: the package root, and the native parts `npm install` builds under it. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest directory above this module with our package.json (from src/ and dist/ alike). */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'pagesnap') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('pagesnap package root not found');
    dir = up;
  }
}

/** A file native/Makefile builds (the page scanner library, the restore host). */
export function nativeBuild(name: string): string {
  return join(packageRoot(), 'native', 'build', name);
}
