import { Args } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { PagesnapError } from '../src/native/index.js';
import { EXIT_DAMAGED_PAGES } from '../src/snapshot/format.js';
import { progressBar } from '../src/render/progress.js';

export default class Verify extends PagesnapCommand {
  static override summary = 'Check a snapshot\'s integrity';
  static override description = [
    'Checks the header, footer and manifest (checksum and structure), then decompresses every frame (zstd content checksum, declared size) and checks every stored page against its XXH3-64 hash. An incremental snapshot is checked with every parent it needs. Prints OK, or the first bad frame or page with its file and offset.',
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
        const what = bad.problem.startsWith(bad.file) ? bad.problem : `${bad.file}: ${bad.problem}`;
        throw new PagesnapError(`${what} (frame ${bad.frame} at byte ${bad.offset})`, { code: 'EBADMSG', exitCode: EXIT_DAMAGED_PAGES, hint: 'the page data is damaged; the pages of other frames can still be read' });
      }
      const chain = r.chain();
      const result = {
        file: args.file, ok: true, frames: chain.reduce((n, x) => n + x.manifest.frames.offset.length, 0), pages: r.totalPages,
        parents: chain.slice(0, -1).map((x) => x.path),
      };
      const parents = result.parents.length ? ` (with ${result.parents.length === 1 ? 'its parent' : `its ${result.parents.length} parents`}: ${result.parents.join(', ')})` : '';
      return this.emit(result, () => `OK ${args.file}${parents}: ${result.frames} frames, ${result.pages} pages, manifest and every page hash match`);
    } finally {
      r.close();
    }
  }
}
