import { Args, Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { parsePid } from '../src/cli/parse.js';
import { restore, type FillMode } from '../src/restore/restore.js';
import { renderRestore } from '../src/render/restore.js';
import { phasedProgress } from '../src/render/progress.js';
import { EXIT_DAMAGED_PAGES } from '../src/snapshot/format.js';
import { PagesnapError } from '../src/native/index.js';

/** Exit code when --verify finds restored memory that differs from the snapshot. */
const EXIT_MISMATCH = 5;

export default class Restore extends PagesnapCommand {
  static override summary = 'Put a snapshot\'s memory back into a live address space';
  static override description = [
    'Starts a restore host, a process whose address space receives one process of the snapshot: every region at its own address (MAP_FIXED_NOREPLACE) with its protections. Private anonymous and hugetlb memory is registered with userfaultfd and filled by the page streamer: UFFDIO_COPY for data in large runs, UFFDIO_ZEROPAGE for zero pages, UFFDIO_MOVE of whole 2 MiB blocks through a huge-page staging area where that keeps huge pages whole; holes stay empty. A separate thread serves faults first. Shmem objects come back as memfds holding their data, shared by the regions that shared them; copied-on-write pages of file mappings are written over the file. Pages the snapshot lacks are poisoned (SIGBUS on access), never left as zeros.',
    'With --lazy the host is ready at once: faults are served on demand while the rest is prefetched, and the order of first faults is kept in FILE.profile for the next restore to fill first. With --hold the host keeps running when the restore is complete, for gdb, `pagesnap inspect` or `pagesnap dump`; otherwise it exits.',
    'Exit codes: 0 done; 3 the snapshot has damaged frames (those pages were poisoned); 5 --verify found pages that differ; 1 the restore failed.',
  ].join('\n\n');

  static override examples = [
    { description: 'Restore and check every page', command: '<%= config.bin %> restore app.psnap --verify' },
    { description: 'Restore lazily and keep the host for inspection', command: '<%= config.bin %> restore app.psnap --lazy --hold' },
    { description: 'One process of a multi-process snapshot, moving huge pages whole', command: '<%= config.bin %> restore tree.psnap --pid 1234 --mode move' },
  ];

  static override args = { file: Args.string({ required: true, description: 'snapshot file' }) };

  static override flags = {
    pid: Flags.string({ description: 'which process of the snapshot (needed when it holds several)' }),
    mode: Flags.string({ description: 'how data pages are placed: copy, move (whole 2 MiB blocks by UFFDIO_MOVE wherever possible), auto (move where the process had huge pages)', options: ['copy', 'move', 'auto'], default: 'auto' }),
    lazy: Flags.boolean({ description: 'ready at once: serve faults on demand and prefetch the rest' }),
    hold: Flags.boolean({ description: 'keep the host running after the restore and print its pid' }),
    verify: Flags.boolean({ description: 'read every placed page back and compare it with the snapshot' }),
    relocate: Flags.boolean({ description: 'map regions that collide with the host\'s own mappings elsewhere (pointers are not adjusted)' }),
    threads: Flags.integer({ description: 'fill threads (default: 2, or one per CPU if fewer)', min: 1, max: 64 }),
    'no-profile': Flags.boolean({ description: 'neither use nor record the working-set profile' }),
  };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(Restore);
    // the shmem objects are written before the memory is streamed: a bar for each
    const bar = this.jsonEnabled() ? null : phasedProgress({ objects: 'filling shmem objects', memory: 'restoring' });
    const r = await restore(args.file, {
      pid: flags.pid === undefined ? undefined : parsePid(flags.pid), mode: flags.mode as FillMode, lazy: flags.lazy, hold: flags.hold,
      verify: flags.verify, relocate: flags.relocate, threads: flags.threads, profile: !flags['no-profile'],
      onProgress: bar?.update,
      onReady: (pid) => {
        if (!flags.lazy || this.jsonEnabled()) return;
        bar?.end();
        process.stderr.write(`host ${pid} ready (pages stream in as it runs)\n`);
      },
    });
    bar?.end();
    const out = this.emit(r, () => renderRestore(r));
    if (r.damage.length) {
      const frames = new Set(r.damage.map((d) => d.frame)).size;
      this.failAfter(new PagesnapError(`${args.file}: ${frames} damaged frames; their pages were poisoned`, { code: 'EBADMSG', exitCode: EXIT_DAMAGED_PAGES, hint: '`pagesnap verify` names them' }));
    } else if (r.verify && r.verify.mismatches) {
      this.failAfter(new PagesnapError(`${r.verify.mismatches} restored pages differ from the snapshot`, { code: 'EIO', exitCode: EXIT_MISMATCH }));
    }
    return out;
  }
}
