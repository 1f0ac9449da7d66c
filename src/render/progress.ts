/** A progress line on stderr, only when stderr is a terminal; redrawn at most ten times a second. */
import { bytes } from './format.js';

export function progressBar(label: string): { update: (done: number, total: number) => void; end: () => void } {
  if (!process.stderr.isTTY) return { update: () => {}, end: () => {} };
  const t0 = performance.now();
  let last = 0;
  let drawn = false;
  return {
    update(done, total) {
      const now = performance.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const width = 30;
      const bar = '#'.repeat(Math.round(frac * width)).padEnd(width, '.');
      // (a rate over the first moments says nothing: the first update may come a millisecond after the start)
      const rate = now - t0 >= 250 ? `  ${bytes(done / ((now - t0) / 1000))}/s` : '';
      process.stderr.write(`\r${label} [${bar}] ${bytes(done)} / ${bytes(total)}${rate} \x1b[K`);
      drawn = true;
    },
    end() {
      if (drawn) process.stderr.write('\r\x1b[K');
    },
  };
}

/** Progress through phases, a bar each (with its own rate): a new phase ends the last one's line. */
export function phasedProgress<P extends string>(labels: Record<P, string>): { update: (done: number, total: number, phase: P) => void; end: () => void } {
  let current: { phase: P; bar: ReturnType<typeof progressBar> } | null = null;
  return {
    update(done, total, phase) {
      if (current?.phase !== phase) {
        current?.bar.end();
        current = { phase, bar: progressBar(labels[phase]) };
      }
      current.bar.update(done, total);
    },
    end() {
      current?.bar.end();
    },
  };
}
