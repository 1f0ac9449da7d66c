/**
 * The fill gate, for processes that produce non-cooperative events (REMOVE, UNMAP, REMAP). A fill worker that
 * checked where a page goes and then placed it must not have read an event in between: once the fault thread
 * has read a REMOVE, the kernel zaps the range and accepts fills again, so a fill decided before the event and
 * issued after the zap would put snapshot data where the process expects zeros. So the fault thread closes the
 * gate and waits for fills in flight before each read, and opens it when the events are applied; a fill
 * worker decides and places one piece (a frame's worth) at a time, inside the gate.
 * Without events there is nothing to guard and the gate costs nothing.
 */
const OPEN = 0;
const CLOSED = 1;

export class Gate {
  /** words: [state, fills in flight] */
  private readonly w: Int32Array;

  constructor(buffer: SharedArrayBuffer, private readonly active: boolean) {
    this.w = new Int32Array(buffer);
  }

  static buffer(): SharedArrayBuffer {
    return new SharedArrayBuffer(8);
  }

  /** Fill worker: wait until the gate is open and count this fill in. */
  enter(): void {
    if (!this.active) return;
    for (;;) {
      Atomics.add(this.w, 1, 1);
      if (Atomics.load(this.w, 0) === OPEN) return;
      this.exit();
      Atomics.wait(this.w, 0, CLOSED, 10);
    }
  }

  exit(): void {
    if (!this.active) return;
    Atomics.sub(this.w, 1, 1);
    Atomics.notify(this.w, 1);
  }

  /** Fault thread: close the gate and wait for the fills in flight. */
  close(): void {
    if (!this.active) return;
    Atomics.store(this.w, 0, CLOSED);
    for (let n; (n = Atomics.load(this.w, 1)) !== 0; ) Atomics.wait(this.w, 1, n, 1);
  }

  open(): void {
    if (!this.active) return;
    Atomics.store(this.w, 0, OPEN);
    Atomics.notify(this.w, 0);
  }
}
