/**
 * The worker pool, main-thread side. piscina owns the threads (spawn, replace after a crash,
 * resourceLimits, terminate); the channel is the transport for every task.
 *
 * Slot table (region "hotpath:pool", see protocol.ts for the word indices):
 * ```
 * +0   i32 generation   bumped by a worker after it attached to a slot
 * +4   i32 bell.seq     the main thread's doorbell, rung by every response ring's producer
 * +8   i32 bell.sleeping
 * +12  i32 closing
 * +64  slot[i]: i32 owner (threadId, 0 = free), i32 ready, 8 bytes spare   (16 bytes each)
 * ```
 * Each slot i has a request ring ("hotpath:pool:req:i", main → worker) and a response ring
 * ("hotpath:pool:res:i", worker → main). There are `workers + 2` slots so a replacement can
 * attach before the main thread has recycled its dead predecessor's slot.
 *
 * Attach protocol: a worker claims a free slot with CAS owner 0 → threadId, sets ready = 1,
 * bumps generation and rings the main doorbell; the main thread notices the new generation,
 * sends the task registrations and starts dispatching. When piscina reports a worker gone, the
 * main thread (the only other party to the slot) reads what the worker had answered, rejects
 * the rest of its tasks with ERR_HOTPATH_WORKER_EXITED, zeroes both rings and frees the slot.
 *
 * The main thread never blocks: while tasks are in flight it polls the response rings from
 * `setImmediate` for up to `spinUs` after the last progress, then sleeps on its doorbell with
 * `Atomics.waitAsync`. A ref'd timer keeps the process alive only while tasks are in flight.
 */
import { setImmediate, setInterval, clearInterval, setTimeout, clearTimeout } from 'node:timers';
import { performance } from 'node:perf_hooks';
import type { ResourceLimits } from 'node:worker_threads';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Piscina } from 'piscina';
import { CancelledError, ClosedError, HotpathError, TaskFailedError, UnknownTaskError, WorkerExitedError, TimeoutError } from '../errors.js';
import type { Arena } from './arena.js';
import type { ValueCodec } from '../codec/codec.js';
import { ChannelReader, ChannelWriter, Doorbell, Ring, ringBytes } from './channel.js';
import {
  decodePayload, encodePayload, fromWireError, KIND_ERROR, KIND_INTERRUPT, KIND_REGISTER, KIND_RESULT, KIND_RUN, KIND_STARTED, RUN_NOTIFY_START, S_TAKEN,
  P_BELL_SEQ, P_BELL_SLEEPING, P_CLOSING, P_GENERATION, POOL_HEADER, S_OWNER, S_READY, SLOT_BYTES,
  type WireError, type WorkerBootstrap,
} from './protocol.js';
import { distUrl } from './paths.js';

/**
 * Pool slots for `workers` workers: two spare, so a replacement can attach before the main thread
 * has recycled its dead predecessor's slot (see the top of this file).
 */
/**
 * The request id space: ids run from 1 to `max` and wrap. Mutable only so that a test can reach the
 * wrap without 2^31 calls (test/runtime/pool.test.ts); not exported from the package.
 */
export const ID_SPACE = { max: 0x7fffffff };

export function poolSlots(workers: number): number {
  return workers + 2;
}

/** Options of the worker pool (validated by the engine's options). */
export interface PoolOptions {
  /** Worker threads. */
  workers: number;
  /** Bytes of each ring's data area (power of two). */
  ringCapacity: number;
  /** How long an idle worker, and the main thread with tasks in flight, poll before sleeping (µs). */
  spinUs: number;
  /** How many workers may spin at all (the others sleep at once); keep ≤ cores − 1. */
  spinWorkers: number;
  /** Bytes of each thread's scratch region (long-key hashing). */
  scratchBytes: number;
  /** Series in the shared metrics table; 0 = metrics off. */
  metricsCapacity: number;
  /** piscina/worker_threads resourceLimits of each worker. */
  resourceLimits?: ResourceLimits;
  /** How long `start()` waits for every worker to attach (ms). */
  startTimeoutMs: number;
}

/** A task a worker can run: the named export of an ES module. */
export interface TaskDefinition {
  name: string;
  module: string;
  export: string;
  /**
   * Wraps the loaded function before first use: the worker imports `adapter.module`, calls its
   * `adapter.export(fn, definition)` once and runs what that returns (the queue uses this to give
   * handlers their context).
   */
  adapter?: { module: string; export: string };
}

