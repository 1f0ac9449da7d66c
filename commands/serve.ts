import { Args, Flags } from '@oclif/core';
import { PagesnapCommand } from '../src/cli/base.js';
import { serve, type ServeEvent } from '../src/restore/serve.js';
import { FAULT_CACHE_BYTES } from '../src/restore/stream-shared.js';
import { hexBigints } from '../src/render/json.js';
import { renderServeEvent } from '../src/render/restore.js';

export default class Serve extends PagesnapCommand {
  static override summary = 'Fill other programs\' memory from a snapshot, through their userfaultfd';
  static override description = [
    'Listens on a unix socket (created 0600; callers must run as the same user, or as root). A client connects, sends its userfaultfd (SCM_RIGHTS, after UFFDIO_API and UFFDIO_REGISTER in MISSING mode) with a JSON list of ranges {address, length, snapshotAddress}, and pagesnap fills them from the snapshot: each fault with the page asked for, the rest in the background. The session ends when the client closes the connection or exits; the server keeps listening until interrupted. README.md ("serve") gives the protocol; fixtures/uffd-client.c is a complete client.',
    'If the server dies, a client\'s faults on pages not yet filled wait for ever; the connection closing is its signal to give up (the bundled client exits with status 3).',
  ].join('\n\n');

  static override examples = [
    { description: 'Serve a snapshot to clients', command: '<%= config.bin %> serve app.psnap --socket /run/app-pages.sock' },
    { description: 'One session, one event per line as JSON', command: '<%= config.bin %> serve app.psnap --socket /tmp/s.sock --once --json' },
  ];

  static override args = { file: Args.string({ required: true, description: 'snapshot file' }) };
  static override flags = {
    socket: Flags.string({ required: true, description: 'unix socket path to listen on', helpValue: 'PATH' }),
    threads: Flags.integer({ description: 'background fill threads per session (0: fill on fault only)', min: 0, max: 64, default: 1 }),
    'cache-mib': Flags.integer({ description: 'MiB of decoded frames each session keeps for its faults, at least 16 frames (a frame is then decoded once for all its pages)', min: 0, default: FAULT_CACHE_BYTES / 2 ** 20, helpValue: 'N' }),
    once: Flags.boolean({ description: 'exit when the first session ends' }),
  };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(Serve);
    const ac = new AbortController();
    const onSignal = () => ac.abort();
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    const json = this.jsonEnabled();
    try {
      await serve(args.file, {
        socket: flags.socket, threads: flags.threads, faultCacheBytes: flags['cache-mib'] * 2 ** 20, once: flags.once, signal: ac.signal,
        // one line per event as it happens (oclif's --json would print a single result at the end)
        onEvent: (e: ServeEvent) => process.stdout.write(`${json ? JSON.stringify(e, hexBigints) : renderServeEvent(e)}\n`),
      });
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return undefined;
  }
}
