/**
 * A generic resource pool: database connections, sockets, parsers, browser pages — anything
 * expensive to make that a caller borrows for a while and gives back. Outgoing HTTP does not need
 * it: undici keeps its own connection pools (`undici.Pool`, `Agent`).
 *
 * Model. Every resource the pool knows is one `Entry` in one state: IDLE (in the idle deque),
 * VALIDATING (taken for a waiter, `validate` running), BORROWED (a caller holds it) or GONE
 * (destroyed). Creates in flight are a count (`pending`), and so are creates past their timeout
 * that have not settled yet (`late`: they still hold a slot of `max`). Callers that cannot be
 * served at once wait in one FIFO deque; a waiter leaves it served, timed out, aborted, or
 * rejected by drain() or by the create breaker. One invariant drives everything (`#fill`): the pool tries to hold
 *
 *     target = min(max, max(min, borrowed + validating + waiting))
 *
 * resources (idle + borrowed + validating + pending), creating the difference — unless it is
 * backing off after a failed create (then at most one create is in flight: a probe), the breaker
 * refuses, or `late` creates fill the rest of `max`. A resource made for a waiter that `validate`
 * refuses at once counts as a failed create for the back-off (not for the breaker, which heard of
 * the create's success: a hung validate must not hold its half-open probe).
 *
 * Creates that fail are retried with capped exponential back-off (`createRetry`), through a
 * CircuitBreaker: once it opens (by default after 5 failures in a row), the pool stops calling
 * `create` until the breaker's `resetMs` has passed, and a caller who needs a new resource gets
 * PoolCreateError at once (`cause`: the last failure) — unless resources are borrowed, in which
 * case it waits for one of them to come back (up to its timeout). No promise the pool makes or
 * receives is ever left unhandled: a create that settles after its timeout is destroyed, a failed
 * destroy is reported on `'destroyError'`.
 *
 * Time: `clock.now()` (ms) for ages (idle, lifetime, held); timers are the global ones, unref'd,
 * so vitest fake timers drive them, and the shared deadline of default-timeout waiters is read
 * from `performance.now()`, monotonic like those timers (a wall-clock step moves neither). Idle
 * eviction, lifetime expiry of idle resources and leak detection run in one periodic sweep every `min(1000, ⌈smallest of idleMs, maxLifetimeMs,
 * leakDetectionMs⌉ / 2)` ms, so each fires up to one interval late (idle eviction up to two: the
 * sweep, not release(), stamps when a resource went idle).
 *
 * Cost. With a resource idle, no `validate`, no leak detection and no waiters, `acquire()` is a
 * deque pop, a state write and `Promise.resolve` (no timer, no clock read); `release()` is a Map
 * lookup and a deque push (no clock read either).
 * Only waiting callers get a timer.
 */
import { EventEmitter } from 'node:events';
import { CancelledError, ClosedError, PoolCreateError, PoolFullError, PoolTimeoutError, TimeoutError } from '../errors.js';
import type { Metrics } from '../observe/metrics.js';
import type { CounterChild, GaugeChild, LatencyRecorder } from '../observe/thread-metrics.js';
import { SYSTEM_CLOCK, type Clock } from '../options.js';
import { CircuitBreaker, type BreakerOptions, type BreakerState } from '../resilience/breaker.js';
import { MAX_TIMER_MS } from '../timer.js';
import { Deque } from './deque.js';

/** Capped exponential back-off of `create` after failures. */
export interface PoolCreateRetryOptions {
  /** Delay after the first failure (ms); doubles after each further failure in a row. Default 100. */
  delayMs?: number;
  /** The cap of the delay (ms). Default 10000. */
  maxDelayMs?: number;
  /** Spread each delay uniformly over [d/2, d] so that many processes do not retry in step. Default true. */
  jitter?: boolean;
}

/** Options of {@link createPool}. `create` is required; every other field is optional. */
export interface PoolOptions<T> {
  /**
   * Makes one resource (may be async). Each call must return a distinct object; anything else
   * (undefined, null, a primitive, one the pool holds) fails that create like a throw. Required.
   */
  create: () => T | Promise<T>;
  /** Frees one resource (may be async). A throw or rejection is reported on `'destroyError'`. Default: nothing. */
  destroy?: (resource: T) => unknown;
  /**
   * Checked on every borrow (sync or async): `true` lends the resource; anything else — false, a
   * throw, a rejection — destroys it and the caller gets another (idle or newly created), still
   * first in line. A resource refused as soon as it was made for a waiter also counts as a failed
   * create for the back-off (the next create waits, one probe at a time; the breaker is not
   * told). While the pool backs off after a failure, a new resource whose `validate` is still
   * running is that probe: no other create starts until it settles (`validateTimeoutMs` bounds
   * that wait; with Infinity, a validate that never settles holds it). Default: none (no check).
   */
  validate?: (resource: T) => boolean | Promise<boolean>;
  /** Resources kept at all times, created in the background (at start and after each destroy). Default 0. */
  min?: number;
  /** Most resources at once (idle + borrowed + being created). Default 10. */
  max?: number;
  /** How long `acquire()` waits before rejecting with ERR_HOTPATH_POOL_TIMEOUT (ms, at most 2^31 − 1; Infinity: forever). Default 30000. */
  acquireTimeoutMs?: number;
  /**
   * A `create` that has not settled after this long counts as failed (ms, at most 2^31 − 1;
   * Infinity: no limit). It still holds its slot of `max` until it settles (the backend is still
   * making it), and its late result is destroyed. Default 30000.
   */
  createTimeoutMs?: number;
  /**
   * Callers that may wait in line at once; one more is refused at once with
   * ERR_HOTPATH_POOL_FULL (bounded memory under overload, and fast failure when the line is
   * hopeless anyway). Default 10000; Infinity: no bound.
   */
  maxWaiters?: number;
  /**
   * An async `validate` that has not settled after this long counts as a refusal (ms, at most
   * 2^31 − 1; Infinity: no limit): the resource is destroyed and the caller gets another, instead
   * of a slot held forever. Default 5000.
   */
  validateTimeoutMs?: number;
  /** An idle resource unused this long is destroyed, unless that would go below `min` (ms; Infinity: never). Default 30000. */
  idleMs?: number;
  /** A resource older than this is never lent again and is destroyed when released (ms; Infinity: no limit). Default Infinity. */
  maxLifetimeMs?: number;
  /**
   * Which idle resource is reused: `false` (default) the most recently released one (LIFO: warm
   * caches, and the surplus stays idle long enough to be evicted by `idleMs`), `true` the one idle
   * the longest (FIFO: spreads use evenly over every resource).
   */
  fifo?: boolean;
  /**
   * Report a resource held longer than this (ms) once, on `'leak'`, with the stack of the code
   * that acquired it. Capturing that stack costs about 2 µs per acquire (measured in
   * bench/pool.bench.ts; ~40× a plain acquire + release), so it is off unless set. Default: off.
   */
  leakDetectionMs?: number;
  /** Back-off of `create` after failures. */
  createRetry?: PoolCreateRetryOptions;
  /**
   * The circuit breaker around `create`: its options (the defaults open it after 5 failures in a
   * row, for 5 s), an existing CircuitBreaker (e.g. `engine.breaker('db')`, shared by every thread),
   * or `false` for none (back-off only; callers then wait for their timeout). Default: a breaker with its default options.
   */
  breaker?: BreakerOptions | CircuitBreaker | false;
  /** How long `drain()` waits for borrowed resources before destroying them anyway (ms, at most 2^31 − 1; Infinity: forever). Default 30000. */
  drainTimeoutMs?: number;
  /** The pool's name: in error messages and the `pool` label of its metrics. Default 'default'. */
  name?: string;
  /**
   * Where to record metrics (e.g. `engine.metrics`): `hotpath_pool_resources{pool,state}`,
   * `hotpath_pool_waiters{pool}`, `hotpath_pool_events_total{pool,event}` and the summary
   * `hotpath_pool_acquire_seconds` (every pool of the process together). Default: none.
   */
  metrics?: Metrics;
  /** The time source (ms). Default Date.now. */
  clock?: Clock;
}

