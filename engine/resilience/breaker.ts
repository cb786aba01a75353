/**
 * A circuit breaker: closed → open → half-open → closed.
 *
 * - Closed: calls pass. It opens when `consecutiveFailures` calls fail in a row, or when, over the
 *   rolling `windowMs`, at least `volume` calls were made and the share that failed reaches
 *   `errorRate`.
 * - Open: calls are refused at once (`tryAcquire()` is false; `run()` rejects with
 *   ERR_HOTPATH_BREAKER_OPEN or returns the fallback). After `resetMs` it turns half-open — by a
 *   timer (so a listener can probe at once) or, if timers are late, on the next call.
 * - Half-open: up to `halfOpenProbes` calls pass as probes. One success closes it (and clears the
 *   window); one failure opens it again for another `resetMs`. When every slot is taken and no probe
 *   has reported by the deadline of the last one taken (`probeTimeoutMs` after it, or its run()
 *   timeout when longer: a call that never settles, a thread that died mid-probe), the probes are
 *   given up: the next call starts a new round (generation) of the same half-open phase and probes
 *   again. A given-up probe's late outcome still counts as a probe's (a success closes, a failure
 *   reopens) — only its slot is void (its release() frees none of the new round's); once the
 *   half-open phase is over (closed or reopened), a late probe outcome moves nothing.
 *
 * The state lives in an Int32Array of {@link BREAKER_WORDS} words, read and written with Atomics
 * only. A breaker made with `new CircuitBreaker(name, options)` owns a private array; one opened
 * with {@link CircuitBreaker.shared} uses a region of the engine's shared memory, so the main
 * thread and every worker that open the breaker of that name see one state and one window (the
 * public `engine.breaker(name)`). Layout (i32 words):
 * ```
 *  0 STATE      bits 0-1 state (0 closed, 1 open, 2 half-open), bits 2-13 probes in flight,
 *               bits 14-31 generation (+1 on every transition; tells a thread it missed one)
 *  1 OPENED_LO  2 OPENED_HI   when it last opened (ms, split in two u32 halves)
 *  3 CONSECUTIVE              failures in a row
 *  4..9        successes, failures, rejected: each a (lo, hi) pair of u32 (hi bumped on lo's wrap)
 * 10 PROBE_LO 11 PROBE_HI     the deadline of the last half-open probe slot taken (ms, two u32 halves)
 * 12 PHASE                    the generation at which the current (or last) half-open phase began:
 *                             written before the CAS that enters it, only ever moved forward, so a
 *                             thread that sees STATE half-open reads its phase's start here
 * 13 PROBE_AT                 the STATE word made by the slot-taking CAS whose deadline PROBE holds
 *                             (written after PROBE: PROBE is the last slot's deadline once it is equal)
 * 16..45       the window: WINDOW_BUCKETS × (epoch, calls, failures); epoch = floor(now / bucketMs)
 * 48..63       (shared only) the configuration, written once by the creator: every thread uses the
 *               creator's thresholds (errorRate as the two halves of its float64, exactly)
 * ```
 * Protocol: every transition is one compare-and-swap of STATE from the word the deciding thread
 * read, so two threads that both see the fifth failure open it once, and exactly
 * `halfOpenProbes` probes pass. OPENED is written before the CAS that opens (the CAS publishes it;
 * two threads racing to open write near-equal times). PROBE is written only by the thread whose CAS
 * took the slot, after it (a loser writing first could replace the winner's deadline with its own,
 * shorter one: review69 D5), then PROBE_AT publishes it; a thread that finds every slot taken and
 * PROBE_AT not yet naming that word waits (see #probesDue).
 * Tickets (see acquire) are derived from the STATE word: the generation and whether the phase is
 * closed or half-open, so an outcome is matched to its phase with one load and one compare. Window counts are statistics: a bucket is
 * recycled by the thread that CASes its epoch, and a call recorded by another thread between that
 * CAS and the zeroing that follows may be lost (a few calls at a bucket boundary, never a wrong
 * state transition by itself).
 *
 * Events are per thread: a thread emits `'state'` (to, from) for the transitions it makes and for
 * those it notices other threads made (on its next call or its own timer), so a listener may see
 * open → closed when the half-open step happened elsewhere. Every handle of one shared breaker in a
 * thread hears each of them once, whichever handle made or noticed it (review69 D2).
 *
 * Time comes from `clock.now()` (ms); the reset timer is a global `setTimeout`, unref'd, so tests
 * drive it with fake timers. Recording is O(1).
 */
import { isWellFormed } from '../text.js';
import { EventEmitter } from 'node:events';
import { CancelledError, ErrorCodes, HotpathError, RegionConflictError, TimeoutError } from '../errors.js';
import { SYSTEM_CLOCK, type Clock } from '../options.js';
import type { ThreadRuntime } from '../runtime/thread.js';
import { REGION_NAME_MAX } from '../runtime/arena.js';
import { CoarseClock } from '../runtime/coarse-clock.js';

export type BreakerState = 'closed' | 'open' | 'half-open';

/** Options of {@link CircuitBreaker}. Every field is optional. */
export interface BreakerOptions {
  /** Failures in a row that open the breaker. Default 5. */
  consecutiveFailures?: number;
  /** Share of failed calls in the window (0 < r ≤ 1) that opens it. Default 0.5. */
  errorRate?: number;
  /** Calls the window must hold before `errorRate` applies. Default 20. */
  volume?: number;
  /** Length of the rolling window (ms). Default 10000. */
  windowMs?: number;
  /** How long it stays open before probing (ms). Default 5000. */
  resetMs?: number;
  /** Probes allowed at once while half-open (at most 4095). Default 1. */
  halfOpenProbes?: number;
  /**
   * How long the half-open probes may go without an outcome once every slot is taken (ms, counted
   * from the last slot taken; for a slot taken by `run()` with a longer timeout — the handle's
   * `timeoutMs` or the call's — that timeout): past it they are given up and the next call probes
   * again (a new round), so a probe that never settles (or a thread that died mid-probe) cannot keep
   * the breaker half-open for ever. A given-up probe's late outcome still closes or reopens it while
   * that half-open phase lasts. Default: the larger of `resetMs` and `timeoutMs` (this handle's, for
   * `engine.breaker`, unless a handle set `probeTimeoutMs` when it created the breaker). For
   * `engine.breaker`, set by the creator it holds for every handle (others give the same or none);
   * left out by the creator, each handle's own value or default applies to it.
   */
  probeTimeoutMs?: number;
  /** `run()`: a call slower than this fails with ERR_HOTPATH_TIMEOUT (ms). Default none. */
  timeoutMs?: number;
  /**
   * `run()`: which errors count as failures of the protected dependency. Default: every error.
   * An error it says false to (a 404, a validation error) is rethrown but counts as a success.
   */
  isFailure?: (err: unknown) => boolean;
  /** The time source (ms). Default Date.now. */
  clock?: Clock;
}

