/**
 * The in-memory task queue: `engine.queue(name, options)`. Priorities on a WASM heap, handlers on
 * the calling thread (functions) or on the worker threads (module URLs), retries with back-off,
 * a bounded dead-letter list, status records, and close semantics that drop nothing silently.
 *
 * Life of a task:
 * ```
 *  submit ──► delayed ──(runAt)──┐
 *     │                          ▼
 *     └───────────────────────► queued ──(a concurrency slot)──► running ──► succeeded
 *                                  ▲                                │
 *                                  └──── delayed (back-off) ◄── failed, attempts left & retryable
 *                                                                   └──► dead (dead letter kept) │ failed (no DLQ)
 *  cancel: queued / delayed → cancelled at once; running → stopped (signal, then killed), cancelled
 * ```
 * Ordering: the heap orders queued tasks by (key, sequence): key = priority, or with aging
 * priority + (time queued − epoch) / agingMs, which is exactly linear aging (a task gains one
 * level per agingMs waited) with a key that never has to be updated. A task submitted while a
 * concurrency slot is free starts inside submit(), before any later task can be queued.
 *
 * Heap entries point at slots of `#slots`; a cancelled queued task stays in the heap (a lazy
 * delete) and keeps its slot until it is popped, so a slot is never reused while a stale entry
 * can still name it. Tombstones are compacted when they outnumber the live entries.
 *
 * Guarantee: at most once per attempt, in memory. A task is lost only with its process.
 */
import { isWellFormed } from '../text.js';
import { EventEmitter } from 'node:events';
import { CancelledError, ClosedError, type HotpathError, QueueFullError } from '../errors.js';
import type { Clock } from '../options.js';
import { MAX_TIMER_MS } from '../timer.js';
import type { ValueCodec } from '../codec/codec.js';
import type { WorkerPool } from '../runtime/pool.js';
import type { RateLimiter } from '../limiter/types.js';
import type { Cache } from '../cache/cache.js';
import type { CircuitBreaker } from '../resilience/breaker.js';
import type { LatencyRecorder } from '../observe/thread-metrics.js';
import { MAX_HEAP_ENTRIES, TaskHeap } from './heap.js';
import { createExecutor, FunctionExecutor, Settled, type AttemptHandle, type Executor } from './executor.js';
import {
  backoffDelay, resolveQueueOptions, resolveSubmit, type ResolvedQueueOptions, type ResolvedSubmit,
} from './options.js';
import type {
  DeadLetter, ErrorInfo, QueueCounts, QueueEvents, QueueOptions, SubmitOptions, TaskHandle, TaskState, TaskStatus,
} from './types.js';

/** What a queue needs besides its options (engine.queue wires these). */
export interface QueueDeps {
  /** The worker pool: required for a module handler. */
  pool?: WorkerPool;
  /** The engine-local value codec (encodes module handlers' payloads). */
  codec?: ValueCodec;
  /** Time source (ms). Default Date.now. */
  clock?: Clock;
  /** `ctx.limiter(name)` for function handlers. */
  limiter?: (name: string) => RateLimiter;
  /** `ctx.cache` for function handlers. */
  cache?: () => Cache;
  /** `ctx.breaker(name)` for function handlers. */
  breaker?: (name: string) => CircuitBreaker;
  /** Wait and run time recorders (ms). */
  waitTime?: LatencyRecorder;
  runTime?: LatencyRecorder;
  /** Back-off jitter's random source, in [0, 1). Default Math.random. */
  random?: () => number;
  /** Default concurrency of a module handler (the worker count). */
  workers?: number;
}

/**
 * Default concurrency per worker thread of a module handler. Deep enough that a worker never waits
 * for the main thread between tasks and a wake-up (25-40 µs here) is shared by many tasks:
 * measured on 2 cores with 1 worker, no-op tasks ran at 86k/s with 64 in flight, 143k/s with 128,
 * and no faster beyond;
 * shallow enough that a task of higher priority submitted later starts behind at most this many
 * per worker. Lower `concurrency` for a stricter priority order.
 */
export const MODULE_CONCURRENCY = 128;

/** Synchronously finished tasks one pump may run before it yields to the event loop. */
const PUMP_BUDGET = 1024;

const QUEUED = 0;
const DELAYED = 1;
const RUNNING = 2;
const SUCCEEDED = 3;
const FAILED = 4;
const DEAD = 5;
const CANCELLED = 6;
const STATES: readonly TaskState[] = ['queued', 'delayed', 'running', 'succeeded', 'failed', 'dead', 'cancelled'];

class Task {
  /** The map key: a generated id's number, or the caller's id. */
  readonly key: number | string;
  readonly #prefix: string;
  #id: string | undefined;
  prepared: unknown;
  readonly priority: number;
  readonly timeout: number;
  readonly submittedAt: number;
  state = QUEUED;
  slot = -1;
  attempts = 0;
  runAt = 0;
  queuedAt = 0;
  startedAt = 0;
  finishedAt = 0;
  lastDelay = 0;
  /** Order among tasks due at the same time (FIFO for delays and retries). */
  delaySeq = 0;
  /** Set when cancel() or close() stopped it while running: it ends cancelled, not retried. */
  cancelRequested = false;
  error: unknown = undefined;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | undefined = undefined;
  running: AttemptHandle | undefined = undefined;
  /** AttemptInfo: the attempt about to run (or running). */
  get attempt(): number {
    return this.attempts;
  }

  /** AttemptInfo: this task's timeout. */
  get timeoutMs(): number {
    return this.timeout;
  }

