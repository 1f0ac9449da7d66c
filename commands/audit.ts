import { Args, Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { parsePid } from '../src/cli/parse.js';
import { audit } from '../src/analyze/audit.js';
import { renderAudit } from '../src/render/audit.js';
import { PagesnapError } from '../src/native/index.js';
import { heatmapSvg, heatmapPng, auditHeatmap } from '../src/render/heatmap.js';
import { writeWhole } from '../src/snapshot/pending-file.js';

/** Exit code of --fail-on-loss when a pagemap-only dumper would lose data. */
const EXIT_LOSS = 3;

export default class Audit extends PagesnapCommand {
  static override summary = 'Show where pagemap disagrees with where the data is';
  static override description = [
    'Decides every page of the processes with pagesnap\'s inaccuracy model, from all the evidence it can gather (pagemap with swap types; for shared shmem the object itself: SEEK_DATA, and residency by mincore on a mapping of its own), and compares with the naive rule of a pagemap-only dumper: keep what this process\'s pagemap shows PRESENT or SWAPPED.',
    'Per region and per case: the data such a dumper would lose (shmem pages that are swapped out, zapped, written another way or inherited by a fork child), what it would store for nothing (zero pages, clean file pages, markers taken for swap), and a cross-check of the counts against smaps (Rss, Swap). Nothing in the targets is changed.',
  ].join('\n\n');
  static override examples = [
    { description: 'Audit a process', command: '<%= config.bin %> audit 1234' },
    { description: 'Fail (exit 3) when a pagemap-only dumper would lose data, e.g. in CI', command: '<%= config.bin %> audit 1234 --fail-on-loss' },
    { description: 'Every region, as JSON', command: '<%= config.bin %> audit 1234 5678 --all --json' },
    { description: 'Draw the address space, pages coloured by what pagemap gets wrong', command: '<%= config.bin %> audit 1234 --svg audit.svg' },
  ];
  static override strict = false;
  static override args = { pid: Args.string({ required: true, description: 'process ids to audit' }) };
  static override flags = {
    all: Flags.boolean({ description: 'list every region, not only those where pagemap misleads' }),
    deep: Flags.boolean({ description: 'also read the exclusive bit and kpageflags of every present anonymous page (fork-shared A5, KSM K1, lazily freed A6; kpageflags needs root)' }),
    'fail-on-loss': Flags.boolean({ description: `exit ${EXIT_LOSS} when a pagemap-only dumper would lose data` }),
    method: Flags.string({ description: 'how to read pagemap', options: ['auto', 'scan', 'pread'], default: 'auto' }),
    svg: Flags.string({ description: 'also draw the address space as a heatmap into this SVG file', helpValue: 'FILE' }),
    png: Flags.string({ description: 'the same heatmap as a PNG file', helpValue: 'FILE' }),
  };

  async run(): Promise<unknown> {
    const { argv, flags } = await this.parse(Audit);
    const rep = audit((argv as string[]).map(parsePid), { method: flags.method as 'auto', deep: flags.deep });
    if (flags.svg) await writeWhole(flags.svg, heatmapSvg(auditHeatmap(rep, flags.all)));
    if (flags.png) await writeWhole(flags.png, heatmapPng(auditHeatmap(rep, flags.all)));
    const result = this.emit(rep, () => renderAudit(rep, flags.all));
    if (flags['fail-on-loss'] && rep.totals.lostPages > 0) {
      if (this.jsonEnabled()) process.stdout.write(`${JSON.stringify(result)}\n`);
      throw new PagesnapError(`a pagemap-only dumper would lose ${rep.totals.lostPages} pages of data`, { code: 'EDATALOSS', exitCode: EXIT_LOSS, hint: 'dump with pagesnap, which reads shmem from its objects' });
    }
    return result;
  }
}