/** Options of one {@link Pool.acquire} call. */
export interface AcquireOptions {
  /** Gives up waiting: the acquire rejects with ERR_HOTPATH_CANCELLED (cause: the signal's reason). */
  signal?: AbortSignal;
  /** This call's timeout instead of `acquireTimeoutMs` (ms, at most 2^31 − 1; Infinity: forever). */
  timeoutMs?: number;
}

/** Options of one {@link Pool.use} call. */
export interface UseOptions extends AcquireOptions {
  /**
   * When `fn` throws: `false` (default) releases the resource to the pool (the error was the
   * caller's, the resource is fine — and `validate` catches broken ones on the next borrow);
   * `true` destroys it; a function decides per error.
   */
  destroyOnError?: boolean | ((err: unknown) => boolean);
}

/** Options of {@link Pool.drain}. */
export interface DrainOptions {
  /** How long to wait for borrowed resources (ms, at most 2^31 − 1; Infinity: forever). Default: the pool's `drainTimeoutMs`. */
  timeoutMs?: number;
}

/** What the `'leak'` event carries. */
export interface LeakReport<T> {
  resource: T;
  /** How long it has been held so far (ms). */
  heldMs: number;
  /** The stack of the `acquire()` (or `use()`) call that borrowed it. */
  stack: string;
}

/** The pool's events and their arguments. */
export interface PoolEvents<T> {
  /** A resource was created and joined the pool. */
  create: [resource: T];
  /** A resource left the pool (evicted, expired, failed validation, destroyed, drained). */
  destroy: [resource: T];
  /** `create` threw, rejected or timed out. */
  createError: [error: unknown];
  /** `destroy` threw or rejected. Without a listener, a process warning is emitted instead. */
  destroyError: [error: unknown, resource: T];
  /** `validate` refused a resource (`error`: what it threw, if it threw). */
  validationFailed: [resource: T, error: unknown];
  /** A resource has been held longer than `leakDetectionMs` (reported once per borrow). */
  leak: [report: LeakReport<T>];
  /** The create breaker changed state. */
  breaker: [to: BreakerState, from: BreakerState];
}

/** A snapshot of {@link Pool.stats}. */
export interface PoolStats {
  name: string;
  /** Resources that exist: idle + borrowed + validating. */
  size: number;
  idle: number;
  borrowed: number;
  /** Taken for a waiter, `validate` running. */
  validating: number;
  /** Creates in flight. */
  pending: number;
  /**
   * Creates past `createTimeoutMs` still running: failed for the pool, they hold a slot toward
   * `max` until they settle (their late result is destroyed).
   */
  lateCreates: number;
  /** Callers waiting in line. */
  waiters: number;
  min: number;
  max: number;
  /** Totals since the pool was made. */
  created: number;
  destroyed: number;
  createFailures: number;
  validationFailures: number;
  timeouts: number;
  leaks: number;
  /** Borrowed resources that drain() destroyed at its deadline. */
  forced: number;
  /** Failed creates in a row right now (a new resource `validate` refused at once counts as one). */
  consecutiveCreateFailures: number;
  /** The create breaker's state, undefined with `breaker: false`. */
  breaker: BreakerState | undefined;
  /** True once drain() was called. */
  closed: boolean;
}

export const POOL_DEFAULTS = {
  min: 0,
  max: 10,
  acquireTimeoutMs: 30_000,
  createTimeoutMs: 30_000,
  validateTimeoutMs: 5_000,
  maxWaiters: 10_000,
  idleMs: 30_000,
  maxLifetimeMs: Number.POSITIVE_INFINITY,
  fifo: false,
  leakDetectionMs: Number.POSITIVE_INFINITY,
  drainTimeoutMs: 30_000,
  name: 'default',
  createRetry: { delayMs: 100, maxDelayMs: 10_000, jitter: true },
} as const;

/** #backOff's ticket for a failure the breaker is not told of (a fresh resource validate refused). */
const NO_TICKET = -1;
const IDLE = 0;
const BORROWED = 1;
const VALIDATING = 2;
const GONE = 3;
/** States of one create: in flight, settled in time, past createTimeoutMs (still running). */
const RUNNING = 0;
const SETTLED = 1;
const TIMED_OUT = 2;

class Entry<T> {
  state = IDLE;
  /**
   * When the sweep first saw it idle (ms); -1 until then. Stamped by the sweep rather than on
   * release, so release() reads no clock (see #sweep for the bound this costs).
   */
  idleSince = -1;
  /** When it was lent (ms; kept only with leak detection). */
  acquiredAt = 0;
  /** Where it was acquired (an object whose `stack` V8 formats lazily), with leak detection. */
  site: { stack?: string } | undefined = undefined;
  leakReported = false;
  /**
   * Made for a waiter and sent straight to `validate`: until it passes, its create does not end
   * the back-off, and a refusal continues it as a failed create would — else a backend whose
   * every new resource is refused would be hit by a create per microtask, starving the event
   * loop (timeouts never fire). The breaker is not involved: it heard of the create's success
   * at once (a validate that hangs must not hold its half-open probe, review53).
   */
  fresh = false;
  constructor(readonly resource: T, readonly createdAt: number) {}
}

class Waiter<T> {
  resolve!: (value: T) => void;
  reject!: (err: unknown) => void;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  /**
   * performance.now() past which it times out (waiters with the default timeout, which share one
   * timer): monotonic like the timers themselves, so a step of the wall clock (NTP, VM resume)
   * neither delays nor hastens a timeout.
   */
  deadline = 0;
  onAbort: (() => void) | undefined = undefined;
  /** In the waiter deque (false while its resource is validated, and once settled). */
  queued = true;
  settled = false;
  constructor(
    /** Arrival order (a waiter re-queued after a failed validation goes back to its place). */
    readonly seq: number,
    readonly signal: AbortSignal | undefined,
    readonly timeoutMs: number,
    readonly site: { stack?: string } | undefined,
    /** #failSeq when it started waiting: a create failure since then is its timeout's cause. */
    readonly failSeq: number,
    readonly startedAt: number,
  ) {}
}

interface PoolMetrics {
  idle: GaugeChild;
  borrowed: GaugeChild;
  pending: GaugeChild;
  waiters: GaugeChild;
  created: CounterChild;
  destroyed: CounterChild;
  timeout: CounterChild;
  createFailed: CounterChild;
  leak: CounterChild;
  validationFailed: CounterChild;
  acquire: LatencyRecorder;
}

const RESOLVED = Promise.resolve();

/**
 * A pool of resources of type T. Make one with {@link createPool}.
 *
 * Borrow with `acquire()` and give back with `release(r)` (or `destroy(r)` when it is broken), or
 * let `use(fn)` do both. Callers are served strictly in the order they asked. Events: see
 * {@link PoolEvents}. `drain()` (also `await using`) shuts it down.
 */
export class Pool<T> extends EventEmitter<PoolEvents<T>> {
  readonly name: string;
  readonly #create: () => T | Promise<T>;
  readonly #destroyFn: ((resource: T) => unknown) | undefined;
  readonly #validate: ((resource: T) => boolean | Promise<boolean>) | undefined;
  readonly #min: number;
  readonly #max: number;
  readonly #acquireTimeoutMs: number;
  readonly #createTimeoutMs: number;
  readonly #validateTimeoutMs: number;
  readonly #maxWaiters: number;
  readonly #idleMs: number;
  readonly #maxLifetimeMs: number;
  readonly #fifo: boolean;
  readonly #leakMs: number;
  readonly #retry: Required<PoolCreateRetryOptions>;
  readonly #breaker: CircuitBreaker | undefined;
  readonly #ownsBreaker: boolean;
  readonly #onBreakerState: ((to: BreakerState, from: BreakerState) => void) | undefined;
  readonly #drainTimeoutMs: number;
  readonly #clock: Clock;
  readonly #m: PoolMetrics | undefined;