/** A task started with {@link WorkerPool.call}: its result, and how to stop it. */
export interface PoolCall {
  readonly result: Promise<unknown>;
  /**
   * Aborts the task's `ctx.signal` in its worker (a cooperative stop); the result still settles
   * with whatever the task answers. A call not yet sent to a worker rejects at once with
   * ERR_HOTPATH_CANCELLED.
   */
  interrupt(): void;
  /**
   * Terminates the worker running the call (a task that ignores its signal); piscina starts a
   * replacement. The result — and every other task of that worker — rejects with
   * ERR_HOTPATH_WORKER_EXITED. Returns false when the call is not on a worker (any more).
   */
  kill(): boolean;
}

/** Per-call options of {@link WorkerPool.run}. */
export interface RunOptions {
  /** Rejects with ERR_HOTPATH_CANCELLED if the signal aborts before the result arrives. */
  signal?: AbortSignal;
}

interface Slot {
  index: number;
  reqRing: Ring;
  resRing: Ring;
  req: ChannelWriter;
  res: ChannelReader;
  reqBell: Doorbell;
  ready: boolean;
  /** Its worker is being terminated (kill): no new task goes there, and it is not re-attached. */
  doomed: boolean;
  /** RUN requests sent on this slot (compared with the worker's S_TAKEN when it dies). */
  sent: number;
  threadId: number;
  inflight: number;
}

interface Pending {
  resolve(v: unknown): void;
  reject(e: unknown): void;
  promise: Promise<unknown>;
  /** What was sent (kept to send it again if its worker dies before taking it). */
  taskId: number;
  enc: number;
  body: Uint8Array | null;
  /** Its place among the RUN requests of its slot (1-based). */
  ordinal: number;
  /** broadcast(): meant for that one worker, never sent elsewhere. */
  pinned: boolean;
  /** interrupt() was called: if it never started, it never will. */
  interrupted: boolean;
  /** STARTED wanted: called when a worker takes it. */
  onStart: (() => void) | undefined;
  slot: Slot | null;
  task: string;
}

interface Backlogged {
  id: number;
  taskId: number;
  enc: number;
  body: Uint8Array | null;
}

const IDLE = 0;
const SPINNING = 1;
const SLEEPING = 2;
const CLOSED = 3;

/** The built-in tasks every pool registers (see tasks.ts; workers link them statically). */
const BUILTIN = distUrl('engine/runtime/tasks.js').href;
const BUILTIN_TASKS = ['noop', 'echo', 'hash32', 'sleep']; // (the metrics' histogram task is observe/histogram-task.ts)

export class WorkerPool {
  readonly #opts: PoolOptions;
  readonly #arena: Arena;
  readonly #i32: Int32Array;
  readonly #base: number; // i32 index of the pool header
  readonly #slots: Slot[] = [];
  #ready: Slot[] = [];
  readonly #pending = new Map<number, Pending>();
  /** Calls given up on (their signal aborted) after they were sent: their ids wait for the answer, by slot. */
  readonly #abandoned = new Map<number, Slot>();
  readonly #backlog: Backlogged[] = [];
  readonly #tasks: TaskDefinition[] = [];
  readonly #taskIds = new Map<string, number>();
  readonly #codec: ValueCodec;
  readonly #bell: Doorbell;
  readonly #keepAlive: ReturnType<typeof setInterval>;
  #piscina: Piscina | undefined;
  #generation = 0;
  #exits = 0;
  #nextId = 1;
  #state = IDLE;
  #lastProgress = 0;
  #starting = false;
  #closing: Promise<void> | undefined;
  #onDrained: (() => void) | undefined;
  readonly #onResponse = (tag: number, a: number, _b: number, u8: Uint8Array, off: number, len: number): void =>
    this.#settle(tag, a, u8, off, len);
  readonly #tick = (): void => this.#pollTick();
  readonly #onWake = (): void => {
    if (this.#state !== SLEEPING) return;
    this.#bell.awake();
    this.#state = SPINNING;
    this.#lastProgress = performance.now();
    this.#pollTick();
  };

