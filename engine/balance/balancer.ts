/**
 * The load balancer: picks a backend for an outgoing call, sheds load from failing ones.
 *
 * Algorithms (`algorithm`):
 * - `round-robin`: the backends that may take a call, in turn. Exact: N calls over N backends
 *   give each one call.
 * - `weighted`: smooth weighted round robin (nginx's): a backend of weight w gets w of every
 *   Σw calls, interleaved rather than in runs.
 * - `least-connections`: the fewest calls in flight per unit of weight; ties go round robin.
 * - `p2c-ewma`: power of two choices (Mitzenmacher) on a peak-sensitive EWMA of latency times
 *   (calls in flight + 1), as Finagle's and linkerd's balancers: two backends at random, the
 *   cheaper one wins. It routes around a slow backend without a global scan.
 * - `consistent-hash`: `pick({ key })` maps the key on a hash ring (engine/balance/ring.ts, a WASM
 *   kernel; `ring: { algorithm: 'ring' | 'jump' | 'maglev', vnodes }`), so a key keeps its backend
 *   and adding a backend only takes keys to itself. A key whose backend may not take calls goes to
 *   the ring's next eligible backend.
 * Any algorithm: `pick({ session })` is sticky — the backend a session got first keeps it while it
 * may take calls (a bounded map, least recently used sessions forgotten first).
 *
 * What may take a call: a backend that is `up` (active health checks, `health`), not ejected
 * (passive outlier detection from `report`, `outlier`), and whose circuit breaker (`breaker`, one
 * per backend) lets the call through. Every `pick()` counts a call in flight on its backend; end
 * it with exactly one `report(backend, { ok, latencyMs })` (or `release(backend)` when abandoned
 * without an outcome). `run(fn)` does all of it, with failover to another backend.
 *
 * Events: `'state'` (backend, to, from) when a backend goes up, down or is ejected/readmitted;
 * `'breaker'` (backend, to, from) when its breaker changes state; `'checked'` after each round of
 * health checks; `'close'` once, on `close()`.
 */
import { EventEmitter } from 'node:events';
import { NoBackendError } from '../errors.js';
import { SYSTEM_CLOCK, type Clock } from '../options.js';
import { CircuitBreaker, type BreakerOptions, type BreakerState } from '../resilience/breaker.js';
import { CoarseClock } from '../runtime/coarse-clock.js';
import { HashRing, type HashRingOptions } from './ring.js';
import { probe, resolveHealth, type HealthOptions, type ResolvedHealth } from './health.js';

export type BalancerAlgorithm = 'round-robin' | 'weighted' | 'least-connections' | 'p2c-ewma' | 'consistent-hash';
export const BALANCER_ALGORITHMS: readonly BalancerAlgorithm[] = ['round-robin', 'weighted', 'least-connections', 'p2c-ewma', 'consistent-hash'];

/** A backend as given to the balancer. */
export interface BackendOptions {
  /** Unique id. */
  id: string;
  /** Its base URL (HTTP health checks and the proxy use it). */
  url?: string;
  /** Relative share of calls (`weighted`, `least-connections`, `consistent-hash`). Default 1. */
  weight?: number;
  /** Anything of yours, carried on the backend object. */
  meta?: unknown;
}

/** `up`: may take calls; `down`: its health checks fail; `ejected`: too many failures reported, out for a while. */
export type BackendState = 'up' | 'down' | 'ejected';

/** A backend as the balancer hands it out. Read-only for you; the balancer updates it. */
export interface Backend {
  readonly id: string;
  readonly url: string | undefined;
  readonly weight: number;
  readonly meta: unknown;
  readonly state: BackendState;
  /** Its circuit breaker's state ('closed' when breakers are off). */
  readonly breakerState: BreakerState;
  /** Calls picked and not yet reported. */
  readonly inflight: number;
  /** Peak-sensitive EWMA of reported latencies (ms). */
  readonly ewmaMs: number;
  /** Calls reported ok / failed since it was added. */
  readonly successes: number;
  readonly failures: number;
}

/** Passive outlier detection: failures reported in a row eject a backend for a while. */
export interface OutlierOptions {
  /** Failures in a row that eject a backend. Default 5. */
  consecutiveFailures?: number;
  /** First ejection's length (ms); each further ejection of the same backend doubles it. Default 10000. */
  ejectMs?: number;
  /** Longest ejection (ms). Default 300000. */
  maxEjectMs?: number;
  /** Never eject more than this share of the backends (0..100). Default 50. */
  maxEjectedPercent?: number;
}

