// A process writing a snapshot file on a filesystem without unnamed files (O_TMPFILE refused, as FAT, FUSE and
// network mounts refuse it): it starts a PendingFile at PATH, writes a page, says "ready" and waits to be ended.
import fs from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { O_TMPFILE } from '../../src/native/index.js';

const open = fs.openSync;
fs.openSync = ((path: fs.PathLike, flags: fs.OpenMode, mode?: fs.Mode) => {
  if (typeof flags === 'number' && (flags & O_TMPFILE) === O_TMPFILE) throw Object.assign(new Error('EOPNOTSUPP'), { code: 'EOPNOTSUPP', errno: -95 });
  return open(path, flags, mode);
}) as typeof fs.openSync;
syncBuiltinESMExports(); // (the modules below import openSync by name)

const { PendingFile } = await import('../../src/snapshot/pending-file.js');
const file = new PendingFile(process.argv[2]!);
await file.out.append(Buffer.alloc(4096, 1));
process.stdout.write('ready\n');
setInterval(() => {}, 1 << 30);