  readonly #all = new Map<T, Entry<T>>();
  readonly #idle = new Deque<Entry<T>>();
  readonly #waiters = new Deque<Waiter<T>>();
  /** Destroyed by drain()'s deadline while borrowed: a late release() of one is a no-op. */
  readonly #forced = new Set<T>();
  /** Waiters in #waiters that are not settled. */
  #live = 0;
  #seq = 0;
  #borrowed = 0;
  #validating = 0;
  /** Callers whose resource `validate` is checking (drain rejects them at once). */
  readonly #checking = new Set<Waiter<T>>();
  #pending = 0;
  /**
   * Creates past `createTimeoutMs` that have not settled yet: failed for the pool, but the backend
   * is still making them, so they count toward `max` (not toward serving anyone) until they settle.
   */
  #late = 0;
  /**
   * Fresh resources (Entry.fresh) being validated: while the pool backs off, one of them is the
   * probe, as a create in flight is (review53: six were made per round with six waiters).
   */
  #unconfirmed = 0;
  #destroying = 0;
  /** Failed creates in a row; > 0 means back-off mode. */
  #failures = 0;
  /** Bumped on every failed create. */
  #failSeq = 0;
  #lastError: unknown = undefined;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  /** Waiters with the default timeout, in arrival (= deadline) order; settled ones are dropped lazily. */
  readonly #expiring = new Deque<Waiter<T>>();
  #expiryTimer: ReturnType<typeof setTimeout> | undefined;
  #sweepTimer: ReturnType<typeof setInterval> | undefined;

  #closing = false;
  #drained: Promise<void> | undefined;
  #onDrained: (() => void) | undefined;
  #drainTimer: ReturnType<typeof setTimeout> | undefined;

  #created = 0;
  #destroyed = 0;
  #createFailures = 0;
  #validationFailures = 0;
  #timeouts = 0;
  #leaks = 0;
  #forcedCount = 0;

