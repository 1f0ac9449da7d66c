/**
 * `audit` against a plain `inspect` of the same process: a 1 GiB process, 768 MiB anonymous and 256 MiB of shmem.
 * The audit also reads the shmem object's evidence (SEEK_DATA, mincore on its own mapping) and decides every run.
 */
import { Fixture } from '../fixtures/driver.js';
import { inspect } from '../src/analyze/inspect.js';
import { audit } from '../src/analyze/audit.js';
import { interleave, median, type Row } from './lib.js';

export async function benchAudit(reps = 9): Promise<Row[]> {
  const fx = await Fixture.start(['bench-mix', 'bench-shmem'], { sizeMiB: 768, shmemMiB: 256 });
  try {
    const t = interleave({ inspect: () => inspect(fx.pid), audit: () => audit([fx.pid]) }, reps);
    const a = median(t.audit!);
    const i = median(t.inspect!);
    return [{ bench: 'audit', case: '1 GiB (256 MiB shmem): audit vs inspect', value: `audit ${a.toFixed(1)} ms`, baseline: `inspect ${i.toFixed(1)} ms`, ratio: a / i }];
  } finally {
    await fx.stop();
  }
}
