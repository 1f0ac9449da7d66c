import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';

/** A btrfs file system on a loop device, with a subvolume: where stat(2) and /proc/PID/maps name files' devices apart. */
export interface BtrfsSubvolume {
  /** a directory inside the subvolume */
  dir: string;
  remove(): void;
}

// (mkfs.btrfs lives in /usr/sbin, which a non-login PATH may lack)
const run = (cmd: string, args: string[]) => spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/sbin` } });

/** Mount one (root only), or say why it cannot be had here. */
export function btrfsSubvolume(): BtrfsSubvolume | { skip: string } {
  if (process.getuid?.() !== 0) return { skip: 'mounting a loop device needs root' };
  if (!/\tbtrfs$/m.test(readFileSync('/proc/filesystems', 'utf8'))) return { skip: 'the kernel has no btrfs' };
  if (run('mkfs.btrfs', ['--version']).status !== 0) return { skip: 'mkfs.btrfs is missing (Debian: apt-get install btrfs-progs)' };
  const base = mkdtempSync(join(tmpdir(), 'pagesnap-btrfs-'));
  const image = join(base, 'fs.img');
  const mnt = join(base, 'mnt');
  let mounted = false;
  const remove = () => {
    if (mounted) run('umount', ['-l', mnt]);
    rmSync(base, { recursive: true, force: true });
  };
  try {
    for (const [cmd, args] of [
      ['truncate', ['-s', '128M', image]],
      ['mkfs.btrfs', ['-q', '-f', image]],
      ['mkdir', [mnt]],
      ['mount', ['-o', 'loop', image, mnt]],
    ] as const) {
      const r = run(cmd, [...args]);
      if (r.status !== 0) {
        remove();
        return { skip: `${cmd} ${args.join(' ')} failed: ${(r.stderr || r.error?.message || '').trim()}` };
      }
      mounted ||= cmd === 'mount';
    }
    const sub = run('btrfs', ['subvolume', 'create', join(mnt, 'sub')]);
    if (sub.status !== 0) throw new Error(`btrfs subvolume create: ${sub.stderr.trim()}`);
  } catch (e) {
    remove();
    throw e;
  }
  return { dir: join(mnt, 'sub'), remove };
}
