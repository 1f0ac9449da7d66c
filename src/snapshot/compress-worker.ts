/**
 * A compression worker: compresses a frame from a shared input slot into a shared output slot (zstd with content
 * size and checksum) and replies with the compressed size. Nothing is copied between threads.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { slotViews, type SlotMemory } from './slots.js';

const zstd = createRequire(import.meta.url)('zstd-napi/binding.js') as typeof import('zstd-napi/binding.js');
const cctx = new zstd.CCtx();
cctx.setParameter(zstd.CParameter.compressionLevel, (workerData as { level: number }).level);
cctx.setParameter(zstd.CParameter.checksumFlag, 1);
cctx.setParameter(zstd.CParameter.contentSizeFlag, 1);

/** The slots' memory, sent once: a frame's message then carries only its slot number. */
const slots: { input: Uint8Array; output: Uint8Array }[] = [];

interface Job { id: number; slot: number; length: number }

parentPort!.on('message', (m: { memory?: SlotMemory; jobs?: Job[]; stop?: true }) => {
  if (m.memory) {
    slots.push(...slotViews(m.memory));
    return;
  }
  if (m.stop) {
    parentPort!.close(); // the thread ends once this handler returns
    return;
  }
  // A batch of frames in, one answer out: messages cost more than compressing a small frame.
  const done = m.jobs!.map((j) => {
    try {
      const s = slots[j.slot]!;
      return { id: j.id, size: cctx.compress2(s.output, s.input.subarray(0, j.length)) };
    } catch (e) {
      return { id: j.id, error: (e as Error).message };
    }
  });
  parentPort!.postMessage({ done });
});