  /** Prefer {@link createPool}. @throws TypeError / RangeError naming a bad option. */
  constructor(options: PoolOptions<T>) {
    super();
    const o = checkOptions(options);
    this.name = o.name;
    this.#create = options.create;
    this.#destroyFn = options.destroy;
    this.#validate = options.validate;
    this.#min = o.min;
    this.#max = o.max;
    this.#acquireTimeoutMs = o.acquireTimeoutMs;
    this.#createTimeoutMs = o.createTimeoutMs;
    this.#validateTimeoutMs = o.validateTimeoutMs;
    this.#maxWaiters = o.maxWaiters;
    this.#idleMs = o.idleMs;
    this.#maxLifetimeMs = o.maxLifetimeMs;
    this.#fifo = o.fifo;
    this.#leakMs = o.leakDetectionMs;
    this.#retry = o.createRetry;
    this.#drainTimeoutMs = o.drainTimeoutMs;
    this.#clock = options.clock ?? SYSTEM_CLOCK;

    const b = options.breaker;
    this.#ownsBreaker = b !== false && !(b instanceof CircuitBreaker);
    if (b instanceof CircuitBreaker) this.#breaker = b;
    else if (b !== false) {
      try {
        this.#breaker = new CircuitBreaker(`pool:${this.name}`, { clock: this.#clock, ...(b ?? {}) });
      } catch (err) {
        // Name the option as the caller wrote it: options.breaker.resetMs, not options.resetMs.
        if (err instanceof RangeError) throw new RangeError(err.message.replace(/^options\./, 'options.breaker.'));
        if (err instanceof TypeError) throw new TypeError(err.message.replace(/^options\./, 'options.breaker.'));
        throw err;
      }
    }
    if (this.#breaker !== undefined) {
      this.#onBreakerState = (to, from) => this.#emit('breaker', to, from);
      this.#breaker.on('state', this.#onBreakerState);
    }

    if (options.metrics !== undefined) this.#m = registerMetrics(options.metrics, this.name);

    const every = Math.min(this.#idleMs, this.#maxLifetimeMs, this.#leakMs);
    if (every !== Number.POSITIVE_INFINITY) {
      this.#sweepTimer = setInterval(() => this.#sweep(), Math.max(1, Math.min(1000, Math.ceil(every / 2))));
      this.#sweepTimer.unref?.();
    }
    this.#fill(); // `min` warm
  }

  /**
   * Borrows a resource: an idle one at once, else a new one (if under `max`), else the next one
   * released — callers are served strictly in the order they called. Give it back with
   * `release()` (or `destroy()` if it is broken).
   *
   * Rejects with ERR_HOTPATH_POOL_TIMEOUT after `timeoutMs` (its `cause`: the last create failure
   * while it waited, if any); ERR_HOTPATH_CANCELLED when `signal` aborts; ERR_HOTPATH_POOL_CREATE_FAILED
   * when the create breaker is open and no borrowed resource can come back; ERR_HOTPATH_CLOSED
   * after drain().
   * @throws TypeError / RangeError (synchronously) for bad options.
   */
  acquire(options?: AcquireOptions): Promise<T> {
    let signal: AbortSignal | undefined;
    let timeoutMs = this.#acquireTimeoutMs;
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw new TypeError('acquire options must be an object');
      signal = options.signal;
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('options.signal must be an AbortSignal');
      if (options.timeoutMs !== undefined) timeoutMs = checkTimerMs('timeoutMs', options.timeoutMs);
    }
    if (this.#closing) return Promise.reject(new ClosedError(`pool "${this.name}"`));
    if (signal?.aborted === true) return Promise.reject(new CancelledError(`pool "${this.name}" acquire`, signal.reason));
    const site = this.#leakMs === Number.POSITIVE_INFINITY ? undefined : captureSite(this.acquire);
    return this.#acquire(signal, timeoutMs, site);
  }

  #acquire(signal: AbortSignal | undefined, timeoutMs: number, site: { stack?: string } | undefined): Promise<T> {
    // The fast path: nobody in line, an idle resource, nothing to check.
    if (this.#live === 0 && this.#validate === undefined && this.#idle.length > 0) {
      const destroyed = this.#destroyed;
      const e = this.#takeIdle();
      // Lent before #fill runs: taken from idle but not yet borrowed, `e` is counted nowhere, and
      // #fill would create one too many (more than `max` would exist).
      if (e !== undefined) this.#lend(e, site);
      if (destroyed !== this.#destroyed) this.#fill(); // expired ones were dropped: replace them
      if (e !== undefined) {
        this.#m?.acquire.record(0);
        return Promise.resolve(e.resource);
      }
    }
    if (this.#hopeless()) return Promise.reject(this.#createError());
    if (this.#live >= this.#maxWaiters) {
      return Promise.reject(new PoolFullError(`pool "${this.name}": ${this.#live} callers are waiting already (options.maxWaiters); ${this.#borrowed + this.#validating} of max ${this.#max} borrowed`));
    }

    const w = new Waiter<T>(this.#seq++, signal, timeoutMs, site, this.#failSeq, this.#m === undefined ? 0 : this.#clock.now());
    const p = new Promise<T>((resolve, reject) => {
      w.resolve = resolve;
      w.reject = reject;
    });
    this.#waiters.push(w);
    this.#live++;
    this.#m?.waiters.inc();
    this.#dispatch();
    // Served synchronously (a sync `validate` passed), nothing to arm; else the timer and the
    // abort listener guard both the wait in line and a `validate` still running.
    if (!w.settled) {
      if (timeoutMs === this.#acquireTimeoutMs && timeoutMs !== Number.POSITIVE_INFINITY) {
        // The default timeout: waiters' deadlines then come in arrival order, so one timer for
        // the earliest serves them all (a timer per waiter was a fifth of a contended acquire).
        w.deadline = performance.now() + timeoutMs;
        this.#expiring.push(w);
        if (this.#expiryTimer === undefined) this.#armExpiry(timeoutMs);
      } else if (timeoutMs !== Number.POSITIVE_INFINITY) {
        w.timer = setTimeout(() => this.#timeOut(w), timeoutMs);
        w.timer.unref?.();
      }
      if (signal !== undefined) {
        w.onAbort = () => this.#abort(w);
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
    }
    return p;
  }

  /**
   * Gives a borrowed resource back. Released after its `maxLifetimeMs` or during drain(), it is
   * destroyed instead.
   * @throws TypeError when `resource` is not currently borrowed from this pool (released twice,
   *   already destroyed, or never acquired from it); the pool's counts are left untouched.
   */
  release(resource: T): void {
    const e = this.#borrowedEntry(resource, 'release');
    if (e === undefined) return;
    this.#borrowed--;
    if (this.#closing || (this.#maxLifetimeMs !== Number.POSITIVE_INFINITY && this.#clock.now() - e.createdAt >= this.#maxLifetimeMs)) {
      void this.#destroyEntry(e);
      this.#settleOrRefill();
      return;
    }
    e.state = IDLE;
    e.site = undefined;
    e.idleSince = -1;
    if (this.#m !== undefined) {
      this.#m.borrowed.dec();
      this.#m.idle.inc();
    }
    this.#idle.push(e);
    if (this.#live > 0) this.#dispatch();
  }

  /**
   * Removes a borrowed resource from the pool and calls `destroy` on it (a broken connection); a
   * replacement is created if waiters or `min` need one. Resolves when `destroy` has settled
   * (never rejects: a failure of `destroy` goes to `'destroyError'`).
   * @throws TypeError when `resource` is not currently borrowed from this pool.
   */
  destroy(resource: T): Promise<void> {
    const e = this.#borrowedEntry(resource, 'destroy');
    if (e === undefined) return RESOLVED;
    this.#borrowed--;
    const done = this.#destroyEntry(e);
    this.#settleOrRefill();
    return done;
  }

  /**
   * Acquires a resource, runs `fn` with it and gives it back, whatever `fn` does: released when
   * `fn` returns (or resolves); when it throws (or rejects), released too unless `destroyOnError`
   * says to destroy it. Resolves to `fn`'s value, rejects with its error or `acquire()`'s.
   * `fn` must not release the resource itself.
   * @throws TypeError / RangeError (synchronously) for bad options.
   */
  use<R>(fn: (resource: T) => R | Promise<R>, options?: UseOptions): Promise<R> {
    if (typeof fn !== 'function') throw new TypeError(`use(fn): fn must be a function, got ${typeof fn}`);
    const onError = options?.destroyOnError;
    if (onError !== undefined && typeof onError !== 'boolean' && typeof onError !== 'function') {
      throw new TypeError(`options.destroyOnError must be a boolean or a function, got ${typeof onError}`);
    }
    let signal: AbortSignal | undefined;
    let timeoutMs = this.#acquireTimeoutMs;
    if (options !== undefined) {
      if (options === null || typeof options !== 'object') throw new TypeError('use options must be an object');
      signal = options.signal;
      if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError('options.signal must be an AbortSignal');
      if (options.timeoutMs !== undefined) timeoutMs = checkTimerMs('timeoutMs', options.timeoutMs);
    }
    if (this.#closing) return Promise.reject(new ClosedError(`pool "${this.name}"`));
    if (signal?.aborted === true) return Promise.reject(new CancelledError(`pool "${this.name}" acquire`, signal.reason));
    const site = this.#leakMs === Number.POSITIVE_INFINITY ? undefined : captureSite(this.use);
    const failed = (r: T, err: unknown): never => {
      let destroy = onError === true;
      if (typeof onError === 'function') {
        try {
          destroy = onError(err) === true;
        } catch {
          destroy = true; // a predicate that throws cannot vouch for the resource
        }
      }
      if (destroy) void this.destroy(r);
      else this.release(r);
      throw err;
    };
    return this.#acquire(signal, timeoutMs, site).then((r) => {
      let out: R | Promise<R>;
      try {
        out = fn(r);
      } catch (err) {
        return failed(r, err);
      }
      if (out !== null && typeof out === 'object' && typeof (out as { then?: unknown }).then === 'function') {
        return Promise.resolve(out).then((v) => {
          this.release(r);
          return v;
        }, (err: unknown) => failed(r, err));
      }
      this.release(r);
      return out;
    });
  }

  /**
   * Shuts the pool down: from now on `acquire()` rejects with ERR_HOTPATH_CLOSED, and so do the
   * callers waiting in line; idle resources are destroyed at once, borrowed ones when released.
   * Resolves once every resource is destroyed (and every create in flight has settled), or at
   * `timeoutMs`, when the resources still borrowed are destroyed anyway (their `destroy` may
   * still be running; a later `release()` of one is a no-op). Idempotent: a second call returns
   * the first call's promise.
   * @throws TypeError / RangeError (synchronously) for a bad timeoutMs.
   */
  drain(options?: DrainOptions): Promise<void> {
    const timeoutMs = options?.timeoutMs === undefined ? this.#drainTimeoutMs : checkTimerMs('timeoutMs', options.timeoutMs);
    if (this.#drained !== undefined) return this.#drained;
    this.#closing = true;
    if (this.#sweepTimer !== undefined) clearInterval(this.#sweepTimer);
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    if (this.#expiryTimer !== undefined) clearTimeout(this.#expiryTimer);
    this.#sweepTimer = undefined;
    this.#retryTimer = undefined;
    this.#expiryTimer = undefined;
    if (this.#breaker !== undefined) {
      this.#breaker.off('state', this.#onBreakerState!);
      // Our own breaker's reset timer has nothing left to do; a shared one belongs to others.
      if (this.#ownsBreaker) this.#breaker.dispose();
    }
    this.#expiring.drain();
    for (const w of [...this.#waiters.drain(), ...this.#checking]) {
      if (w.settled) continue;
      this.#settle(w);
      w.reject(new ClosedError(`pool "${this.name}"`));
    }
    this.#m?.waiters.dec(this.#live);
    this.#live = 0;
    for (const e of this.#idle.drain()) void this.#destroyEntry(e);
    this.#drained = new Promise<void>((resolve) => {
      this.#onDrained = () => {
        this.#onDrained = undefined;
        if (this.#drainTimer !== undefined) clearTimeout(this.#drainTimer);
        this.#drainTimer = undefined;
        resolve();
      };
    });
    if (timeoutMs !== Number.POSITIVE_INFINITY) {
      // Not unref'd: the caller asked for a bounded wait, and a hanging destroy must not let the
      // process exit (or an `await pool.drain()` at top level end unsettled) before it.
      this.#drainTimer = setTimeout(() => this.#forceDrain(), timeoutMs);
    }
    this.#checkDrained();
    return this.#drained;
  }

  /** `await using pool = createPool(…)` drains it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.drain();
  }

  /** The create breaker (undefined with `breaker: false`). */
  get breaker(): CircuitBreaker | undefined {
    return this.#breaker;
  }

  /** Counts right now and totals since creation. */
  stats(): PoolStats {
    return {
      name: this.name,
      size: this.#idle.length + this.#borrowed + this.#validating,
      idle: this.#idle.length,
      borrowed: this.#borrowed,
      validating: this.#validating,
      pending: this.#pending,
      lateCreates: this.#late,
      waiters: this.#live,
      min: this.#min,
      max: this.#max,
      created: this.#created,
      destroyed: this.#destroyed,
      createFailures: this.#createFailures,
      validationFailures: this.#validationFailures,
      timeouts: this.#timeouts,
      leaks: this.#leaks,
      forced: this.#forcedCount,
      consecutiveCreateFailures: this.#failures,
      breaker: this.#breaker?.state,
      closed: this.#closing,
    };
  }

  // --- lending ----------------------------------------------------------------------------------

  /** Matches idle resources with waiters, in order, then creates what the target asks for. */
  #dispatch(): void {
    while (this.#live > 0 && this.#idle.length > 0) {
      const e = this.#takeIdle();
      if (e === undefined) break;
      const w = this.#nextWaiter()!;
      if (this.#validate === undefined) this.#hand(w, e);
      else this.#check(w, e);
    }
    this.#fill();
  }

  /**
   * The next idle resource to lend (LIFO or FIFO); ones past their lifetime are destroyed on the
   * way. The caller must lend (or validate) the one returned before anything counts resources.
   */
  #takeIdle(): Entry<T> | undefined {
    for (;;) {
      const e = this.#fifo ? this.#idle.shift() : this.#idle.pop();
      if (e === undefined) return undefined;
      if (this.#maxLifetimeMs !== Number.POSITIVE_INFINITY && this.#clock.now() - e.createdAt >= this.#maxLifetimeMs) {
        void this.#destroyEntry(e);
        continue;
      }
      return e;
    }
  }

  /** Removes the first unsettled waiter from the line. */
  #nextWaiter(): Waiter<T> | undefined {
    for (;;) {
      const w = this.#waiters.shift();
      if (w === undefined) return undefined;
      if (w.settled) continue;
      w.queued = false;
      this.#live--;
      this.#m?.waiters.dec();
      return w;
    }
  }

  /** Runs `validate` on `e` for `w`; on refusal destroys it and puts `w` back at the head of the line. */
  #check(w: Waiter<T>, e: Entry<T>): void {
    const fresh = e.fresh; // just made: whether the back-off ends hangs on this verdict
    e.fresh = false;
    if (fresh) this.#unconfirmed++;
    e.state = VALIDATING;
    this.#validating++;
    this.#checking.add(w);
    if (this.#m !== undefined) {
      this.#m.idle.dec();
      this.#m.borrowed.inc();
    }
    let verdict: boolean | Promise<boolean>;
    try {
      verdict = this.#validate!(e.resource);
    } catch (err) {
      this.#checked(w, e, false, err, fresh);
      return;
    }
    if (verdict !== null && typeof verdict === 'object' && typeof (verdict as { then?: unknown }).then === 'function') {
      // Settles once: the verdict, or the timeout (a refusal); whichever comes second is ignored.
      let done = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const settle = (ok: boolean, err: unknown): void => {
        if (done) return;
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        this.#checked(w, e, ok, err, fresh);
      };
      const ms = this.#validateTimeoutMs;
      if (ms !== Number.POSITIVE_INFINITY) {
        timer = setTimeout(() => settle(false, new TimeoutError(`pool "${this.name}" validate`, ms)), ms);
        timer.unref?.();
      }
      Promise.resolve(verdict).then((ok) => settle(ok === true, undefined), (err: unknown) => settle(false, err));
    } else {
      this.#checked(w, e, verdict === true, undefined, fresh);
    }
  }

  #checked(w: Waiter<T>, e: Entry<T>, ok: boolean, err: unknown, fresh: boolean): void {
    this.#validating--;
    this.#checking.delete(w);
    if (fresh) {
      this.#unconfirmed--;
      if (ok) this.#endBackOff();
    }
    if (!ok) {
      this.#validationFailures++;
      this.#m?.validationFailed.inc();
      if (!w.settled) {
        if (this.#closing) {
          this.#settle(w);
          w.reject(new ClosedError(`pool "${this.name}"`));
        } else {
          // Back in line at its place: ahead of everyone who asked after it.
          this.#requeue(w);
        }
      }
      // Listeners ('destroy', then 'validationFailed') run once the counts are consistent.
      void this.#destroyEntry(e);
      this.#emit('validationFailed', e.resource, err);
      if (fresh) {
        // Refused as soon as it was made: for the back-off, the create failed. Retrying at once
        // would spin (a create and a validate that settle in microtasks never let a timer fire).
        this.#backOff(new PoolCreateError(`pool "${this.name}": validate refused a newly created resource${err === undefined ? '' : `: ${errText(err)}`}`,
          err === undefined ? undefined : { cause: err }), NO_TICKET, false);
      }
      this.#settleOrRefill();
      return;
    }
    if (w.settled || this.#closing) {
      // The caller gave up (timeout, abort, drain) while its resource was being checked.
      if (!w.settled) {
        this.#settle(w);
        w.reject(new ClosedError(`pool "${this.name}"`));
      }
      if (this.#closing) {
        void this.#destroyEntry(e);
        this.#checkDrained();
      } else {
        e.state = IDLE;
        e.idleSince = -1;
        if (this.#m !== undefined) {
          this.#m.borrowed.dec();
          this.#m.idle.inc();
        }
        this.#idle.push(e);
        this.#dispatch();
      }
      return;
    }
    this.#hand(w, e);
    // A fresh resource passed: the back-off just ended (its timer cleared), so the creates the
    // other waiters need start now, not at a timer that is no longer there.
    if (fresh && this.#live > 0) this.#dispatch();
  }

  /**
   * Puts a waiter whose resource failed validation back in line by arrival order. Only waiters
   * that were themselves being validated can be ahead of it, so the walk from the head is short.
   */
  #requeue(w: Waiter<T>): void {
    const ahead: Array<Waiter<T>> = [];
    for (let x = this.#waiters.peek(); x !== undefined && (x.settled || x.seq < w.seq); x = this.#waiters.peek()) {
      this.#waiters.shift();
      if (!x.settled) ahead.push(x);
    }
    this.#waiters.unshift(w);
    for (let i = ahead.length - 1; i >= 0; i--) this.#waiters.unshift(ahead[i]!);
    w.queued = true;
    this.#live++;
    this.#m?.waiters.inc();
  }

  /** The shared timer of the default-timeout waiters, due in `ms`. */
  #armExpiry(ms: number): void {
    this.#expiryTimer = setTimeout(() => this.#expire(), Math.max(1, ms));
    this.#expiryTimer.unref?.();
  }

  /** Times out the default-timeout waiters whose deadline passed; re-arms for the next one. */
  #expire(): void {
    this.#expiryTimer = undefined;
    const now = performance.now();
    const q = this.#expiring;
    for (let w = q.peek(); w !== undefined; w = q.peek()) {
      if (!w.settled && w.deadline > now) {
        this.#armExpiry(w.deadline - now);
        return;
      }
      q.shift();
      if (!w.settled) this.#timeOut(w);
    }
  }

  #hand(w: Waiter<T>, e: Entry<T>): void {
    this.#settle(w);
    // Served waiters leave the head of the deadline line here, so it does not grow while every
    // caller is served long before its timeout.
    for (let x = this.#expiring.peek(); x !== undefined && x.settled; x = this.#expiring.peek()) this.#expiring.shift();
    this.#lend(e, w.site);
    if (this.#m !== undefined) this.#m.acquire.record(this.#clock.now() - w.startedAt);
    w.resolve(e.resource);
  }

  #lend(e: Entry<T>, site: { stack?: string } | undefined): void {
    if (this.#m !== undefined && e.state === IDLE) {
      this.#m.idle.dec();
      this.#m.borrowed.inc();
    }
    e.state = BORROWED;
    this.#borrowed++;
    if (this.#leakMs !== Number.POSITIVE_INFINITY) {
      e.acquiredAt = this.#clock.now();
      e.site = site;
      e.leakReported = false;
    }
  }

  /** Marks a waiter done: its timer and abort listener go. The caller resolves or rejects it. */
  #settle(w: Waiter<T>): void {
    w.settled = true;
    if (w.timer !== undefined) clearTimeout(w.timer);
    if (w.onAbort !== undefined) w.signal!.removeEventListener('abort', w.onAbort);
    w.timer = undefined;
    w.onAbort = undefined;
  }

  /** A waiter left the line on its own (timeout, abort). */
  #leave(w: Waiter<T>): void {
    this.#settle(w);
    if (w.queued) {
      w.queued = false;
      this.#live--;
      this.#m?.waiters.dec();
      // Settled waiters stay in the deque until they reach its head; compact when they dominate.
      if (this.#waiters.length > 64 && this.#live < this.#waiters.length >> 2) this.#waiters.retain((x) => !x.settled);
    }
  }

  #timeOut(w: Waiter<T>): void {
    if (w.settled) return;
    this.#leave(w);
    this.#timeouts++;
    this.#m?.timeout.inc();
    const cause = this.#failSeq !== w.failSeq ? this.#lastError : undefined;
    const why = cause === undefined ? '' : `; the last create failed: ${errText(cause)}`;
    w.reject(new PoolTimeoutError(
      `pool "${this.name}": no resource within ${w.timeoutMs} ms (${this.#borrowed + this.#validating} borrowed of max ${this.#max}, ${this.#live} waiting)${why}`,
      cause === undefined ? undefined : { cause },
    ));
  }