  /** `codec` encodes payloads (the engine-local one: its structures are shared with the workers). */
  constructor(arena: Arena, codec: ValueCodec, options: PoolOptions) {
    this.#opts = options;
    this.#codec = codec;
    this.#arena = arena;
    const buffer = arena.memory.buffer;
    this.#i32 = new Int32Array(buffer);
    const slots = poolSlots(options.workers);
    const table = arena.region('hotpath:pool', POOL_HEADER + slots * SLOT_BYTES);
    this.#base = table.offset >>> 2;
    this.#bell = new Doorbell(this.#i32, this.#base + P_BELL_SEQ, this.#base + P_BELL_SLEEPING);
    for (let i = 0; i < slots; i++) {
      const rq = arena.region(`hotpath:pool:req:${i}`, ringBytes(options.ringCapacity));
      const rs = arena.region(`hotpath:pool:res:${i}`, ringBytes(options.ringCapacity));
      this.#slots.push(this.#makeSlot(i, new Ring(buffer, rq.offset, options.ringCapacity), new Ring(buffer, rs.offset, options.ringCapacity)));
    }
    for (const name of BUILTIN_TASKS) this.register(name, BUILTIN, name);
    this.#keepAlive = setInterval(noop, 1 << 30);
    this.#keepAlive.unref();
  }

  #makeSlot(index: number, reqRing: Ring, resRing: Ring): Slot {
    const reqBell = reqRing.doorbell();
    return {
      index, reqRing, resRing, reqBell,
      req: new ChannelWriter(reqRing, reqBell),
      res: new ChannelReader(resRing, this.#onResponse),
      ready: false, doomed: false, sent: 0, threadId: 0, inflight: 0,
    };
  }

