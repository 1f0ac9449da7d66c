/**
 * What a streamer thread (fill worker or fault thread) builds from the data it starts with: its views of the shared
 * table, control words and statistics row, its own frame decoder and placer, and the address map and fill gate.
 */
import { parentPort } from 'node:worker_threads';
import { FrameDecoder } from '../snapshot/frame-decoder.js';
import { Placer, STAT_FIELDS } from './placer.js';
import { attach } from './segments.js';
import { AddressMap } from './address-map.js';
import { Gate } from './gate.js';
import type { StreamShared, WorkerMessage } from './stream-shared.js';

/**
 * `cacheFrames`: decoded frames kept (the fault thread revisits frames; fill workers stream through them);
 * `reusedBytes`: see FrameDecoder.
 */
export function workerContext(data: StreamShared & { row: number }, cacheFrames: number, reusedBytes?: number) {
  const post = (m: WorkerMessage) => parentPort!.postMessage(m);
  const table = attach(data.table);
  const stats = new Float64Array(data.stats, data.row * STAT_FIELDS * 8, STAT_FIELDS);
  const decoder = new FrameDecoder(data.snapshot, data.frames, data.pageSize, cacheFrames, undefined, reusedBytes);
  return {
    post, table, stats, decoder,
    ctl: new Int32Array(data.ctl),
    placer: new Placer(data.uffd, decoder, table, stats, (d) => post({ kind: 'damage', ...d })),
    map: data.events && AddressMap.attach(data.events.map),
    gate: new Gate(data.events?.gate ?? Gate.buffer(), !!data.events),
  };
}
