/**
 * Runs one attempt of a task: a function on the calling thread, or a module's export on the worker
 * threads (through the pool's channel). Shared by the in-memory and the durable queue; the queue
 * decides when and what to run, the executor only how, and how an attempt is stopped:
 *
 *   timeout or cancel ──► the handler's ctx.signal aborts (a cooperative stop)
 *        │ still running `killAfterMs` later
 *        ▼
 *   module handler: its worker thread is terminated (piscina starts a replacement; other tasks of
 *   that worker fail with ERR_HOTPATH_WORKER_EXITED and are retried by their queue);
 *   function handler: abandoned (a JS function cannot be stopped; its late answer is ignored).
 *
 * An attempt settles only once it no longer runs (or was abandoned), so a queue's concurrency
 * counts what really runs.
 */
import { CancelledError, HotpathError, TaskFailedError, TimeoutError } from '../errors.js';
import type { ValueCodec } from '../codec/codec.js';
import type { WorkerPool, PoolCall } from '../runtime/pool.js';
import { ENC_BYTES, EncodedPayload } from '../runtime/protocol.js';
import { distUrl } from '../runtime/paths.js';
import type { RateLimiter } from '../limiter/types.js';
import type { Cache } from '../cache/cache.js';
import type { CircuitBreaker } from '../resilience/breaker.js';
import type { HandlerContext, HandlerFunction, Handler } from './types.js';

export interface AttemptInfo {
  id: string;
  /** 1-based. */
  attempt: number;
  /** 0 = none. */
  timeoutMs: number;
  /** attempt(): cancels the attempt (ERR_HOTPATH_CANCELLED) when it aborts. */
  signal?: AbortSignal;
}

export interface Executor {
  /** Whether handlers run on the worker threads. */
  readonly onWorkers: boolean;
  /**
   * The value to keep for a task: module handlers get its encoded bytes (so a payload that cannot
   * travel to a worker is refused at submit, and later changes to the caller's object change
   * nothing); functions get the payload itself.
   * @throws TypeError for a payload a worker cannot receive; ERR_HOTPATH_VALUE_TOO_LARGE.
   */
  prepare(payload: unknown): unknown;
  /** The payload back from what prepare() returned. */
  unprepare(prepared: unknown): unknown;
  /**
   * What a dead letter keeps of a prepared payload, and the bytes it holds: a module handler's
   * encoded bytes, copied out when they are a view of a larger buffer (an encoder's chunk, which
   * they would keep alive); a function handler's payload itself, of no known size (0).
   */
  retain(prepared: unknown): [kept: unknown, bytes: number];
  /**
   * Runs one attempt. Resolves with the handler's result; rejects with the handler's error
   * (from a worker: rebuilt with its name, message, code and stack), ERR_HOTPATH_TIMEOUT,
   * ERR_HOTPATH_CANCELLED (`info.signal`), or ERR_HOTPATH_WORKER_EXITED.
   */
  attempt(prepared: unknown, info: AttemptInfo): Promise<unknown>;
  /**
   * attempt() with a handle: `stop(reason)` interrupts the handler (its ctx.signal aborts), kills
   * or abandons it `killAfterMs` later, and rejects the result with `reason`.
   */
  start(prepared: unknown, info: AttemptInfo): AttemptHandle;
}

export interface AttemptHandle {
  readonly result: Promise<unknown>;
  stop(reason: HotpathError): void;
}

/** The outcome of an attempt that ended synchronously (see FunctionExecutor.invokeNow). */
export class Settled {
  constructor(readonly ok: boolean, readonly value: unknown) {}
}

/** What an executor needs from its surroundings. */
export interface ExecutorDeps {
  /** The worker pool (module handlers). */
  pool?: WorkerPool;
  /** The engine-local codec (the pool's): encodes module handlers' payloads. */
  codec?: ValueCodec;
  /** `ctx.limiter(name)` of function handlers. */
  limiter?: (name: string) => RateLimiter;
  /** `ctx.cache` of function handlers. */
  cache?: () => Cache;
  /** `ctx.breaker(name)` of function handlers. */
  breaker?: (name: string) => CircuitBreaker;
}

/** The worker-side adapter that gives module handlers their context (worker-adapter.ts). */
const ADAPTER = { module: distUrl('engine/queue/worker-adapter.js').href, export: 'adaptHandler' };

