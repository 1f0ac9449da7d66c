/**
 * SysV shared memory segments as /proc/sysvipc/shm lists them: how many mappings each has, and when one was last
 * made or removed. The kernel counts every mapping (`nattch`: each vma, so a split one counts twice) and stamps the
 * segment whenever a mapping of it is made (`atime`: shmat, and a vma opened by fork, split or mremap) or removed
 * (`dtime`: shmdt, munmap, exit), in whole seconds of the realtime clock.
 * The list is of the reader's IPC namespace: a process in another sees other segments under the same ids.
 */
import { readFileSync, readlinkSync } from 'node:fs';

export interface ShmSegment {
  shmid: number;
  /** mappings of it, in every process */
  nattch: number;
  /** when a mapping was last made / removed (s since the epoch; 0: never) */
  atime: number;
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
  const [id, nattch, atime, dtime] = [col('shmid'), col('nattch'), col('atime'), col('dtime')];
  for (const line of lines.slice(1)) {
    const f = line.trim().split(/\s+/);
    if (Number(f[id]) === shmid) return { shmid, nattch: Number(f[nattch]), atime: Number(f[atime]), dtime: Number(f[dtime]) };
  }
  return undefined;
}

/** Whether `pid` is in pagesnap's IPC namespace (whose segments /proc/sysvipc/shm lists). */
export function inOurIpcNamespace(pid: number): boolean {
  return readlinkSync(`/proc/${pid}/ns/ipc`) === readlinkSync('/proc/self/ns/ipc');
}
