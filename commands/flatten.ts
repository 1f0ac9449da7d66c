import { Args, Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { flatten } from '../src/snapshot/flatten.js';
import { wrote } from '../src/render/snapshot.js';

export default class Flatten extends PagesnapCommand {
  static override summary = 'Write a self-contained copy of an incremental snapshot';
  static override description = 'Reads an incremental snapshot through its chain of parents and writes one file that needs none of them: every page the snapshot refers to is stored once. Like dump, the file appears under its name only when complete, with mode 0600.';
  static override examples = [
    { description: 'Make app-2.psnap independent of app.psnap', command: '<%= config.bin %> flatten app-2.psnap -o app-2-full.psnap' },
    { description: 'Send it whole to another machine', command: '<%= config.bin %> flatten app-2.psnap -o - | ssh backup \'cat > app-2.psnap\'' },
  ];
  static override args = { file: Args.string({ required: true, description: 'snapshot file (incremental or not)' }) };
  static override flags = {
    output: Flags.string({ char: 'o', required: true, description: 'the self-contained snapshot to write, - for standard output', helpValue: 'FILE' }),
    force: Flags.boolean({ description: 'replace the output file if it exists' }),
    level: Flags.integer({ description: 'zstd compression level (default: the snapshot\'s)', min: 1, max: 19 }),
  };

  async run(): Promise<unknown> {
    this.keepStandardOutputForSnapshot();
    const { args, flags } = await this.parse(Flatten);
    const s = await flatten(args.file, flags.output, { force: flags.force, level: flags.level });
    return this.emit(s, () => `${wrote(s.path, s.fileBytes)}: ${s.pagesStored} pages gathered from ${s.chain.length} file${s.chain.length > 1 ? 's' : ''} (${s.chain.join(' ← ')})`);
  }
}
