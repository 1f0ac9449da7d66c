/**
 * Running one system call inside a target process, as CRIU's compel does but without code of our own: a thread in
 * a ptrace stop gets the call in its registers and its instruction pointer on a `syscall` instruction of the
 * process's own vDSO, single-steps over it, and has its registers put back. Every signal is blocked meanwhile (as
 * CRIU does), so none is taken in the middle of the call: they wait, pending, for the thread to be let go. A thread
 * stopped inside an interrupted system call restarts it when let go, as if nothing had happened. x86-64 only (its
 * registers are laid out here), and 64-bit code only: a 32-bit thread's `syscall` takes its number from the ia32
 * table (323, userfaultfd here, is eventfd there) and returns elsewhere than after the instruction.
 */
import * as n from '../native/index.js';
import { PagesnapError, type Addr } from '../native/index.js';

/** Every signal (SIGKILL and SIGSTOP stay unblockable whatever the mask says). */
const ALL_SIGNALS = 0xffffffffffffffffn;
const SYSCALL = Buffer.from([0x0f, 0x05]);

/** Where the process's vDSO (mapped at `vdso`) holds a `syscall` instruction (its fallback paths make real calls). */
export function syscallInstruction(pid: number, vdso: { start: Addr; end: Addr }): Addr {
  const text = Buffer.alloc(Number(vdso.end - vdso.start));
  if (n.processVmReadv(pid, [text], [{ addr: vdso.start, len: text.length }]) !== text.length) {
    throw new PagesnapError(`cannot read the vDSO of process ${pid}`, { code: 'EFAULT' });
  }
  const at = text.indexOf(SYSCALL);
  if (at < 0) throw new PagesnapError(`the vDSO of process ${pid} holds no syscall instruction`, { code: 'ENOENT' });
  return vdso.start + BigInt(at);
}

/**
 * Make thread `tid` (in a ptrace stop of ours) run system call `nr` with `args` at `at` (a `syscall` instruction);
 * returns the call's result (a negative errno on failure).
 */
export function injectSyscall(tid: number, at: Addr, nr: number, args: readonly (number | bigint)[]): bigint {
  if (process.arch !== 'x64') throw new PagesnapError(`running a system call in another process is only done on x86-64 (this is ${process.arch})`, { code: 'ENOTSUP' });
  const saved = n.ptraceGetRegs(tid);
  const cs = saved.readBigUInt64LE(n.REG.cs * 8);
  if (cs !== n.USER_CS) {
    throw new PagesnapError(`thread ${tid} runs 32-bit code (code segment 0x${cs.toString(16)}): system calls are run only in 64-bit code`, { code: 'ENOTSUP' });
  }
  const regs = Buffer.from(saved);
  const set = (word: number, v: number | bigint) => regs.writeBigInt64LE(BigInt(v), word * 8);
  set(n.REG.rax, nr);
  set(n.REG.origRax, -1); // not in a system call: nothing to restart on the way out of this stop
  set(n.REG.rip, at);
  [n.REG.rdi, n.REG.rsi, n.REG.rdx].forEach((w, i) => set(w, args[i] ?? 0));
  const blocked = n.ptraceGetSigmask(tid);
  n.ptraceSetSigmask(tid, ALL_SIGNALS);
  n.ptraceSetRegs(tid, regs);
  try {
    for (let tries = 0; ; tries++) {
      n.ptraceSingleStep(tid);
      const st = n.waitpid(tid, n.WAIT.WALL)!;
      if (!st.stopped) throw new PagesnapError(`thread ${tid} ended while running an injected system call`, { code: 'ESRCH' });
      const after = n.ptraceGetRegs(tid);
      if (after.readBigUInt64LE(n.REG.rip * 8) === BigInt(at) + 2n) return after.readBigInt64LE(n.REG.rax * 8);
      // stopped before the instruction ran: a group stop (SIGSTOP cannot be blocked)
      if (tries === 10) throw new PagesnapError(`thread ${tid} did not run the injected system call`, { code: 'EAGAIN' });
    }
  } finally {
    n.ptraceSetRegs(tid, saved);
    n.ptraceSetSigmask(tid, blocked);
  }
}
