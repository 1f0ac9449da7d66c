import { Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { lab } from '../src/analyze/lab.js';
import { renderLab, renderLabLine } from '../src/render/lab.js';

export default class Lab extends PagesnapCommand {
  static override summary = 'Re-create each known pagemap inaccuracy on this kernel and prove what pagesnap keeps';
  static override description = [
    'For each known inaccuracy (shmem that pagemap cannot show: zapped, written with pwrite, inherited by a fork child, swapped out; the seeds scenario; guard, uffd-wp and poison markers; the huge zero page\'s PM_FILE; KSM; private memfd pages; hugetlb; migration entries under compaction) it builds the state in fixture processes of its own and reports what pagemap and PAGEMAP_SCAN say, where the data really is, how many pages a pagemap-only dumper loses, and how many pagesnap\'s dump keeps, read back byte for byte.',
    'Needs root. Turns on zram swap when none is on, KSM, THP for madvised regions and hugetlb pages as needed, and puts every setting back when it ends, even on failure.',
  ].join('\n\n');
  static override examples = [
    { description: 'The whole lab', command: '<%= config.bin %> lab' },
    { description: 'Only the shmem cases, as JSON', command: '<%= config.bin %> lab --only shmem --json' },
  ];
  static override flags = {
    only: Flags.string({ description: 'run only entries whose name contains this (repeatable)', multiple: true }),
    'migration-seconds': Flags.integer({ description: 'how long to watch for migration entries under compaction (0 skips it)', default: 5, min: 0, max: 600 }),
  };

  async run(): Promise<unknown> {
    const { flags } = await this.parse(Lab);
    const live = !this.jsonEnabled() && process.stderr.isTTY;
    const rep = await lab({ only: flags.only, migrationSeconds: flags['migration-seconds'], onResult: live ? (r) => process.stderr.write(`${renderLabLine(r)}\n`) : undefined });
    return this.emit(rep, () => renderLab(rep));
  }
}