  #abort(w: Waiter<T>): void {
    if (w.settled) return;
    const reason = w.signal?.reason;
    this.#leave(w);
    w.reject(new CancelledError(`pool "${this.name}" acquire`, reason));
  }

  /** The borrowed entry of `resource`, or throws the caller's mistake (undefined: a forced one, ignore). */
  #borrowedEntry(resource: T, op: string): Entry<T> | undefined {
    const e = this.#all.get(resource);
    if (e !== undefined && e.state === BORROWED) return e;
    if (e === undefined && this.#forced.delete(resource)) return undefined;
    if (e === undefined) {
      throw new TypeError(`pool "${this.name}": ${op}() of a resource this pool does not hold (never acquired from it, or already destroyed)`);
    }
    throw new TypeError(`pool "${this.name}": ${op}() of a resource that is not borrowed (released twice?)`);
  }

  // --- creating ---------------------------------------------------------------------------------

  /** Starts the creates the target asks for, if back-off and the breaker allow. */
  #fill(): void {
    while (!this.#closing) {
      const inUse = this.#borrowed + this.#validating;
      const target = Math.min(this.#max, Math.max(this.#min, inUse + this.#live));
      const have = this.#idle.length + inUse + this.#pending;
      // Creates past their timeout serve nobody but still hold a slot until they settle: the
      // backend never sees more than `max` resources and creates at once.
      if (have >= target || have + this.#late >= this.#max) return;
      if (this.#retryTimer !== undefined) return; // backing off
      if (this.#failures > 0 && this.#pending + this.#unconfirmed > 0) return; // after a failure: one probe at a time
      const b = this.#breaker;
      // The breaker's ticket goes with the create: its outcome then moves the breaker only in the
      // phase it was admitted in (a create started while closed that fails during another caller's
      // half-open probe does not reopen it).
      const ticket = b === undefined ? 0 : b.acquire();
      if (b !== undefined && ticket < 0) {
        this.#failHopeless();
        this.#armRetry(Math.max(b.retryAfterMs(), this.#retry.delayMs, 1));
        return;
      }
      this.#startCreate(ticket);
    }
  }

  #startCreate(ticket: number): void {
    this.#pending++;
    this.#m?.pending.inc();
    let state = RUNNING;
    let timer: ReturnType<typeof setTimeout> | undefined;
    /** A create that settles after its timeout gives its slot back (see #fill); its resource is not ours. */
    const late = (resource: T | undefined): void => {
      state = SETTLED;
      this.#late--;
      // Not one the pool holds (a factory that hands out a cached object): that one may be lent
      // right now (review53); the on-time path refuses such a duplicate without destroying it.
      if (resource !== undefined && !this.#all.has(resource)) void this.#callDestroy(resource);
      this.#settleOrRefill();
    };
    const ok = (resource: T): void => {
      if (state === TIMED_OUT) return late(isResource(resource) ? resource : undefined);
      if (state !== RUNNING) return;
      state = SETTLED;
      if (timer !== undefined) clearTimeout(timer);
      this.#pending--;
      this.#m?.pending.dec();
      this.#onCreated(resource, ticket);
    };
    const fail = (err: unknown): void => {
      if (state === TIMED_OUT) return late(undefined);
      if (state !== RUNNING) return;
      state = SETTLED;
      if (timer !== undefined) clearTimeout(timer);
      this.#pending--;
      this.#m?.pending.dec();
      this.#onCreateFailed(err, ticket);
    };
    const ms = this.#createTimeoutMs;
    if (ms !== Number.POSITIVE_INFINITY) {
      timer = setTimeout(() => {
        if (state !== RUNNING) return;
        state = TIMED_OUT;
        this.#pending--;
        this.#m?.pending.dec();
        this.#late++;
        this.#onCreateFailed(new TimeoutError(`pool "${this.name}" create`, ms), ticket);
      }, ms);
      timer.unref?.();
    }
    let made: T | Promise<T>;
    try {
      made = this.#create();
    } catch (err) {
      fail(err);
      return;
    }
    Promise.resolve(made).then(ok, fail);
  }

  #onCreated(resource: T, ticket: number): void {
    if (!isResource(resource)) {
      // undefined (a create that forgot to return), null or a primitive: lent, it would fail its
      // borrower far from the cause (and two equal primitives are one Map key). Nothing to destroy.
      this.#onCreateFailed(new PoolCreateError(
        `pool "${this.name}": options.create returned ${resource === null || resource === undefined ? String(resource) : `a ${typeof resource}`} (it must return an object, a new one each call)`,
      ), ticket);
      return;
    }
    if (this.#all.has(resource)) {
      // Counting it twice would corrupt every count; refuse it as a failed create instead.
      this.#onCreateFailed(new TypeError(`pool "${this.name}": options.create returned a resource the pool already holds (each call must return a new value)`), ticket);
      return;
    }
    const e = new Entry(resource, this.#clock.now());
    this.#all.set(resource, e);
    this.#created++;
    this.#m?.created.inc();
    this.#m?.idle.inc();
    this.#breaker?.success(ticket); // the create succeeded: the breaker hears it now, whatever validate says
    if (this.#closing) {
      this.#endBackOff();
      this.#emit('create', resource);
      void this.#destroyEntry(e);
      this.#checkDrained();
      return;
    }
    // Made for a waiter, with a `validate`: the dispatch below validates it at once, and the
    // verdict decides whether the back-off ends (see Entry.fresh). Otherwise it ends now.
    if (this.#validate !== undefined && this.#live > 0 && this.#idle.length === 0) e.fresh = true;
    else this.#endBackOff();
    this.#idle.push(e);
    // Emitted once the counts include it, so a listener that calls back into the pool sees it.
    this.#emit('create', resource);
    this.#dispatch();
    if (e.fresh) {
      // Not validated after all (a listener took the waiter): it stays idle, a good create.
      e.fresh = false;
      this.#endBackOff();
    }
  }

  /** A create succeeded (and its resource passed its first `validate`, if it went straight there): the back-off ends. */
  #endBackOff(): void {
    this.#failures = 0;
    if (this.#retryTimer !== undefined) {
      clearTimeout(this.#retryTimer);
      this.#retryTimer = undefined;
    }
  }

  #onCreateFailed(err: unknown, ticket: number): void {
    this.#createFailures++;
    this.#m?.createFailed.inc();
    this.#backOff(err, ticket, true);
  }

  /**
   * Counts a failed create (or a new resource `validate` refused at once, with NO_TICKET: the
   * breaker is not told), waiters are failed if nothing can serve them any more, and the next
   * create waits out the back-off — a timer, so a backend that fails at once cannot keep the pool
   * in a microtask loop.
   */
  #backOff(err: unknown, ticket: number, createError: boolean): void {
    this.#failures++;
    this.#failSeq++;
    this.#lastError = err;
    if (ticket !== NO_TICKET) this.#breaker?.failure(ticket);
    if (createError) this.#emit('createError', err);
    if (this.#closing) {
      this.#checkDrained();
      return;
    }
    this.#failHopeless();
    const r = this.#retry;
    let delay = Math.min(r.maxDelayMs, r.delayMs * 2 ** Math.min(this.#failures - 1, 52));
    if (r.jitter) delay = delay / 2 + Math.random() * (delay / 2);
    if (this.#breaker !== undefined) delay = Math.max(delay, this.#breaker.retryAfterMs());
    this.#armRetry(delay);
  }

  /** (Re-)arms the one back-off timer; when it fires, the pool creates what is still needed. */
  #armRetry(ms: number): void {
    if (this.#retryTimer !== undefined) clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#dispatch();
      // Clamped, not refused: the breaker's retryAfterMs may exceed a timer's range; firing early
      // is harmless (#fill asks the breaker again and re-arms).
    }, Math.min(Math.max(0, ms), MAX_TIMER_MS));
    this.#retryTimer.unref?.();
  }

  /** Nothing idle, nothing out that could come back, nothing being made, and the breaker open. */
  #hopeless(): boolean {
    const b = this.#breaker;
    if (b === undefined || this.#idle.length > 0 || this.#borrowed + this.#validating + this.#pending > 0) return false;
    return b.state === 'open';
  }

  #createError(): PoolCreateError {
    const b = this.#breaker!;
    return new PoolCreateError(
      `pool "${this.name}": cannot create a resource: the create breaker is open after ${this.#failures} failure(s) in a row ` +
        `(next try in ${b.retryAfterMs()} ms)${this.#lastError === undefined ? '' : `; the last one: ${errText(this.#lastError)}`}`,
      this.#lastError === undefined ? undefined : { cause: this.#lastError },
    );
  }

  /** Rejects every waiter when nothing can serve them until the breaker closes. */
  #failHopeless(): void {
    if (this.#live === 0 || !this.#hopeless()) return;
    for (const w of this.#waiters.drain()) {
      if (w.settled) continue;
      this.#settle(w);
      w.reject(this.#createError());
    }
    this.#m?.waiters.dec(this.#live);
    this.#live = 0;
  }

  // --- destroying -------------------------------------------------------------------------------

  /** Takes `e` out of the pool (the caller has already unlinked it from idle / borrowed). */
  #destroyEntry(e: Entry<T>): Promise<void> {
    if (this.#m !== undefined) (e.state === IDLE ? this.#m.idle : this.#m.borrowed).dec();
    e.state = GONE;
    e.site = undefined;
    this.#all.delete(e.resource);
    this.#destroyed++;
    this.#m?.destroyed.inc();
    this.#emit('destroy', e.resource);
    return this.#callDestroy(e.resource);
  }

  #callDestroy(resource: T): Promise<void> {
    const fn = this.#destroyFn;
    if (fn === undefined) return RESOLVED;
    let out: unknown;
    try {
      out = fn(resource);
    } catch (err) {
      this.#destroyFailed(err, resource);
      return RESOLVED;
    }
    if (out === null || typeof out !== 'object' || typeof (out as { then?: unknown }).then !== 'function') return RESOLVED;
    this.#destroying++;
    return Promise.resolve(out).then(() => {
      this.#destroying--;
      this.#checkDrained();
    }, (err: unknown) => {
      this.#destroying--;
      this.#destroyFailed(err, resource);
      this.#checkDrained();
    });
  }

  #destroyFailed(err: unknown, resource: T): void {
    if (this.listenerCount('destroyError') > 0) this.#emit('destroyError', err, resource);
    else process.emitWarning(`pool "${this.name}": destroy failed: ${errText(err)}`, { code: 'HOTPATH_POOL_DESTROY_FAILED' });
  }

  /** After a resource left: settle drain() if closing, else replace it if needed. */
  #settleOrRefill(): void {
    if (this.#closing) this.#checkDrained();
    else this.#dispatch();
  }

  /** drain() resolves once nothing is out, being checked, made (late creates too: review53) or destroyed. */
  #checkDrained(): void {
    if (this.#onDrained !== undefined && this.#borrowed + this.#validating + this.#pending + this.#late + this.#destroying === 0) this.#onDrained();
  }

  #forceDrain(): void {
    this.#drainTimer = undefined;
    for (const e of [...this.#all.values()]) {
      if (e.state !== BORROWED) continue;
      this.#borrowed--;
      this.#forced.add(e.resource);
      this.#forcedCount++;
      void this.#destroyEntry(e);
    }
    this.#onDrained?.();
  }

  // --- the sweep --------------------------------------------------------------------------------

  /** Idle eviction, lifetime expiry of idle resources, leak reports; then refill to `min`. */
  #sweep(): void {
    if (this.#closing) return;
    const now = this.#clock.now();
    const doomed: Array<Entry<T>> = [];
    if (this.#idleMs !== Number.POSITIVE_INFINITY) {
      // Stamp the resources released since the last sweep with this sweep's time: each was
      // released at most one interval before it, so a resource is evicted after being idle
      // between idleMs and idleMs + 2 intervals. The stamps ascend from the head of the deque
      // (it is in release order), so evict from the head while due and over `min`.
      for (let i = this.#idle.length - 1; i >= 0; i--) {
        const e = this.#idle.at(i)!;
        if (e.idleSince !== -1) break;
        e.idleSince = now;
      }
      let size = this.#idle.length + this.#borrowed + this.#validating + this.#pending;
      while (size > this.#min && this.#idle.length > 0 && now - this.#idle.peek()!.idleSince >= this.#idleMs) {
        doomed.push(this.#idle.shift()!);
        size--;
      }
    }
    if (this.#maxLifetimeMs !== Number.POSITIVE_INFINITY) {
      this.#idle.retain((e) => {
        if (now - e.createdAt < this.#maxLifetimeMs) return true;
        doomed.push(e);
        return false;
      });
    }
    const leaks: Array<LeakReport<T>> = [];
    if (this.#leakMs !== Number.POSITIVE_INFINITY) {
      for (const e of this.#all.values()) {
        if (e.state !== BORROWED || e.leakReported || now - e.acquiredAt < this.#leakMs) continue;
        e.leakReported = true;
        this.#leaks++;
        this.#m?.leak.inc();
        leaks.push({ resource: e.resource, heldMs: now - e.acquiredAt, stack: siteStack(e.site) });
      }
    }
    // Listeners run after the pool's state is consistent (one may call back into the pool).
    for (const e of doomed) void this.#destroyEntry(e);
    for (const report of leaks) this.#emit('leak', report);
    if (doomed.length > 0) this.#dispatch();
  }

  /** emit() that survives a throwing listener (it would otherwise break the pool's accounting mid-way). */
  #emit<K extends keyof PoolEvents<T>>(event: K, ...args: PoolEvents<T>[K]): void {
    try {
      (this.emit as (e: string, ...a: unknown[]) => boolean)(event as string, ...args);
    } catch (err) {
      process.emitWarning(`pool "${this.name}": a '${String(event)}' listener threw: ${errText(err)}`, { code: 'HOTPATH_LISTENER_ERROR' });
    }
  }
}