/** Options of {@link Balancer}. Only `backends` is needed. */
export interface BalancerOptions {
  /** The backends (at least one unless you `add` them later). */
  backends?: BackendOptions[];
  /** Default 'round-robin'. */
  algorithm?: BalancerAlgorithm;
  /** Name in metrics and messages. Default 'default'. */
  name?: string;
  /** Active health checks, or false for none. Default: HTTP GET `url` + '/health' every 5 s. */
  health?: HealthOptions | false;
  /** Passive outlier ejection from `report`, or false for none. */
  outlier?: OutlierOptions | false;
  /** One circuit breaker per backend (CircuitBreaker options), or false for none. Default: the breaker defaults. */
  breaker?: Omit<BreakerOptions, 'clock'> | false;
  /** `consistent-hash`: the ring. */
  ring?: HashRingOptions;
  /** `p2c-ewma`: how fast the latency estimate forgets (ms, the EWMA's time constant). Default 10000. */
  ewmaDecayMs?: number;
  /** `p2c-ewma`: the latency estimate of a backend with no report yet (ms). Default 10. */
  initialLatencyMs?: number;
  /**
   * `p2c-ewma`: a failed call counts as at least this latency (ms), so a backend that fails fast
   * does not look fast and attract traffic. Default 1000.
   */
  failurePenaltyMs?: number;
  /** Sticky sessions remembered (`pick({ session })`); the least recently used are forgotten first. Default 100000. */
  maxSessions?: number;
  /** Time source (ms). Default Date.now. */
  clock?: Clock;
  /** Random source in [0, 1) (`p2c-ewma`). Default Math.random. */
  random?: () => number;
}

/** Largest backend weight of a `consistent-hash` balancer. */
export const MAX_RING_WEIGHT = 100;
/** Removed backends kept for their calls in flight (see Balancer#gone); past it the oldest is forgotten. */
export const MAX_GONE = 1024;

export const BALANCER_DEFAULTS = {
  algorithm: 'round-robin' as BalancerAlgorithm,
  name: 'default',
  ewmaDecayMs: 10_000,
  initialLatencyMs: 10,
  failurePenaltyMs: 1000,
  maxSessions: 100_000,
  outlier: { consecutiveFailures: 5, ejectMs: 10_000, maxEjectMs: 300_000, maxEjectedPercent: 50 },
};

/** Options of one pick. */
export interface PickOptions {
  /** The routing key of `consistent-hash` (required there). */
  key?: string | Uint8Array;
  /** A session id: the session stays on its backend while that may take calls. */
  session?: string;
  /** Backend ids not to pick (failover: the ones already tried). */
  exclude?: ReadonlySet<string>;
}

/** Options of {@link Balancer.run}. */
export interface BalancerRunOptions extends Omit<PickOptions, 'exclude'> {
  /** Backends to try at most (each once). Default min(2, backends). */
  attempts?: number;
  /** Abandons the call (the backend's outcome is not reported as a failure). */
  signal?: AbortSignal;
  /** Which errors are worth trying another backend for. Default: all. */
  retryable?: (err: unknown) => boolean;
}

class Entry implements Backend {
  readonly id: string;
  readonly url: string | undefined;
  readonly weight: number;
  readonly meta: unknown;
  readonly breaker: CircuitBreaker | undefined;
  healthy = true;
  ejectedUntil = 0;
  ejections = 0;
  consecutiveFailures = 0;
  lastFailureAt = 0;
  checksInRow = 0; // + successes in a row, − failures in a row (active checks)
  checking = false;
  inflight = 0;
  ewmaMs: number;
  ewmaAt = 0;
  current = 0; // smooth weighted round robin
  /**
   * Breaker tickets of this backend's calls in flight admitted as half-open probes (oldest first):
   * of the current round, of a given-up round of the same phase, or of a phase now over (kept so
   * that a late report of such a probe moves nothing instead of counting as a closed-phase call's).
   * Never more than `inflight`.
   */
  readonly probes: number[] = [];
  successes = 0;
  failures = 0;

  constructor(o: Required<Pick<BackendOptions, 'id' | 'weight'>> & BackendOptions, breaker: CircuitBreaker | undefined, ewma: number) {
    this.id = o.id;
    this.url = o.url;
    this.weight = o.weight;
    this.meta = o.meta;
    this.breaker = breaker;
    this.ewmaMs = ewma;
  }

  get state(): BackendState {
    return !this.healthy ? 'down' : this.ejectedUntil > 0 ? 'ejected' : 'up';
  }

  get breakerState(): BreakerState {
    return this.breaker?.state ?? 'closed';
  }
}

type Outlier = Required<OutlierOptions>;

