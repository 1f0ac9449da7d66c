/**
 * What a VMA is, from its maps line and VmFlags: the kind decides how its pages are read (from the process, from
 * the shmem object, or never) and how pagemap bits are to be understood there.
 */
import type { MapsEntry } from './maps.js';

export type RegionKind =
  | 'anon-private'
  | 'heap'
  | 'stack'
  | 'shmem-shared'
  | 'file-private'
  | 'file-shared'
  | 'hugetlb'
  | 'vdso'
  | 'vvar'
  | 'vsyscall'
  | 'secret'
  | 'aio-ring'
  | 'kernel-object'
  | 'special';

/** Where the pages behind a region live. */
export type Backing = 'anon' | 'shmem' | 'file' | 'hugetlbfs' | 'kernel' | 'device' | 'secretmem';

/** For shmem-backed regions: which kind of object, so a user can find it again. */
export type ShmemSource = 'memfd' | 'shared-anon' | 'sysv' | 'tmpfs';

export interface RegionClass {
  kind: RegionKind;
  backing: Backing;
  shmem?: ShmemSource;
}

/** A SysV segment's file, as maps names it (shmem or hugetlbfs): SYSV and its key in hex. */
const SYSV_NAME = /^\/SYSV[0-9a-f]{8}$/;

function shmemSource(e: MapsEntry, fsType?: string): ShmemSource | undefined {
  const n = e.name ?? '';
  if (n.startsWith('/memfd:')) return 'memfd';
  if (n === '/dev/zero' && e.deleted) return 'shared-anon';
  if (n.startsWith('[anon_shmem:')) return 'shared-anon';
  if (SYSV_NAME.test(n)) return 'sysv';
  if (n.startsWith('/dev/shm/')) return 'tmpfs';
  // (a container's /dev is often a tmpfs: its device nodes are not shmem)
  if (fsType === 'tmpfs' && !n.startsWith('/dev/')) return 'tmpfs';
  return undefined;
}

/**
 * Another mapping the kernel installs for itself under a bracketed name: [uprobes] (out-of-line execution slots, made
 * when a uprobe first fires; VM_IO), arm's [vectors] and [sigpage]. Bracketed names of process memory are known.
 */
const kernelMade = (n: string | null) =>
  n !== null && n.startsWith('[') && n.endsWith(']') && n !== '[heap]' && !n.startsWith('[stack') && !n.startsWith('[anon:') && !n.startsWith('[anon_shmem:');

/**
 * @param fsType the type of the file system the mapped file lies on (mountinfo, by device): without it tmpfs files
 *               outside /dev/shm look like ordinary files.
 */
export function classifyRegion(e: MapsEntry, vmFlags: readonly string[], fsType?: string): RegionClass {
  const n = e.name;
  if (n === '[vsyscall]') return { kind: 'vsyscall', backing: 'kernel' };
  if (n === '[vdso]') return { kind: 'vdso', backing: 'kernel' };
  if (n === '[vvar]' || n === '[vvar_vclock]') return { kind: 'vvar', backing: 'kernel' };
  if (kernelMade(n)) return { kind: 'special', backing: 'kernel' };
  // VM_PFNMAP / VM_IO: device or remapped kernel memory. Reading it can have side effects; pagemap shows nothing.
  if (vmFlags.includes('pf') || vmFlags.includes('io')) return { kind: 'special', backing: 'device' };
  // memfd_secret(2): removed from the kernel's direct map, so no other process can read it (by design).
  if (n === '/secretmem' && e.deleted && e.dev.startsWith('00:')) return { kind: 'secret', backing: 'secretmem' };
  // io_setup(2)'s completion ring: a file on the kernel's internal aio mount (no mount table lists it), mapped shared
  if (n === '/[aio]' && e.deleted && e.perms.shared && e.dev.startsWith('00:') && fsType === undefined) return { kind: 'aio-ring', backing: 'kernel' };
  if (vmFlags.includes('ht') || fsType === 'hugetlbfs') return { kind: 'hugetlb', backing: 'hugetlbfs' };
  if (n === '[heap]') return { kind: 'heap', backing: 'anon' };
  if (n === '[stack]' || n?.startsWith('[stack:')) return { kind: 'stack', backing: 'anon' };
  if (n === null || n.startsWith('[anon:')) {
    return e.perms.shared ? { kind: 'shmem-shared', backing: 'shmem', shmem: 'shared-anon' } : { kind: 'anon-private', backing: 'anon' };
  }
  // An object only the kernel makes (an io_uring's rings, a perf event's buffer, a BPF map, a KVM vCPU's run
  // structure), mapped through its file: not PFNMAP/IO (those are special above), so its mapped pages can be read.
  if (n.startsWith('anon_inode:')) return { kind: 'kernel-object', backing: 'kernel' };
  // the kernel makes a private mapping of /dev/zero anonymous memory that keeps the device's name: its untouched
  // pages read as zeros, they are no file's
  if (n === '/dev/zero' && !e.perms.shared && !e.deleted) return { kind: 'anon-private', backing: 'anon' };
  const shmem = shmemSource(e, fsType);
  if (e.perms.shared) {
    if (shmem) return { kind: 'shmem-shared', backing: 'shmem', shmem };
    if (n.startsWith('/dev/')) return { kind: 'special', backing: 'device' };
    return { kind: 'file-shared', backing: 'file' };
  }
  if (shmem) return { kind: 'file-private', backing: 'shmem', shmem };
  if (n.startsWith('/dev/')) return { kind: 'special', backing: 'device' };
  return { kind: 'file-private', backing: 'file' };
}

/**
 * The objects no process can open by a name or hold a descriptor of (but through /proc/PID/map_files), so that only
 * their mappings write them: shared anonymous memory and SysV segments, of shmem or of hugetlbfs
 * (MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, SHM_HUGETLB: files of the kernel's own mounts, in no mount table).
 */
export function unnamedSharedObject(r: RegionClass & Pick<MapsEntry, 'name' | 'deleted' | 'perms'> & { fsType?: string }): 'shared-anon' | 'sysv' | undefined {
  if (!r.perms.shared) return undefined;
  if (r.backing === 'shmem') return r.shmem === 'shared-anon' || r.shmem === 'sysv' ? r.shmem : undefined;
  if (r.backing !== 'hugetlbfs' || !r.deleted || r.fsType !== undefined) return undefined;
  if (r.name === '/anon_hugepage') return 'shared-anon';
  return SYSV_NAME.test(r.name ?? '') ? 'sysv' : undefined;
}
