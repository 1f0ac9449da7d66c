/**
 * A snapshot sent to standard output (`-o -`): into a pipe (ssh to another host, a copy to object storage), a socket,
 * or a file the shell opened. Nothing can be named into place: a dump that fails leaves what it sent without a
 * footer, which no reader takes for a snapshot.
 */
import { fstatSync, fchmodSync, openSync, closeSync, constants } from 'node:fs';
import { isatty } from 'node:tty';
import { PagesnapError, fromNodeError, isErrno, setNonblocking, poll, POLL } from '../native/index.js';
import { OutputFile } from './output.js';
import type { Destination } from './pending-file.js';

/** The output name that means standard output. */
export const STANDARD_OUTPUT = '-';
export const STANDARD_OUTPUT_LABEL = 'standard output';

export function openStandardOutput(): Destination {
  let st;
  try {
    st = fstatSync(1);
  } catch (e) {
    throw fromNodeError(e, 'fstat', STANDARD_OUTPUT_LABEL);
  }
  if (isatty(1)) {
    throw new PagesnapError(`${STANDARD_OUTPUT_LABEL} is a terminal, and a snapshot is binary`, {
      code: 'EINVAL', hint: 'redirect it (-o - > app.psnap, -o - | ssh host \'cat > app.psnap\') or give a file name with -o',
    });
  }
  // A file the shell has just made for it gets a snapshot's mode (they hold secrets); one with content is the user's.
  if (st.isFile() && st.size === 0 && st.uid === process.geteuid!() && (st.mode & 0o077) !== 0) {
    try {
      fchmodSync(1, st.mode & 0o700);
    } catch {
      /* a file system without modes (FAT): nothing to tighten */
    }
  }
  const fd = st.isFIFO() ? reopenPipe() : 1;
  // a pipe whose reader has gone: fail now, before the targets are frozen, not at the first write
  if (st.isFIFO() && poll([{ fd, events: POLL.OUT }], 0)[0]! & POLL.ERR) {
    if (fd !== 1) closeSync(fd);
    throw nobodyReads('EPIPE');
  }
  return {
    out: OutputFile.stream(fd, STANDARD_OUTPUT_LABEL, { ownsFd: fd !== 1, regularFile: st.isFile() }),
    publish: () => {},
    discard: () => {},
  };
}

const nobodyReads = (code: string) => new PagesnapError(`${STANDARD_OUTPUT_LABEL} is a pipe nobody reads (${code})`, { code, hint: 'start the program that reads it first, and keep it reading' });

/**
 * A descriptor of its own on standard output's pipe: Node makes its standard output non-blocking once it is used, in
 * the open file description it shares with the shell; a new one blocks (the writes run on the thread pool). Falls
 * back to standard output itself.
 */
function reopenPipe(): number {
  let fd: number;
  try {
    // O_NONBLOCK: opening a named pipe nobody reads fails (ENXIO) instead of waiting for a reader for ever
    fd = openSync('/proc/self/fd/1', constants.O_WRONLY | constants.O_NONBLOCK);
  } catch (e) {
    if (isErrno(e, 'ENXIO')) throw nobodyReads('ENXIO');
    return 1; // /proc not mounted, or no access: the shared descriptor will do (writeAt waits out EAGAIN)
  }
  setNonblocking(fd, false);
  return fd;
}