interface Running {
  result: Promise<unknown>;
  interrupt(): void;
  /** Stops it for good; false when it cannot be (a function). */
  kill(): boolean;
}

/**
 * Creates the executor of `handler`.
 * @throws TypeError when a module handler is given without a worker pool.
 */
export function createExecutor(name: string, handler: Handler, handlerExport: string, killAfterMs: number, deps: ExecutorDeps): Executor {
  if (typeof handler === 'function') return new FunctionExecutor(handler, killAfterMs, deps);
  if (deps.pool === undefined || deps.codec === undefined) {
    throw new TypeError(`queue "${name}": a module handler runs on the worker threads and needs an engine (engine.queue), or deps.pool and deps.codec`);
  }
  return new ModuleExecutor(name, String(handler), handlerExport, killAfterMs, deps.pool, deps.codec);
}

abstract class BaseExecutor implements Executor {
  abstract readonly onWorkers: boolean;
  readonly #killAfterMs: number;

  constructor(killAfterMs: number) {
    this.#killAfterMs = killAfterMs;
  }

  abstract prepare(payload: unknown): unknown;
  abstract unprepare(prepared: unknown): unknown;
  abstract retain(prepared: unknown): [kept: unknown, bytes: number];
  /**
   * Starts the handler. `started` (given when there is a timeout) is to be called when the handler
   * really starts; a run that calls it later (a worker takes the task from its ring) says so with
   * `startsLater`.
   */
  protected abstract run(prepared: unknown, info: AttemptInfo, started: (() => void) | undefined): Running;
  protected readonly startsLater: boolean = false;

  start(prepared: unknown, info: AttemptInfo): AttemptHandle {
    const a = new Attempt(info, this.#killAfterMs);
    a.attach(this.run(prepared, info, info.timeoutMs > 0 ? a.started : undefined));
    if (!this.startsLater) a.started();
    return a;
  }

  attempt(prepared: unknown, info: AttemptInfo): Promise<unknown> {
    const outer = info.signal;
    if (outer?.aborted) return Promise.reject(new CancelledError(`task "${info.id}"`, outer.reason));
    const a = this.start(prepared, info);
    if (outer === undefined) return a.result;
    const onAbort = (): void => a.stop(new CancelledError(`task "${info.id}"`, outer.reason));
    outer.addEventListener('abort', onAbort, { once: true });
    return a.result.finally(() => outer.removeEventListener('abort', onAbort));
  }
}

/**
 * One attempt in flight: its timeout — counted from when the handler starts (for a module, when a
 * worker takes it from its ring, not while it waits there) — and the interrupt → kill sequence of
 * a stop.
 */
class Attempt implements AttemptHandle {
  readonly result: Promise<unknown>;
  #run!: Running;
  readonly #info: AttemptInfo;
  readonly #killAfterMs: number;
  #resolve!: (v: unknown) => void;
  #reject!: (e: unknown) => void;
  #stopped: HotpathError | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #killTimer: ReturnType<typeof setTimeout> | undefined;
  #done = false;