  /** Starts the workers and resolves once every one of them listens on its channel. */
  async start(module: WebAssembly.Module): Promise<void> {
    const o = this.#opts;
    const workerData: WorkerBootstrap = {
      memory: this.#arena.memory,
      module,
      poolOffset: this.#base << 2,
      slots: this.#slots.length,
      ringOffsets: this.#slots.map((s) => [s.reqRing.offset, s.resRing.offset]),
      ringCapacity: o.ringCapacity,
      spinUs: o.spinUs,
      spinWorkers: o.spinWorkers,
      scratchBytes: o.scratchBytes,
      metricsCapacity: o.metricsCapacity,
    };
    const piscina = new Piscina({
      filename: distUrl('engine/runtime/worker-entry.cjs').href, // a CommonJS shim: see worker-entry.cts
      minThreads: o.workers,
      maxThreads: o.workers,
      idleTimeout: 2 ** 31 - 1,
      atomics: 'disabled', // piscina's own Atomics.wait loop would block our workers' event loops
      workerData,
      ...(o.resourceLimits ? { resourceLimits: o.resourceLimits } : {}),
    });
    this.#piscina = piscina;
    // By the time piscina reports a worker destroyed its threadId reads -1, so instead of
    // asking which worker it was, recycle every slot whose owner is no longer a live thread.
    piscina.on('workerDestroy', () => queueMicrotask(() => this.#recycleDeadSlots()));
    // piscina emits 'error' for a worker's uncaught exception when it ran no piscina task
    // (ours never do): the exit that follows is what we act on, so only keep it from throwing.
    piscina.on('error', noop);
    // Until the pool has started, a worker's error is kept: a worker that dies while starting is
    // not replaced by piscina, and the start fails at once with its cause (review36: it waited
    // the whole startTimeoutMs, then said "timed out").
    let startError: unknown;
    let diedStarting = 0;
    const onStartError = (err: unknown): void => {
      startError ??= err;
    };
    const onStartDestroy = (): void => {
      diedStarting++;
    };
    piscina.on('error', onStartError);
    piscina.on('workerDestroy', onStartDestroy);

    this.#starting = true;
    this.#activate();
    const deadline = performance.now() + o.startTimeoutMs;
    try {
      while (this.#ready.length < o.workers) {
        if (this.#state === CLOSED) throw new ClosedError('worker pool');
        if (diedStarting > 0 && piscina.threads.length < o.workers) {
          const why = startError instanceof Error ? startError.message : 'it exited before it was ready';
          throw new WorkerExitedError(`worker threads died while starting (${diedStarting} exits; piscina does not replace them): ${why}`, undefined, startError);
        }
        if (performance.now() > deadline) throw new TimeoutError(`starting ${o.workers} worker threads`, o.startTimeoutMs);
        await new Promise((r) => setTimeout(r, 1));
        this.#refreshSlots();
      }
    } finally {
      this.#starting = false;
      piscina.off('error', onStartError);
      piscina.off('workerDestroy', onStartDestroy);
    }
  }

  /** The main thread's view of the shared arena the workers see (for out-of-band staging regions). */
  get arena(): Arena {
    return this.#arena;
  }

  /** Worker threads the pool runs (configured; see `threads` for those attached now). */
  get workers(): number {
    return this.#opts.workers;
  }

  /** Threads currently attached. */
  get threads(): number {
    if (this.#state !== CLOSED && Atomics.load(this.#i32, this.#base + P_GENERATION) !== this.#generation) this.#refreshSlots();
    return this.#ready.length;
  }

  /** Tasks sent and not yet answered. */
  get inflight(): number {
    return this.#pending.size;
  }

  /** Workers that died (and were replaced) since start. */
  get exits(): number {
    return this.#exits;
  }

  /**
   * Runs `task` once on every attached worker (e.g. to collect per-thread state) and resolves
   * with their answers. A worker that dies meanwhile contributes its error instead.
   */
  async broadcast(task: string, payload?: unknown): Promise<unknown[]> {
    return Promise.all(this.broadcastEach(task, payload).map((x) => x.answer.catch((err: unknown) => err)));
  }

  /**
   * Runs `task` once on every attached worker whose pool slot `skip` does not exclude, and gives
   * each slot's answer as a promise of its own (rejected when that worker dies meanwhile), so one
   * slow or stuck worker delays no other's answer.
   * @throws ClosedError, UnknownTaskError; TypeError for a payload the codec refuses.
   */
  broadcastEach(task: string, payload?: unknown, skip?: (slot: number) => boolean): Array<{ slot: number; answer: Promise<unknown> }> {
    if (this.#state === CLOSED || this.#closing !== undefined) throw new ClosedError('worker pool');
    const taskId = this.#taskIds.get(task);
    if (taskId === undefined) throw new UnknownTaskError(task);
    if (Atomics.load(this.#i32, this.#base + P_GENERATION) !== this.#generation) this.#refreshSlots();
    const [enc, body] = encodePayload(this.#codec, payload);
    const out: Array<{ slot: number; answer: Promise<unknown> }> = [];
    for (const slot of this.#ready) {
      if (skip?.(slot.index) === true) continue;
      const id = this.#takeId();
      let resolve!: (v: unknown) => void;
      let reject!: (e: unknown) => void;
      const p = new Promise<unknown>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      p.catch(() => undefined); // a caller that stops listening (a timed-out scrape) leaves nothing unhandled
      this.#pending.set(id, { resolve, reject, promise: p, slot: null, task, taskId, enc, body, ordinal: 0, pinned: true, interrupted: false, onStart: undefined });
      this.#dispatch(slot, id, taskId, enc, body);
      out.push({ slot: slot.index, answer: p });
    }
    if (out.length > 0) this.#activate();
    return out;
  }

  /**
   * Registers a task: `exportName` of the ES module at `moduleUrl`, loaded lazily in each
   * worker on first use. Returns its id. Re-registering a name with the same module is a no-op.
   * @throws TypeError if the name is taken by a different module or export.
   */
  register(name: string, moduleUrl: string | URL, exportName = 'default', adapter?: { module: string | URL; export: string }): number {
    if (typeof name !== 'string' || name.length === 0) throw new TypeError(`task name must be a non-empty string, got ${String(name)}`);
    const module = moduleHref(moduleUrl, 'moduleUrl');
    const adapt = adapter === undefined ? undefined : { module: moduleHref(adapter.module, 'adapter.module'), export: adapter.export };
    const known = this.#taskIds.get(name);
    if (known !== undefined) {
      const t = this.#tasks[known]!;
      if (t.module === module && t.export === exportName && t.adapter?.module === adapt?.module && t.adapter?.export === adapt?.export) return known;
      throw new TypeError(`task "${name}" is already registered for ${t.module}#${t.export}`);
    }
    const id = this.#tasks.length;
    const def: TaskDefinition = { name, module, export: exportName, ...(adapt !== undefined ? { adapter: adapt } : {}) };
    this.#tasks.push(def);
    this.#taskIds.set(name, id);
    for (const s of this.#ready) this.#sendRegistration(s, id, def);
    return id;
  }

  /**
   * Runs task `task` with `payload` on a worker. `payload` travels as raw bytes when it is a
   * Uint8Array (it arrives as a Buffer), else through the engine's value codec; the result likewise.
   * A Uint8Array payload is read again if the task is sent again (its worker died before taking
   * it): do not change or transfer it until the result settles — as with a stream's write().
   * Rejects with ERR_HOTPATH_TASK_FAILED (the task threw; `cause` is its error),
   * ERR_HOTPATH_WORKER_EXITED (its worker died), ERR_HOTPATH_UNKNOWN_TASK or ERR_HOTPATH_CLOSED.
   */
  run(task: string, payload?: unknown, options?: RunOptions): Promise<unknown> {
    // Checked before anything is sent (review36: a bad signal threw from addEventListener after
    // the task had gone out, and its failure was then an unhandled rejection).
    if (options !== undefined && (options === null || typeof options !== 'object')) {
      return Promise.reject(new TypeError(`run options must be an object, got ${options === null ? 'null' : typeof options}`));
    }
    const signal = options?.signal;
    if (signal !== undefined && !(signal instanceof AbortSignal)) {
      return Promise.reject(new TypeError(`options.signal must be an AbortSignal, got ${signal === null ? 'null' : typeof signal}`));
    }
    if (signal?.aborted) return Promise.reject(new CancelledError(`task "${task}"`, signal.reason));
    const started = this.#start(task, payload);
    if (typeof started === 'object') return started;
    const promise = this.#pending.get(started)!.promise;
    return signal === undefined ? promise : this.#watchSignal(started, signal, promise);
  }

  /**
   * Like {@link run}, but returns a handle that can interrupt the task (abort its `ctx.signal`)
   * or kill its worker. A payload that cannot be encoded rejects the handle's result.
   */
  call(task: string, payload?: unknown, onStart?: () => void): PoolCall {
    const started = this.#start(task, payload, onStart);
    if (typeof started === 'object') return { result: started, interrupt: noop, kill: () => false };
    const id = started;
    const entry = this.#pending.get(id)!;
    return {
      result: entry.promise,
      interrupt: () => this.#interrupt(id, entry),
      kill: () => this.#kill(id, entry),
    };
  }

  /** Sends task `task` (or backlogs it); its request id, or a rejected promise. */
  #start(task: string, payload: unknown, onStart?: () => void): number | Promise<never> {
    if (this.#state === CLOSED || this.#closing !== undefined) return Promise.reject(new ClosedError('worker pool'));
    const taskId = this.#taskIds.get(task);
    if (taskId === undefined) return Promise.reject(new UnknownTaskError(task));
    let enc: number;
    let body: Uint8Array | null;
    try {
      [enc, body] = encodePayload(this.#codec, payload);
    } catch (err) {
      if (err instanceof HotpathError) return Promise.reject(err); // e.g. ERR_HOTPATH_VALUE_TOO_LARGE
      return Promise.reject(new TypeError(`task "${task}": ${(err as Error).message}`, { cause: err }));
    }
    const id = this.#takeId();
    let resolve!: (v: unknown) => void;
    let reject!: (e: unknown) => void;
    const promise = new Promise<unknown>((res, rej) => {
      resolve = res;
      reject = rej;
    });
    this.#pending.set(id, { resolve, reject, promise, slot: null, task, taskId, enc, body, ordinal: 0, pinned: false, interrupted: false, onStart });
    if (Atomics.load(this.#i32, this.#base + P_GENERATION) !== this.#generation) this.#refreshSlots();
    const slot = this.#pick();
    if (slot === undefined) {
      if (this.#noThreadsLeft()) {
        this.#pending.delete(id);
        return Promise.reject(new WorkerExitedError(`task "${task}": no worker thread is left to run it (replacements kept failing at start-up)`));
      }
      this.#backlog.push({ id, taskId, enc, body });
    }
    else this.#dispatch(slot, id, taskId, enc, body);
    this.#activate();
    return id;
  }

  #interrupt(id: number, entry: Pending): void {
    if (this.#pending.get(id) !== entry) return; // settled (the id may be reused by now)
    entry.interrupted = true;
    if (entry.slot === null) {
      // Still backlogged: it never reached a worker, so it never runs.
      this.#pending.delete(id);
      entry.reject(new CancelledError(`task "${entry.task}"`));
      this.#checkDrained();
      this.#settleIdle();
      return;
    }
    entry.slot.req.send(KIND_INTERRUPT, id, 0, null);
  }

  #kill(id: number, entry: Pending): boolean {
    const slot = entry.slot;
    if (slot === null || this.#piscina === undefined || this.#pending.get(id) !== entry) return false;
    if (slot.doomed) return true; // already being terminated
    // Not taken from the ring yet: its worker reads the interrupt before it would start it (the
    // worker starts a batch's tasks only after reading the batch), so nothing needs killing.
    if (entry.ordinal > Atomics.load(this.#i32, this.#slotWord(slot.index, S_TAKEN))) return false;
    const worker = this.#piscina.threads.find((t) => t.threadId === slot.threadId);
    if (worker === undefined) return false;
    // No new task goes to a worker that is being terminated (its slot is recycled once it is gone).
    slot.doomed = true;
    this.#ready = this.#ready.filter((s) => s !== slot);
    void worker.terminate();
    return true;
  }

  /** The next request id not in use (ids wrap at 2^31; a very long-lived task keeps its id). */
  #takeId(): number {
    let id = this.#nextId;
    // Not an id in use, nor one whose abandoned call may still answer (review36: the new call
    // would take the old one's answer).
    const max = ID_SPACE.max;
    for (let tried = 0; this.#pending.has(id) || this.#abandoned.has(id); tried++) {
      if (tried >= max) throw new RangeError(`no request id is free: ${max} calls are in flight or abandoned and unanswered`);
      id = id >= max ? 1 : id + 1;
    }
    this.#nextId = id >= max ? 1 : id + 1;
    return id;
  }

  /** True once piscina has no thread at all (it stops replacing workers that die while starting). */
  #noThreadsLeft(): boolean {
    return this.#piscina !== undefined && this.#piscina.threads.length === 0 && !this.#starting;
  }

  /** Lets the poll loop go idle (and the process exit) when nothing is left to wait for. */
  #settleIdle(): void {
    if (this.#pending.size === 0 && this.#backlog.length === 0 && this.#state === SLEEPING) this.#bell.wake();
  }

  /** Rejects task `id` when `signal` aborts; the listener is removed once the task settles. */
  #watchSignal(id: number, signal: AbortSignal, promise: Promise<unknown>): Promise<unknown> {
    const abort = (): void => {
      const p = this.#pending.get(id);
      if (p === undefined) return;
      this.#pending.delete(id);
      if (p.slot !== null) {
        p.slot.inflight--;
        p.slot.req.send(KIND_INTERRUPT, id, 0, null); // the task's ctx.signal aborts
        // Its answer may still come: the id is not reused until then (or until its worker is gone).
        this.#abandoned.set(id, p.slot);
      }
      // The worker may still run it; its answer is then dropped (no entry left to settle).
      p.reject(new CancelledError(`task "${p.task}"`, signal.reason));
      this.#checkDrained();
      this.#settleIdle();
    };
    signal.addEventListener('abort', abort, { once: true });
    return promise.finally(() => signal.removeEventListener('abort', abort));
  }

  #pick(): Slot | undefined {
    const ready = this.#ready;
    let best: Slot | undefined;
    for (let i = 0; i < ready.length; i++) {
      const s = ready[i]!;
      if (best === undefined || s.inflight < best.inflight) best = s;
    }
    return best;
  }

  #dispatch(slot: Slot, id: number, taskId: number, enc: number, body: Uint8Array | null): void {
    const p = this.#pending.get(id);
    if (p === undefined) return; // cancelled while backlogged
    p.slot = slot;
    p.ordinal = ++slot.sent;
    slot.inflight++;
    slot.req.send(KIND_RUN | (enc << 4) | (p.onStart !== undefined ? RUN_NOTIFY_START : 0), id, taskId, body);
  }

  #sendRegistration(slot: Slot, id: number, def: TaskDefinition): void {
    slot.req.send(KIND_REGISTER, id, 0, this.#codec.encode(def));
  }

  #settle(tag: number, id: number, u8: Uint8Array, off: number, len: number): void {
    const p = this.#pending.get(id);
    if (p === undefined) {
      // Cancelled, or rejected when its worker was declared dead. An abandoned call's answer
      // frees its id (its "started" notice comes first and does not).
      if ((tag & 15) !== KIND_STARTED && this.#abandoned.size > 0) this.#abandoned.delete(id);
      return;
    }
    if ((tag & 15) === KIND_STARTED) {
      const f = p.onStart;
      p.onStart = undefined;
      f?.();
      return;
    }
    this.#pending.delete(id);
    if (p.slot !== null) p.slot.inflight--;
    if (this.#pending.size === 0) this.#checkDrained();
    const kind = tag & 15;
    try {
      const value = decodePayload(this.#codec, (tag >>> 4) & 15, u8, off, len);
      if (kind === KIND_RESULT) p.resolve(value);
      else if (kind === KIND_ERROR) p.reject(new TaskFailedError(p.task, fromWireError(value as WireError)));
      else p.reject(new TaskFailedError(p.task, new Error(`unknown response kind ${kind}`)));
    } catch (err) {
      p.reject(new TaskFailedError(p.task, err));
    }
  }

  #activate(): void {
    if (this.#state === IDLE) {
      this.#state = SPINNING;
      this.#lastProgress = performance.now();
      this.#keepAlive.ref();
      setImmediate(this.#tick);
    } else if (this.#state === SLEEPING) {
      // Go back to polling for the new task's answer: wake our own pending wait (never leave
      // a second waiter behind).
      this.#bell.wake();
    }
  }

  /** Reads every response ring; returns the number of frames read. */
  #drain(): number {
    if (Atomics.load(this.#i32, this.#base + P_GENERATION) !== this.#generation) this.#refreshSlots();
    let n = 0;
    const ready = this.#ready;
    for (let i = 0; i < ready.length; i++) n += ready[i]!.res.poll();
    return n;
  }

  #pollTick(): void {
    if (this.#state !== SPINNING) return;
    const n = this.#drain();
    if (this.#pending.size === 0 && this.#backlog.length === 0 && !this.#starting) {
      this.#state = IDLE;
      this.#keepAlive.unref();
      return;
    }
    const now = performance.now();
    if (n > 0) this.#lastProgress = now;
    if ((now - this.#lastProgress) * 1000 < this.#opts.spinUs) {
      setImmediate(this.#tick);
      return;
    }
    const seq = this.#bell.prepareSleep();
    if (this.#anyResponse() || Atomics.load(this.#i32, this.#base + P_GENERATION) !== this.#generation) {
      this.#bell.awake();
      setImmediate(this.#tick);
      return;
    }
    const wait = this.#bell.waitAsync(seq);
    if (wait === undefined) {
      this.#bell.awake();
      setImmediate(this.#tick);
      return;
    }
    this.#state = SLEEPING;
    void wait.then(this.#onWake);
  }

  #anyResponse(): boolean {
    for (const s of this.#ready) if (s.resRing.hasData()) return true;
    return false;
  }

  /** Picks up workers that attached since we last looked. */
  #refreshSlots(): void {
    this.#generation = Atomics.load(this.#i32, this.#base + P_GENERATION);
    let added = false;
    for (const s of this.#slots) {
      if (s.ready || s.doomed) continue;
      if (Atomics.load(this.#i32, this.#slotWord(s.index, S_READY)) === 1) {
        s.ready = true;
        s.threadId = Atomics.load(this.#i32, this.#slotWord(s.index, S_OWNER));
        for (let id = 0; id < this.#tasks.length; id++) this.#sendRegistration(s, id, this.#tasks[id]!);
        added = true;
      }
    }
    if (!added) return;
    this.#ready = this.#slots.filter((s) => s.ready && !s.doomed);
    while (this.#backlog.length > 0) {
      const t = this.#backlog.shift()!;
      this.#dispatch(this.#pick()!, t.id, t.taskId, t.enc, t.body);
    }
  }

  #checkDrained(): void {
    if (this.#pending.size === 0) this.#onDrained?.();
  }

  #slotWord(index: number, field: number): number {
    return this.#base + (POOL_HEADER >>> 2) + index * (SLOT_BYTES >>> 2) + field;
  }

  #recycleDeadSlots(): void {
    const piscina = this.#piscina;
    if (piscina === undefined || this.#state === CLOSED) return;
    const live = new Set(piscina.threads.map((t) => t.threadId));
    for (const slot of this.#slots) {
      const owner = Atomics.load(this.#i32, this.#slotWord(slot.index, S_OWNER));
      if (owner !== 0 && !live.has(owner)) this.#recycle(slot, owner);
    }
  }

  /** The worker that held `slot` is gone: settle its tasks and free the slot. */
  #recycle(slot: Slot, threadId: number): void {
    // Answers the worker published before it died are real results: deliver them first.
    if (slot.ready) slot.res.poll();
    this.#exits++;
    const cause = new WorkerExitedError(`worker thread ${threadId} exited`);
    // Requests it never took from its ring never started: they go to another worker (in the order
    // they were sent) instead of failing. Those it took fail: they may have run, in part or whole.
    const taken = Atomics.load(this.#i32, this.#slotWord(slot.index, S_TAKEN));
    const resend: Array<[number, Pending]> = [];
    for (const [id, p] of this.#pending) {
      if (p.slot !== slot) continue;
      if (p.ordinal > taken && !p.pinned && !p.interrupted) {
        p.slot = null;
        resend.push([id, p]);
        continue;
      }
      this.#pending.delete(id);
      if (p.ordinal > taken && p.interrupted) p.reject(new CancelledError(`task "${p.task}"`));
      else p.reject(new WorkerExitedError(`task "${p.task}": worker thread ${threadId} exited before answering`, undefined, cause));
    }
    resend.sort((a, b) => a[1].ordinal - b[1].ordinal);
    for (const [id, p] of resend) this.#backlog.push({ id, taskId: p.taskId, enc: p.enc, body: p.body });
    this.#checkDrained();
    for (const [id, s] of this.#abandoned) if (s === slot) this.#abandoned.delete(id); // no answer will come
    slot.req.close();
    slot.reqRing.reset();
    slot.resRing.reset();
    const buffer = this.#arena.memory.buffer;
    const cap = this.#opts.ringCapacity;
    this.#slots[slot.index] = this.#makeSlot(slot.index, new Ring(buffer, slot.reqRing.offset, cap), new Ring(buffer, slot.resRing.offset, cap));
    this.#ready = this.#slots.filter((s) => s.ready && !s.doomed);
    Atomics.store(this.#i32, this.#slotWord(slot.index, S_READY), 0);
    Atomics.store(this.#i32, this.#slotWord(slot.index, S_TAKEN), 0);
    Atomics.store(this.#i32, this.#slotWord(slot.index, S_OWNER), 0); // free for a replacement
    // Re-sent requests go to the workers still attached (or wait for the replacement).
    if (this.#ready.length > 0) {
      while (this.#backlog.length > 0) {
        const t = this.#backlog.shift()!;
        this.#dispatch(this.#pick()!, t.id, t.taskId, t.enc, t.body);
      }
    }
    Atomics.notify(this.#i32, this.#base + P_GENERATION); // a replacement may wait for a free slot
    if (this.#noThreadsLeft()) {
      // piscina gave up replacing: what waits for a worker would wait forever.
      for (const t of this.#backlog.splice(0)) {
        const p = this.#pending.get(t.id);
        this.#pending.delete(t.id);
        p?.reject(new WorkerExitedError(`task "${p.task}": no worker thread is left to run it`));
      }
      this.#checkDrained();
    }
    this.#settleIdle();
  }

  /**
   * Stops accepting tasks, waits up to `timeoutMs` for those in flight, rejects the rest with
   * ERR_HOTPATH_CLOSED and terminates the workers. Idempotent.
   */
  close(timeoutMs = 5000): Promise<void> {
    this.#closing ??= this.#close(timeoutMs);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<void> {
    if (this.#pending.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          this.#onDrained = undefined;
          resolve();
        }, timeoutMs);
        this.#onDrained = () => {
          this.#onDrained = undefined;
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const [, p] of this.#pending) p.reject(new ClosedError('worker pool'));
    this.#pending.clear();
    this.#abandoned.clear();
    this.#backlog.length = 0;
    this.#state = CLOSED;
    Atomics.store(this.#i32, this.#base + P_CLOSING, 1);
    for (const s of this.#slots) {
      s.req.close();
      s.reqBell.wake();
    }
    this.#bell.wake();
    clearInterval(this.#keepAlive);
    const piscina = this.#piscina;
    this.#piscina = undefined;
    if (piscina !== undefined) await piscina.destroy();
  }
}

function noop(): void {}

/**
 * The module a worker imports, as an absolute URL: a URL, a string that is one (file:, data:,
 * node:), or an absolute path. A relative string would resolve against the worker's own file
 * and fail only when the task first runs (review36): refused here.
 * @throws TypeError naming `what`.
 */
function moduleHref(m: unknown, what: string): string {
  if (m instanceof URL) return m.href;
  if (typeof m === 'string') {
    if (isAbsolute(m)) return pathToFileURL(m).href;
    if (URL.canParse(m)) {
      const u = new URL(m);
      if (u.protocol === 'file:' || u.protocol === 'data:' || u.protocol === 'node:') return u.href;
    }
  }
  throw new TypeError(`${what} must be a module URL (new URL('./job.js', import.meta.url)) or an absolute path, got ${typeof m === 'string' ? JSON.stringify(m) : typeof m}`);
}