export const BREAKER_DEFAULTS = {
  consecutiveFailures: 5,
  errorRate: 0.5,
  volume: 20,
  windowMs: 10_000,
  resetMs: 5_000,
  halfOpenProbes: 1,
} as const;

/** What one run() call came to: a value, or an error; `counts` false for a cancelled call, `own` for the breaker's own timeout. */
type Outcome<T> = { ok: true; value: T } | { ok: false; err: unknown; counts: boolean; own: boolean };

/** Options of one {@link CircuitBreaker.run} call. */
export interface BreakerRunOptions<T> {
  /** Called instead of rejecting (refused while open, or the call failed); its value is returned. */
  fallback?: (err: unknown) => T | Promise<T>;
  /** Abandons the call: `run` rejects with ERR_HOTPATH_CANCELLED; the outcome is not counted. */
  signal?: AbortSignal;
  /** This call's timeout (ms), instead of the breaker's `timeoutMs`. */
  timeoutMs?: number;
}

const WINDOW_BUCKETS = 10;
/** i32 words of a breaker's state (see the layout above). */
export const BREAKER_WORDS = 64;

const STATE = 0;
const OPENED_LO = 1;
const CONSECUTIVE = 3;
const SUCCESSES = 4;
const FAILURES = 6;
const REJECTED = 8;
const PROBE_LO = 10;
const PHASE = 12;
const PROBE_AT = 13;
const WINDOW = 16;
const CONFIG = 48;
const CONFIG_MAGIC = 0x42524b31; // 'BRK1'

const CLOSED = 0;
const OPEN = 1;
const HALF_OPEN = 2;
const STATE_MASK = 3;
const PROBE_ONE = 1 << 2;
const PROBE_MASK = 0xfff << 2;
const GEN_ONE = 1 << 14;
/** Generations the STATE word tells apart (bits 14-31). */
const GENS = 1 << 18;
/**
 * Tickets: a half-open probe's is its generation + 1 (1..GENS); a closed-phase call's is its
 * generation + CLOSED_TICKET (above every probe's); 0 is a closed-phase call of no known phase.
 */
const CLOSED_TICKET = GENS + 1;
const MAX_TICKET = CLOSED_TICKET + GENS - 1;
const KNOWN_OPTIONS: ReadonlySet<string> = new Set(['consecutiveFailures', 'errorRate', 'volume', 'windowMs', 'resetMs',
  'halfOpenProbes', 'probeTimeoutMs', 'timeoutMs', 'isFailure', 'clock']);
const KNOWN_RUN_OPTIONS = 'fallback, signal, timeoutMs';
const NAMES: readonly BreakerState[] = ['closed', 'open', 'half-open'];

/**
 * A signal that never aborts: what `run`'s function gets when the call has no timeout and no
 * signal. One for all such calls (a fresh AbortController costs ~2.4 µs, some twenty times the
 * call), so it keeps nothing a call hangs on it: an 'abort' listener on a signal that never aborts
 * would never run, so adding one does nothing. (review69 D7: functions that add a listener per call,
 * as code given a per-call signal does, piled them up for ever, with MaxListenersExceededWarning.)
 */
const NEVER: AbortSignal = neverAborting();

function neverAborting(): AbortSignal {
  const signal = new AbortController().signal; // its controller is dropped: nothing can abort it
  const add = signal.addEventListener;
  Object.defineProperty(signal, 'addEventListener', {
    value: function addEventListener(this: AbortSignal, ...args: Parameters<AbortSignal['addEventListener']>): void {
      if (args[0] !== 'abort') add.apply(this, args);
    },
  });
  // `onabort` kept as a plain property: Node's event-handler attribute registers through
  // addEventListener, so with the listener dropped a second assignment threw (review71 N1).
  let onabort: AbortSignal['onabort'] = null;
  Object.defineProperty(signal, 'onabort', {
    get: () => onabort,
    set: (v: AbortSignal['onabort']) => {
      onabort = typeof v === 'function' ? v : null;
    },
  });
  return signal;
}

/** errorRate's float64 as two i32 words (the shared configuration stores it exactly: review69 D1). */
const F64 = new Float64Array(1);
const F64_WORDS = new Int32Array(F64.buffer);
/** Longest name of a shared breaker (UTF-8 bytes): its region is `breaker:<name>`. */
export const MAX_SHARED_BREAKER_NAME_BYTES = REGION_NAME_MAX - 'breaker:'.length;

/** The breaker refused the call because it is open. */
export class BreakerOpenError extends HotpathError {
  readonly breaker: string;
  /** ms until the breaker probes again (0 when half-open and out of probe slots). */
  readonly retryAfterMs: number;
  constructor(name: string, retryAfterMs: number) {
    super(ErrorCodes.BREAKER_OPEN, `circuit breaker "${name}" is open; retry in ${retryAfterMs} ms`);
    this.breaker = name;
    this.retryAfterMs = retryAfterMs;
  }
}

/** Counters of a breaker (process-wide for a shared one). */
export interface BreakerStats {
  state: BreakerState;
  successes: number;
  failures: number;
  rejected: number;
  /** Failures in a row right now. */
  consecutiveFailures: number;
  /** Calls and failures in the current window. */
  windowCalls: number;
  windowFailures: number;
}

type Config = Required<Omit<BreakerOptions, 'timeoutMs' | 'clock' | 'isFailure'>> & { timeoutMs: number | undefined };

/** What `v` is, for a message. */
function describe(v: unknown): string {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'function') return 'a function';
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : `an object (${Object.prototype.toString.call(v)})`;
  return typeof v === 'string' ? JSON.stringify(v) : `${typeof v} ${String(v)}`;
}

/** An AbortSignal, of this realm or another (checked by shape). */
function isSignal(v: unknown): v is AbortSignal {
  const s = v as AbortSignal | null;
  return typeof s === 'object' && s !== null && typeof s.aborted === 'boolean'
    && typeof s.addEventListener === 'function' && typeof s.removeEventListener === 'function';
}

