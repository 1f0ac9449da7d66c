import { Args, Flags } from '@oclif/core';
import { writeSync } from 'node:fs';
import { PagesnapCommand } from '../src/cli/base.js';
import { parseAddress, parseSize } from '../src/cli/parse.js';
import { SnapshotReader } from '../src/snapshot/reader.js';
import { hexdump } from '../src/render/snapshot.js';
import { PagesnapError, isErrno } from '../src/native/index.js';

/** Larger reads are refused: cat is for looking at memory, dump and restore move it. */
const MAX_CAT = 1 << 30;

export default class Cat extends PagesnapCommand {
  static override summary = 'Print bytes of a process\'s memory from a snapshot';
  static override description = 'Writes the bytes the process saw at ADDR..ADDR+LEN: stored data, zeros for zero pages and holes. Bytes the snapshot does not hold (clean file pages, guard or poisoned pages, unreadable pages) are an error naming the page and why. Raw bytes go to stdout; on a terminal, or with --hex, a hexdump is printed instead.';
  static override examples = [
    { description: 'A hexdump of 256 bytes', command: '<%= config.bin %> cat app.psnap --addr 7f3a1c000000 --len 256 --hex' },
    { description: 'Raw bytes of one page of process 1234 in a tree snapshot', command: '<%= config.bin %> cat tree.psnap --pid 1234 --addr 0x7f3a1c000000 --len 4K > page.bin' },
  ];
  static override args = { file: Args.string({ required: true, description: 'snapshot file' }) };
  static override flags = {
    addr: Flags.string({ required: true, description: 'start address (hex)', helpValue: 'ADDR' }),
    len: Flags.string({ required: true, description: 'number of bytes (4096, 4K, 2M, 0x1000)', helpValue: 'LEN' }),
    pid: Flags.integer({ description: 'which process, when the snapshot holds several' }),
    hex: Flags.boolean({ description: 'print a hexdump instead of raw bytes' }),
  };

  async run(): Promise<unknown> {
    const { args, flags } = await this.parse(Cat);
    const addr = parseAddress(flags.addr);
    const len = parseSize(flags.len);
    if (len > BigInt(MAX_CAT)) throw new PagesnapError(`--len ${flags.len} is more than cat reads at once (1 GiB)`, { code: 'E2BIG', hint: 'read in parts' });
    const r = SnapshotReader.open(args.file);
    try {
      const bytes = r.read(r.process(flags.pid), addr, Number(len));
      if (this.jsonEnabled()) return { addr: `0x${addr.toString(16)}`, len: bytes.length, base64: bytes.toString('base64') };
      if (flags.hex || process.stdout.isTTY) this.log(hexdump(bytes, addr));
      else writeRaw(bytes);
      return undefined;
    } finally {
      r.close();
    }
  }
}

/** The bytes to stdout; a reader that stops reading (`| head -c N`) ends it quietly, as it would end cat(1). */
function writeRaw(bytes: Buffer): void {
  try {
    for (let o = 0; o < bytes.length; ) o += writeSync(1, bytes, o, bytes.length - o);
  } catch (e) {
    if (!isErrno(e, 'EPIPE')) throw e;
  }
}