  constructor(info: AttemptInfo, killAfterMs: number) {
    this.#info = info;
    this.#killAfterMs = killAfterMs;
    this.result = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  attach(run: Running): void {
    this.#run = run;
    try {
      run.result.then((v) => this.#finish(true, v), (e: unknown) => this.#finish(false, e));
    } catch (err) {
      // A promise whose own then() throws (review64: its task never settled, close() hung).
      this.#finish(false, err);
    }
  }

  /** The handler started: the timeout runs from now. */
  readonly started = (): void => {
    const info = this.#info;
    if (info.timeoutMs <= 0 || this.#done || this.#stopped !== undefined || this.#timer !== undefined) return;
    this.#timer = setTimeout(() => this.stop(new TimeoutError(`task "${info.id}" (attempt ${info.attempt})`, info.timeoutMs)), info.timeoutMs);
  };

  stop(why: HotpathError): void {
    if (this.#done || this.#stopped !== undefined) return;
    this.#stopped = why;
    this.#run.interrupt();
    if (this.#killAfterMs === 0) {
      this.#run.kill();
      this.#finish(false, why);
      return;
    }
    this.#killTimer = setTimeout(() => {
      this.#run.kill(); // a function cannot be killed: it is abandoned
      this.#finish(false, why);
    }, this.#killAfterMs);
  }

  #finish(ok: boolean, value: unknown): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    if (this.#killTimer !== undefined) clearTimeout(this.#killTimer);
    // Whatever a stopped handler answered, the attempt failed for the reason it was stopped.
    if (this.#stopped !== undefined) this.#reject(this.#stopped);
    else if (ok) this.#resolve(value);
    else this.#reject(unwrapError(value));
  }
}

/** A worker's error comes back as ERR_HOTPATH_TASK_FAILED; the handler's own error is its cause. */
function unwrapError(err: unknown): unknown {
  try {
    return err instanceof TaskFailedError && err.cause instanceof Error ? err.cause : err;
  } catch {
    return err; // a Proxy whose prototype cannot be read (review63: the task never settled)
  }
}

export class FunctionExecutor extends BaseExecutor {
  readonly onWorkers = false;
  readonly #fn: HandlerFunction;
  readonly #deps: ExecutorDeps;

  constructor(fn: HandlerFunction, killAfterMs: number, deps: ExecutorDeps) {
    super(killAfterMs);
    this.#fn = fn;
    this.#deps = deps;
  }

  prepare(payload: unknown): unknown {
    return payload;
  }

  unprepare(prepared: unknown): unknown {
    return prepared;
  }

  retain(prepared: unknown): [kept: unknown, bytes: number] {
    return [prepared, 0];
  }

  /**
   * Runs an attempt that has no timeout now: a handler that answers synchronously (or throws)
   * ends here, without a promise — the queue's fast path; one that returns a promise continues
   * as start() would.
   */
  invokeNow(payload: unknown, info: AttemptInfo, killAfterMs: number): Settled | AttemptHandle {
    const ctx = new FunctionContext(info, this.#deps);
    let r: unknown;
    try {
      r = this.#fn(payload, ctx);
    } catch (err) {
      return new Settled(false, err);
    }
    let result: Promise<unknown>;
    try {
      if (r === null || (typeof r !== 'object' && typeof r !== 'function') || typeof (r as PromiseLike<unknown>).then !== 'function') return new Settled(true, r);
      // A thenable: adopted into a real promise (even one whose then() throws).
      result = r instanceof Promise ? r : Promise.resolve(r);
    } catch (err) {
      return new Settled(false, err); // a revoked Proxy, say: reading `then` threw (review63)
    }
    const a = new Attempt(info, killAfterMs);
    a.attach({ result, interrupt: () => ctx.abort(), kill: () => false });
    return a;
  }

  protected run(payload: unknown, info: AttemptInfo, _started: (() => void) | undefined): Running {
    const ctx = new FunctionContext(info, this.#deps);
    let result: Promise<unknown>;
    try {
      const r = this.#fn(payload, ctx);
      // A sync answer needs no promise adoption of a thenable; either way `result` is a real promise.
      result = r instanceof Promise ? r : Promise.resolve(r);
    } catch (err) {
      result = Promise.reject(err);
    }
    return { result, interrupt: () => ctx.abort(), kill: () => false };
  }
}

/** ctx of a function handler (the calling thread's limiter and cache). */
class FunctionContext implements HandlerContext {
  readonly #info: AttemptInfo;
  readonly #deps: ExecutorDeps;
  readonly attempt: number;
  #controller: AbortController | undefined;

  constructor(info: AttemptInfo, deps: ExecutorDeps) {
    this.#info = info; // may be the queue's task itself: its id string is made only if asked for
    this.attempt = info.attempt;
    this.#deps = deps;
  }

  get id(): string {
    return this.#info.id;
  }

  get signal(): AbortSignal {
    return (this.#controller ??= new AbortController()).signal;
  }

  abort(): void {
    (this.#controller ??= new AbortController()).abort();
  }

  limiter(name: string): RateLimiter {
    if (this.#deps.limiter === undefined) throw new TypeError('ctx.limiter needs a queue created by engine.queue (or deps.limiter)');
    return this.#deps.limiter(name);
  }

  breaker(name: string): CircuitBreaker {
    if (this.#deps.breaker === undefined) throw new TypeError('ctx.breaker needs a queue created by engine.queue (or deps.breaker)');
    return this.#deps.breaker(name);
  }

  get cache(): Cache {
    if (this.#deps.cache === undefined) throw new TypeError('ctx.cache needs a queue created by engine.queue (or deps.cache)');
    return this.#deps.cache();
  }
}

/**
 * Wire format of a module handler's call (ENC_BYTES body), read by worker-adapter.ts:
 *   u32 attempt · u16 id length (UTF-8 bytes; bit 15 set: RAW_PAYLOAD) · id · the payload as the
 *   codec encoded it (empty: undefined), or with RAW_PAYLOAD a Buffer payload's bytes as they are
 */
export const CALL_HEADER = 6;
/** Flag in the call's id-length word: the payload is a Buffer's bytes, not the codec's. */
export const RAW_PAYLOAD = 0x8000;

/**
 * A Buffer payload of a module handler, kept as a copy of its bytes and sent as they are: no
 * codec round trip (one copy fewer) and no codec size limit — as the pool sends one (review34:
 * `hotpath serve`'s /process misses, whose bodies may be up to its body limit, were refused over
 * 16 MiB when they went through the codec). The handler gets a Buffer.
 */
class RawPayload {
  constructor(readonly bytes: Uint8Array) {}
}

class ModuleExecutor extends BaseExecutor {
  readonly onWorkers = true;
  readonly #task: string;
  readonly #pool: WorkerPool;
  readonly #codec: ValueCodec;

  constructor(name: string, module: string, exportName: string, killAfterMs: number, pool: WorkerPool, codec: ValueCodec) {
    super(killAfterMs);
    this.#pool = pool;
    this.#codec = codec;
    // One registration per (module, export); queues sharing a handler share it. Idempotent.
    this.#task = `hotpath:queue:${module}#${exportName}`;
    pool.register(this.#task, module, exportName, ADAPTER);
    void name;
  }

  prepare(payload: unknown): unknown {
    if (payload === undefined) return EMPTY;
    // A copy: later changes to the caller's buffer change nothing (as with the codec).
    // Buffers only: the handler gets a Buffer, as the codec would give it (a plain Uint8Array, which
    // the codec gives back as a Uint8Array, still goes through it: review35).
    if (Buffer.isBuffer(payload)) return new RawPayload(Buffer.from(payload));
    try {
      return this.#codec.encode(payload, 'payload');
    } catch (err) {
      if (err instanceof HotpathError) throw err;
      throw new TypeError(`the payload cannot be sent to a worker: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The payload back: a private copy each time (what the caller does with it changes nothing kept). */
  unprepare(prepared: unknown): unknown {
    if (prepared instanceof RawPayload) return Buffer.from(prepared.bytes);
    const bytes = prepared as Uint8Array;
    // From a copy: the codec answers views of its input for binary fields of a value over 1 KiB.
    return bytes.length === 0 ? undefined : this.#codec.decode(Buffer.from(bytes));
  }

  retain(prepared: unknown): [kept: unknown, bytes: number] {
    if (prepared instanceof RawPayload) return [prepared, prepared.bytes.byteLength];
    const bytes = prepared as Uint8Array;
    return [bytes.byteLength < bytes.buffer.byteLength ? Buffer.from(bytes) : bytes, bytes.byteLength];
  }

  protected override readonly startsLater = true;

  protected run(prepared: unknown, info: AttemptInfo, started: (() => void) | undefined): Running {
    const raw = prepared instanceof RawPayload;
    const body = raw ? prepared.bytes : prepared as Uint8Array;
    const idLen = Buffer.byteLength(info.id);
    if (idLen >= RAW_PAYLOAD) throw new RangeError(`task id of ${idLen} UTF-8 bytes: at most ${RAW_PAYLOAD - 1}`);
    const call = Buffer.allocUnsafe(CALL_HEADER + idLen + body.length);
    call.writeUInt32LE(info.attempt, 0);
    call.writeUInt16LE(raw ? idLen | RAW_PAYLOAD : idLen, 4);
    call.write(info.id, CALL_HEADER, 'utf8');
    call.set(body, CALL_HEADER + idLen);
    // With a timeout, the worker answers STARTED when it takes the call from its ring.
    const c: PoolCall = this.#pool.call(this.#task, new EncodedPayload(ENC_BYTES, call), started);
    return c;
  }
}

const EMPTY = new Uint8Array(0);