/** The error for `run(fn, options)`'s arguments, or undefined when they are good (nothing is admitted before). */
function checkRun(fn: unknown, options: unknown): Error | undefined {
  if (typeof fn !== 'function') return new TypeError(`run(fn): fn must be a function, got ${describe(fn)}`);
  if (options === undefined) return undefined;
  if (options === null || typeof options !== 'object') return new TypeError(`run(fn, options): options must be an object, got ${describe(options)}`);
  for (const k in options) {
    if (k !== 'fallback' && k !== 'signal' && k !== 'timeoutMs') return new TypeError(`options.${k} is not an option of run() (known: ${KNOWN_RUN_OPTIONS})`);
  }
  const o = options as BreakerRunOptions<unknown>;
  if (o.fallback !== undefined && typeof o.fallback !== 'function') return new TypeError(`options.fallback must be a function, got ${describe(o.fallback)}`);
  if (o.signal !== undefined && !isSignal(o.signal)) return new TypeError(`options.signal must be an AbortSignal, got ${describe(o.signal)}`);
  if (o.timeoutMs !== undefined && (typeof o.timeoutMs !== 'number' || !(o.timeoutMs > 0) || o.timeoutMs > 2 ** 31 - 1)) {
    return new RangeError(`options.timeoutMs must be a positive number of ms (≤ 2^31 - 1), got ${String(o.timeoutMs)}`);
  }
  return undefined;
}

/** @throws TypeError unless `ticket` is one `acquire()` can give an admitted call. */
function checkTicket(ticket: unknown): void {
  if (typeof ticket !== 'number' || !Number.isInteger(ticket) || ticket < 0 || ticket > MAX_TICKET) {
    throw new TypeError(`ticket must be what acquire() gave an admitted call (an integer ≥ 0), got ${describe(ticket)}`);
  }
}

/** A breaker's name: a non-empty string of well-formed UTF-16 (shared breakers name a region, kept as UTF-8). */
function checkBreakerName(name: unknown): asserts name is string {
  if (typeof name !== 'string' || name.length === 0) throw new TypeError(`breaker name must be a non-empty string, got ${String(name)}`);
  if (!isWellFormed(name)) throw new TypeError(`breaker name must be well-formed UTF-16 (no lone surrogate), got ${JSON.stringify(name)}`);
}

function validate(name: string, options: BreakerOptions): Config {
  checkBreakerName(name);
  if (options === null || typeof options !== 'object') throw new TypeError('breaker options must be an object');
  for (const k of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(k)) throw new TypeError(`options.${k} is not a known option (known: ${[...KNOWN_OPTIONS].join(', ')})`);
  }
  const int = (key: keyof typeof BREAKER_DEFAULTS, min: number, max = 2 ** 31 - 1): number => {
    const v = options[key] ?? BREAKER_DEFAULTS[key];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
      throw new RangeError(`options.${key} must be an integer in [${min}, ${max}], got ${String(v)}`);
    }
    return v;
  };
  const errorRate = options.errorRate ?? BREAKER_DEFAULTS.errorRate;
  if (typeof errorRate !== 'number' || !(errorRate > 0 && errorRate <= 1)) {
    throw new RangeError(`options.errorRate must be a number in (0, 1], got ${String(errorRate)}`);
  }
  const timeoutMs = options.timeoutMs;
  if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || timeoutMs > 2 ** 31 - 1)) {
    throw new RangeError(`options.timeoutMs must be a positive number of ms (≤ 2^31 - 1), got ${String(timeoutMs)}`);
  }
  if (options.clock !== undefined && typeof options.clock?.now !== 'function') {
    throw new TypeError('options.clock.now must be a function');
  }
  if (options.isFailure !== undefined && typeof options.isFailure !== 'function') {
    throw new TypeError(`options.isFailure must be a function, got ${typeof options.isFailure}`);
  }
  const resetMs = int('resetMs', 1);
  const probeTimeoutMs = options.probeTimeoutMs ?? Math.max(resetMs, Math.ceil(timeoutMs ?? 0));
  if (typeof probeTimeoutMs !== 'number' || !Number.isInteger(probeTimeoutMs) || probeTimeoutMs < 1 || probeTimeoutMs > 2 ** 31 - 1) {
    throw new RangeError(`options.probeTimeoutMs must be an integer in [1, ${2 ** 31 - 1}], got ${String(probeTimeoutMs)}`);
  }
  return {
    consecutiveFailures: int('consecutiveFailures', 1),
    errorRate,
    volume: int('volume', 1),
    windowMs: int('windowMs', WINDOW_BUCKETS),
    resetMs,
    halfOpenProbes: int('halfOpenProbes', 1, 0xfff),
    probeTimeoutMs,
    timeoutMs,
  };
}

/**
 * Events: `'state'` (to, from) on every transition, and `'open'`, `'half-open'`, `'close'`.
 */
