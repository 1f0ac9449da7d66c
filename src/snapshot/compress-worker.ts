/**
 * A compression worker: compresses a frame from a shared input slot into a shared output slot (zstd with content
 * size and checksum) and replies with the compressed size. Nothing is copied between threads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';

const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');
const cctx = new zstd.CCtx();
cctx.setParameter(zstd.CParameter.compressionLevel, (workerData as { level: number }).level);
cctx.setParameter(zstd.CParameter.checksumFlag, 1);
cctx.setParameter(zstd.CParameter.contentSizeFlag, 1);

parentPort!.on('message', (m: { id: number; input: SharedArrayBuffer; length: number; output: SharedArrayBuffer }) => {
  try {
    const size = cctx.compress2(new Uint8Array(m.output), new Uint8Array(m.input, 0, m.length));
    parentPort!.postMessage({ id: m.id, size });
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: (e as Error).message });
  }
});
