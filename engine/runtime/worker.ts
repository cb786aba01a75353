/**
 * The worker thread's side of the pool. piscina loads this module in every worker it starts;
 * on load the worker attaches to the shared memory, claims a slot (see pool.ts) and runs one
 * loop that reads its request ring, runs tasks and answers on its response ring.
 *
 * The loop polls while work arrives; when the ring runs dry it keeps polling for `spinUs`
 * (only if its slot is one of the first `spinWorkers`: on a 2-core machine at most one worker
 * burns a core), yielding to its event loop every SPIN_SLICE_US so async tasks progress, then
 * sleeps on its doorbell with Atomics.waitAsync — the event loop stays free for async handlers
 * and for piscina's own messages.
 */
import { threadId, workerData } from 'node:worker_threads';
import { setImmediate, setInterval, clearInterval } from 'node:timers';
import { performance } from 'node:perf_hooks';
import type { ValueCodec } from '../codec/codec.js';
import { ChannelReader, ChannelWriter, Doorbell, Ring } from './channel.js';
import {
  decodePayload, encodePayload, ENC_UNDEFINED, KIND_ERROR, KIND_INTERRUPT, KIND_REGISTER, KIND_RESULT, KIND_RUN,
  KIND_STARTED, P_BELL_SEQ, P_BELL_SLEEPING, P_CLOSING, P_GENERATION, POOL_HEADER, RUN_NOTIFY_START, S_OWNER, S_READY, S_TAKEN, SLOT_BYTES, toWireError,
  type WorkerBootstrap,
} from './protocol.js';
import { metricsStripes, ThreadRuntime, workerStripe } from './thread.js';
import * as builtinTasks from './tasks.js';

/** The module URL the pool registers its built-in tasks under (see pool.ts). */
const BUILTIN_MODULE = new URL('./tasks.js', import.meta.url).href;

/** What a task function receives besides its payload (one per call). */
export interface TaskContext {
  /** This worker's view of the shared runtime (memory, arena, kernels, hasher). */
  readonly runtime: ThreadRuntime;
  /** The worker's slot index. */
  readonly slot: number;
  /**
   * Aborts when the main thread interrupts this call (a queue timeout or cancel, `run()`'s
   * signal). A task that ignores it runs on; only an async task can notice it.
   */
  readonly signal: AbortSignal;
}

/** One call's context; its AbortController is created only if the task asks for the signal. */
class Call implements TaskContext {
  readonly runtime: ThreadRuntime;
  readonly slot: number;
  #controller: AbortController | undefined;

  constructor(runtime: ThreadRuntime, slot: number) {
    this.runtime = runtime;
    this.slot = slot;
  }