  /** `<queue>:<n>` for a generated id (made on first use), else the caller's id. */
  get id(): string {
    return (this.#id ??= typeof this.key === 'number' ? `${this.#prefix}${this.key}` : this.key);
  }

  /** The result promise, created on first ask (a task nobody asks about costs none). */
  #promise: Promise<unknown> | undefined;
  #resolve: ((v: unknown) => void) | undefined;
  #reject: ((e: unknown) => void) | undefined;
  /** 0 pending, 1 fulfilled, 2 rejected (before anyone asked for the promise). */
  #outcome = 0;
  #value: unknown;
  readonly handle: TaskHandle;

  constructor(key: number | string, prefix: string, prepared: unknown, o: ResolvedSubmit, timeout: number, now: number) {
    this.key = key;
    this.#prefix = prefix;
    this.prepared = prepared;
    this.priority = o.priority;
    this.timeout = timeout;
    this.submittedAt = now;
    this.signal = o.signal;
    this.handle = new Handle(this);
  }

  /** The result promise: pre-handled, so an unawaited failure raises no unhandled rejection. */
  result(): Promise<unknown> {
    if (this.#promise !== undefined) return this.#promise;
    if (this.#outcome === 1) this.#promise = Promise.resolve(this.#value);
    else if (this.#outcome === 2) this.#promise = Promise.reject(this.#value);
    else {
      this.#promise = new Promise((resolve, reject) => {
        this.#resolve = resolve;
        this.#reject = reject;
      });
    }
    this.#promise.then(undefined, noop);
    this.#value = undefined;
    return this.#promise;
  }

  resolve(v: unknown): void {
    if (this.#resolve !== undefined) this.#resolve(v);
    else if (this.#promise === undefined) {
      this.#outcome = 1;
      this.#value = v;
    }
  }

  reject(e: unknown): void {
    if (this.#reject !== undefined) this.#reject(e);
    else if (this.#promise === undefined) {
      this.#outcome = 2;
      this.#value = e;
    }
  }
}

/** What submit() returns; `result` is made on first read. */
class Handle implements TaskHandle {
  readonly #task: Task;

  constructor(task: Task) {
    this.#task = task;
  }

  get id(): string {
    return this.#task.id;
  }

  get result(): Promise<unknown> {
    return this.#task.result();
  }
}

/** A min-heap of delayed tasks by runAt (JS: few entries, and they carry whole tasks). */
class DelayHeap {
  readonly items: Task[] = [];

  get size(): number {
    return this.items.length;
  }

  push(t: Task): void {
    const a = this.items;
    a.push(t);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!earlier(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  peek(): Task | undefined {
    return this.items[0];
  }

  pop(): Task | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && earlier(a[l]!, a[m]!)) m = l;
        if (r < a.length && earlier(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }

  /** Drops the entries `keep` rejects (tombstones) and restores the heap order. */
  filter(keep: (t: Task) => boolean): void {
    const live = this.items.filter(keep);
    this.items.length = 0;
    for (const t of live) this.push(t);
  }
}

function earlier(a: Task, b: Task): boolean {
  return a.runAt < b.runAt || (a.runAt === b.runAt && a.delaySeq < b.delaySeq);
}

function noop(): void {}

/** A dead letter as kept: its payload as the executor retains it (see Executor.retain). */
interface Letter {
  id: string;
  kept: unknown;
  bytes: number;
  priority: number;
  error: ErrorInfo;
  attempts: number;
  submittedAt: number;
  failedAt: number;
}

/**
 * Dead letters, the newest `limit` of them holding at most `maxBytes` of payload together (the
 * newest letter is always kept, whatever its size). Written only when a task fails for good, so
 * evicting through the map's own order is cheap enough here.
 */
class Letters {
  readonly map = new Map<string, Letter>();
  #bytes = 0;
  readonly #limit: number;
  readonly #maxBytes: number;

  constructor(limit: number, maxBytes: number) {
    this.#limit = limit;
    this.#maxBytes = maxBytes;
  }

  set(letter: Letter): void {
    if (this.#limit === 0) return;
    this.delete(letter.id); // a newer letter of the same id goes to the end
    this.map.set(letter.id, letter);
    this.#bytes += letter.bytes;
    while (this.map.size > this.#limit || (this.#bytes > this.#maxBytes && this.map.size > 1)) {
      this.delete(this.map.keys().next().value!);
    }
  }

  delete(id: string): void {
    const l = this.map.get(id);
    if (l === undefined) return;
    this.map.delete(id);
    this.#bytes -= l.bytes;
  }

  clear(): number {
    const n = this.map.size;
    this.map.clear();
    this.#bytes = 0;
    return n;
  }
}

/**
 * Status records of the newest finished tasks: a ring of tasks; the caller's ids also in a map,
 * generated ids (numbers) found by scanning the ring — status() of a finished task is rare, while
 * a map entry per finished task would cost every task.
 */
class FinishedRing {
  readonly #tasks: Array<Task | undefined>;
  readonly #named = new Map<string, Task>();
  #next = 0;

  readonly #limit: number;

  constructor(limit: number) {
    this.#limit = limit;
    this.#tasks = []; // grows to `limit`, then wraps
  }

  add(t: Task): void {
    const ring = this.#tasks;
    if (this.#limit === 0) return;
    if (ring.length < this.#limit) {
      ring.push(t);
      if (typeof t.key === 'string') this.#named.set(t.key, t);
      return;
    }
    const i = this.#next;
    const old = ring[i];
    if (old !== undefined && typeof old.key === 'string' && this.#named.get(old.key) === old) this.#named.delete(old.key);
    ring[i] = t;
    this.#next = i + 1 === ring.length ? 0 : i + 1;
    if (typeof t.key === 'string') this.#named.set(t.key, t);
  }

  /** The newest finished task of this key. */
  find(key: number | string): Task | undefined {
    if (typeof key === 'string') return this.#named.get(key);
    const ring = this.#tasks;
    // Newest first: before wrapping, the newest is the last pushed; after, the one before #next.
    for (let n = 0, i = ring.length < this.#limit ? ring.length : this.#next; n < ring.length; n++) {
      i = i === 0 ? ring.length - 1 : i - 1;
      const t = ring[i];
      if (t === undefined) return undefined;
      if (t.key === key) return t;
    }
    return undefined;
  }

  /** A new task took this id: the old record is superseded. */
  forget(key: string): void {
    this.#named.delete(key);
  }
}

/** A plain, serialisable picture of an error. */
export function errorInfo(err: unknown): ErrorInfo {
  if (isError(err)) {
    // Each field read on its own: a getter that throws costs that field, never the task (review60:
    // a throwing `code` getter left the task unsettled and submit() threw after accepting it).
    const name = field(err, 'name');
    const info: ErrorInfo = { name: typeof name === 'string' ? name : 'Error', message: printable(field(err, 'message')) };
    const code = field(err, 'code');
    if (typeof code === 'string') info.code = code;
    const stack = field(err, 'stack');
    if (typeof stack === 'string') info.stack = stack;
    return info;
  }
  return { name: 'Error', message: printable(err) };
}

/** `err instanceof Error`, false when even that throws (a revoked Proxy: review63). */
function isError(err: unknown): err is Error {
  try {
    return err instanceof Error;
  } catch {
    return false;
  }
}

/** `err[key]`, or undefined when reading it throws. */
function field(err: Error, key: string): unknown {
  try {
    return (err as unknown as Record<string, unknown>)[key];
  } catch {
    return undefined;
  }
}

/** An error's message (or the thrown value) as text, whatever it is. */
function describe(err: unknown): string {
  return printable(isError(err) ? field(err, 'message') : err);
}

/** `String(v)`, or a placeholder when that throws. */
function printable(v: unknown): string {
  try {
    return String(v);
  } catch {
    return '(unprintable)';
  }
}

export class Queue<P = unknown, R = unknown> extends EventEmitter {
  /** The queue's name. */
  readonly name: string;
  /** Tasks running at once. */
  readonly concurrency: number;
  /** The most tasks queued or delayed at once. */
  readonly maxQueued: number;
  readonly #o: ResolvedQueueOptions;
  readonly #executor: Executor;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #waitTime: LatencyRecorder | undefined;
  readonly #runTime: LatencyRecorder | undefined;
  readonly #heap: TaskHeap;
  readonly #delayed = new DelayHeap();
  /**
   * Queued and running tasks by slot (the heap's entries point here; a cancelled queued task keeps
   * its slot until its heap entry is popped); undefined = free. Delayed tasks hold no slot.
   */
  readonly #slots: Array<Task | undefined> = [];
  readonly #freeSlots: number[] = [];
  /** Live (queued, delayed, running) tasks with a caller's id. */
  readonly #named = new Map<string, Task>();
  /**
   * Live tasks with a generated id, by number: built on the first lookup of such an id (a scan of
   * the slots, the delayed heap and #transit) and kept from then on, so a queue whose generated ids
   * are never looked up pays nothing for them. (An index kept from the start costs a Map set and
   * delete per task: it doubled the cost of a submit into a 100k backlog.)
   */
  #autoIndex: Map<number, Task> | undefined;
  /**
   * Tasks with a generated id between two attempts — in neither a slot nor the delayed heap — while
   * user code runs ('failed' and 'retried' listeners, retry.retryable, a back-off function).
   * Tracked only while there is no index; the index's scan takes them in (review59: cancel() from
   * such a listener returned false).
   */
  readonly #transit: Task[] = [];
  /** Finished tasks' status (the newest statusRetention). */
  readonly #finished: FinishedRing;
  /** Dead letters (the newest deadLetterRetention, within deadLetterBytes). */
  readonly #dead: Letters;
  /** Generated ids are `<name>:<n>`; ids of that form are reserved for them. */
  readonly #prefix: string;
  readonly #epoch: number;
  #queued = 0;
  #delayedLive = 0;
  #running = 0;
  #paused = false;
  #closing: Promise<void> | undefined;
  #closed = false;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #timerAt = Infinity;
  #nextId = 0;
  #delaySeq = 0;
  #pumping = false;
  /** submitMany is accepting its batch: nothing starts until every task of it is queued. */
  #batching = false;
  /** Tasks of a submitMany batch not accepted yet: maxQueued counts them (review60). */
  #reserved = 0;
  /** close() has ended every task it found: nothing starts any more, and nothing is queued. */
  #swept = false;
  #pumpScheduled = false;
  readonly #resumePump = (): void => {
    this.#pumpScheduled = false;
    this.#pump();
  };
  #drainWaiters: Array<() => void> = [];
  /** close() of a paused queue: waiting for the running attempts only. */
  #stillWaiters: Array<() => void> = [];
  readonly #counts = { submitted: 0, completed: 0, failed: 0, retried: 0, dead: 0, cancelled: 0 };
  readonly #onTimer = (): void => this.#promoteDue(true);

  /**
   * Use `engine.queue(name, options)`; standalone, pass the dependencies yourself.
   * @throws TypeError / RangeError naming a bad option.
   */
  constructor(name: string, options: QueueOptions<P, R>, deps: QueueDeps = {}) {
    super();
    // Well-formed, as the durable queue needs (a lone surrogate has no UTF-8 form): one rule for both modes.
    if (typeof name !== 'string' || name.length === 0 || name.length > 200 || !isWellFormed(name)) {
      throw new TypeError(`queue name must be a non-empty string of at most 200 characters, well-formed UTF-16, got ${typeof name === 'string' ? JSON.stringify(name) : String(name)}`);
    }
    const o = resolveQueueOptions(options);
    if (o.durable) throw new TypeError('options.durable needs the durable queue: use engine.queue(name, { durable: true, … }) on an engine with Redis');
    this.name = name;
    this.#o = o;
    this.#executor = createExecutor(name, o.handler, o.handlerExport, o.killAfterMs, deps);
    // A module handler's default keeps every worker's ring fed (a worker runs one sync task at a
    // time; the rest wait in its ring, in the order the heap chose): see MODULE_CONCURRENCY.
    this.concurrency = o.concurrency ?? (this.#executor.onWorkers ? MODULE_CONCURRENCY * Math.max(1, deps.workers ?? deps.pool?.workers ?? 1) : 1);
    this.maxQueued = o.maxQueued;
    this.#clock = deps.clock ?? { now: Date.now };
    this.#random = deps.random ?? Math.random;
    this.#waitTime = deps.waitTime;
    this.#runTime = deps.runTime;
    // Heap room: every queued task, plus as many tombstones (compacted beyond that).
    this.#heap = new TaskHeap(Math.min(2 * o.maxQueued + this.concurrency, MAX_HEAP_ENTRIES));
    this.#epoch = this.#clock.now();
    this.#prefix = `${name}:`;
    this.#finished = new FinishedRing(o.statusRetention);
    this.#dead = new Letters(o.deadLetterRetention, o.deadLetterBytes);
  }

  // ------------------------------------------------------------------ submit

  /**
   * Queues a task; returns `{ id, result }`. With a concurrency slot free (and nothing queued or
   * paused) it starts at once. An `id` already queued, delayed or running returns that task's handle.
   * @throws ERR_HOTPATH_QUEUE_FULL beyond maxQueued; ERR_HOTPATH_CLOSED after close(); TypeError /
   *   RangeError for a bad option or a payload a worker handler cannot receive.
   */
  submit(payload: P, options?: SubmitOptions): TaskHandle<R> {
    return this.#submit(payload, options, true) as TaskHandle<R>;
  }

  /** submit(), but `false` instead of ERR_HOTPATH_QUEUE_FULL. */
  trySubmit(payload: P, options?: SubmitOptions): TaskHandle<R> | false {
    return this.#submit(payload, options, false) as TaskHandle<R> | false;
  }

  #submit(payload: P, options: SubmitOptions | undefined, throwWhenFull: boolean): TaskHandle | false {
    const o = resolveSubmit(options);
    if (o.id !== undefined) {
      this.#checkId(o.id);
      const known = this.#named.get(o.id);
      if (known !== undefined) return known.handle;
    }
    this.#checkOpen();
    if (this.#queued + this.#delayedLive + this.#reserved >= this.#o.maxQueued) {
      if (throwWhenFull) throw new QueueFullError(this.name, this.#o.maxQueued);
      return false;
    }
    return this.#accept(this.#executor.prepare(payload), o, o.id ?? this.#autoKey());
  }

  /**
   * Queues several tasks with the same options (no `id`): all or none, every one accepted before
   * any starts (so a handler that closes the queue finds the whole batch queued: review57). Tasks
   * for the workers go out in one batch (one wake-up of each worker).
   * @throws as submit(); ERR_HOTPATH_QUEUE_FULL when they do not all fit (none is queued then).
   */
  submitMany(payloads: readonly P[], options?: Omit<SubmitOptions, 'id'>): Array<TaskHandle<R>> {
    if (!Array.isArray(payloads)) throw new TypeError(`submitMany takes an array of payloads, got ${typeof payloads}`);
    if (options !== undefined && (options as SubmitOptions).id !== undefined) throw new TypeError('submitMany: options.id cannot be shared by several tasks; use submit() per id');
    const o = resolveSubmit(options);
    this.#checkOpen();
    if (this.#queued + this.#delayedLive + this.#reserved + payloads.length > this.#o.maxQueued) throw new QueueFullError(this.name, this.#o.maxQueued);
    // Every payload checked before any is queued. Array.from: a hole of a sparse array is an
    // undefined payload (as submit(undefined)), not skipped (review57).
    const prepared = Array.from(payloads, (p) => this.#executor.prepare(p));
    const outer = this.#batching;
    this.#batching = true;
    // The batch's tasks not accepted yet hold their places against maxQueued: a 'queued' listener's
    // submit cannot take them (review60).
    let left = prepared.length;
    this.#reserved += left;
    try {
      return prepared.map((p) => {
        this.#reserved--;
        left--;
        return this.#accept(p, o, this.#autoKey()) as TaskHandle<R>;
      });
    } finally {
      this.#reserved -= left;
      this.#batching = outer;
      if (!outer) this.#pump();
    }
  }

  #checkOpen(): void {
    if (this.#closing !== undefined) throw new ClosedError(`queue "${this.name}"`);
  }

  /** The next generated id's number (a key no live task holds). */
  #autoKey(): number {
    return ++this.#nextId;
  }

  /** Ids of the form `<queue>:<digits>` are the generated ones: refused from callers. */
  #checkId(id: string): void {
    if (this.#keyOf(id) !== id) throw new TypeError(`options.id ${JSON.stringify(id)} has the form of a generated id ("${this.#prefix}<number>"); choose another`);
  }

  /** The map key of `id`: the number of a generated id, else the id itself. */
  #keyOf(id: string): number | string {
    const p = this.#prefix;
    if (id.length > p.length && id.length <= p.length + 15 && id.startsWith(p)) {
      const rest = id.slice(p.length);
      if (/^[1-9][0-9]*$/.test(rest)) return Number(rest);
    }
    return id;
  }

  #accept(prepared: unknown, o: ResolvedSubmit, key: number | string): TaskHandle {
    const now = this.#clock.now();
    const t = new Task(key, this.#prefix, prepared, o, o.timeout ?? this.#o.timeout, now);
    if (typeof key === 'string') {
      this.#named.set(key, t);
      this.#finished.forget(key); // a finished task of the same id: its record is superseded
    } else {
      this.#autoIndex?.set(key, t);
    }
    this.#counts.submitted++;
    const signal = o.signal;
    if (signal !== undefined) {
      if (signal.aborted) {
        this.#cancelTask(t, new CancelledError(`task "${t.id}"`, signal.reason));
        return t.handle;
      }
      t.onAbort = () => this.#cancelTask(t, new CancelledError(`task "${t.id}"`, signal.reason));
      signal.addEventListener('abort', t.onAbort, { once: true });
    }
    if (this.#swept || (o.delayMs > 0 && this.#closing !== undefined)) {
      // The rest of a submitMany batch that a 'queued' listener closed: accepted, so it settles as
      // close() settles what it finds — a delayed task at once, any task once close() has swept
      // (review60: it ran in the closed queue, or never settled).
      this.#endCancelled(t, new ClosedError(`queue "${this.name}"`), now);
      return t.handle;
    }
    if (this.listenerCount('queued') === 0) {
      if (o.delayMs > 0) this.#delay(t, now + o.delayMs);
      else this.#enqueue(t, now);
      return t.handle;
    }
    // A 'queued' listener runs with `t` already in its place (queued or delayed, not started): it
    // finds it (status, cancel, close see it), and what it submits comes after it (review59,
    // review60: `t` was placed after the listener, so a listener's close() missed it, and its
    // submits started first). Then what can start starts.
    if (o.delayMs > 0) {
      this.#delay(t, now + o.delayMs);
    } else {
      if (now >= this.#timerAt) this.#promoteDue(false); // due before `t` (see #enqueue)
      t.queuedAt = now;
      this.#push(t, now);
    }
    // A task that would have started inside submit() (a slot free, nothing queued before it).
    const first = o.delayMs <= 0 && this.#queued === 1 && this.#canStartNow();
    if (!first) {
      this.#emit('queued', { id: t.id, priority: t.priority, delayMs: o.delayMs } satisfies QueueEvents['queued']);
    } else {
      // Nothing the listener submits starts meanwhile (as in a batch): `t` goes first.
      this.#batching = true;
      try {
        this.#emit('queued', { id: t.id, priority: t.priority, delayMs: o.delayMs } satisfies QueueEvents['queued']);
      } finally {
        this.#batching = false;
      }
    }
    if (first && t.state === QUEUED && this.#canStartNow()) {
      // It still starts inside submit(), before whatever the listener queued, of any priority
      // (review63) — unless the listener paused or closed the queue: then it waits in its place,
      // in (priority, submission) order (review64: a head-of-queue key kept it ahead of later
      // tasks of a better priority). Out of the heap: a new slot, the old entry a tombstone.
      this.#queued--;
      t.slot = this.#takeSlot(t);
      this.#start(t, now);
    }
    this.#pump();
    return t.handle;
  }

  /** A task may start now: a slot free, not paused, not closing, not inside a submitMany batch. */
  #canStartNow(): boolean {
    return this.#running < this.concurrency && !this.#paused && this.#closing === undefined && !this.#batching;
  }

  // ------------------------------------------------------------------ scheduling

  /**
   * Queues `t`, or starts it at once when `inline` and a slot is free with nothing queued before
   * it. Retries are never started inline (a handler that keeps failing at once would recurse).
   */
  #enqueue(t: Task, now: number, inline = true): void {
    t.queuedAt = now;
    if (inline && now >= this.#timerAt) {
      // A delayed task (or retry) already due whose timer has not fired yet was due before `t`
      // arrived: it is queued first, `t` behind it, and only then does anything start — so no
      // handler runs while `t` is in neither the heap nor a slot (review57: one cancelled it and
      // it ran all the same; review59: one looked it up and did not find it).
      this.#promoteDue(false);
      this.#push(t, now);
      this.#pump();
      return;
    }
    if (inline && this.#running < this.concurrency && this.#queued === 0 && !this.#paused && this.#closing === undefined && !this.#batching) {
      t.slot = this.#takeSlot(t);
      this.#start(t, now);
      return;
    }
    this.#push(t, now);
  }

  /** Puts `t` in the heap (queued), or fails it when the heap is full. */
  #push(t: Task, now: number): void {
    if (this.#heap.size >= this.#heap.maxEntries) this.#compact();
    if (this.#heap.size >= this.#heap.maxEntries) {
      // Only reachable through retries past maxQueued (the heap holds 2 × maxQueued + concurrency):
      // the task fails with a typed error rather than throwing out of a timer.
      t.error = new QueueFullError(this.name, this.#o.maxQueued);
      this.#giveUp(t, now);
      return;
    }
    t.state = QUEUED;
    t.slot = this.#takeSlot(t);
    const key = this.#o.agingMs > 0 ? t.priority + (now - this.#epoch) / this.#o.agingMs : t.priority;
    this.#heap.push(key, t.slot);
    this.#queued++;
  }

  /** A task that stops running (finished, or delayed for a retry) gives its slot back. */
  #releaseSlot(t: Task): void {
    const s = t.slot;
    if (s >= 0 && this.#slots[s] === t) {
      this.#slots[s] = undefined;
      this.#freeSlots.push(s);
    }
    t.slot = -1;
  }

  #takeSlot(t: Task): number {
    const s = this.#freeSlots.pop();
    if (s !== undefined) {
      this.#slots[s] = t;
      return s;
    }
    this.#slots.push(t);
    return this.#slots.length - 1;
  }

  /** Drops the heap's tombstones (cancelled entries) and frees their slots; order is kept. */
  #compact(): void {
    this.#heap.retain((s) => {
      const t = this.#slots[s];
      if (t !== undefined && t.state === QUEUED && t.slot === s) return true;
      this.#slots[s] = undefined;
      this.#freeSlots.push(s);
      return false;
    });
  }

  /** Pops the next live queued task, freeing the slots of tombstones on the way. */
  #popQueued(): Task | undefined {
    for (;;) {
      const s = this.#heap.pop();
      if (s < 0) return undefined;
      const t = this.#slots[s]!;
      if (t.state === QUEUED && t.slot === s) {
        this.#queued--;
        return t; // it keeps its slot while it runs
      }
      this.#slots[s] = undefined; // a tombstone's slot is free now
      this.#freeSlots.push(s);
    }
  }

  /**
   * Starts queued tasks while concurrency allows. Tasks that finish synchronously free their slot
   * at once, so one call can run many: after PUMP_BUDGET of them it yields (setImmediate) so a
   * long backlog of sync handlers does not hold the event loop.
   */
  #pump(): void {
    if (this.#paused || this.#pumping || this.#batching || this.#swept) return;
    this.#pumping = true;
    try {
      let now = -1;
      let budget = PUMP_BUDGET;
      while (this.#running < this.concurrency && this.#queued > 0 && !this.#paused) {
        if (--budget < 0) {
          if (!this.#pumpScheduled) {
            this.#pumpScheduled = true;
            setImmediate(this.#resumePump);
          }
          break;
        }
        const t = this.#popQueued();
        if (t === undefined) break;
        if (now < 0) now = this.#clock.now();
        this.#start(t, now);
      }
    } finally {
      this.#pumping = false;
    }
  }

  #start(t: Task, now: number): void {
    t.state = RUNNING;
    t.attempts++;
    t.startedAt = now;
    this.#running++;
    this.#waitTime?.record(now - t.queuedAt);
    if (this.listenerCount('running') > 0) this.#emit('running', { id: t.id, attempt: t.attempts, waitedMs: now - t.queuedAt } satisfies QueueEvents['running']);
    const info = t; // a Task is its own AttemptInfo (id, attempt, timeoutMs)
    const ex = this.#executor;
    let attempt: AttemptHandle;
    if (ex instanceof FunctionExecutor && t.timeout === 0) {
      const r = ex.invokeNow(t.prepared, info, this.#o.killAfterMs);
      if (r instanceof Settled) {
        // A cancel() made meanwhile (by a 'running' listener, or by the handler itself) wins:
        // the result rejects with its reason, as cancel() promised when it returned true.
        if (t.cancelRequested) this.#attemptFailed(t, t.error);
        else if (r.ok) this.#succeeded(t, r.value);
        else this.#attemptFailed(t, r.value);
        return;
      }
      attempt = r;
    } else {
      attempt = ex.start(t.prepared, info);
    }
    t.running = attempt;
    attempt.result.then((v) => this.#succeeded(t, v), (e: unknown) => this.#attemptFailed(t, e));
    // Cancelled before it had a handle to stop (from a 'running' listener, or from the handler's
    // synchronous part): stop it now — its signal aborts and its result rejects as cancelled.
    if (t.cancelRequested) attempt.stop(t.error as HotpathError);
  }

  #delay(t: Task, runAt: number): void {
    t.state = DELAYED;
    t.runAt = runAt;
    t.queuedAt = runAt;
    t.delaySeq = ++this.#delaySeq;
    this.#delayed.push(t);
    this.#delayedLive++;
    if (this.#delayed.size > 64 && this.#delayed.size > 2 * this.#delayedLive) this.#delayed.filter((x) => x.state === DELAYED);
    this.#arm();
  }

  /** Sets the one timer for the earliest delayed task. */
  #arm(): void {
    const next = this.#delayed.peek();
    if (next === undefined) {
      if (this.#timer !== undefined) clearTimeout(this.#timer);
      this.#timer = undefined;
      this.#timerAt = Infinity;
      return;
    }
    if (this.#timer !== undefined && this.#timerAt <= next.runAt) return;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timerAt = next.runAt;
    const ms = Math.min(MAX_TIMER_MS, Math.max(0, next.runAt - this.#clock.now()));
    // Ref'd, like any setTimeout: a delayed task or a pending retry keeps the process alive until it
    // has run (close() ends them).
    this.#timer = setTimeout(this.#onTimer, ms);
  }

  /** Moves every delayed task that is due to the queue; then starts what it can unless `pump` is false. */
  #promoteDue(pump = true): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer); // (called early by #enqueue: its timer has not fired)
    this.#timer = undefined;
    this.#timerAt = Infinity;
    const now = this.#clock.now();
    for (let t = this.#delayed.peek(); t !== undefined && t.runAt <= now; t = this.#delayed.peek()) {
      this.#delayed.pop();
      if (t.state !== DELAYED) continue; // cancelled: a tombstone
      this.#delayedLive--;
      this.#enqueue(t, t.runAt, false); // #pump below starts what it can, in heap order
    }
    this.#arm();
    if (pump) this.#pump();
  }

  // ------------------------------------------------------------------ outcomes

  /** An attempt of `t` ended: it no longer counts against concurrency. Returns the time. */
  #attemptEnded(t: Task): number {
    const now = this.#clock.now();
    this.#running--;
    this.#releaseSlot(t);
    this.#runTime?.record(now - t.startedAt);
    t.running = undefined;
    return now;
  }

  #succeeded(t: Task, value: unknown): void {
    if (t.state !== RUNNING) return;
    if (t.cancelRequested) {
      this.#attemptFailed(t, t.error); // (ends it cancelled)
      return;
    }
    const now = this.#attemptEnded(t);
    this.#counts.completed++;
    this.#finish(t, SUCCEEDED, now);
    t.resolve(value);
    if (this.listenerCount('completed') > 0) this.#emit('completed', { id: t.id, attempt: t.attempts, runMs: now - t.startedAt } satisfies QueueEvents['completed']);
    this.#afterSettle();
  }

  #attemptFailed(t: Task, err: unknown): void {
    if (t.state !== RUNNING) return;
    const now = this.#attemptEnded(t);
    if (t.cancelRequested) {
      // cancel() or close() stopped it: it ends cancelled, with their reason, never retried.
      this.#endCancelled(t, t.error, now);
      this.#afterSettle();
      return;
    }
    t.error = err;
    this.#counts.failed++;
    if (this.#autoIndex !== undefined || typeof t.key !== 'number') {
      this.#retryOrGiveUp(t, err, now);
      return;
    }
    // Between two attempts `t` is in neither a slot nor the delayed heap: lookups find it here.
    this.#transit.push(t);
    try {
      this.#retryOrGiveUp(t, err, now);
    } finally {
      this.#transit.pop();
    }
  }

  /** The rest of #attemptFailed: the 'failed' listeners, then a retry or the end. */
  #retryOrGiveUp(t: Task, err: unknown, now: number): void {
    if (this.listenerCount('failed') > 0) {
      this.#emit('failed', { id: t.id, attempt: t.attempts, error: err } satisfies QueueEvents['failed']);
      if (this.#cancelledMeanwhile(t, now)) return;
    }
    const r = this.#o.retry;
    let retry = false;
    let delay = 0;
    if (t.attempts < r.attempts && this.#closing === undefined) {
      try {
        retry = r.retryable(err) === true;
        if (retry) delay = backoffDelay(r, t.attempts, err, t.lastDelay, this.#random);
      } catch (predicateError) {
        retry = false; // a throwing predicate or back-off function ends the retries; keep its error
        // (Unless it cancelled the task first: the cancel's reason stands, review63.)
        if (!t.cancelRequested) t.error = new AggregateError([err, predicateError], `task "${t.id}": retry.retryable or retry.backoff threw: ${describe(predicateError)}`);
      }
      // The predicate or the back-off function may have cancelled it (review60: the next attempt ran).
      if (this.#cancelledMeanwhile(t, now)) return;
      // …or closed the queue: the retry is not scheduled, nor counted (review63).
      if (retry && this.#closing !== undefined) {
        this.#endCancelled(t, new ClosedError(`queue "${this.name}"`), now);
        this.#afterSettle();
        return;
      }
    }
    if (retry) {
      t.lastDelay = delay;
      this.#counts.retried++;
      if (this.listenerCount('retried') > 0) {
        this.#emit('retried', { id: t.id, attempt: t.attempts, delayMs: delay } satisfies QueueEvents['retried']);
        if (this.#cancelledMeanwhile(t, now)) return;
      }
      if (this.#closing !== undefined) {
        // close() was called by a 'retried' listener: the retry is not scheduled, and the task
        // ends as close() ends a delayed one (review60: the retry ran in the closed queue).
        this.#endCancelled(t, new ClosedError(`queue "${this.name}"`), now);
        this.#afterSettle();
        return;
      }
      if (delay > 0) this.#delay(t, now + delay);
      else {
        // As for a new task: a delayed task already due was due first (review34); nothing starts
        // before `t` is queued too (#afterSettle starts what can start).
        if (now >= this.#timerAt) this.#promoteDue(false);
        this.#enqueue(t, now, false);
      }
      this.#afterSettle();
      return;
    }
    this.#giveUp(t, now);
    this.#afterSettle();
  }

  /**
   * A 'failed' or 'retried' listener, the retry predicate or the back-off function cancelled `t`
   * (cancel() returned true: the task is between attempts, with none to stop): it ends cancelled
   * there, neither retried nor dead-lettered (review57: the next attempt ran; with none left, a
   * dead letter said "cancelled").
   */
  #cancelledMeanwhile(t: Task, now: number): boolean {
    if (!t.cancelRequested) return false;
    this.#endCancelled(t, t.error, now);
    this.#afterSettle();
    return true;
  }

  /** The task failed for good: dead-lettered (the record exists before its result rejects). */
  #giveUp(t: Task, now: number): void {
    const error = t.error;
    if (this.#o.deadLetterRetention > 0) {
      const [kept, bytes] = this.#executor.retain(t.prepared);
      this.#dead.set({
        id: t.id, kept, bytes, priority: t.priority, error: errorInfo(error),
        attempts: t.attempts, submittedAt: t.submittedAt, failedAt: now,
      });
      this.#counts.dead++;
      this.#finish(t, DEAD, now);
      if (this.listenerCount('dead') > 0) this.#emit('dead', { id: t.id, attempts: t.attempts, error } satisfies QueueEvents['dead']);
    } else {
      this.#finish(t, FAILED, now);
    }
    t.reject(error);
  }

  /** Drops a settled task from the live set and keeps its status record (bounded). */
  #finish(t: Task, state: number, now: number): void {
    t.state = state;
    t.finishedAt = now;
    t.running = undefined;
    t.prepared = undefined;
    if (t.onAbort !== undefined) t.signal!.removeEventListener('abort', t.onAbort);
    t.onAbort = undefined;
    t.signal = undefined;
    if (typeof t.key === 'string') this.#named.delete(t.key);
    else this.#autoIndex?.delete(t.key);
    this.#finished.add(t);
  }

  #afterSettle(): void {
    this.#pump();
    if (this.#drainWaiters.length > 0 && this.#idle()) {
      const waiters = this.#drainWaiters;
      this.#drainWaiters = [];
      for (const w of waiters) w();
    }
    if (this.#stillWaiters.length > 0 && this.#running === 0) {
      const waiters = this.#stillWaiters;
      this.#stillWaiters = [];
      for (const w of waiters) w();
    }
  }

  /** Resolves once no attempt is running (at once if none is). */
  #noneRunning(): Promise<void> {
    if (this.#running === 0) return Promise.resolve();
    return new Promise((resolve) => this.#stillWaiters.push(resolve));
  }

  #idle(): boolean {
    return this.#queued === 0 && this.#delayedLive === 0 && this.#running === 0;
  }

  // ------------------------------------------------------------------ cancel

  /**
   * Cancels task `id`. Queued or delayed: removed at once, never runs. Running: its ctx.signal
   * aborts (then its worker is recycled after killAfterMs if it does not stop). Either way its
   * result rejects with ERR_HOTPATH_CANCELLED. Returns false when no such task is pending.
   */
  cancel(id: string): boolean {
    if (typeof id !== 'string') return false;
    const t = this.#findLive(this.#keyOf(id));
    if (t === undefined) return false;
    this.#cancelTask(t, new CancelledError(`task "${id}"`));
    return true;
  }

  #cancelTask(t: Task, why: CancelledError): void {
    if (t.state === RUNNING) {
      // Stopped for good: it settles (as cancelled) once its handler stops or is killed.
      t.error = why;
      t.cancelRequested = true;
      t.running?.stop(why);
      return;
    }
    if (t.state === QUEUED) {
      // If `t` was never put in the heap (cancelled by an already-aborted signal) it has no slot.
      if (t.slot >= 0) this.#queued--;
    } else if (t.state === DELAYED) {
      this.#delayedLive--;
    } else {
      return;
    }
    this.#endCancelled(t, why, this.#clock.now());
    if (this.#heap.size > 1024 && this.#heap.size > 2 * this.#queued) this.#compact();
    this.#afterSettle();
  }

  /**
   * Emits after the queue's state is consistent; a listener that throws cannot corrupt it (its
   * error is rethrown on its own, as an uncaught exception: it is the listener's bug).
   */
  #emit<E extends keyof QueueEvents>(event: E, payload: QueueEvents[E]): void {
    try {
      this.emit(event, payload);
    } catch (err) {
      queueMicrotask(() => {
        throw err;
      });
    }
  }

  // ------------------------------------------------------------------ inspection

  #findLive(key: number | string): Task | undefined {
    if (typeof key === 'string') return this.#named.get(key);
    if (this.#autoIndex === undefined) {
      const index = new Map<number, Task>();
      for (const t of this.#liveTasks()) if (typeof t.key === 'number') index.set(t.key, t);
      for (const t of this.#transit) if (t.state < SUCCEEDED) index.set(t.key as number, t);
      this.#autoIndex = index;
    }
    return this.#autoIndex.get(key);
  }

  /** Every queued, delayed and running task. */
  #liveTasks(): Task[] {
    const out: Task[] = [];
    // (t.slot === i: a slot a task left for another — a tombstone's — is not counted twice.)
    for (let i = 0; i < this.#slots.length; i++) {
      const t = this.#slots[i];
      if (t !== undefined && t.slot === i && (t.state === QUEUED || t.state === RUNNING)) out.push(t);
    }
    for (const t of this.#delayed.items) if (t.state === DELAYED) out.push(t);
    return out;
  }

  /** The task's state and timestamps, while pending and for `statusRetention` finished tasks after. */
  status(id: string): TaskStatus | undefined {
    if (typeof id !== 'string') return undefined;
    const key = this.#keyOf(id);
    const t = this.#findLive(key) ?? this.#finished.find(key);
    if (t === undefined) return undefined;
    const s: TaskStatus = { id: t.id, state: STATES[t.state]!, priority: t.priority, attempts: t.attempts, submittedAt: t.submittedAt };
    if (t.state === DELAYED) s.runAt = t.runAt;
    if (t.attempts > 0) s.startedAt = t.startedAt;
    if (t.state >= SUCCEEDED) s.finishedAt = t.finishedAt;
    if (t.error !== undefined && t.state !== SUCCEEDED) s.error = errorInfo(t.error);
    return s;
  }

  /** How many tasks are queued, delayed, running, and dead-lettered. */
  counts(): QueueCounts {
    return { queued: this.#queued, delayed: this.#delayedLive, running: this.#running, dead: this.#dead.map.size };
  }

  /** Cumulative counters since creation (for metrics). */
  totals(): Readonly<{ submitted: number; completed: number; failed: number; retried: number; dead: number; cancelled: number }> {
    return { ...this.#counts };
  }

  /** The dead letters, oldest first. */
  async deadLetters(): Promise<Array<DeadLetter<P>>> {
    const out: Array<DeadLetter<P>> = [];
    for (const l of this.#dead.map.values()) {
      out.push({
        id: l.id, payload: this.#executor.unprepare(l.kept) as P, priority: l.priority, error: l.error,
        attempts: l.attempts, submittedAt: l.submittedAt, failedAt: l.failedAt,
      });
    }
    return out;
  }

  /**
   * Submits dead letter `id` again (same id, payload and priority, attempts from zero) and removes
   * it from the dead letters. Resolves with the new handle, or undefined when there is no such letter.
   * @throws (rejects) as submit().
   */
  async requeue(id: string): Promise<TaskHandle<R> | undefined> {
    const d = this.#dead.map.get(id);
    if (d === undefined) return undefined;
    const key = this.#keyOf(id); // a generated id keeps its number
    const live = this.#findLive(key);
    if (live !== undefined) return live.handle as TaskHandle<R>;
    this.#checkOpen();
    if (this.#queued + this.#delayedLive + this.#reserved >= this.#o.maxQueued) throw new QueueFullError(this.name, this.#o.maxQueued);
    // The letter goes first: a task that fails again at once (inside #accept) leaves a new one
    // under the same id (review64: this deleted it).
    this.#dead.delete(id);
    return this.#accept(d.kept, resolveSubmit({ priority: d.priority }), key) as TaskHandle<R>;
  }

  /** Drops every dead letter; resolves with how many there were. */
  async purge(): Promise<number> {
    return this.#dead.clear();
  }

  // ------------------------------------------------------------------ flow

  /** Stops starting tasks (running ones go on; submit still queues). */
  pause(): void {
    this.#paused = true;
  }

  /** Starts tasks again. */
  resume(): void {
    this.#paused = false;
    this.#pump();
  }

  /** True while paused. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Resolves once nothing is queued, delayed or running. A paused queue with work waits for resume(). */
  drain(): Promise<void> {
    if (this.#idle()) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  /**
   * Stops accepting tasks (submit throws ERR_HOTPATH_CLOSED) and lets queued and running ones
   * finish for up to `timeoutMs` (retries are not scheduled any more). Then every task left —
   * queued, delayed (not yet due), running — is cancelled: its result rejects with
   * ERR_HOTPATH_CLOSED; running ones are stopped (signal, then killed after killAfterMs).
   * Nothing accepted is dropped without its result settling. Idempotent.
   */
  close(timeoutMs = 5000): Promise<void> {
    this.#closing ??= this.#close(timeoutMs);
    return this.#closing;
  }

  async #close(timeoutMs: number): Promise<void> {
    // Delayed tasks wait for a time that may lie after any timeout: they end now.
    for (const t of [...this.#delayed.items]) if (t.state === DELAYED) this.#closeTask(t);
    this.#delayed.filter(() => false);
    this.#arm();
    if (!this.#idle() && timeoutMs > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        // Paused, queued tasks cannot start: only the running ones are waited for.
        this.#paused ? this.#noneRunning() : this.drain(),
        new Promise<void>((r) => {
          timer = setTimeout(r, timeoutMs);
        }),
      ]);
      clearTimeout(timer);
    }
    this.#swept = true; // from here nothing starts, and a task still being accepted ends closed (#accept)
    for (const t of this.#liveTasks()) this.#closeTask(t);
    if (this.#running > 0) await this.drain(); // stopped attempts settle within killAfterMs
    this.#closed = true;
    this.#afterSettle(); // wakes drain() callers: nothing is left
  }

  #closeTask(t: Task): void {
    const why = new ClosedError(`queue "${this.name}"`);
    if (t.state === RUNNING) {
      t.error = why;
      t.cancelRequested = true;
      t.running?.stop(new CancelledError(`task "${t.id}" (the queue closed)`, why));
      return;
    }
    if (t.state === QUEUED) this.#queued--;
    else if (t.state === DELAYED) this.#delayedLive--;
    else return;
    this.#endCancelled(t, why, this.#clock.now());
  }

  /** `t` ends cancelled (it no longer runs, queued or delayed): its result rejects with `why`. */
  #endCancelled(t: Task, why: unknown, now: number): void {
    this.#counts.cancelled++;
    this.#finish(t, CANCELLED, now);
    t.error = why;
    t.reject(why);
    if (this.listenerCount('cancelled') > 0) this.#emit('cancelled', { id: t.id });
  }

  /** True once close() finished. */
  get closed(): boolean {
    return this.#closed;
  }

  /** `await using q = engine.queue(…)` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