/**
 * Makes a resource pool. See {@link PoolOptions} for the options and their defaults.
 * @throws TypeError / RangeError naming a bad option (`create` missing, `min` > `max`, a negative
 *   duration, …).
 */
export function createPool<T>(options: PoolOptions<T>): Pool<T> {
  return new Pool(options);
}

// --- helpers --------------------------------------------------------------------------------------

/** A stack of the current call, cut above `fn`; V8 formats it only when `.stack` is read. */
function captureSite(fn: (...args: never[]) => unknown): { stack?: string } {
  const site: { stack?: string } = {};
  Error.captureStackTrace(site, fn);
  return site;
}

function siteStack(site: { stack?: string } | undefined): string {
  const s = site?.stack;
  if (s === undefined) return '';
  // V8 writes a first line ("Error" or "Error: "); the frames follow it.
  const nl = s.indexOf('\n');
  return nl < 0 ? s : `acquired at:${s.slice(nl)}`;
}

/** What `create` must return: an object (a function too), each one a distinct Map key. */
function isResource(v: unknown): boolean {
  return (typeof v === 'object' && v !== null) || typeof v === 'function';
}

function errText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A duration the sweep compares ages with (never a timer of its own): any positive number of ms. */
function checkMs(key: string, v: unknown): number {
  if (typeof v !== 'number' || !(v > 0)) throw new RangeError(`options.${key} must be a positive number of ms or Infinity, got ${String(v)}`);
  return v;
}

