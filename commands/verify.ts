import { Args } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { PagesnapError } from '../src/native/index.js';
import { EXIT_DAMAGED_PAGES } from '../src/snapshot/format.js';
import { progressBar } from '../src/render/progress.js';

export default class Verify extends PagesnapCommand {
  static override summary = 'Check a snapshot\'s integrity';
  static override description = [
    'Checks the header, footer and manifest (checksum and structure), then decompresses every frame (zstd content checksum, declared size) and checks every stored page against its XXH3-64 hash. Prints OK, or the first bad frame or page with its file offset.',
    'Exit codes: 0 intact; 3 page data damaged (a frame or a page hash); 4 structure damaged (header, footer or manifest); 1 the file could not be read.',
  ].join('\n\n');
  static override examples = [{ description: 'Check a snapshot', command: '<%= config.bin %> verify app.psnap' }];
  static override args = { file: Args.string({ required: true, description: 'snapshot file' }) };

  async run(): Promise<unknown> {
    const { args } = await this.parse(Verify);
    const r = SnapshotReader.open(args.file);
    try {
      const bar = this.jsonEnabled() ? null : progressBar('verifying');
      const bad = r.verify((done, total) => bar?.update(done, total));
      bar?.end();
      if (bad) {
        throw new PagesnapError(`${args.file}: ${bad.problem} (frame ${bad.frame} at byte ${bad.offset})`, { code: 'EBADMSG', exitCode: EXIT_DAMAGED_PAGES, hint: 'the page data is damaged; the pages of other frames can still be read' });
      }
      const result = { file: args.file, ok: true, frames: r.manifest.frames.offset.length, pages: r.storedPages };
      return this.emit(result, () => `OK ${args.file}: ${result.frames} frames, ${result.pages} pages, manifest and every page hash match`);
    } finally {
      r.close();
    }
  }
}