  get signal(): AbortSignal {
    return (this.#controller ??= new AbortController()).signal;
  }

  interrupt(): void {
    (this.#controller ??= new AbortController()).abort();
  }
}

/** A task: a function of the payload, sync or async. */
export type TaskFunction = (payload: unknown, ctx: TaskContext) => unknown;

interface Waiting {
  id: number;
  entry: TaskEntry;
  payload: unknown;
  /** Interrupted before it started: answered with an error instead of started. */
  interrupted?: boolean;
  /** Answer STARTED when it starts (the caller times it from then). */
  notify: boolean;
  /** Its request could not be read: answered with this instead of started. */
  error?: unknown;
}

interface TaskEntry {
  name: string;
  module: string;
  export: string;
  adapter?: { module: string; export: string };
  fn: TaskFunction | undefined;
  loading: Promise<TaskFunction> | undefined;
}

const SPIN_SLICE_US = 20;

class Worker {
  readonly #boot: WorkerBootstrap;
  readonly #rt: ThreadRuntime;
  readonly #i32: Int32Array;
  readonly #pool: number;
  readonly #slot: number;
  readonly #reader: ChannelReader;
  readonly #writer: ChannelWriter;
  readonly #bell: Doorbell;
  readonly #spin: boolean;
  readonly #codec: ValueCodec;
  readonly #tasks: TaskEntry[] = [];
  /** Async calls still running, by request id (so an INTERRUPT finds them). */
  readonly #live = new Map<number, Call>();
  /**
   * Tasks start in the order they arrived. While a task waits for its module to load, the ones
   * behind it wait too (here), so a lazily loaded module never lets a later task overtake.
   */
  readonly #waiting: Waiting[] = [];
  #loading = false;
  /** Inside #startWaiting (a ring poll from there must not start tasks itself). */
  #starting = false;
  /** i32 index of this slot's S_TAKEN word. */
  readonly #takenWord: number;
  /** When the answers now in the writer's batch began to accumulate (see #invoke). */
  #batchStart = 0;

  constructor(boot: WorkerBootstrap) {
    this.#boot = boot;
    this.#i32 = new Int32Array(boot.memory.buffer);
    this.#pool = boot.poolOffset >>> 2;
    this.#slot = this.#claimSlot();
    this.#takenWord = this.#pool + (POOL_HEADER >>> 2) + this.#slot * (SLOT_BYTES >>> 2) + S_TAKEN;
    this.#rt = new ThreadRuntime(boot.memory, boot.module, `hotpath:scratch:w${this.#slot}`, boot.scratchBytes, {
      capacity: boot.metricsCapacity, stripes: metricsStripes(boot.slots), stripe: workerStripe(this.#slot),
    });
    const [reqOff, resOff] = boot.ringOffsets[this.#slot]!;
    const req = new Ring(boot.memory.buffer, reqOff, boot.ringCapacity);
    const res = new Ring(boot.memory.buffer, resOff, boot.ringCapacity);
    this.#bell = req.doorbell();
    this.#reader = new ChannelReader(req, (tag, a, b, u8, off, len) => this.#onRequest(tag, a, b, u8, off, len));
    this.#writer = new ChannelWriter(res, new Doorbell(this.#i32, this.#pool + P_BELL_SEQ, this.#pool + P_BELL_SLEEPING));
    this.#spin = this.#slot < boot.spinWorkers && boot.spinUs > 0;
    this.#codec = this.#rt.codec;
  }

  #claimSlot(): number {
    const b = this.#boot;
    for (;;) {
      for (let i = 0; i < b.slots; i++) {
        const w = this.#pool + (POOL_HEADER >>> 2) + i * (SLOT_BYTES >>> 2);
        if (Atomics.compareExchange(this.#i32, w + S_OWNER, 0, threadId) === 0) return i;
      }
      // Every slot is taken: the main thread is still recycling a dead worker's slot.
      Atomics.wait(this.#i32, this.#pool + P_GENERATION, Atomics.load(this.#i32, this.#pool + P_GENERATION), 5);
    }
  }

  /** Announces the slot as ready and runs the loop until the pool closes. */
  async run(): Promise<void> {
    const w = this.#pool + (POOL_HEADER >>> 2) + this.#slot * (SLOT_BYTES >>> 2);
    Atomics.store(this.#i32, w + S_READY, 1);
    Atomics.add(this.#i32, this.#pool + P_GENERATION, 1);
    const mainBell = new Doorbell(this.#i32, this.#pool + P_BELL_SEQ, this.#pool + P_BELL_SLEEPING);
    mainBell.ring();

    const ring = this.#reader.ring;
    let idleSince = performance.now();
    let batches = 0;
    while (Atomics.load(this.#i32, this.#pool + P_CLOSING) === 0) {
      this.#batchStart = performance.now();
      if (this.#reader.poll() > 0) {
        this.#startWaiting();
        this.#writer.flush();
        idleSince = performance.now();
        // Let async tasks and piscina's messages in now and then under a steady stream.
        if ((++batches & 63) === 0) await yieldToEventLoop();
        continue;
      }
      this.#writer.flush();
      if (this.#spin && (performance.now() - idleSince) * 1000 < this.#boot.spinUs) {
        const sliceEnd = performance.now() + SPIN_SLICE_US / 1000;
        while (!ring.hasData() && performance.now() < sliceEnd);
        if (!ring.hasData()) await yieldToEventLoop();
        continue;
      }
      const seq = this.#bell.prepareSleep();
      if (ring.hasData() || Atomics.load(this.#i32, this.#pool + P_CLOSING) !== 0) {
        this.#bell.awake();
        continue;
      }
      const wait = this.#bell.waitAsync(seq);
      if (wait !== undefined) await wait;
      this.#bell.awake();
      idleSince = performance.now();
    }
  }

  #onRequest(tag: number, a: number, b: number, u8: Uint8Array, off: number, len: number): void {
    try {
      this.#handle(tag, a, b, u8, off, len);
    } catch (err) {
      // Nothing a request carries may stop the loop; a broken RUN is answered, anything else dropped.
      if ((tag & 15) === KIND_RUN) this.#fail(a, err);
    }
  }

  #handle(tag: number, a: number, b: number, u8: Uint8Array, off: number, len: number): void {
    const kind = tag & 15;
    if (kind === KIND_REGISTER) {
      const def = this.#codec.decode(u8.slice(off, off + len)) as { name: string; module: string; export: string; adapter?: { module: string; export: string } };
      // Built-in tasks are linked statically: no import on first use.
      const builtin = def.module === BUILTIN_MODULE ? (builtinTasks as Record<string, unknown>)[def.export] : undefined;
      this.#tasks[a] = { ...def, fn: typeof builtin === 'function' ? (builtin as TaskFunction) : undefined, loading: undefined };
      return;
    }
    if (kind === KIND_INTERRUPT) {
      this.#interrupt(a);
      return;
    }
    if (kind !== KIND_RUN) return;
    const id = a;
    const entry = this.#tasks[b];
    let payload: unknown;
    let error: unknown;
    try {
      if (entry === undefined) throw new Error(`task id ${b} is not registered in this worker`);
      payload = decodePayload(this.#codec, (tag >>> 4) & 15, u8, off, len);
    } catch (err) {
      error = err; // answered in turn (see S_TAKEN: requests leave the queue in the order they came)
    }
    // Started after the ring is read (see run()): an INTERRUPT later in the same batch still
    // finds it waiting, so a task cancelled while in the ring never starts.
    this.#waiting.push({ id, entry: entry!, payload, notify: (tag & RUN_NOTIFY_START) !== 0, error });
  }

  /** Starts waiting tasks in order until one needs its module loaded (then resumes after it). */
  #startWaiting(): void {
    if (this.#loading || this.#starting) return;
    this.#starting = true;
    try {
      this.#drainWaiting();
    } finally {
      this.#starting = false;
    }
  }

  #drainWaiting(): void {
    while (this.#waiting.length > 0) {
      const t = this.#waiting[0]!;
      if (t.error !== undefined || t.interrupted === true) {
        this.#waiting.shift();
        this.#taken();
        this.#fail(t.id, t.error ?? Object.assign(new Error('interrupted before it started'), { name: 'AbortError' }));
        continue;
      }
      const fn = t.entry.fn;
      if (fn === undefined) {
        this.#loading = true;
        t.entry.loading ??= loadTask(t.entry);
        t.entry.loading.then(
          () => this.#resume(),
          (err: unknown) => {
            this.#waiting.shift();
            this.#taken();
            this.#fail(t.id, err);
            this.#resume();
          },
        );
        return;
      }
      this.#waiting.shift();
      this.#taken();
      if (t.notify) {
        this.#writer.send(KIND_STARTED, t.id, 0, null);
        this.#writer.flush(); // now: the caller's timeout runs from here, even if the task never returns
      }
      this.#invoke(t.id, fn, t.payload);
      // A batch of CPU-heavy tasks: every millisecond, publish the answers so far (instead of
      // holding them all until the batch ends) and read the ring (interrupts for tasks still waiting).
      const now = performance.now();
      if (now - this.#batchStart > 1) {
        this.#writer.flush();
        this.#reader.poll();
        this.#batchStart = performance.now();
      }
    }
  }

  /**
   * One more request has left the queue (started, or answered without starting). Requests leave
   * in the order they came, so the main thread knows that those it sent beyond this count never
   * started if this worker dies (S_TAKEN): it sends them to another worker.
   */
  #taken(): void {
    Atomics.add(this.#i32, this.#takenWord, 1);
  }

  #resume(): void {
    this.#loading = false;
    this.#startWaiting();
    this.#writer.flush();
  }

  /** The main thread interrupts call `id`: abort its signal, or drop it if it has not started. */
  #interrupt(id: number): void {
    const call = this.#live.get(id);
    if (call !== undefined) {
      call.interrupt();
      return;
    }
    const w = this.#waiting.find((t) => t.id === id);
    if (w !== undefined) w.interrupted = true; // answered, not started, when its turn comes
    // Neither live nor waiting: a finished call (or a sync one), nothing to do.
  }

  #invoke(id: number, fn: TaskFunction, payload: unknown): void {
    const call = new Call(this.#rt, this.#slot);
    try {
      const result = fn(payload, call);
      if (result !== null && (typeof result === 'object' || typeof result === 'function') && typeof (result as PromiseLike<unknown>).then === 'function') {
        this.#live.set(id, call);
        // Promise.resolve adopts any thenable (even one whose then() throws) into a real promise.
        Promise.resolve(result).then(
          (v) => {
            this.#live.delete(id);
            this.#answer(id, v);
            this.#writer.publish();
          },
          (err: unknown) => {
            this.#live.delete(id);
            this.#fail(id, err);
            this.#writer.publish();
          },
        );
      } else {
        this.#answer(id, result);
      }
    } catch (err) {
      this.#fail(id, err);
    }
    // Every answer is published as it is written (the bell still rings once per batch): if this
    // thread dies later in the batch, the main thread reads the answers it gave (the pool's
    // #recycle polls the ring first) instead of failing — and retrying — tasks that finished.
    this.#writer.publish();
  }

  #answer(id: number, value: unknown): void {
    if (value === undefined) {
      this.#writer.send(KIND_RESULT | (ENC_UNDEFINED << 4), id, 0, null);
      return;
    }
    let enc: number;
    let body: Uint8Array | null;
    try {
      [enc, body] = encodePayload(this.#codec, value, 'result');
    } catch (err) {
      this.#fail(id, new TypeError(`the task's result cannot be encoded: ${(err as Error).message}`));
      return;
    }
    this.#writer.send(KIND_RESULT | (enc << 4), id, 0, body);
  }

  /** Answers `id` with an error. Never throws (an error that cannot be encoded is replaced). */
  #fail(id: number, err: unknown): void {
    let enc: number;
    let body: Uint8Array | null;
    try {
      [enc, body] = encodePayload(this.#codec, toWireError(err));
    } catch {
      [enc, body] = encodePayload(this.#codec, { name: 'Error', message: 'the task failed with an error that cannot be sent back' });
    }
    this.#writer.send(KIND_ERROR | (enc << 4), id, 0, body);
  }
}

async function loadTask(entry: TaskEntry): Promise<TaskFunction> {
  const mod = (await import(entry.module)) as Record<string, unknown>;
  const fn = mod[entry.export];
  if (typeof fn !== 'function') throw new TypeError(`${entry.module} has no function export "${entry.export}"`);
  if (entry.adapter !== undefined) {
    const a = (await import(entry.adapter.module)) as Record<string, unknown>;
    const wrap = a[entry.adapter.export];
    if (typeof wrap !== 'function') throw new TypeError(`${entry.adapter.module} has no function export "${entry.adapter.export}"`);
    const adapted = (wrap as (f: unknown, def: { name: string; module: string; export: string }) => unknown)(fn, { name: entry.name, module: entry.module, export: entry.export });
    if (typeof adapted !== 'function') throw new TypeError(`adapter ${entry.adapter.export} did not return a function`);
    entry.fn = adapted as TaskFunction;
    return entry.fn;
  }
  entry.fn = fn as TaskFunction;
  return entry.fn;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function start(): () => never {
  const worker = new Worker(workerData as WorkerBootstrap);
  // A pending Atomics.waitAsync does not keep a thread's event loop alive: this timer does,
  // until the pool closes (piscina then terminates the thread).
  const keepAlive = setInterval(() => {}, 1 << 30);
  void worker.run().finally(() => clearInterval(keepAlive));
  return () => {
    throw new Error('hotpath workers take tasks from their channel, not from piscina.run()');
  };
}

/** piscina's handler export. Attaching happens when piscina loads this module. */
export default start();
