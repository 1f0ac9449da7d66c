import { Args, Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { parsePid, parseRange } from '../src/cli/parse.js';
import { inspect, inspectPages } from '../src/analyze/inspect.js';
import { renderInspect, renderPages } from '../src/render/inspect.js';

export default class Inspect extends PagesnapCommand {
  static override summary = 'Show a live process\'s regions and the state of their pages';
  static override description = [
  'Reads /proc/PID/maps, smaps and pagemap (PAGEMAP_SCAN where the kernel has it, pread otherwise) and counts, per region, the pages that are present (anonymous data, zero page, file or shmem page, PMD-mapped), swapped, migrating, guarded, marked by userfaultfd (uffd-wp, poison) or not present. Nothing in the target is read or changed.',
  '--pages decodes every page of a range: the raw pagemap entry, the PFN or swap type and offset, and kpageflags and kpagecount when running as root. Without CAP_SYS_ADMIN, PFNs and swap types are hidden and the output says which states it cannot tell apart.',
].join('\n\n');

  static override examples = [
    { description: 'Regions and page counts of a process', command: '<%= config.bin %> inspect 1234' },
    { description: 'Decode the pages of one range (hex addresses as in /proc/PID/maps)', command: '<%= config.bin %> inspect 1234 --pages 7f3a1c000000-7f3a1c010000' },
    { description: 'A range given by start and size', command: '<%= config.bin %> inspect 1234 --pages 0x7f3a1c000000+64K' },
    { description: 'Machine-readable output (addresses as "0x…" strings)', command: '<%= config.bin %> inspect 1234 --json' },
    { description: 'Use the pread(2) fallback instead of PAGEMAP_SCAN', command: '<%= config.bin %> inspect 1234 --method pread' },
  ];

  static override args = {
    pid: Args.string({ required: true, description: 'process id to inspect' }),
  };

  static override flags = {
    pages: Flags.string({ description: 'decode each page of START-END or START+SIZE (hex addresses)', helpValue: 'START-END' }),
    method: Flags.string({ description: 'how to read pagemap', options: ['auto', 'scan', 'pread'], default: 'auto' }),
  };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(Inspect);
    const pid = parsePid(args.pid);
    const method = flags.method as 'auto' | 'scan' | 'pread';
    if (flags.pages) {
      const { start, end } = parseRange(flags.pages);
      const rep = inspectPages(pid, start, end, { method });
      return this.emit(rep, () => renderPages(rep));
    }
    const rep = inspect(pid, { method });
    return this.emit(rep, () => renderInspect(rep));
  }
}
