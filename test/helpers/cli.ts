import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const RUN_JS = fileURLToPath(new URL('../../bin/run.js', import.meta.url));

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run the built CLI (what a user runs), as root or as another uid. */
export function cli(args: string[], opts: { env?: Record<string, string>; uid?: number; gid?: number; cwd?: string } = {}): CliResult {
  const r = spawnSync(process.execPath, [RUN_JS, ...args], {
    encoding: 'utf8', env: { ...process.env, ...opts.env }, uid: opts.uid, gid: opts.gid, cwd: opts.cwd, timeout: 60_000, killSignal: 'SIGKILL',
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function cliJson<T = any>(args: string[], opts: Parameters<typeof cli>[1] = {}): T {
  const r = cli([...args, '--json'], opts);
  if (r.code !== 0) throw new Error(`pagesnap ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}