/**
 * A duration that becomes a timer: at most MAX_TIMER_MS (a longer Node timer fires after 1 ms,
 * and a clamped one early — an acquire asked to wait 100 days would give up after 24.8), or
 * Infinity (no timer at all). Refused like every other timer option of the engine.
 */
function checkTimerMs(key: string, v: unknown): number {
  if (typeof v !== 'number' || !(v > 0) || (v > MAX_TIMER_MS && v !== Number.POSITIVE_INFINITY)) {
    throw new RangeError(`options.${key} must be a positive number of ms up to ${MAX_TIMER_MS} (about 24.8 days) or Infinity, got ${String(v)}`);
  }
  return v;
}

interface Checked {
  name: string;
  min: number;
  max: number;
  acquireTimeoutMs: number;
  createTimeoutMs: number;
  validateTimeoutMs: number;
  maxWaiters: number;
  idleMs: number;
  maxLifetimeMs: number;
  fifo: boolean;
  leakDetectionMs: number;
  drainTimeoutMs: number;
  createRetry: Required<PoolCreateRetryOptions>;
}

function checkOptions<T>(options: PoolOptions<T>): Checked {
  if (options === null || typeof options !== 'object') throw new TypeError('createPool options must be an object');
  if (typeof options.create !== 'function') throw new TypeError(`options.create must be a function, got ${typeof options.create}`);
  for (const key of ['destroy', 'validate'] as const) {
    if (options[key] !== undefined && typeof options[key] !== 'function') throw new TypeError(`options.${key} must be a function, got ${typeof options[key]}`);
  }
  const int = (key: 'min' | 'max', min: number): number => {
    const v = options[key] ?? POOL_DEFAULTS[key];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new RangeError(`options.${key} must be an integer ≥ ${min}, got ${String(v)}`);
    return v;
  };
  const min = int('min', 0);
  const max = int('max', 1);
  if (min > max) throw new RangeError(`options.min (${min}) must not exceed options.max (${max})`);
  const ms = (key: 'idleMs' | 'maxLifetimeMs' | 'leakDetectionMs'): number => checkMs(key, options[key] ?? POOL_DEFAULTS[key]);
  const timerMs = (key: 'acquireTimeoutMs' | 'createTimeoutMs' | 'validateTimeoutMs' | 'drainTimeoutMs'): number =>
    checkTimerMs(key, options[key] ?? POOL_DEFAULTS[key]);
  if (options.fifo !== undefined && typeof options.fifo !== 'boolean') throw new TypeError(`options.fifo must be a boolean, got ${typeof options.fifo}`);
  const name = options.name ?? POOL_DEFAULTS.name;
  if (typeof name !== 'string' || name.length === 0) throw new TypeError(`options.name must be a non-empty string, got ${String(name)}`);
  const r = options.createRetry ?? {};
  if (r === null || typeof r !== 'object') throw new TypeError('options.createRetry must be an object');
  const delayMs = r.delayMs ?? POOL_DEFAULTS.createRetry.delayMs;
  // ≥ 1: a failing create retried with no delay (and no breaker) would be a hot loop.
  if (typeof delayMs !== 'number' || !(delayMs >= 1) || !Number.isFinite(delayMs)) throw new RangeError(`options.createRetry.delayMs must be a finite number ≥ 1, got ${String(delayMs)}`);
  const maxDelayMs = r.maxDelayMs ?? Math.max(delayMs, POOL_DEFAULTS.createRetry.maxDelayMs);
  if (typeof maxDelayMs !== 'number' || !(maxDelayMs >= delayMs) || !Number.isFinite(maxDelayMs)) {
    throw new RangeError(`options.createRetry.maxDelayMs must be a finite number ≥ createRetry.delayMs (${delayMs}), got ${String(maxDelayMs)}`);
  }
  const jitter = r.jitter ?? POOL_DEFAULTS.createRetry.jitter;
  if (typeof jitter !== 'boolean') throw new TypeError(`options.createRetry.jitter must be a boolean, got ${typeof jitter}`);
  const b = options.breaker;
  if (b !== undefined && b !== false && (b === null || typeof b !== 'object')) {
    throw new TypeError('options.breaker must be breaker options, a CircuitBreaker, or false');
  }
  const m = options.metrics as Partial<Metrics> | undefined;
  if (m !== undefined && (m === null || typeof m.counter !== 'function' || typeof m.gauge !== 'function' || typeof m.histogram !== 'function')) {
    throw new TypeError('options.metrics must be a Metrics instance (engine.metrics)');
  }
  if (options.clock !== undefined && typeof options.clock?.now !== 'function') throw new TypeError('options.clock.now must be a function');
  return {
    name, min, max,
    acquireTimeoutMs: timerMs('acquireTimeoutMs'),
    createTimeoutMs: timerMs('createTimeoutMs'),
    validateTimeoutMs: timerMs('validateTimeoutMs'),
    maxWaiters: maxWaiters(options.maxWaiters),
    idleMs: ms('idleMs'),
    maxLifetimeMs: ms('maxLifetimeMs'),
    fifo: options.fifo ?? POOL_DEFAULTS.fifo,
    leakDetectionMs: ms('leakDetectionMs'),
    drainTimeoutMs: timerMs('drainTimeoutMs'),
    createRetry: { delayMs, maxDelayMs, jitter },
  };
}