export class CircuitBreaker extends EventEmitter {
  readonly name: string;
  readonly #o: Config;
  readonly #clock: Clock;
  /**
   * The window's buckets are found with a coarse clock (runtime/coarse-clock.ts: at most ~1 ms or
   * 64 calls stale) over the system clock: reading the real clock on every success was half of a
   * call's cost. State transitions (open, half-open) read the real one. A `clock` given in the
   * options is read exactly, as the limiter does (review69 D3: a manual clock moved on a minute
   * still found a minute-old bucket until a real timer or 64 reads refreshed the cache).
   */
  readonly #coarse: Clock;
  /** The coarse clock this breaker made (it stops it), if any. */
  readonly #ownCoarse: CoarseClock | undefined;
  readonly #isFailure: ((err: unknown) => boolean) | undefined;
  readonly #w: Int32Array;
  /** Index of word 0 in #w. */
  readonly #b: number;
  readonly #bucketMs: number;
  /** The STATE word this thread last acted on or announced (its events are relative to it). */
  #seen = 0;
  /**
   * The handles of this shared breaker in this thread, this one included (undefined for a private
   * one): a transition any of them makes or notices is announced on each (see #announce).
   */
  #peers: Set<WeakRef<CircuitBreaker>> | undefined;
  /** The STATE word (every slot taken) whose probe deadline was not yet published, and since when this handle saw it so. */
  #pendingWord = 0;
  #pendingSince = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;
  /**
   * run()'s outcome handlers for the ticket `#hotTicket` (made once per phase, not per call: every
   * call admitted in one closed phase has the same ticket).
   */
  #hotTicket = -1;
  #hotOk: (value: any) => any = (v: unknown) => v;
  #hotErr: (err: unknown) => never = (err: unknown) => {
    throw err;
  };

  /**
   * A breaker with private state (one thread's).
   * @throws TypeError / RangeError naming a bad option.
   */
  /**
   * @param cells where the state lives (CircuitBreaker.shared passes an arena region).
   * @param coarse a coarse clock over `options.clock` shared with other breakers (the balancer's
   *   breakers share one: one 1 ms timer instead of one per backend); its owner stops it. Without
   *   it, a breaker on the system clock makes its own and one on another clock reads that exactly.
   */
  constructor(name: string, options: BreakerOptions = {}, cells?: { words: Int32Array; base: number }, coarse?: CoarseClock) {
    super();
    this.#o = validate(name, options);
    this.name = name;
    this.#clock = options.clock ?? { now: Date.now };
    this.#ownCoarse = coarse === undefined && (options.clock === undefined || options.clock === SYSTEM_CLOCK) ? new CoarseClock(this.#clock) : undefined;
    this.#coarse = coarse ?? this.#ownCoarse ?? this.#clock;
    this.#isFailure = options.isFailure;
    this.#w = cells?.words ?? new Int32Array(BREAKER_WORDS);
    this.#b = cells?.base ?? 0;
    this.#bucketMs = this.#o.windowMs / WINDOW_BUCKETS;
    this.#seen = Atomics.load(this.#w, this.#b + STATE);
  }

  /**
   * The breaker `name` in the shared memory of `runtime` (region `breaker:<name>`): created with
   * `options` on first use; any thread that opens it later gets the creator's thresholds (and its
   * `timeoutMs` unless it passes its own). Opening it with other thresholds is refused.
   * `probeTimeoutMs` is a threshold when the creator set it (another handle must give the same or
   * none); left out by the creator it is a per-handle setting, like `timeoutMs` (review69 D10).
   * @throws TypeError / RangeError naming a bad option or name (at most
   *   MAX_SHARED_BREAKER_NAME_BYTES UTF-8 bytes); ERR_HOTPATH_REGION_CONFLICT when it exists with
   *   other thresholds; ERR_HOTPATH_ARENA_EXHAUSTED when the arena is full.
   */
  static shared(runtime: ThreadRuntime, name: string, options?: BreakerOptions): CircuitBreaker {
    // Before the region: the messages name the breaker, not the region (review47, review69 D6).
    checkBreakerName(name);
    const bytes = Buffer.byteLength(name, 'utf8');
    if (bytes > MAX_SHARED_BREAKER_NAME_BYTES) {
      throw new RangeError(`breaker name must be at most ${MAX_SHARED_BREAKER_NAME_BYTES} UTF-8 bytes for a shared breaker (engine.breaker), got ${bytes}: ${JSON.stringify(name)}`);
    }
    const wanted = options === undefined ? undefined : validate(name, options);
    const r = runtime.arena.region(`breaker:${name}`, BREAKER_WORDS * 4, 64);
    const words = runtime.i32;
    const base = r.offset >>> 2;
    const c = base + CONFIG;
    if (r.created) {
      const cfg = wanted ?? validate(name, {});
      Atomics.store(words, c + 1, cfg.consecutiveFailures);
      F64[0] = cfg.errorRate; // exactly: a rate rounded to 0 would be refused by every handle (review69 D1)
      Atomics.store(words, c + 10, F64_WORDS[0]!);
      Atomics.store(words, c + 11, F64_WORDS[1]!);
      Atomics.store(words, c + 3, cfg.volume);
      Atomics.store(words, c + 4, cfg.windowMs);
      Atomics.store(words, c + 5, cfg.resetMs);
      Atomics.store(words, c + 6, cfg.halfOpenProbes);
      Atomics.store(words, c + 7, cfg.timeoutMs === undefined ? 0 : Math.ceil(cfg.timeoutMs));
      Atomics.store(words, c + 8, cfg.probeTimeoutMs);
      Atomics.store(words, c + 9, options?.probeTimeoutMs !== undefined ? 1 : 0); // else a default each handle derives
      Atomics.store(words, c, CONFIG_MAGIC); // publishes the configuration
    } else {
      // The creator publishes a few stores after carving; give up after about a second.
      for (let spins = 0; Atomics.load(words, c) !== CONFIG_MAGIC; spins++) {
        if (spins > 100) Atomics.wait(words, c, 0, 1);
        if (spins > 1100) throw new RegionConflictError(r.name, r.bytes, BREAKER_WORDS * 4, `breaker "${name}" was carved but never initialised (did the thread creating it die?)`);
      }
    }
    F64_WORDS[0] = Atomics.load(words, c + 10);
    F64_WORDS[1] = Atomics.load(words, c + 11);
    const stored: Config = {
      consecutiveFailures: Atomics.load(words, c + 1),
      errorRate: F64[0]!,
      volume: Atomics.load(words, c + 3),
      windowMs: Atomics.load(words, c + 4),
      resetMs: Atomics.load(words, c + 5),
      halfOpenProbes: Atomics.load(words, c + 6),
      probeTimeoutMs: Atomics.load(words, c + 8),
      timeoutMs: Atomics.load(words, c + 7) || undefined,
    };
    if (wanted !== undefined && !r.created) {
      for (const k of ['consecutiveFailures', 'volume', 'windowMs', 'resetMs', 'halfOpenProbes'] as const) {
        if (wanted[k] !== stored[k]) {
          throw new RegionConflictError(r.name, r.bytes, r.bytes, `breaker "${name}" exists with ${k} = ${stored[k]}, not ${wanted[k]}`);
        }
      }
      // A threshold only when the creator set it: else each handle's own (its default follows this
      // handle's timeoutMs), so another handle's value is no conflict (review69 D10).
      if (options!.probeTimeoutMs !== undefined && Atomics.load(words, c + 9) === 1 && wanted.probeTimeoutMs !== stored.probeTimeoutMs) {
        throw new RegionConflictError(r.name, r.bytes, r.bytes, `breaker "${name}" exists with probeTimeoutMs = ${stored.probeTimeoutMs}, not ${wanted.probeTimeoutMs}`);
      }
      if (wanted.errorRate !== stored.errorRate) {
        throw new RegionConflictError(r.name, r.bytes, r.bytes, `breaker "${name}" exists with errorRate = ${stored.errorRate}, not ${wanted.errorRate}`);
      }
    }
    const timeoutMs = wanted?.timeoutMs ?? stored.timeoutMs;
    const b = new CircuitBreaker(name, {
      ...stored,
      timeoutMs,
      // The creator did not set it: this handle's own, or the default of its own settings, the
      // larger of resetMs and timeoutMs.
      probeTimeoutMs: Atomics.load(words, c + 9) === 1 ? stored.probeTimeoutMs
        : options?.probeTimeoutMs ?? Math.max(stored.resetMs, Math.ceil(timeoutMs ?? 0)),
      ...(options?.clock ? { clock: options.clock } : {}),
      ...(options?.isFailure ? { isFailure: options.isFailure } : {}),
    }, { words, base });
    CircuitBreaker.#join(runtime, name, b);
    return b;
  }

  /** This thread's handles of each shared breaker, by runtime and name (see #peers). */
  static readonly #handles = new WeakMap<ThreadRuntime, Map<string, Set<WeakRef<CircuitBreaker>>>>();

  /**
   * Adds `b` to the handles of its shared breaker in this thread. It starts from the state they
   * last announced, then announces (on all of them) anything newer it sees, so they stay in step.
   * (review69 D2: each handle had its own `#seen`: listeners on one never heard the transitions
   * made through another, and the reset timer of the handle that opened it woke only its own.)
   */
  static #join(runtime: ThreadRuntime, name: string, b: CircuitBreaker): void {
    let byName = CircuitBreaker.#handles.get(runtime);
    if (byName === undefined) CircuitBreaker.#handles.set(runtime, byName = new Map());
    let peers = byName.get(name);
    if (peers === undefined) byName.set(name, peers = new Set());
    for (const ref of peers) {
      const h = ref.deref();
      if (h === undefined) peers.delete(ref); // a handle nobody holds any more
      else b.#seen = h.#seen;
    }
    peers.add(new WeakRef(b));
    b.#peers = peers;
    b.#observe();
  }

  /** The current state (an open breaker past its reset time reads as half-open). */
  get state(): BreakerState {
    this.#maybeHalfOpen();
    return NAMES[this.#observe() & STATE_MASK]!;
  }

  /**
   * Asks to make a call. True: go ahead, and report the outcome with `success()` / `failure()`.
   * False: refused (open, or half-open with every probe slot taken); counted as rejected.
   * (`acquire()` is the same with a ticket, for callers that may abandon calls or finish them late.)
   */
  tryAcquire(): boolean {
    return this.acquire() >= 0;
  }

  /**
   * Asks to make a call and returns a ticket: -1 refused (counted as rejected); otherwise an
   * integer ≥ 0 naming the phase the call was admitted in — a closed phase, or a half-open probe
   * slot of the current generation (`CircuitBreaker.isProbe(ticket)`). Pass the ticket to
   * `success(ticket)` / `failure(ticket)` / `release(ticket)`: then an outcome that belongs to
   * another phase is only counted (successes, failures) and moves nothing — no state, no
   * consecutive count, no window: a call admitted while closed that ends while the breaker is
   * half-open neither closes nor reopens it, one admitted in an earlier closed phase cannot reopen
   * a recovered breaker, a probe that ends after its half-open phase is over closes or reopens nothing (one
   * given up after `probeTimeoutMs` still counts while its phase lasts) — and `release` frees a
   * probe slot only if the ticket holds one of the current round. Ticket 0 (never returned) stands for a closed-phase call of unknown phase:
   * it counts in any closed phase and moves no other. Without a ticket, an outcome counts in
   * whatever phase the breaker is in.
   */
  acquire(): number {
    const s = Atomics.load(this.#w, this.#b + STATE);
    if (s === this.#seen && (s & STATE_MASK) === CLOSED) return (s >>> 14) + CLOSED_TICKET; // the hot path: one load
    return this.#acquireSlow(s, 0);
  }

  /** acquire() for a run() call of timeout `timeoutMs` (its probe's deadline is at least that). */
  #acquireFor(timeoutMs: number | undefined): number {
    const s = Atomics.load(this.#w, this.#b + STATE);
    if (s === this.#seen && (s & STATE_MASK) === CLOSED) return (s >>> 14) + CLOSED_TICKET;
    return this.#acquireSlow(s, timeoutMs === undefined ? 0 : Math.ceil(timeoutMs));
  }

  /**
   * acquire() past its hot path (kept apart so that stays small enough to inline). `allowMs`: how
   * long the call may take (its run() timeout; 0: unknown) — a probe slot it takes is given up
   * only after the larger of that and probeTimeoutMs.
   */
  #acquireSlow(s: number, allowMs: number): number {
    const w = this.#w;
    const at = this.#b + STATE;
    for (;;) {
      this.#announce(s);
      const state = s & STATE_MASK;
      if (state === CLOSED) return (s >>> 14) + CLOSED_TICKET;
      if (state === OPEN) {
        if (this.#clock.now() < this.#openedAt() + this.#o.resetMs) break;
        const next = ((s & ~(STATE_MASK | PROBE_MASK)) + GEN_ONE) | HALF_OPEN;
        this.#markPhase(next); // before the CAS that enters it
        const was = Atomics.compareExchange(w, at, s, next);
        s = was === s ? next : was;
        continue;
      }
      // half-open: take a probe slot if one is free
      if (((s & PROBE_MASK) >>> 2) < this.#o.halfOpenProbes) {
        const was = Atomics.compareExchange(w, at, s, s + PROBE_ONE);
        if (was === s) {
          // Only the thread that took the slot writes its deadline (see the file comment), then names
          // the word its CAS made so that others know the deadline is this slot's.
          this.#stamp(PROBE_LO, this.#clock.now() + Math.max(this.#o.probeTimeoutMs, allowMs));
          Atomics.store(w, this.#b + PROBE_AT, s + PROBE_ONE);
          return (s >>> 14) + 1;
        }
        s = was;
        continue;
      }
      // Every slot taken. No outcome by the deadline of the last one taken: the probes are given
      // up (never settling, or their thread died). A new round (generation) of the same phase
      // frees the slots; the given-up probes' tickets no longer hold one (release frees nothing),
      // but their late outcomes still count as this phase's probes' (see #inPhase).
      if (!this.#probesDue(s)) break;
      const next = ((s & ~(STATE_MASK | PROBE_MASK)) + GEN_ONE) | HALF_OPEN;
      const was = Atomics.compareExchange(w, at, s, next);
      s = was === s ? next : was;
    }
    this.#add(REJECTED);
    return -1;
  }

  /**
   * Whether the probes of half-open STATE word `s` (every slot taken) are past their deadline. The
   * deadline is the last slot's once PROBE_AT names `s`; before that its taker is between its CAS
   * and its stamp — or died there: then the probes are due `probeTimeoutMs` after this handle first
   * saw `s` unpublished, so that such a death cannot keep the breaker half-open for ever.
   */
  #probesDue(s: number): boolean {
    const now = this.#clock.now();
    if (Atomics.load(this.#w, this.#b + PROBE_AT) === s) return now >= this.#stampAt(PROBE_LO);
    if (this.#pendingWord !== s) {
      this.#pendingWord = s;
      this.#pendingSince = now;
      return false;
    }
    return now >= this.#pendingSince + this.#o.probeTimeoutMs;
  }

  /** Whether `ticket` (from `acquire`) holds a half-open probe slot. */
  static isProbe(ticket: number): boolean {
    return ticket > 0 && ticket < CLOSED_TICKET;
  }

  /**
   * Whether an outcome reported now with `ticket` (from `acquire`) would count in the present phase
   * (for a probe: the half-open phase it was admitted in, whichever round): false once its phase is
   * over (then it would only be counted, see acquire).
   */
  isCurrent(ticket: number): boolean {
    checkTicket(ticket);
    return this.#inPhase(ticket, Atomics.load(this.#w, this.#b + STATE));
  }

  /** Whether `ticket` (from `acquire`) holds a probe slot of the current round (what release() would free). */
  holdsSlot(ticket: number): boolean {
    checkTicket(ticket);
    const s = Atomics.load(this.#w, this.#b + STATE);
    return (s & STATE_MASK) === HALF_OPEN && ticket === (s >>> 14) + 1;
  }

  /** Records that the half-open phase entered by STATE word `next` began at its generation (never moves PHASE back). */
  #markPhase(next: number): void {
    const g = next >>> 14;
    const w = this.#w;
    const at = this.#b + PHASE;
    for (;;) {
      const p = Atomics.load(w, at);
      const d = (g - p) & (GENS - 1);
      if (d === 0 || d >= GENS / 2) return; // already so, or a later phase has begun (this thread was slow)
      if (Atomics.compareExchange(w, at, p, g) === p) return;
    }
  }

  /**
   * Whether an outcome with `ticket` counts in the phase of STATE word `s`: the phase's own ticket,
   * or a probe of an earlier round of the same half-open phase (PHASE ≤ its generation ≤ now's).
   */
  #inPhase(ticket: number | undefined, s: number): boolean {
    if (CircuitBreaker.#current(ticket, s)) return true;
    if ((s & STATE_MASK) !== HALF_OPEN || !(ticket! > 0 && ticket! < CLOSED_TICKET)) return false;
    const p = Atomics.load(this.#w, this.#b + PHASE);
    return ((ticket! - 1 - p) & (GENS - 1)) <= (((s >>> 14) - p) & (GENS - 1));
  }

  /** The ticket of a call admitted in the phase of STATE word `s` (-2 while open: none). */
  static #ticketOf(s: number): number {
    const state = s & STATE_MASK;
    return state === CLOSED ? (s >>> 14) + CLOSED_TICKET : state === HALF_OPEN ? (s >>> 14) + 1 : -2;
  }

  /** Whether an outcome with `ticket` belongs to the phase in `s` (see acquire). */
  static #current(ticket: number | undefined, s: number): boolean {
    return ticket === undefined || ticket === CircuitBreaker.#ticketOf(s) || (ticket === 0 && (s & STATE_MASK) === CLOSED);
  }

  /** An outcome of another phase: counted, nothing else. @throws TypeError for what no acquire() gives. */
  #stale(at: number, ticket: number, s: number): void {
    checkTicket(ticket);
    this.#add(at);
    if (s !== this.#seen) this.#announce(s);
  }

  /** ms until an open breaker probes again (0 otherwise). */
  retryAfterMs(): number {
    if ((Atomics.load(this.#w, this.#b + STATE) & STATE_MASK) !== OPEN) return 0;
    return Math.max(0, this.#openedAt() + this.#o.resetMs - this.#clock.now());
  }

  /** Reports a call that succeeded (`ticket`: what `acquire` gave it; see there). */
  success(ticket?: number): void {
    const w = this.#w;
    const b = this.#b;
    const s = Atomics.load(w, b + STATE);
    // The hot path: a call of the closed phase still on (a generation is one phase); it can close nothing.
    if (ticket !== (s >>> 14) + CLOSED_TICKET) return this.#successOther(ticket, s);
    this.#add(SUCCESSES);
    if (Atomics.load(w, b + CONSECUTIVE) !== 0) Atomics.store(w, b + CONSECUTIVE, 0);
    this.#record(false);
    if (s !== this.#seen) this.#announce(s);
  }

  /** success() without a ticket, with a probe's or ticket 0, or of another phase. */
  #successOther(ticket: number | undefined, s: number): void {
    const w = this.#w;
    const b = this.#b;
    if (!this.#inPhase(ticket, s)) return this.#stale(SUCCESSES, ticket!, s);
    this.#add(SUCCESSES);
    if (Atomics.load(w, b + CONSECUTIVE) !== 0) Atomics.store(w, b + CONSECUTIVE, 0);
    this.#record(false);
    s = Atomics.load(w, b + STATE);
    while ((s & STATE_MASK) === HALF_OPEN && this.#inPhase(ticket, s)) {
      const next = ((s & ~(STATE_MASK | PROBE_MASK)) + GEN_ONE) | CLOSED;
      const was = Atomics.compareExchange(w, b + STATE, s, next);
      if (was === s) {
        for (let i = 0; i < WINDOW_BUCKETS; i++) {
          Atomics.store(w, b + WINDOW + 3 * i + 1, 0);
          Atomics.store(w, b + WINDOW + 3 * i + 2, 0);
        }
        s = next;
        break;
      }
      s = was;
    }
    if (s !== this.#seen) this.#announce(s);
  }

  /** Reports a call that failed (`ticket`: what `acquire` gave it; see there). */
  failure(ticket?: number): void {
    const w = this.#w;
    const b = this.#b;
    let s = Atomics.load(w, b + STATE);
    if (!this.#inPhase(ticket, s)) return this.#stale(FAILURES, ticket!, s);
    this.#add(FAILURES);
    const consecutive = Atomics.add(w, b + CONSECUTIVE, 1) + 1;
    this.#record(true);
    s = Atomics.load(w, b + STATE);
    for (;;) {
      const state = s & STATE_MASK;
      if (state === OPEN) break;
      if (!this.#inPhase(ticket, s)) break; // it moved on meanwhile: not this phase's call
      if (state === CLOSED && consecutive < this.#o.consecutiveFailures && !this.#rateTripped()) break;
      // closed and tripped, or a failed probe: open (again) for resetMs
      this.#stamp(OPENED_LO, this.#clock.now());
      const next = ((s & ~(STATE_MASK | PROBE_MASK)) + GEN_ONE) | OPEN;
      const was = Atomics.compareExchange(w, b + STATE, s, next);
      if (was === s) {
        s = next;
        this.#armTimer(this.#o.resetMs);
        break;
      }
      s = was;
    }
    if (s !== this.#seen) this.#announce(s);
  }

  /**
   * Ends an admitted call without an outcome (abandoned): gives back its probe slot when `ticket`
   * (from `acquire`) holds one of the current half-open phase, so the slot is not held until the
   * next transition; otherwise does nothing.
   */
  release(ticket: number): void {
    checkTicket(ticket);
    const w = this.#w;
    const at = this.#b + STATE;
    let s = Atomics.load(w, at);
    while ((s & STATE_MASK) === HALF_OPEN && (s & PROBE_MASK) !== 0 && ticket === (s >>> 14) + 1) {
      const was = Atomics.compareExchange(w, at, s, s - PROBE_ONE);
      if (was === s) return;
      s = was;
    }
  }

  /**
   * Runs `fn` through the breaker. `fn` gets an AbortSignal that aborts on the call's timeout or
   * when `options.signal` aborts. Refused while open (rejects with ERR_HOTPATH_BREAKER_OPEN, or
   * resolves to `fallback(err)` when given); a rejection (that `isFailure` accepts) or a timeout
   * (ERR_HOTPATH_TIMEOUT) counts as a failure. An aborted call rejects with ERR_HOTPATH_CANCELLED
   * and is not counted. Bad arguments (`fn` not a function, an unknown option name, a `signal` that
   * is not an AbortSignal, a `fallback` that is not a function, a bad `timeoutMs`) reject with a
   * TypeError / RangeError naming them before anything is admitted or counted.
   */
  run<T>(fn: (signal: AbortSignal) => Promise<T> | T, options?: BreakerRunOptions<T>): Promise<T> {
    if (options === undefined && this.#o.timeoutMs === undefined && typeof fn === 'function') {
      // The plain call: no promise besides fn's own and the one `then` makes; the handlers are
      // bound once per phase (all the calls of one closed phase share a ticket).
      const ticket = this.acquire();
      if (ticket < 0) return Promise.reject(new BreakerOpenError(this.name, this.retryAfterMs()));
      let p: Promise<T> | T;
      try {
        p = fn(NEVER);
      } catch (err) {
        return Promise.reject(this.#failed(err, ticket, false));
      }
      if (ticket !== this.#hotTicket) this.#bind(ticket);
      return Promise.resolve(p).then(this.#hotOk, this.#hotErr) as Promise<T>;
    }
    const bad = checkRun(fn, options);
    if (bad !== undefined) return Promise.reject(bad);
    return this.#runWith(fn, options ?? {});
  }

  /** run()'s handlers for the calls of `ticket`'s phase. */
  #bind(ticket: number): void {
    this.#hotTicket = ticket;
    this.#hotOk = (value: unknown): unknown => {
      this.success(ticket);
      return value;
    };
    this.#hotErr = (err: unknown): never => {
      throw this.#failed(err, ticket, false);
    };
  }

  /**
   * Records a failed call (or a success, when `isFailure` says the error is not a failure); returns
   * the error. `own`: the breaker's own timeout, a failure whatever `isFailure` says.
   */
  #failed(err: unknown, ticket: number, own: boolean): unknown {
    if (own || this.#counts(err)) this.failure(ticket);
    else this.success(ticket);
    return err;
  }

  #counts(err: unknown): boolean {
    if (this.#isFailure === undefined) return true;
    try {
      return this.#isFailure(err) !== false;
    } catch {
      return true;
    }
  }

  async #runWith<T>(fn: (signal: AbortSignal) => Promise<T> | T, options: BreakerRunOptions<T>): Promise<T> {
    const fallback = options.fallback;
    const signal = options.signal;
    if (signal?.aborted) throw new CancelledError(`breaker "${this.name}" call`, signal.reason);
    const timeoutMs = options.timeoutMs ?? this.#o.timeoutMs;
    const ticket = this.#acquireFor(timeoutMs);
    if (ticket < 0) {
      const err = new BreakerOpenError(this.name, this.retryAfterMs());
      if (fallback) return fallback(err);
      throw err;
    }
    let outcome: Outcome<T>;
    if (timeoutMs === undefined && signal === undefined) {
      try {
        outcome = { ok: true, value: await fn(NEVER) };
      } catch (err) {
        outcome = { ok: false, err, counts: true, own: false };
      }
    } else {
      try {
        outcome = await this.#guarded(fn, timeoutMs, signal);
      } catch (err) {
        this.release(ticket); // not fn's outcome (fn's are in `outcome`): nothing to count, the slot goes back
        throw err;
      }
    }
    if (outcome.ok) {
      this.success(ticket);
      return outcome.value;
    }
    const err = outcome.err;
    if (!outcome.counts) {
      this.release(ticket);
      throw err;
    }
    const counts = outcome.own || this.#counts(err); // only the breaker's own timeout skips isFailure
    if (counts) this.failure(ticket);
    else this.success(ticket);
    if (fallback && counts) return fallback(err);
    throw err;
  }

  /** Runs `fn` under a timeout and/or an outer signal; settles once, whichever comes first. */
  #guarded<T>(fn: (signal: AbortSignal) => Promise<T> | T, timeoutMs: number | undefined, outer: AbortSignal | undefined): Promise<Outcome<T>> {
    const ac = new AbortController();
    return new Promise((settle) => {
      let done = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = (): void => finish({ ok: false, err: new CancelledError(`breaker "${this.name}" call`, outer?.reason), counts: false, own: false });
      const finish = (o: Outcome<T>): void => {
        if (done) return;
        done = true;
        if (timer !== undefined) clearTimeout(timer);
        outer?.removeEventListener('abort', onAbort);
        if (!o.ok) ac.abort(o.err);
        settle(o);
      };
      if (timeoutMs !== undefined) {
        timer = setTimeout(() => finish({ ok: false, err: new TimeoutError(`breaker "${this.name}" call`, timeoutMs), counts: true, own: true }), timeoutMs);
        timer.unref?.();
      }
      outer?.addEventListener('abort', onAbort, { once: true });
      let p: Promise<T>;
      try {
        p = Promise.resolve(fn(ac.signal));
      } catch (err) {
        finish({ ok: false, err, counts: true, own: false });
        return;
      }
      p.then((value) => finish({ ok: true, value }), (err: unknown) => finish({ ok: false, err, counts: true, own: false }));
    });
  }

  /** Counters (process-wide for a shared breaker) and the current window. */
  stats(): BreakerStats {
    const { calls, fails } = this.#window();
    return {
      state: this.state,
      successes: this.#read(SUCCESSES), failures: this.#read(FAILURES), rejected: this.#read(REJECTED),
      consecutiveFailures: Atomics.load(this.#w, this.#b + CONSECUTIVE),
      windowCalls: calls, windowFailures: fails,
    };
  }

  /** Stops this thread's reset timer (the breaker keeps working; transitions then happen on calls). */
  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#ownCoarse?.stop();
  }

  #openedAt(): number {
    return this.#stampAt(OPENED_LO);
  }

  /** The time (ms) in the (lo, hi) pair at `at`. */
  #stampAt(at: number): number {
    return Atomics.load(this.#w, this.#b + at + 1) * 2 ** 32 + (Atomics.load(this.#w, this.#b + at) >>> 0);
  }

  /** Writes the time `now` (ms) to the (lo, hi) pair at `at`. */
  #stamp(at: number, now: number): void {
    Atomics.store(this.#w, this.#b + at, now >>> 0);
    Atomics.store(this.#w, this.#b + at + 1, Math.floor(now / 2 ** 32));
  }

  /** Adds one to the (lo, hi) counter at `at`. */
  #add(at: number): void {
    const w = this.#w;
    const i = this.#b + at;
    if (Atomics.add(w, i, 1) === -1) Atomics.add(w, i + 1, 1); // lo wrapped (0xffffffff → 0)
  }

  #read(at: number): number {
    const i = this.#b + at;
    return Atomics.load(this.#w, i + 1) * 2 ** 32 + (Atomics.load(this.#w, i) >>> 0);
  }

  #record(failed: boolean): void {
    const w = this.#w;
    const epoch = Math.floor(this.#coarse.now() / this.#bucketMs) | 0;
    const i = this.#b + WINDOW + 3 * (((epoch % WINDOW_BUCKETS) + WINDOW_BUCKETS) % WINDOW_BUCKETS);
    const old = Atomics.load(w, i);
    if (old !== epoch && Atomics.compareExchange(w, i, old, epoch) === old) {
      Atomics.store(w, i + 1, 0);
      Atomics.store(w, i + 2, 0);
    }
    Atomics.add(w, i + 1, 1);
    if (failed) Atomics.add(w, i + 2, 1);
  }

  /** Calls and failures of the buckets within the window. */
  #window(): { calls: number; fails: number } {
    const w = this.#w;
    const now = Math.floor(this.#coarse.now() / this.#bucketMs) | 0;
    let calls = 0;
    let fails = 0;
    for (let k = 0; k < WINDOW_BUCKETS; k++) {
      const i = this.#b + WINDOW + 3 * k;
      const age = (now - Atomics.load(w, i)) | 0;
      if (age < 0 || age >= WINDOW_BUCKETS) continue;
      calls += Atomics.load(w, i + 1);
      fails += Atomics.load(w, i + 2);
    }
    return { calls, fails };
  }

  #rateTripped(): boolean {
    const { calls, fails } = this.#window();
    return calls >= this.#o.volume && fails / calls >= this.#o.errorRate;
  }

  /** The current STATE word, after announcing any transition this thread has not seen. */
  #observe(): number {
    const s = Atomics.load(this.#w, this.#b + STATE);
    if (s !== this.#seen) this.#announce(s);
    return s;
  }

  /** Timer to the half-open transition; re-armed if it fires before the clock says it is due. */
  #armTimer(ms: number): void {
    this.dispose();
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#maybeHalfOpen();
      if ((this.#observe() & STATE_MASK) === OPEN) this.#armTimer(Math.max(1, this.retryAfterMs()));
    }, Math.min(ms, 2 ** 31 - 1));
    this.#timer.unref?.();
  }

  #maybeHalfOpen(): void {
    const w = this.#w;
    const at = this.#b + STATE;
    const s = Atomics.load(w, at);
    if ((s & STATE_MASK) === OPEN && this.#clock.now() >= this.#openedAt() + this.#o.resetMs) {
      const next = ((s & ~(STATE_MASK | PROBE_MASK)) + GEN_ONE) | HALF_OPEN;
      this.#markPhase(next); // before the CAS that enters it
      Atomics.compareExchange(w, at, s, next);
    }
    this.#observe();
  }

  /**
   * Emits the transition from the state this thread last saw to the one in `s`, if the state (or
   * its generation) changed. Probe counts changing is not a transition.
   */
  #announce(s: number): void {
    const prev = this.#seen;
    this.#seen = s;
    if ((prev & ~PROBE_MASK) === (s & ~PROBE_MASK)) return; // peers move in step: they have seen it too
    const peers = this.#peers;
    if (peers === undefined) return this.#tell(prev, s);
    // Every handle of this breaker in this thread, each from the state it last saw. All of them are
    // moved to `s` before any listener runs: a listener whose call makes another transition (which
    // that call announces to all) leaves no handle's #seen older than the state it announced.
    const told: Array<[CircuitBreaker, number]> = [[this, prev]];
    for (const ref of peers) {
      const h = ref.deref();
      if (h === undefined) {
        peers.delete(ref);
      } else if (h !== this) {
        told.push([h, h.#seen]);
        h.#seen = s;
      }
    }
    for (const [h, from] of told) h.#tell(from, s);
  }

  /** Emits the transition from STATE word `prev` to `s` on this handle, if the state changed. */
  #tell(prev: number, s: number): void {
    if ((prev & ~PROBE_MASK) === (s & ~PROBE_MASK)) return;
    const from = NAMES[prev & STATE_MASK]!;
    const to = NAMES[s & STATE_MASK]!;
    if (to === 'closed') this.dispose();
    if (from === to) return; // it went round (e.g. open → half-open → open) elsewhere
    // A listener that throws must not break the caller's accounting (success()/failure() are
    // mid-way): report it as a warning instead of letting it escape.
    for (const [event, args] of [['state', [to, from]], [to === 'closed' ? 'close' : to, []]] as const) {
      try {
        this.emit(event, ...args);
      } catch (err) {
        process.emitWarning(`circuit breaker "${this.name}": a '${event}' listener threw: ${(err as Error)?.message ?? String(err)}`, { code: 'HOTPATH_LISTENER_ERROR' });
      }
    }
  }
}
