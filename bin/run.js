#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { execute } from '@oclif/core';

// Node raises its limit on open files to the hard limit. Below this many, loading modules and starting worker
// threads fail in ways that name the wrong cause (a module "not found", a worker's stack trace).
const MIN_FILES = 128;
let limit;
try {
  limit = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
} catch {
  // (no /proc: each command says what it cannot read)
}
if (limit !== undefined && Number(limit) < MIN_FILES) {
  const command = process.argv.slice(2).find((a) => !a.startsWith('-'));
  process.stderr.write(`pagesnap${command ? ` ${command}` : ''}: this process may open only ${limit} files (EMFILE), and pagesnap needs ${MIN_FILES} — raise the limit (ulimit -n 1024) and run it again\n`);
  process.exit(1);
}

await execute({ dir: import.meta.url });
