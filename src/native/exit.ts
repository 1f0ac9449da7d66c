/**
 * Undo actions that must run however the process ends: normal exit, an uncaught error (Node still emits
 * 'exit'), or SIGINT/SIGTERM/SIGHUP (run, then die of the same signal). Signal handlers are installed only while
 * something is registered, so a program embedding pagesnap keeps its own signal behaviour otherwise.
 * Actions must be synchronous. SIGKILL cannot be caught: for that, `watchdog` runs a shell command once this
 * process is gone.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const actions = new Set<() => void>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

function runAll(): void {
  for (const a of [...actions].reverse()) {
    actions.delete(a);
    try {
      a();
    } catch {
      /* keep undoing the rest */
    }
  }
  uninstall();
}

function onSignal(sig: NodeJS.Signals): void {
  runAll();
  process.kill(process.pid, sig);
}

function install(): void {
  process.on('exit', runAll);
  for (const s of SIGNALS) process.on(s, onSignal);
}

function uninstall(): void {
  process.off('exit', runAll);
  for (const s of SIGNALS) process.off(s, onSignal);
}

/** Register `action`; the returned function unregisters it (call it once the action is no longer needed). */
export function atExit(action: () => void): () => void {
  if (actions.size === 0) install();
  actions.add(action);
  return () => {
    actions.delete(action);
    if (actions.size === 0) uninstall();
  };
}

/** `s` as one word for /bin/sh. */
export const shellQuote = (s: string): string => `'${s.replaceAll("'", "'\\''")}'`;

/**
 * A shell waiting on a pipe from us that runs `command` if the pipe closes before it is dismissed: covers this
 * process being killed outright. Detached, so a Ctrl-C to our process group does not take it first.
 */
export function watchdog(command: string): { dismiss(): void } {
  const w = spawn('/bin/sh', ['-c', `read line; [ "$line" = done ] || { ${command}; }`], { stdio: ['pipe', 'ignore', 'ignore'], detached: true });
  w.unref();
  let dismissed = false;
  return {
    dismiss: () => {
      if (!dismissed) w.stdin?.end('done\n');
      dismissed = true;
    },
  };
}

/**
 * A directory of our own in the system's temporary directory (PREFIXXXXXXX) that goes with us however we end:
 * `remove()`, an exit or a signal (atExit), or, killed outright, a watchdog.
 */
export function ownedTempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  const rm = () => rmSync(path, { recursive: true, force: true });
  const forget = atExit(rm);
  const dog = watchdog(`rm -rf ${shellQuote(path)}`);
  return {
    path,
    remove: () => {
      rm();
      forget();
      dog.dismiss();
    },
  };
}
