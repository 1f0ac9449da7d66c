import { Args, Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { parsePid } from '../src/cli/parse.js';
import { writeWhole } from '../src/snapshot/pending-file.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { diffSnapshots, pageBytes } from '../src/analyze/diff.js';
import { renderDiff, renderPageDiff, diffHeatmap } from '../src/render/diff.js';
import { heatmapSvg, heatmapPng } from '../src/render/heatmap.js';
import { PagesnapError } from '../src/native/index.js';

export default class Diff extends PagesnapCommand {
  static override summary = 'Show what changed between two snapshots';
  static override description = [
    'Compares two snapshots region by region and page by page: regions added, removed, moved, resized or re-protected; per region the pages changed, added (data only in B), removed (data only in A) and unchanged, with bytes; how page states changed (data → zero, RAM → swap, ...); the largest changed ranges first.',
    'It reads manifests and page hashes only: no page is decompressed, except for --hex, or when the snapshots are not of one chain (their hashes then differ in seed, and A\'s pages are read to compare them: dump with --parent to avoid that). Snapshots of different processes or kernels can be compared; the output says so.',
  ].join('\n\n');
  static override examples = [
    { description: 'What changed', command: '<%= config.bin %> diff app-1.psnap app-2.psnap' },
    { description: 'Every changed page, and one page byte by byte', command: '<%= config.bin %> diff app-1.psnap app-2.psnap --pages --hex 7f3a1c200000' },
    { description: 'A picture of the address space with the changes marked', command: '<%= config.bin %> diff app-1.psnap app-2.psnap --svg changes.svg' },
  ];
  static override args = {
    a: Args.string({ required: true, description: 'the earlier snapshot' }),
    b: Args.string({ required: true, description: 'the later snapshot' }),
  };
  static override flags = {
    pid: Flags.string({ description: 'the process to compare, when both snapshots hold several' }),
    pages: Flags.boolean({ description: 'list every changed page' }),
    all: Flags.boolean({ description: 'list every region, unchanged ones too (text and JSON)' }),
    hex: Flags.string({ description: 'show the page at this address byte by byte in both (hex)', helpValue: 'ADDR' }),
    svg: Flags.string({ description: 'write a heatmap of the address space with the changes marked (SVG)', helpValue: 'FILE' }),
    png: Flags.string({ description: 'the same heatmap as PNG', helpValue: 'FILE' }),
  };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(Diff);
    const a = SnapshotReader.open(args.a);
    try {
      const b = SnapshotReader.open(args.b);
      try {
        const d = diffSnapshots(a, b, { pid: flags.pid === undefined ? undefined : parsePid(flags.pid), all: flags.all });
        if (flags.svg) await writeWhole(flags.svg, heatmapSvg(diffHeatmap(d)));
        if (flags.png) await writeWhole(flags.png, heatmapPng(diffHeatmap(d)));
        let page: { addr: bigint; a: Buffer | string; b: Buffer | string } | undefined;
        if (flags.hex !== undefined) {
          if (!/^(0x)?[0-9a-f]+$/i.test(flags.hex)) throw new PagesnapError(`--hex ${flags.hex} is not a hex address`, { code: 'EINVAL' });
          const addr = BigInt(`0x${flags.hex.replace(/^0x/i, '')}`) & ~BigInt(a.pageSize - 1);
          page = { addr, ...pageBytes(a, b, d, addr) };
        }
        const hexOf = (x: Buffer | string) => (typeof x === 'string' ? { error: x } : { bytes: x.toString('hex') });
        const json = { ...d, ...(page ? { page: { addr: page.addr, a: hexOf(page.a), b: hexOf(page.b) } } : {}) };
        return this.emit(json, () => [renderDiff(d, { pages: flags.pages, all: flags.all }), ...(page ? ['', renderPageDiff(page.addr, page.a, page.b)] : [])].join('\n'));
      } finally {
        b.close();
      }
    } finally {
      a.close();
    }
  }
}
