import { Args, Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { describeSnapshot } from '../src/analyze/show.js';
import { renderShow } from '../src/render/snapshot.js';

export default class Show extends PagesnapCommand {
  static override summary = 'Describe what a snapshot holds';
  static override description = 'Prints the snapshot\'s identity (when, where, by what, how frozen), each process with its pages counted by verdict (stored data, zero, hole, file-backed, shmem, guard, poison, unreadable), and the shmem objects with the processes that map them. Reads only the manifest.';
  static override examples = [
    { description: 'Summary of a snapshot', command: '<%= config.bin %> show app.psnap' },
    { description: 'Every region', command: '<%= config.bin %> show app.psnap --regions' },
    { description: 'Everything as JSON', command: '<%= config.bin %> show app.psnap --json' },
  ];
  static override args = { file: Args.string({ required: true, description: 'snapshot file' }) };
  static override flags = { regions: Flags.boolean({ description: 'list every region' }) };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(Show);
    const r = SnapshotReader.open(args.file);
    try {
      const rep = describeSnapshot(r);
      return this.emit(rep, () => renderShow(rep, flags.regions));
    } finally {
      r.close();
    }
  }
}