/**
 * The pool's series. Shared gauges move by deltas on each transition, so several pools of one
 * name add up and a drained pool leaves zeros; the children are bound once (no lookups per call).
 */
function registerMetrics(m: Metrics, pool: string): PoolMetrics {
  const resources = m.gauge('hotpath_pool_resources', 'Resources of each pool by state: idle, borrowed (lent or being validated), pending-create.', ['pool', 'state']);
  const waiters = m.gauge('hotpath_pool_waiters', 'Callers waiting for a resource, by pool.', ['pool']);
  const events = m.counter('hotpath_pool_events_total', 'Pool events: created, destroyed, timeout, create_failed, leak, validation_failed.', ['pool', 'event']);
  return {
    idle: resources.labels(pool, 'idle'),
    borrowed: resources.labels(pool, 'borrowed'),
    pending: resources.labels(pool, 'pending-create'),
    waiters: waiters.labels(pool),
    created: events.labels(pool, 'created'),
    destroyed: events.labels(pool, 'destroyed'),
    timeout: events.labels(pool, 'timeout'),
    createFailed: events.labels(pool, 'create_failed'),
    leak: events.labels(pool, 'leak'),
    validationFailed: events.labels(pool, 'validation_failed'),
    acquire: m.histogram('hotpath_pool_acquire_seconds', 'Time acquire() took until a resource was handed out, every pool of the process.'),
  };
}

function maxWaiters(v: unknown): number {
  if (v === undefined) return POOL_DEFAULTS.maxWaiters;
  if (v === Number.POSITIVE_INFINITY) return v;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) throw new RangeError(`options.maxWaiters must be an integer ≥ 0 or Infinity, got ${String(v)}`);
  return v;
}
