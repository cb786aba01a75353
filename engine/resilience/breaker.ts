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
 *   window); one failure opens it again for another `resetMs`.
 *
 * Time comes from `clock.now()` (ms); the reset timer is a global `setTimeout`, unref'd, so tests
 * drive it with fake timers. The rolling window is `WINDOW_BUCKETS` buckets; recording is O(1).
 */
import { EventEmitter } from 'node:events';
import { ErrorCodes, HotpathError, TimeoutError } from '../errors.js';
import type { Clock } from '../options.js';

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
  /** Probes allowed at once while half-open. Default 1. */
  halfOpenProbes?: number;
  /** `run()`: a call slower than this fails with ERR_HOTPATH_TIMEOUT (ms). Default none. */
  timeoutMs?: number;
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

const WINDOW_BUCKETS = 10;

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

/** Counters of a breaker since it was created. */
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

/**
 * Events: `'state'` (to, from) on every transition, and `'open'`, `'half-open'`, `'close'`.
 */
export class CircuitBreaker extends EventEmitter {
  readonly name: string;
  readonly #o: Required<Omit<BreakerOptions, 'timeoutMs' | 'clock'>> & { timeoutMs: number | undefined };
  readonly #clock: Clock;
  #state: BreakerState = 'closed';
  #openedAt = 0;
  #probes = 0;
  #consecutive = 0;
  #successes = 0;
  #failures = 0;
  #rejected = 0;
  readonly #calls = new Float64Array(WINDOW_BUCKETS);
  readonly #fails = new Float64Array(WINDOW_BUCKETS);
  #bucketStart = 0; // start time of the current bucket
  #bucket = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** @throws TypeError / RangeError naming a bad option. */
  constructor(name: string, options: BreakerOptions = {}) {
    super();
    if (typeof name !== 'string' || name.length === 0) throw new TypeError(`breaker name must be a non-empty string, got ${String(name)}`);
    if (options === null || typeof options !== 'object') throw new TypeError('breaker options must be an object');
    const int = (key: keyof typeof BREAKER_DEFAULTS, min: number): number => {
      const v = options[key] ?? BREAKER_DEFAULTS[key];
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
        throw new RangeError(`options.${key} must be an integer ≥ ${min}, got ${String(v)}`);
      }
      return v;
    };
    const errorRate = options.errorRate ?? BREAKER_DEFAULTS.errorRate;
    if (typeof errorRate !== 'number' || !(errorRate > 0 && errorRate <= 1)) {
      throw new RangeError(`options.errorRate must be a number in (0, 1], got ${String(errorRate)}`);
    }
    const timeoutMs = options.timeoutMs;
    if (timeoutMs !== undefined && (typeof timeoutMs !== 'number' || !(timeoutMs > 0))) {
      throw new RangeError(`options.timeoutMs must be a positive number, got ${String(timeoutMs)}`);
    }
    if (options.clock !== undefined && typeof options.clock?.now !== 'function') {
      throw new TypeError('options.clock.now must be a function');
    }
    this.name = name;
    this.#o = {
      consecutiveFailures: int('consecutiveFailures', 1),
      errorRate,
      volume: int('volume', 1),
      windowMs: int('windowMs', WINDOW_BUCKETS),
      resetMs: Math.min(int('resetMs', 1), 2 ** 31 - 1),
      halfOpenProbes: int('halfOpenProbes', 1),
      timeoutMs,
    };
    this.#clock = options.clock ?? { now: Date.now };
    this.#bucketStart = this.#clock.now();
  }

  /** The current state (an open breaker past its reset time reads as half-open). */
  get state(): BreakerState {
    this.#maybeHalfOpen();
    return this.#state;
  }

  /**
   * Asks to make a call. True: go ahead, and report the outcome with `success()` / `failure()`.
   * False: refused (open, or half-open with every probe slot taken); counted as rejected.
   */
  tryAcquire(): boolean {
    this.#maybeHalfOpen();
    if (this.#state === 'closed') return true;
    if (this.#state === 'half-open' && this.#probes < this.#o.halfOpenProbes) {
      this.#probes++;
      return true;
    }
    this.#rejected++;
    return false;
  }

  /** ms until an open breaker probes again (0 otherwise). */
  retryAfterMs(): number {
    if (this.#state !== 'open') return 0;
    return Math.max(0, this.#openedAt + this.#o.resetMs - this.#clock.now());
  }

  /** Reports a call that succeeded. */
  success(): void {
    this.#successes++;
    this.#consecutive = 0;
    this.#record(false);
    if (this.#state === 'half-open') {
      this.#probes = Math.max(0, this.#probes - 1);
      this.#calls.fill(0);
      this.#fails.fill(0);
      this.#transition('closed');
    }
  }

  /** Reports a call that failed. */
  failure(): void {
    this.#failures++;
    this.#consecutive++;
    this.#record(true);
    if (this.#state === 'half-open') {
      this.#probes = Math.max(0, this.#probes - 1);
      this.#open();
      return;
    }
    if (this.#state !== 'closed') return;
    if (this.#consecutive >= this.#o.consecutiveFailures) {
      this.#open();
      return;
    }
    let calls = 0;
    let fails = 0;
    for (let i = 0; i < WINDOW_BUCKETS; i++) {
      calls += this.#calls[i]!;
      fails += this.#fails[i]!;
    }
    if (calls >= this.#o.volume && fails / calls >= this.#o.errorRate) this.#open();
  }

  /**
   * Runs `fn` through the breaker: refused while open (rejects with ERR_HOTPATH_BREAKER_OPEN, or
   * resolves to `fallback(err)` when given); a rejection or a timeout counts as a failure.
   */
  async run<T>(fn: () => Promise<T> | T, options: { fallback?: (err: unknown) => T | Promise<T> } = {}): Promise<T> {
    if (!this.tryAcquire()) {
      const err = new BreakerOpenError(this.name, this.retryAfterMs());
      if (options.fallback) return options.fallback(err);
      throw err;
    }
    try {
      const value = await this.#withTimeout(fn);
      this.success();
      return value;
    } catch (err) {
      this.failure();
      if (options.fallback) return options.fallback(err);
      throw err;
    }
  }

  #withTimeout<T>(fn: () => Promise<T> | T): Promise<T> {
    const ms = this.#o.timeoutMs;
    const p = Promise.resolve().then(fn);
    if (ms === undefined) return p;
    return new Promise<T>((resolve, reject) => {
      const t = setTimeout(() => reject(new TimeoutError(`breaker "${this.name}" call`, ms)), ms);
      t.unref?.();
      p.then(
        (v) => {
          clearTimeout(t);
          resolve(v);
        },
        (e: unknown) => {
          clearTimeout(t);
          reject(e);
        },
      );
    });
  }

  /** Counters since creation and of the current window. */
  stats(): BreakerStats {
    this.#advance();
    let windowCalls = 0;
    let windowFailures = 0;
    for (let i = 0; i < WINDOW_BUCKETS; i++) {
      windowCalls += this.#calls[i]!;
      windowFailures += this.#fails[i]!;
    }
    return {
      state: this.state, successes: this.#successes, failures: this.#failures, rejected: this.#rejected,
      consecutiveFailures: this.#consecutive, windowCalls, windowFailures,
    };
  }

  /** Stops the reset timer (the breaker keeps working; transitions then happen on calls). */
  dispose(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #record(failed: boolean): void {
    this.#advance();
    this.#calls[this.#bucket]!++;
    if (failed) this.#fails[this.#bucket]!++;
  }

  /** Moves the window to now, zeroing the buckets that slid out. */
  #advance(): void {
    const size = this.#o.windowMs / WINDOW_BUCKETS;
    const now = this.#clock.now();
    const steps = Math.floor((now - this.#bucketStart) / size);
    if (steps <= 0) return;
    for (let i = 1; i <= Math.min(steps, WINDOW_BUCKETS); i++) {
      const b = (this.#bucket + i) % WINDOW_BUCKETS;
      this.#calls[b] = 0;
      this.#fails[b] = 0;
    }
    this.#bucket = (this.#bucket + steps) % WINDOW_BUCKETS;
    this.#bucketStart += steps * size;
  }

  #open(): void {
    this.#openedAt = this.#clock.now();
    this.#probes = 0;
    this.dispose();
    this.#arm(this.#o.resetMs);
    this.#transition('open');
  }

  /** Timer to the half-open transition; re-armed if it fires before the clock says it is due. */
  #arm(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#maybeHalfOpen();
      if (this.#state === 'open') this.#arm(Math.max(1, this.retryAfterMs()));
    }, Math.min(ms, 2 ** 31 - 1));
    this.#timer.unref?.();
  }

  #maybeHalfOpen(): void {
    if (this.#state === 'open' && this.#clock.now() >= this.#openedAt + this.#o.resetMs) {
      this.#probes = 0;
      this.#transition('half-open');
    }
  }

  #transition(to: BreakerState): void {
    const from = this.#state;
    if (from === to) return;
    this.#state = to;
    if (to === 'closed') this.dispose();
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
