/**
 * The mounts a process sees (/proc/PID/mountinfo): which file system a mapped file lies on, and the device a mount's
 * files are named by in /proc/PID/maps, learned without asking the file system anything. A FUSE daemon frozen for
 * its own dump would never answer a statfs or a lookup on its mount.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { procPath } from './process.js';

export interface Mount {
  id: number;
  /** the superblock's device, as /proc/PID/maps names it (hex major:minor) */
  dev: string;
  /** "ext4", "tmpfs", "fuse.sshfs", … */
  fsType: string;
}

/** A device as /proc/PID/maps names it ("%02x:%02x"). */
export const devName = (major: number, minor: number): string => `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`;

/** The mounts of `pid`'s mount namespace ('self': ours); none when they cannot be read. */
export function readMounts(pid: number | 'self'): Mount[] {
  let text: string;
  try {
    text = readFileSync(pid === 'self' ? '/proc/self/mountinfo' : procPath(pid, 'mountinfo'), 'utf8');
  } catch {
    return [];
  }
  const out: Mount[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-', 6);
    if (dash < 0) continue;
    const [major, minor] = f[2]!.split(':').map(Number) as [number, number];
    out.push({ id: Number(f[0]), dev: devName(major, minor), fsType: f[dash + 1]! });
  }
  return out;
}

/** The file system type of each device `pid` has mounted. */
export function fsTypesOf(pid: number): Map<string, string> {
  return new Map(readMounts(pid).map((m) => [m.dev, m.fsType]));
}

/** FUSE: a file system served by a process, which may be one being dumped (frozen, it answers nothing). */
export const isFuse = (fsType: string | undefined): boolean => fsType === 'fuse' || fsType === 'fuseblk' || !!fsType?.startsWith('fuse.');

/** Whether `pid` holds /dev/fuse open: it serves a FUSE file system (which one is not shown). */
export function servesFuse(pid: number): boolean {
  const fds = procPath(pid, 'fd');
  try {
    return readdirSync(fds).some((fd) => {
      try {
        return readlinkSync(`${fds}/${fd}`) === '/dev/fuse';
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}
