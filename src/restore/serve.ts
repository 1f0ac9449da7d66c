/**
 * `pagesnap serve`: a page server for cooperating programs. A client connects to the unix socket, hands over
 * its userfaultfd and the ranges it registered, and the page streamer fills them from the snapshot (faults
 * first, the rest in the background) until the client closes the connection or exits. See serve-protocol.ts.
 */
import { existsSync, lstatSync, unlinkSync, type Stats } from 'node:fs';
import { createConnection } from 'node:net';
import { cpus } from 'node:os';
import { performance } from 'node:perf_hooks';
import type { Worker } from 'node:worker_threads';
import {
  listenUnix, sendAll, closeFd, pidfdOpen, eventfd, eventfdSignal, startWorker, sibling, atExit, PagesnapError, isErrno, fromNodeError,
  type PeerCred,
} from '../native/index.js';
import { SnapshotReader } from '../snapshot/reader.js';
import { describeFile } from '../snapshot/file-kind.js';
import { outputError, requireDirectory } from '../snapshot/pending-file.js';
import { planClient, type ClientPlan } from './serve-plan.js';
import { parseHello, frame, type AcceptMessage, type Hello } from './serve-protocol.js';
import { Streamer, type StreamStats } from './streamer.js';
import { freshUnits } from './segments.js';
import type { AddressMap } from './address-map.js';
import type { FaultReport } from './stream-shared.js';

export interface ServeOptions {
  socket: string;
  /** fill threads per session (default: 1) */
  threads?: number;
  /** decoded frames each session's fault thread may keep, bytes (default FAULT_CACHE_BYTES) */
  faultCacheBytes?: number;
  /** stop serving (sessions in progress end; the socket file is removed) */
  signal?: AbortSignal;
  /** end after the first session does */
  once?: boolean;
  onEvent?: (e: ServeEvent) => void;
}

export type ServeEvent =
  /** replaced: a socket nobody listened on (left by a server that died) was removed first */
  | { kind: 'listening'; socket: string; snapshot: string; replaced: boolean }
  | { kind: 'start'; session: number; client: PeerCred; pages: ClientPlan['counts']; lost: number; events: string[]; prefetch: boolean; forkOf?: number }
  | { kind: 'full'; session: number; ms: number }
  | { kind: 'end'; session: number; why: string; ms: number; stats: StreamStats; faults: { served: number; p50Us: number | null; p99Us: number | null } }
  | { kind: 'refused'; client: PeerCred | null; why: string }
  /** the server cannot take connections for now (they wait): why */
  | { kind: 'trouble'; why: string };

const percentile = (xs: Float64Array, q: number) => (xs.length === 0 ? null : Float64Array.from(xs).sort()[Math.min(xs.length - 1, Math.floor(q * xs.length))]!);

/**
 * Make `path` free to listen on. A socket nobody listens on (ECONNREFUSED: its server died, SIGKILL leaves it) is
 * removed, and true returned; anything else there is refused: a live server's socket, or what is not a socket.
 */
async function claimSocketPath(path: string): Promise<boolean> {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (e) {
    if (isErrno(e, 'ENOENT')) return false;
    throw fromNodeError(e, 'stat', path);
  }
  if (!st.isSocket()) {
    throw new PagesnapError(`${path} exists and is ${describeFile(st)}, not a socket`, { code: 'EEXIST', hint: 'choose another path' });
  }
  const refused = await new Promise<NodeJS.ErrnoException | null>((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(null);
    });
    probe.once('error', (e) => resolve(e));
  });
  if (refused === null) throw new PagesnapError(`${path} is the socket of a server that is running`, { code: 'EADDRINUSE', hint: 'stop that server, or choose another path' });
  if (!isErrno(refused, 'ECONNREFUSED')) throw fromNodeError(refused, 'connect', path);
  unlinkSync(path);
  return true;
}