function checkBackend(b: BackendOptions, where: string): Required<Pick<BackendOptions, 'id' | 'weight'>> & BackendOptions {
  if (b === null || typeof b !== 'object') throw new TypeError(`${where} must be an object { id, url?, weight? }, got ${String(b)}`);
  if (typeof b.id !== 'string' || b.id.length === 0) throw new TypeError(`${where}.id must be a non-empty string, got ${String(b.id)}`);
  if (b.url !== undefined) {
    if (typeof b.url !== 'string') throw new TypeError(`${where}.url must be a string, got ${typeof b.url}`);
    let u: URL;
    try {
      u = new URL(b.url);
    } catch {
      throw new TypeError(`${where}.url is not a valid URL: ${JSON.stringify(b.url)}`);
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new TypeError(`${where}.url must be http: or https:, got ${JSON.stringify(b.url)}`);
  }
  const weight = b.weight ?? 1;
  if (typeof weight !== 'number' || !Number.isInteger(weight) || weight < 1 || weight > 1_000_000) {
    throw new RangeError(`${where}.weight must be an integer in [1, 1000000], got ${String(b.weight)}`);
  }
  return { ...b, weight };
}

/** See the file comment. Create with `engine.balancer(options)` or `new Balancer(options)`. */
export class Balancer extends EventEmitter {
  readonly name: string;
  #algorithm: BalancerAlgorithm;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #health: ResolvedHealth | undefined;
  readonly #outlier: Outlier | undefined;
  readonly #breaker: Omit<BreakerOptions, 'clock'> | undefined;
  readonly #decayMs: number;
  readonly #initialMs: number;
  readonly #penaltyMs: number;
  readonly #maxSessions: number;
  readonly #all = new Map<string, Entry>();
  /**
   * Removed backends whose calls were still in flight, by id, oldest first (each until its last call
   * ends): the identity of a backend is its object, so a re-added id is another backend, and
   * reports of the removed one's calls must not land on it (review69 D8).
   */
  readonly #gone = new Map<string, Entry[]>();
  /** Entries in #gone; at most MAX_GONE (a call never reported must not keep its backend for ever: review71 N5). */
  #goneCount = 0;
  /** Bumped by every change of the usable backends (#rebuild): #admit notices a listener's. */
  #changes = 0;
  /** Backends that are up and not ejected, in insertion order (rebuilt on every state change). */
  #up: Entry[] = [];
  #rr = 0;
  #ejected = 0;
  #nextReadmit = Infinity;
  #ring: HashRing | undefined;
  readonly #ringOptions: HashRingOptions | undefined;
  readonly #sessions = new Map<string, string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;
  /** Aborted by close(): health checks in flight end at once. */
  readonly #stopChecks = new AbortController();
  /**
   * One coarse clock for every backend's breaker (their windows' buckets), on the system clock only:
   * an injected clock is read exactly (review69 D3: a manual clock moved on still found old buckets).
   */
  #coarse: CoarseClock | undefined;
  readonly #systemClock: boolean;

  /** @throws TypeError / RangeError naming a bad option. */
  constructor(options: BalancerOptions = {}) {
    super();
    if (options === null || typeof options !== 'object') throw new TypeError('balancer options must be an object');
    const algorithm = options.algorithm ?? BALANCER_DEFAULTS.algorithm;
    if (!BALANCER_ALGORITHMS.includes(algorithm)) {
      throw new TypeError(`options.algorithm must be one of ${BALANCER_ALGORITHMS.join(', ')}; got ${String(algorithm)}`);
    }
    const name = options.name ?? BALANCER_DEFAULTS.name;
    if (typeof name !== 'string' || name.length === 0) throw new TypeError(`options.name must be a non-empty string, got ${String(name)}`);
    const num = (k: 'ewmaDecayMs' | 'initialLatencyMs' | 'failurePenaltyMs' | 'maxSessions', min: number): number => {
      const v = options[k] ?? BALANCER_DEFAULTS[k];
      if (typeof v !== 'number' || !Number.isFinite(v) || v < min) throw new RangeError(`options.${k} must be a number ≥ ${min}, got ${String(v)}`);
      return v;
    };
    this.#decayMs = num('ewmaDecayMs', 1);
    this.#initialMs = num('initialLatencyMs', 0);
    this.#penaltyMs = num('failurePenaltyMs', 0);
    this.#maxSessions = Math.floor(num('maxSessions', 1));
    if (options.clock !== undefined && typeof options.clock?.now !== 'function') throw new TypeError('options.clock.now must be a function');
    if (options.random !== undefined && typeof options.random !== 'function') throw new TypeError('options.random must be a function');
    this.#health = options.health === false ? undefined : resolveHealth(options.health ?? {});
    if (options.outlier === false) {
      this.#outlier = undefined;
    } else {
      const o = options.outlier ?? {};
      if (o === null || typeof o !== 'object') throw new TypeError('options.outlier must be an object or false');
      const d = BALANCER_DEFAULTS.outlier;
      const int = (k: keyof Outlier, min: number, max = 2 ** 31 - 1): number => {
        const v = o[k] ?? d[k];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new RangeError(`options.outlier.${k} must be an integer in [${min}, ${max}], got ${String(v)}`);
        return v;
      };
      this.#outlier = { consecutiveFailures: int('consecutiveFailures', 1), ejectMs: int('ejectMs', 1), maxEjectMs: int('maxEjectMs', 1), maxEjectedPercent: int('maxEjectedPercent', 0, 100) };
    }
    if (options.breaker !== undefined && options.breaker !== false && (options.breaker === null || typeof options.breaker !== 'object')) {
      throw new TypeError('options.breaker must be an object of breaker options or false');
    }
    this.#breaker = options.breaker === false ? undefined : (options.breaker ?? {});
    if (this.#breaker !== undefined) new CircuitBreaker('check', this.#breaker).dispose(); // validates once, here
    this.name = name;
    this.#algorithm = algorithm;
    this.#ringOptions = options.ring;
    this.#clock = options.clock ?? { now: Date.now };
    this.#systemClock = options.clock === undefined || options.clock === SYSTEM_CLOCK;
    this.#random = options.random ?? Math.random;
    this.#ring = algorithm === 'consistent-hash' ? new HashRing(options.ring) : undefined;
    const backends = options.backends ?? [];
    if (!Array.isArray(backends)) throw new TypeError(`options.backends must be an array, got ${typeof backends}`);
    const seen = new Set<string>();
    const checked = backends.map((b, i) => {
      const c = checkBackend(b, `options.backends[${i}]`);
      if (seen.has(c.id)) throw new TypeError(`options.backends[${i}].id ${JSON.stringify(c.id)} is given twice`);
      seen.add(c.id);
      this.#needsUrl(c, `options.backends[${i}]`);
      return c;
    });
    for (const [i, c] of checked.entries()) this.#ringWeight(c, `options.backends[${i}]`);
    for (const c of checked) this.#insert(c);
    this.#rebuild();
    if (this.#health !== undefined) this.#schedule(0);
  }

  /** The algorithm in use (see the file comment; {@link setAlgorithm} changes it). */
  get algorithm(): BalancerAlgorithm {
    return this.#algorithm;
  }

  /**
   * Switches to another algorithm in place. The backends keep what is known of them — health,
   * ejections, breakers, latency estimates, calls in flight — and sticky sessions stay: a new
   * balancer would start every backend up and fresh, and send calls to one known to be down.
   * @throws TypeError on an unknown algorithm; RangeError when a backend's weight is over
   *   MAX_RING_WEIGHT for `consistent-hash` (then nothing has changed).
   */
  setAlgorithm(algorithm: BalancerAlgorithm): void {
    if (!BALANCER_ALGORITHMS.includes(algorithm)) {
      throw new TypeError(`algorithm must be one of ${BALANCER_ALGORITHMS.join(', ')}; got ${String(algorithm)}`);
    }
    if (algorithm === this.#algorithm) return;
    let ring: HashRing | undefined;
    if (algorithm === 'consistent-hash') {
      // Built whole before anything changes: the ring may refuse a weight or its limits.
      ring = new HashRing(this.#ringOptions);
      for (const e of this.#all.values()) {
        if (e.weight > MAX_RING_WEIGHT) throw new RangeError(`backend ${JSON.stringify(e.id)}: weight ${e.weight} is over ${MAX_RING_WEIGHT}, the most consistent-hash takes`);
        ring.add(e.id, e.weight);
      }
    }
    this.#ring?.close?.();
    this.#ring = ring;
    this.#algorithm = algorithm;
    this.#rr = 0;
    for (const e of this.#up) e.current = 0;
  }

  /**
   * Picks a backend for one call and counts it in flight there; end the call with `report` (or
   * `release`). Synchronous and allocation-free on the common path.
   * @throws NoBackendError (ERR_HOTPATH_NO_BACKEND) when no backend may take the call;
   *   TypeError when `consistent-hash` is given no key.
   */
  pick(options?: PickOptions): Backend {
    if (this.#ejected > 0 && this.#clock.now() >= this.#nextReadmit) this.#readmit();
    const session = options?.session;
    if (session !== undefined) return this.#sticky(session, options!);
    const b = this.#choose(options);
    b.inflight++;
    return b;
  }

  /**
   * Ends a picked call with its outcome: feeds the latency estimate, the backend's breaker and
   * outlier detection. `ok: false` for a failure of the backend (refused, 5xx, timeout), not for a
   * caller's mistake.
   */
  report(backend: Backend | string, outcome: { ok: boolean; latencyMs?: number }): void {
    if (outcome === null || typeof outcome !== 'object' || typeof outcome.ok !== 'boolean') {
      throw new TypeError(`report(backend, outcome): outcome must be { ok: boolean, latencyMs?: number }, got ${String(outcome)}`);
    }
    const b = this.#entry(backend);
    if (b === undefined) return; // removed meanwhile
    if (b.inflight > 0) b.inflight--;
    const ms = outcome.latencyMs;
    const sample = typeof ms === 'number' && ms >= 0 && Number.isFinite(ms) ? ms : undefined;
    if (outcome.ok) {
      if (sample !== undefined) this.#observe(b, sample);
      b.successes++;
      b.consecutiveFailures = 0;
      b.breaker?.success(this.#ticket(b, true));
    } else {
      this.#observe(b, Math.max(sample ?? 0, this.#penaltyMs));
      b.lastFailureAt = this.#clock.now();
      b.failures++;
      b.consecutiveFailures++;
      b.breaker?.failure(this.#ticket(b, false));
      const o = this.#outlier;
      if (o !== undefined && b.consecutiveFailures >= o.consecutiveFailures && b.ejectedUntil === 0 && b.healthy) this.#eject(b, o);
    }
  }

  /** Ends a picked call without an outcome (abandoned): frees its in-flight count and probe slot. */
  release(backend: Backend | string): void {
    const b = this.#entry(backend);
    if (b === undefined) return;
    // Which call is abandoned is not known: a probe slot is given back only when every call in
    // flight on this backend holds one of the current round (so it must be one of them);
    // otherwise the slot stays taken until one of them reports (or the round is given up) —
    // never a slot freed that a probe still holds.
    const probes = b.probes;
    const br = b.breaker;
    if (br !== undefined && probes.length > 0 && probes.length >= b.inflight) {
      // The abandoned call holds a ticket: drop the least live one (a phase over, then an earlier
      // round); free a slot only when all hold one of the current round.
      let k = probes.findIndex((t) => !br.isCurrent(t));
      if (k < 0) k = probes.findIndex((t) => !br.holdsSlot(t));
      if (k >= 0) probes.splice(k, 1);
      else br.release(probes.shift()!);
    }
    if (b.inflight > 0) b.inflight--;
    this.#trim(b);
  }

  /**
   * Runs `fn` on a picked backend and reports its outcome (latency measured here); when it fails
   * and `retryable` agrees, tries another backend, up to `attempts` distinct ones. `fn` gets the
   * backend and an AbortSignal (the caller's `signal`).
   * @throws (rejects) the last backend's error, or NoBackendError when none may take the call.
   */
  async run<T>(fn: (backend: Backend, signal: AbortSignal | undefined) => Promise<T> | T, options: BalancerRunOptions = {}): Promise<T> {
    const attempts = options.attempts ?? Math.min(2, Math.max(1, this.#all.size));
    if (!Number.isInteger(attempts) || attempts < 1) throw new RangeError(`options.attempts must be a positive integer, got ${String(options.attempts)}`);
    const tried = new Set<string>();
    let last: unknown;
    for (let i = 0; i < attempts; i++) {
      let b: Backend;
      try {
        b = this.pick({ key: options.key, session: i === 0 ? options.session : undefined, exclude: tried });
      } catch (err) {
        if (i === 0) throw err;
        break; // nothing else to fail over to: the last error stands
      }
      tried.add(b.id);
      const t0 = performance.now();
      try {
        const value = await fn(b, options.signal);
        this.report(b, { ok: true, latencyMs: performance.now() - t0 });
        return value;
      } catch (err) {
        if (options.signal?.aborted) {
          this.release(b);
          throw err;
        }
        this.report(b, { ok: false, latencyMs: performance.now() - t0 });
        last = err;
        if (options.retryable !== undefined && !options.retryable(err)) break;
      }
    }
    throw last;
  }

  /** Adds a backend (it starts up; health checks pick it up on their next round). @throws TypeError on a bad or duplicate backend. */
  add(backend: BackendOptions): Backend {
    const c = checkBackend(backend, 'backend');
    if (this.#all.has(c.id)) throw new TypeError(`backend ${JSON.stringify(c.id)} already exists`);
    this.#needsUrl(c, 'backend');
    this.#ringWeight(c, 'backend');
    const e = this.#insert(c);
    this.#rebuild();
    return e;
  }

  /**
   * Removes a backend (calls in flight on it finish; their reports are ignored). False if unknown.
   * A backend added again under the same id is a new one: reports passing the old Backend object
   * never reach it; reports by id are taken as the removed one's while it has calls in flight (they
   * were picked first; an id cannot tell two calls apart — pass the object to be exact).
   */
  remove(id: string): boolean {
    const e = this.#all.get(id);
    if (e === undefined) return false;
    this.#all.delete(id);
    if (e.inflight > 0) {
      if (this.#goneCount >= MAX_GONE) {
        // The earliest removed id's oldest backend: its late reports now go by id, as before review69 D8.
        const [oldId, list] = this.#gone.entries().next().value as [string, Entry[]];
        list.shift();
        if (list.length === 0) this.#gone.delete(oldId);
        this.#goneCount--;
      }
      const gone = this.#gone.get(id);
      if (gone === undefined) this.#gone.set(id, [e]);
      else gone.push(e);
      this.#goneCount++;
    }
    if (e.ejectedUntil > 0) this.#ejected--;
    e.breaker?.dispose();
    this.#ring?.remove(id);
    this.#rebuild();
    return true;
  }

  /** Every backend, in insertion order. */
  backends(): Backend[] {
    return [...this.#all.values()];
  }

  /** Whether close() was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Stops the health checks and the breakers' timers. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopChecks.abort(); // checks in flight end now
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    for (const e of this.#all.values()) e.breaker?.dispose();
    this.#gone.clear();
    this.#goneCount = 0;
    this.#coarse?.stop();
    this.#ring?.close?.();
    this.#emit('close');
  }

  /** The ring gives a backend vnodes × weight points (2000 per unit by default): weights stay small there. */
  #ringWeight(c: { weight: number }, where: string): void {
    if (this.#ring !== undefined && c.weight > MAX_RING_WEIGHT) {
      throw new RangeError(`${where}.weight must be at most ${MAX_RING_WEIGHT} with consistent-hash (the ring's share of a backend grows with its weight: points, buckets or table entries), got ${c.weight}`);
    }
  }

  #needsUrl(c: BackendOptions, where: string): void {
    if (this.#health !== undefined && typeof this.#health.check !== 'function' && c.url === undefined) {
      throw new TypeError(`${where} has no url for its '${this.#health.check}' health check: give it a url, give health.check a function, or set health: false`);
    }
  }

  #insert(c: Required<Pick<BackendOptions, 'id' | 'weight'>> & BackendOptions): Entry {
    let breaker: CircuitBreaker | undefined;
    if (this.#breaker !== undefined) {
      if (this.#systemClock) this.#coarse ??= new CoarseClock(this.#clock);
      breaker = new CircuitBreaker(`${this.name}:${c.id}`, { ...this.#breaker, clock: this.#clock }, undefined, this.#coarse);
    }
    const known = [...this.#all.values()];
    const ewma = known.length > 0 ? known.reduce((a, e) => a + e.ewmaMs, 0) / known.length : this.#initialMs;
    // The ring first: it may refuse (its point or table limits); then nothing else has changed.
    try {
      this.#ring?.add(c.id, c.weight);
    } catch (err) {
      breaker?.dispose();
      throw err;
    }
    const e = new Entry(c, breaker, ewma);
    e.ewmaAt = this.#clock.now();
    breaker?.on('state', (to: BreakerState, from: BreakerState) => this.#emit('breaker', e, to, from));
    this.#all.set(c.id, e);
    return e;
  }

  /**
   * The backend a report or release ends a call of; undefined for a call of a removed backend (it
   * is counted out of that one, and ignored).
   */
  #entry(backend: Backend | string): Entry | undefined {
    const id = typeof backend === 'string' ? backend : backend?.id;
    if (id === undefined) return undefined;
    const gone = this.#gone.get(id);
    if (gone !== undefined) {
      const k = typeof backend === 'string' ? 0 : gone.indexOf(backend as Entry);
      if (k >= 0) {
        const old = gone[k]!;
        if (--old.inflight === 0) {
          gone.splice(k, 1);
          this.#goneCount--;
          if (gone.length === 0) this.#gone.delete(id);
        }
        return undefined;
      }
    }
    const e = this.#all.get(id);
    return e !== undefined && (typeof backend === 'string' || e === backend) ? e : undefined;
  }

  #rebuild(): void {
    this.#changes++;
    const up: Entry[] = [];
    for (const e of this.#all.values()) if (e.healthy && e.ejectedUntil === 0) up.push(e);
    this.#up = up;
    for (const e of up) e.current = 0;
  }

  /**
   * May `e` take a call? Takes a breaker probe slot when half-open. `since`: #changes when the pick
   * began (its candidates are from then).
   */
  #admit(e: Entry, since: number): boolean {
    if (e.breaker === undefined) return true;
    const ticket = e.breaker.acquire();
    // acquire() may emit (the breaker turning half-open), and a 'breaker' listener may have removed
    // (or ejected) `e` — this pick's candidates are from before: then it is not handed out
    // (review69 D9; the consistent-hash walk avoids emitting at all, see #choose).
    if (this.#changes !== since && (this.#all.get(e.id) !== e || !e.healthy || e.ejectedUntil !== 0)) {
      if (CircuitBreaker.isProbe(ticket)) e.breaker.release(ticket);
      return false;
    }
    if (CircuitBreaker.isProbe(ticket)) e.probes.push(ticket); // a half-open probe slot: its outcome may move the breaker
    return ticket >= 0;
  }

  /**
   * The breaker ticket of one of `e`'s calls as it ends (`inflight` already counts it out).
   * Reports do not say which call they end, so a probe's ticket of the present half-open phase
   * (any round: a given-up probe's late outcome counts) is used while one is outstanding: any
   * outcome of this backend during the half-open phase answers a probe. Else a failure takes the
   * ticket of a probe whose phase is over, if one is still out — it moves nothing (a probe given up
   * and failing late must not reopen the backend another probe closed); a success then counts as
   * a closed-phase call's (it can open nothing). Else 0: a call admitted while closed, of no known
   * closed phase, which moves no half-open breaker (see CircuitBreaker.acquire).
   */
  #ticket(e: Entry, ok: boolean): number {
    const b = e.breaker;
    const probes = e.probes;
    if (b === undefined || probes.length === 0) return 0;
    let k = probes.findIndex((t) => b.isCurrent(t));
    if (k < 0 && !ok) k = 0;
    const ticket = k < 0 ? 0 : probes.splice(k, 1)[0]!;
    this.#trim(e);
    return ticket;
  }

  /**
   * Keeps no more probe tickets than calls in flight (a success that took none, an abandoned call
   * that held none of the current round): the oldest of a phase over go first, then the oldest.
   */
  #trim(e: Entry): void {
    const probes = e.probes;
    const b = e.breaker;
    while (probes.length > e.inflight && b !== undefined) {
      const k = probes.findIndex((t) => !b.isCurrent(t));
      probes.splice(k < 0 ? 0 : k, 1);
    }
  }

  #none(): NoBackendError {
    if (this.#all.size === 0) return new NoBackendError(`balancer "${this.name}" has no backends`);
    const states = [...this.#all.values()].map((e) => `${e.id}: ${e.state}${e.breaker !== undefined && e.breaker.state !== 'closed' ? `, breaker ${e.breaker.state}` : ''}`);
    return new NoBackendError(`balancer "${this.name}": no backend may take the call (${states.join('; ')})`);
  }

  #choose(options: PickOptions | undefined): Entry {
    const since = this.#changes;
    const exclude = options?.exclude;
    const up = this.#up;
    const n = up.length;
    switch (this.#algorithm) {
      case 'round-robin': {
        for (let i = 0; i < n; i++) {
          const e = up[this.#rr++ % n]!;
          if (this.#rr >= 0x3fffffff) this.#rr = 0;
          if (exclude?.has(e.id) !== true && this.#admit(e, since)) return e;
        }
        throw this.#none();
      }
      case 'weighted': {
        let refused: Set<Entry> | undefined;
        for (;;) {
          let best: Entry | undefined;
          let total = 0;
          for (let i = 0; i < n; i++) {
            const e = up[i]!;
            if (refused?.has(e) === true || exclude?.has(e.id) === true) continue;
            e.current += e.weight;
            total += e.weight;
            if (best === undefined || e.current > best.current) best = e;
          }
          if (best === undefined) throw this.#none();
          best.current -= total;
          if (this.#admit(best, since)) return best;
          (refused ??= new Set()).add(best);
        }
      }
      case 'least-connections': {
        let refused: Set<Entry> | undefined;
        const start = this.#rr++ % Math.max(1, n);
        if (this.#rr >= 0x3fffffff) this.#rr = 0;
        for (;;) {
          let best: Entry | undefined;
          let bestLoad = Infinity;
          for (let k = 0; k < n; k++) {
            const e = up[(start + k) % n]!;
            if (refused?.has(e) === true || exclude?.has(e.id) === true) continue;
            const load = e.inflight / e.weight;
            if (load < bestLoad) {
              best = e;
              bestLoad = load;
            }
          }
          if (best === undefined) throw this.#none();
          if (this.#admit(best, since)) return best;
          (refused ??= new Set()).add(best);
        }
      }
      case 'p2c-ewma': {
        if (exclude === undefined || exclude.size === 0) {
          for (let attempt = 0; attempt < 2 && n > 0; attempt++) {
            let e: Entry;
            if (n === 1) {
              e = up[0]!;
            } else {
              const now = this.#clock.now();
              const i = this.#draw(up, -1, now);
              const a = up[i]!;
              const b = up[this.#draw(up, i, now)]!;
              e = this.#cost(a, now) <= this.#cost(b, now) ? a : b;
            }
            if (this.#admit(e, since)) return e;
          }
        }
        // Refused twice (breakers), or failover: the cheapest of the rest.
        const now = this.#clock.now();
        const left = up.filter((e) => exclude?.has(e.id) !== true).sort((a, b) => this.#cost(a, now) - this.#cost(b, now));
        for (const e of left) if (this.#admit(e, since)) return e;
        throw this.#none();
      }
      case 'consistent-hash': {
        const key = options?.key;
        if (key === undefined) throw new TypeError(`balancer "${this.name}" is consistent-hash: pick({ key }) needs a key`);
        const ring = this.#ring!;
        let refused: Set<string> | undefined;
        for (;;) {
          // The callback runs inside the ring's walk: it reads without side effects (retryAfterMs
          // is 0 unless the breaker is open and not yet due to probe; `state` could move it and
          // emit, and a listener could then change the balancer mid-walk).
          const id = ring.get(key, (id) => {
            if (refused?.has(id) === true || exclude?.has(id) === true) return false;
            const e = this.#all.get(id);
            return e !== undefined && e.healthy && e.ejectedUntil === 0 && (e.breaker === undefined || e.breaker.retryAfterMs() === 0);
          });
          if (id === undefined) throw this.#none();
          const e = this.#all.get(id);
          if (e !== undefined && this.#admit(e, since)) return e;
          (refused ??= new Set()).add(id);
        }
      }
    }
  }

  #sticky(session: string, options: PickOptions): Entry {
    const since = this.#changes;
    const known = this.#sessions.get(session);
    if (known !== undefined) {
      const e = this.#all.get(known);
      if (e !== undefined && e.healthy && e.ejectedUntil === 0 && options.exclude?.has(e.id) !== true && this.#admit(e, since)) {
        e.inflight++;
        // Most recently used last: the oldest idle session is the one forgotten when full.
        this.#sessions.delete(session);
        this.#sessions.set(session, known);
        return e;
      }
    }
    const e = this.#choose(this.#algorithm === 'consistent-hash' && options.key === undefined ? { ...options, key: session } : options);
    e.inflight++;
    this.#sessions.delete(session);
    if (this.#sessions.size >= this.#maxSessions) this.#sessions.delete(this.#sessions.keys().next().value!);
    this.#sessions.set(session, e.id);
    return e;
  }

  /**
   * A random index of `up` other than `not`. A backend that failed recently (within
   * ewmaDecayMs of its last failure, with no success since) is drawn again, up to twice: as a
   * candidate it would lose to anyone, which hands the win to its partner however slow that one
   * is — with three backends, one failing and one slow, the slow one would get a third of the calls.
   */
  #draw(up: readonly Entry[], not: number, now: number): number {
    // `up` is the pick's own list: a listener run by #admit may have rebuilt #up meanwhile (review69 D9).
    const n = up.length;
    let k = 0;
    for (let attempt = 0; attempt < 3; attempt++) {
      k = not < 0 ? Math.floor(this.#random() * n) : Math.floor(this.#random() * (n - 1));
      if (not >= 0 && k >= not) k++;
      const e = up[k]!;
      if (e.consecutiveFailures === 0 || now - e.lastFailureAt >= this.#decayMs) break;
    }
    return k;
  }

  /**
   * p2c's cost: the latency estimate × (calls in flight + 1) / weight. The estimate decays toward 0
   * with the time since its last sample (as Finagle's peak EWMA), so a backend that lost every
   * draw for a while — slow once, or penalised for failures — is tried again and re-measured
   * instead of starving.
   */
  #cost(e: Entry, now: number): number {
    const idle = now - e.ewmaAt;
    const ewma = idle > 0 ? e.ewmaMs * Math.exp(-idle / this.#decayMs) : e.ewmaMs;
    return (ewma + 1e-3) * (e.inflight + 1) / e.weight;
  }

  /** Peak EWMA: a slower sample is taken at once; faster ones pull it down with time constant decayMs. */
  #observe(e: Entry, ms: number): void {
    const now = this.#clock.now();
    if (ms >= e.ewmaMs) {
      e.ewmaMs = ms;
    } else {
      const w = Math.exp(-Math.max(0, now - e.ewmaAt) / this.#decayMs);
      // At least a small step per sample, so a burst of fast samples within one ms still moves it.
      const keep = Math.min(w, 0.9);
      e.ewmaMs = e.ewmaMs * keep + ms * (1 - keep);
    }
    e.ewmaAt = now;
  }

  #eject(e: Entry, o: Outlier): void {
    const cap = Math.floor((this.#all.size * o.maxEjectedPercent) / 100);
    // Never past the cap, and never the last usable backend (one that is down counts as unusable).
    if (this.#ejected >= cap || this.#up.length <= 1) return;
    const now = this.#clock.now();
    const ms = Math.min(o.maxEjectMs, o.ejectMs * 2 ** Math.min(e.ejections, 30));
    e.ejections++;
    e.ejectedUntil = now + ms;
    this.#ejected++;
    this.#nextReadmit = Math.min(this.#nextReadmit, e.ejectedUntil);
    this.#rebuild();
    this.#emit('state', e, 'ejected', 'up');
  }

  #readmit(): void {
    const now = this.#clock.now();
    let next = Infinity;
    const back: Entry[] = [];
    for (const e of this.#all.values()) {
      if (e.ejectedUntil === 0) continue;
      if (e.ejectedUntil <= now) {
        e.ejectedUntil = 0;
        e.consecutiveFailures = 0;
        this.#ejected--;
        back.push(e);
      } else {
        next = Math.min(next, e.ejectedUntil);
      }
    }
    this.#nextReadmit = next;
    if (back.length > 0) {
      this.#rebuild();
      // One that went down while ejected already said so (ejected → down): it stays down, with
      // nothing new to tell (review61: a second 'ejected → down').
      for (const e of back) if (e.healthy) this.#emit('state', e, 'up', 'ejected');
    }
  }

  #schedule(ms: number): void {
    if (this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#checkAll().catch((err: unknown) => {
        process.emitWarning(`balancer "${this.name}": a health-check round failed: ${(err as Error)?.message ?? String(err)}`, { code: 'HOTPATH_HEALTH_ERROR' });
      });
      this.#schedule(this.#health!.intervalMs);
    }, ms);
    this.#timer.unref?.();
  }

  async #checkAll(): Promise<void> {
    const h = this.#health!;
    if (this.#ejected > 0 && this.#clock.now() >= this.#nextReadmit) this.#readmit();
    await Promise.all([...this.#all.values()].map(async (e) => {
      if (e.checking) return;
      e.checking = true;
      const ok = await probe(e, h, this.#stopChecks.signal);
      e.checking = false;
      if (this.#closed || this.#all.get(e.id) !== e) return;
      e.checksInRow = ok ? Math.max(0, e.checksInRow) + 1 : Math.min(0, e.checksInRow) - 1;
      if (!e.healthy && e.checksInRow >= h.rise) this.#setHealthy(e, true);
      else if (e.healthy && -e.checksInRow >= h.fall) this.#setHealthy(e, false);
    }));
    if (!this.#closed) this.#emit('checked'); // (not after 'close': review61)
  }

  #setHealthy(e: Entry, healthy: boolean): void {
    const from = e.state;
    e.healthy = healthy;
    if (healthy) e.consecutiveFailures = 0;
    this.#rebuild();
    const to = e.state;
    if (to !== from) this.#emit('state', e, to, from);
  }

  #emit(event: string, ...args: unknown[]): void {
    try {
      this.emit(event, ...args);
    } catch (err) {
      process.emitWarning(`balancer "${this.name}": a '${event}' listener threw: ${(err as Error)?.message ?? String(err)}`, { code: 'HOTPATH_LISTENER_ERROR' });
    }
  }
}
