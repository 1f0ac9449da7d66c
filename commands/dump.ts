import { existsSync } from 'node:fs';
import { Args, Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { parsePid } from '../src/cli/parse.js';
import { dump } from '../src/dump/dump.js';
import { progressBar } from '../src/render/progress.js';
import { renderDumpSummary } from '../src/render/snapshot.js';
import { DEFAULT_FRAME_PAGES } from '../src/snapshot/writer.js';

export default class Dump extends PagesnapCommand {
  static override summary = 'Write a snapshot of live processes\' memory';
  static override description = [
    'Freezes the targets (ptrace by default, like CRIU), decides for every page whether it holds data that must be kept and where that data lives (pagemap reconciled with its known inaccuracies), reads it, and writes a compressed, deduplicated snapshot that can be read at random. Shmem objects are read from the object itself, so pages pagemap does not show (swapped out, zapped, written by another process, inherited by a fork child) are kept, and stored once however many regions map them. Zero pages and holes are recorded, not stored; clean pages of mapped files are recorded as file-backed.',
    'The targets are resumed when their memory has been read, and on every exit path (errors, Ctrl-C). The file appears under its name only when complete; it is created with mode 0600 (snapshots hold secrets).',
    'With -o - the snapshot goes to standard output as it is made (a pipe, a socket, a redirected file), and the summary to standard error. A dump that fails there leaves what it sent without a footer, which no reader takes for a snapshot.',
  ].join('\n\n');

  static override examples = [
    { description: 'Snapshot a process', command: '<%= config.bin %> dump 1234 -o app.psnap' },
    { description: 'A process and all its descendants, shmem they share stored once', command: '<%= config.bin %> dump 1234 --tree -o tree.psnap' },
    { description: 'Without stopping the target (the snapshot is marked fuzzy)', command: '<%= config.bin %> dump 1234 --freeze none -o live.psnap' },
    { description: 'Keep clean file pages too, compress harder, print a JSON summary', command: '<%= config.bin %> dump 1234 --include-file-pages --level 9 --json -o full.psnap' },
    { description: 'An incremental snapshot: only the pages that changed since app.psnap', command: '<%= config.bin %> dump 1234 --parent app.psnap -o app-2.psnap' },
    { description: 'Freeze a busy process only for what it writes while its memory is read', command: '<%= config.bin %> dump 1234 --precopy -o app.psnap' },
    { description: 'Straight to another machine, nothing written here', command: '<%= config.bin %> dump 1234 -o - | ssh backup \'cat > app.psnap\'' },
  ];

  static override strict = false;
  static override args = {
    pid: Args.string({ required: true, description: 'process ids to snapshot' }),
  };

  static override flags = {
    output: Flags.string({ char: 'o', description: 'snapshot file to write, - for standard output (default: pagesnap-PID-TIME.psnap)', helpValue: 'FILE' }),
    force: Flags.boolean({ description: 'replace the output file if it exists' }),
    tree: Flags.boolean({ description: 'also snapshot every descendant of the given processes (those they have when frozen)' }),
    freeze: Flags.string({ description: 'how to hold the targets still', options: ['ptrace', 'sigstop', 'cgroup', 'none'], default: 'ptrace' }),
    level: Flags.integer({ description: 'zstd compression level', min: 1, max: 19, default: 3 }),
    threads: Flags.integer({ description: 'compression threads (default: one per CPU, at most 4)', min: 1, max: 64 }),
    'frame-pages': Flags.integer({ description: 'pages per compressed frame (what a reader decompresses to get one page)', min: 1, max: 4096, default: DEFAULT_FRAME_PAGES }),
    'include-file-pages': Flags.boolean({ description: 'also store clean pages of mapped files' }),
    'exclude-dontdump': Flags.boolean({ description: 'leave out memory the process marked MADV_DONTDUMP, as core dumps do (secrets, guest RAM): its pages are recorded as not dumped, never read' }),
    'no-dedupe': Flags.boolean({ description: 'store identical pages every time they occur' }),
    precopy: Flags.boolean({ description: 'read most of the memory while the targets run, tracking their writes, and freeze them only to read what they wrote meanwhile (x86-64)' }),
    'split-huge': Flags.boolean({ description: 'with --precopy: track huge pages too rather than read them frozen; each one written meanwhile is split into small pages for good (until khugepaged merges it again)', dependsOn: ['precopy'] }),
    method: Flags.string({ description: 'how to read pagemap', options: ['auto', 'scan', 'pread'], default: 'auto' }),
    parent: Flags.string({ description: 'dump incrementally: store only pages this snapshot (and its own parents) does not hold; readers need it beside the new file', helpValue: 'FILE' }),
  };

  async run(): Promise<unknown> {
    this.keepStandardOutputForSnapshot();
    const { argv, flags } = await this.parse(Dump);
    const pids = (argv as string[]).map(parsePid);
    if (flags.precopy && flags.freeze === 'none') this.error('--precopy: nothing is frozen with --freeze none, so there is nothing to shorten', { exit: 2 });
    const output = flags.output ?? defaultOutput(pids[0]!);
    const bar = this.jsonEnabled() ? null : progressBar('dumping');
    const summary = await dump(pids, {
      output, force: flags.force, tree: flags.tree, freeze: flags.freeze as 'ptrace', level: flags.level, threads: flags.threads,
      framePages: flags['frame-pages'], includeFilePages: flags['include-file-pages'], dedupe: !flags['no-dedupe'],
      method: flags.method as 'auto', onProgress: bar?.update, parent: flags.parent, excludeDontdump: flags['exclude-dontdump'], precopy: flags.precopy, splitHuge: flags['split-huge'],
    });
    bar?.end();
    return this.emit(summary, () => renderDumpSummary(summary));
  }
}

/** pagesnap-PID-TIME.psnap in the working directory, to the second; a name taken already (two dumps in one second)
 * gets -2, -3, … rather than failing a dump the user named nothing for. */
function defaultOutput(pid: number): string {
  const base = `pagesnap-${pid}-${new Date().toISOString().replace(/[:.]/g, '').slice(0, 17)}`;
  for (let i = 1; ; i++) {
    const name = i === 1 ? `${base}.psnap` : `${base}-${i}.psnap`;
    if (!existsSync(name)) return name;
  }
}
