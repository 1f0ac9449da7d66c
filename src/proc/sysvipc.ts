/**
 * SysV shared memory segments as /proc/sysvipc/shm lists them: how many mappings each has, and when one was last
 * removed. The kernel counts every mapping (`nattch`: each vma, so a split one counts twice, and a fork's count too)
 * and stamps the segment whenever a mapping of it is removed (`dtime`: shmdt, munmap, exit), in whole seconds of
 * the realtime clock. (It stamps one made too, `atime`, a fork's included: nothing a count does not say.)
 * The list is of the reader's IPC namespace: a process in another sees other segments under the same ids.
 */
import { readFileSync, readlinkSync } from 'node:fs';

export interface ShmSegment {
  shmid: number;
  /** mappings of it, in every process */
  nattch: number;
  /** when a mapping was last removed (s since the epoch; 0: never) */
  dtime: number;
}

/**
 * The segment `shmid` of pagesnap's IPC namespace now, or undefined when it is gone. (Its id is the inode number maps
 * shows for its mappings.)
 */
export function shmSegment(shmid: number): ShmSegment | undefined {
  const lines = readFileSync('/proc/sysvipc/shm', 'utf8').split('\n');
  const head = lines[0]!.trim().split(/\s+/);
  const col = (name: string) => {
    const i = head.indexOf(name);
    if (i < 0) throw new Error(`/proc/sysvipc/shm has no column ${name}`);
    return i;
  };
  const [id, nattch, dtime] = [col('shmid'), col('nattch'), col('dtime')];
  for (const line of lines.slice(1)) {
    const f = line.trim().split(/\s+/);
    if (Number(f[id]) === shmid) return { shmid, nattch: Number(f[nattch]), dtime: Number(f[dtime]) };
  }
  return undefined;
}

/** Whether `pid` is in pagesnap's IPC namespace (whose segments /proc/sysvipc/shm lists). */
export function inOurIpcNamespace(pid: number): boolean {
  return readlinkSync(`/proc/${pid}/ns/ipc`) === readlinkSync('/proc/self/ns/ipc');
}
