/** A compression worker: zstd-compresses each frame it is sent (with the content checksum) and sends it back. */
import { parentPort, workerData } from 'node:worker_threads';
import { Compressor } from 'zstd-napi';

const c = new Compressor();
c.setParameters({ compressionLevel: (workerData as { level: number }).level, checksumFlag: true, contentSizeFlag: true });
parentPort!.on('message', (m: { id: number; frame: Uint8Array }) => {
  const z = c.compress(m.frame);
  // Transfer only a buffer we own whole: a Buffer can be a view into Node's shared pool.
  const out = new Uint8Array(new ArrayBuffer(z.length));
  out.set(z);
  parentPort!.postMessage({ id: m.id, out }, [out.buffer]);
});