export async function serve(path: string, opts: ServeOptions): Promise<void> {
  const reader = SnapshotReader.open(path);
  let replaced: boolean;
  let listenFd: number;
  try {
    requireDirectory(opts.socket, 'socket');
    replaced = await claimSocketPath(opts.socket);
    listenFd = listenUnix(opts.socket);
  } catch (e) {
    reader.close();
    throw outputError(e, 'bind', opts.socket);
  }
  const cleanup = atExit(() => existsSync(opts.socket) && unlinkSync(opts.socket));
  const stopfd = eventfd();
  const threads = Math.max(0, opts.threads ?? Math.min(1, cpus().length));
  const emit = (e: ServeEvent) => opts.onEvent?.(e);
  const sessions = new Set<Promise<void>>();
  const streamers = new Set<Streamer>();
  let nextId = 1;
  let finished: () => void;
  const done = new Promise<void>((resolve) => (finished = resolve));

  /** Run one session's streamer to its end, and its forked children's alongside. */
  async function run(id: number, streamer: Streamer, started: number, conn: number | null): Promise<void> {
    streamers.add(streamer);
    void streamer.full.then(() => {
      const ms = performance.now() - started;
      emit({ kind: 'full', session: id, ms });
      if (conn !== null) {
        try {
          sendAll(conn, frame({ event: 'full', ms }));
        } catch {
          /* the client went away meanwhile */
        }
      }
    });
    await streamer.ended;
    const end = await streamer.stop();
    streamers.delete(streamer);
    const faults = end.faults as FaultReport;
    emit({
      kind: 'end', session: id, why: end.stopped === 'error' ? `error: ${end.error}` : end.stopped === 'gone' ? 'the client went away' : 'the server stopped',
      ms: performance.now() - started, stats: streamer.totals(),
      faults: { served: faults.serviceUs.length, p50Us: percentile(faults.serviceUs, 0.5), p99Us: percentile(faults.serviceUs, 0.99) },
    });
  }

  function startSession(m: Extract<AcceptMessage, { kind: 'hello' }>): void {
    const id = nextId++;
    const started = performance.now();
    let hello: Hello;
    let plan: ClientPlan;
    let pidfd = -1;
    try {
      hello = parseHello(m.hello);
      plan = planClient(reader, reader.process(hello.pid), hello.ranges);
      pidfd = pidfdOpen(m.cred.pid);
    } catch (e) {
      const why = (e as Error).message;
      try {
        sendAll(m.conn, frame({ ok: false, error: why }));
      } catch {
        /* gone */
      }
      closeFd(m.conn);
      closeFd(m.uffd);
      if (pidfd >= 0) closeFd(pidfd);
      emit({ kind: 'refused', client: m.cred, why });
      return;
    }
    sendAll(m.conn, frame({ ok: true, pages: plan.counts, lost: plan.lost.map((l) => ({ address: l.start, length: l.len, why: l.why })) }));
    const fillThreads = hello.prefetch ? threads : 0;
    const fds = [m.conn, m.uffd, pidfd];
    const spawnChild = (ufd: number, map: AddressMap, parent: number) => {
      const child = nextId++;
      emit({ kind: 'start', session: child, client: m.cred, pages: plan.counts, lost: plan.lost.length, events: hello.events, prefetch: hello.prefetch, forkOf: parent });
      const s: Streamer = new Streamer(reader, freshUnits(plan.table), {
        uffd: ufd, pidfd: -1, ranges: plan.ranges, fillThreads, events: map, onFork: (u, mp) => spawnChild(u, mp, child), faultCacheBytes: opts.faultCacheBytes,
      });
      s.startFill();
      track(run(child, s, performance.now(), null).finally(() => closeFd(ufd)));
    };
    const streamer = new Streamer(reader, plan.table, {
      uffd: m.uffd, pidfd, conn: m.conn, ranges: plan.ranges, fillThreads,
      events: hello.events.length ? true : undefined, onFork: (u, mp) => spawnChild(u, mp, id), faultCacheBytes: opts.faultCacheBytes,
    });
    streamer.startFill();
    emit({ kind: 'start', session: id, client: m.cred, pages: plan.counts, lost: plan.lost.length, events: hello.events, prefetch: hello.prefetch });
    track(run(id, streamer, started, m.conn).finally(() => {
      for (const fd of fds) closeFd(fd);
      if (opts.once) stop();
    }));
  }

  function track(p: Promise<void>): void {
    sessions.add(p);
    void p.finally(() => sessions.delete(p));
  }

  const acceptor: Worker = startWorker(sibling(import.meta.url, 'accept-worker'), { workerData: { listenFd, stopfd, uid: process.getuid!() } });
  acceptor.on('message', (m: AcceptMessage) => {
    if (m.kind === 'hello') startSession(m);
    else if (m.kind === 'refused') {
      try {
        sendAll(m.conn, frame({ ok: false, error: m.why }));
      } catch {
        /* gone */
      }
      closeFd(m.conn);
      emit({ kind: 'refused', client: m.cred, why: m.why });
    } else if (m.kind === 'error') emit({ kind: 'trouble', why: m.message });
  });
  // (a listener that dies, loading its modules say, ends the server: it can take no connection)
  let acceptFailure: Error | undefined;
  acceptor.on('error', (e) => (acceptFailure = e));
  acceptor.on('exit', () => finished());
  let stopping = false;
  function stop(): void {
    if (stopping) return;
    stopping = true;
    eventfdSignal(stopfd);
  }
  opts.signal?.addEventListener('abort', stop, { once: true });
  if (opts.signal?.aborted) stop();
  emit({ kind: 'listening', socket: opts.socket, snapshot: path, replaced });

  await done;
  // Sessions in progress end with the server: their clients see the connection close.
  for (const s of streamers) void s.stop();
  await Promise.all([...sessions]);
  closeFd(listenFd);
  closeFd(stopfd);
  if (existsSync(opts.socket)) unlinkSync(opts.socket);
  cleanup();
  reader.close();
  if (acceptFailure) throw new PagesnapError(`the server's listening thread failed: ${acceptFailure.message}`, { code: (acceptFailure as NodeJS.ErrnoException).code ?? 'EIO' });
}
