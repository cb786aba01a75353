/**
 * The rate limiter component: `engine.limiter(name, options)` or `new Limiter(name, options, deps)`.
 *
 * Local state lives in the engine's shared memory (a GCRA table for `token-bucket`/`gcra`, a
 * window table for `fixed-window`/`sliding-window`/`adaptive`), so the main thread and every
 * worker that opens the same name enforce one exact limit. With a Redis connector, `allow()` is
 * decided on Redis (one script round trip, Redis's clock), falls back to the `insurance` policy
 * while Redis is unavailable, and goes back to Redis by itself when the connector's breaker
 * closes. Optional quota leases take tokens from Redis in batches and spend them locally.
 */
import { isWellFormed } from '../text.js';
import { ArenaExhaustedError, RegionConflictError } from '../errors.js';
import { SYSTEM_CLOCK, type Clock } from '../options.js';
import { CoarseClock } from '../runtime/coarse-clock.js';
import type { ThreadRuntime } from '../runtime/thread.js';
import calculateSlot from 'cluster-key-slot';
import { hashTagged, type RedisConnector, type Script } from '../redis/connector.js';
import type { CounterChild, GaugeChild } from '../observe/thread-metrics.js';
import { AdaptiveLimit, type AdaptiveOptions, type AdaptiveSettings } from './adaptive.js';
import { GcraTable, gcraTableBytes, gcraTimeBase } from './gcra-table.js';
import { WindowTable, windowTableBytes } from './window-table.js';
import { LeaseTable } from './lease-table.js';
import { GCRA_SCRIPT, RESET_SCRIPT, WINDOW_SCRIPT } from './redis-scripts.js';
import { openTableRegion } from './table-region.js';
import type { Algorithm, Decision, RateLimiter } from './types.js';

/** What to do while Redis is unavailable. */
export type Insurance = 'local' | 'allow' | 'deny';

/** Options of a limiter. All optional; see LIMITER_DEFAULTS. */
export interface LimiterOptions {
  /** Default 'token-bucket'. */
  algorithm?: Algorithm;
  /** Requests per `window`. Integer 1 .. 1e9. Default 100. */
  limit?: number;
  /** The window (ms). Integer; 1 .. 2^31-1 for token-bucket/gcra, 100 .. 2^31-1 for the windowed algorithms. Default 1000. */
  window?: number;
  /** token-bucket/gcra: requests admitted at once from a full bucket. Default `limit`. */
  burst?: number;
  /** Keys held at once in shared memory (rounded up to a power of two). Default 65 536. */
  maxKeys?: number;
  /** Per Redis call (ms). Default the engine's `redisTimeoutMs`. */
  timeoutMs?: number;
  /** Decide `allow()` on Redis when the engine has one. Default true. */
  distributed?: boolean;
  /**
   * While Redis is unavailable: 'local' decides from this process's shared-memory state (each
   * process then enforces the full limit on its own), 'allow' admits everything, 'deny' refuses
   * everything. Default 'local'.
   */
  insurance?: Insurance;
  /**
   * Quota leases (opt-in; distributed mode): take up to `tokens` at once from Redis and spend them
   * locally across threads for up to `ttlMs`. Over-admission bound: README "Rate limiter".
   */
  lease?: false | { tokens?: number; ttlMs?: number };
  /** algorithm 'adaptive': how the limit moves (see AdaptiveOptions). */
  adaptive?: AdaptiveOptions;
  /** Count decisions in the engine's metrics. Default true. */
  metrics?: boolean;
}

export const LIMITER_DEFAULTS = {
  algorithm: 'token-bucket' as Algorithm,
  limit: 100,
  window: 1000,
  maxKeys: 65_536,
  distributed: true,
  insurance: 'local' as Insurance,
  leaseTokens: 100,
  metrics: true,
} as const;

/** The validated options that shape shared state (every thread opening a name must agree). */
export interface LimiterSpec {
  algorithm: Algorithm;
  limit: number;
  windowMs: number;
  burst: number;
  maxKeys: number;
  adaptive: AdaptiveSettings | undefined;
}

/** What a limiter is built on. */
export interface LimiterDeps {
  /** The thread's runtime (`engine.runtime.thread`, or a worker's `ctx.runtime`). */
  runtime: ThreadRuntime;
  /** Time source (ms). Default the system clock (read coarsely: see CoarseClock). */
  clock?: Clock;
  /** Redis, for `allow()` across processes. */
  redis?: RedisConnector;
  /** Default per-call Redis timeout (ms) when options.timeoutMs is absent. Default 50. */
  redisTimeoutMs?: number;
}

const ALGORITHMS: readonly Algorithm[] = ['token-bucket', 'gcra', 'sliding-window', 'fixed-window', 'adaptive'];
const KNOWN = new Set(['algorithm', 'limit', 'window', 'burst', 'maxKeys', 'timeoutMs', 'distributed', 'insurance', 'lease', 'adaptive', 'metrics']);
const ADAPTIVE_KNOWN = new Set(['min', 'max', 'targetLatencyMs', 'errorRate', 'backoff', 'increase', 'intervalMs', 'minSamples']);
/** Lua numbers are doubles: every intermediate must stay an exact integer. */
const LUA_EXACT = 2 ** 53;
const SPEC_BYTES = 1024;
const SPEC_READY = 0x4c535043; // 'LSPC'
const NEVER = Number.POSITIVE_INFINITY;

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === undefined || v === null) return String(v);
  return Array.isArray(v) ? 'an array' : `a ${typeof v}`;
}

function int(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`options.${name} must be an integer between ${min} and ${max}, got ${describe(v)}`);
  }
  return v;
}

function num(name: string, v: unknown, min: number, max: number, open = false): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (open && (v === min || v === max))) {
    throw new RangeError(`options.${name} must be a number ${open ? 'strictly ' : ''}between ${min} and ${max}, got ${describe(v)}`);
  }
  return v;
}

function plain(name: string, v: unknown, known: Set<string>): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError(`${name} must be an object, got ${describe(v)}`);
  for (const k of Object.keys(v)) {
    if (!known.has(k)) throw new TypeError(`${name}.${k} is not an option (known: ${[...known].join(', ')})`);
  }
  return v as Record<string, unknown>;
}

/** Validates limiter options at the public boundary (TypeError/RangeError naming the option). */
export function resolveLimiterOptions(options: LimiterOptions | undefined) {
  const o = options === undefined ? {} : plain('options', options, KNOWN);
  const algorithm = (o.algorithm ?? LIMITER_DEFAULTS.algorithm) as Algorithm;
  if (!ALGORITHMS.includes(algorithm)) throw new TypeError(`options.algorithm must be one of ${ALGORITHMS.join(', ')}, got ${describe(o.algorithm)}`);
  const bucket = algorithm === 'token-bucket' || algorithm === 'gcra';
  const limit = int('limit', o.limit ?? LIMITER_DEFAULTS.limit, 1, 1e9);
  const windowMs = int('window', o.window ?? LIMITER_DEFAULTS.window, bucket ? 1 : 100, 2 ** 31 - 1);
  if (!bucket && o.burst !== undefined) throw new TypeError(`options.burst applies to token-bucket and gcra only, not ${algorithm}`);
  const burst = int('burst', o.burst ?? limit, 1, 1e9);
  const maxKeys = int('maxKeys', o.maxKeys ?? LIMITER_DEFAULTS.maxKeys, 1, 1 << 24);
  const timeoutMs = o.timeoutMs === undefined ? undefined : int('timeoutMs', o.timeoutMs, 1, 60_000);
  if (o.distributed !== undefined && typeof o.distributed !== 'boolean') throw new TypeError(`options.distributed must be a boolean, got ${describe(o.distributed)}`);
  if (o.metrics !== undefined && typeof o.metrics !== 'boolean') throw new TypeError(`options.metrics must be a boolean, got ${describe(o.metrics)}`);
  const insurance = (o.insurance ?? LIMITER_DEFAULTS.insurance) as Insurance;
  if (!['local', 'allow', 'deny'].includes(insurance)) throw new TypeError(`options.insurance must be 'local', 'allow' or 'deny', got ${describe(o.insurance)}`);
  let lease: { tokens: number; ttlMs: number } | undefined;
  if (o.lease !== undefined && o.lease !== false) {
    const l = plain('options.lease', o.lease, new Set(['tokens', 'ttlMs']));
    lease = {
      tokens: int('lease.tokens', l.tokens ?? Math.min(LIMITER_DEFAULTS.leaseTokens, limit), 1, Math.min(0xffffff, bucket ? burst : limit)),
      ttlMs: int('lease.ttlMs', l.ttlMs ?? Math.max(1, Math.min(1000, Math.floor(windowMs / 10))), 1, 2 ** 31 - 1),
    };
  }
  let adaptive: AdaptiveSettings | undefined;
  if (algorithm === 'adaptive') {
    const a = o.adaptive === undefined ? {} : plain('options.adaptive', o.adaptive, ADAPTIVE_KNOWN);
    const min = int('adaptive.min', a.min ?? Math.max(1, Math.floor(limit / 10)), 1, limit);
    const max = int('adaptive.max', a.max ?? Math.min(1e9, limit * 10), limit, 1e9);
    adaptive = {
      initial: limit,
      min,
      max,
      // MAX_VALUE, not Infinity: the spec travels to other threads as JSON (Infinity → null)
      targetLatencyMs: a.targetLatencyMs === undefined ? Number.MAX_VALUE : num('adaptive.targetLatencyMs', a.targetLatencyMs, 0, 1e9),
      errorRate: num('adaptive.errorRate', a.errorRate ?? 0.05, 0, 1),
      backoff: num('adaptive.backoff', a.backoff ?? 0.9, 0, 1, true),
      increase: int('adaptive.increase', a.increase ?? Math.max(1, Math.round(limit / 10)), 1, 1e9),
      intervalMs: int('adaptive.intervalMs', a.intervalMs ?? windowMs, 1, 2 ** 31 - 1),
      minSamples: int('adaptive.minSamples', a.minSamples ?? 10, 1, 2 ** 31 - 1),
    };
  } else if (o.adaptive !== undefined) {
    throw new TypeError(`options.adaptive applies to algorithm 'adaptive' only, not ${algorithm}`);
  }
  const spec: LimiterSpec = { algorithm, limit, windowMs, burst: bucket ? burst : limit, maxKeys, adaptive };
  return {
    spec,
    timeoutMs,
    distributed: o.distributed ?? LIMITER_DEFAULTS.distributed,
    insurance,
    lease,
    metrics: o.metrics ?? LIMITER_DEFAULTS.metrics,
  };
}

/** Region names are at most 48 bytes; the longest prefix is `hotpath:ls:`. */
const NAME_MAX_BYTES = 36;

function checkName(name: unknown): string {
  if (typeof name !== 'string' || name.length === 0 || Buffer.byteLength(name) > NAME_MAX_BYTES) {
    throw new TypeError(`limiter name must be a non-empty string of at most ${NAME_MAX_BYTES} UTF-8 bytes, got ${describe(name)}`);
  }
  // Its Redis keys are `hotpath:l:<name>:{<key>}`: with a brace in names, limiter "a" with key
  // "x}:{y" and limiter "a:{x}" with key "y" would share the key hotpath:l:a:{x}:{y}.
  // Well-formed too: Redis and the arena keep names as UTF-8, where "n\ud800" and "n\ufffd" are one
  // name (review46: two limiters then shared every Redis key).
  if (!isWellFormed(name)) throw new TypeError(`limiter name must be well-formed UTF-16 (no lone surrogate), got ${describe(name)}`);
  if (name.includes('{') || name.includes('}')) {
    throw new TypeError(`limiter name must not contain "{" or "}" (its Redis keys are hash-tagged hotpath:l:<name>:{<key>}), got ${describe(name)}`);
  }
  return name;
}

function powerOfTwo(n: number): number {
  let c = 1;
  while (c < n) c *= 2;
  return c;
}

/** Per-limiter decision counters by outcome and source. */
interface Counters {
  allowed: CounterChild[];
  denied: CounterChild[];
  fallback: GaugeChild;
}
/** A decision's source: an index into SOURCES (the label value). */
type Source = number;
const SOURCES = ['local', 'redis', 'lease', 'insurance'] as const;
const SRC_LOCAL = 0;
const SRC_REDIS = 1;
const SRC_LEASE = 2;
const SRC_INSURANCE = 3;

/** A decision waiting for the next batch to Redis. */
interface Pending {
  key: string;
  cost: number;
  want: number;
  resolve: (d: Decision) => void;
}

/** Most keys per script call (its KEYS and ARGV grow with it; Redis runs it in one go). */
const BATCH = 128;

/**
 * The checks of a limiter's options that depend on where it decides (before anything is shared).
 * @throws RangeError when Redis's Lua cannot hold its arithmetic exactly; TypeError for a lease
 *   without distributed mode.
 */
function checkForRedis(o: ReturnType<typeof resolveLimiterOptions>, deps: LimiterDeps): void {
  const spec = o.spec;
  if (deps.redis !== undefined && o.distributed) {
    if (spec.algorithm === 'token-bucket' || spec.algorithm === 'gcra') {
      const { tau, scale } = gcraTimeBase({ limit: spec.limit, windowMs: spec.windowMs, burst: spec.burst });
      if (Number(tau) * 2 >= LUA_EXACT || scale * spec.windowMs >= LUA_EXACT) {
        throw new RangeError(`options.burst ${spec.burst} with limit ${spec.limit} per ${spec.windowMs} ms needs integers beyond 2^53 in Redis's Lua; choose a limit and window with a larger common divisor`);
      }
    } else {
      const maxLimit = spec.adaptive?.max ?? spec.limit;
      if (maxLimit * spec.windowMs * 2 >= LUA_EXACT) {
        throw new RangeError(`options.limit × options.window (${maxLimit} × ${spec.windowMs}) must stay below 2^52 for Redis's Lua arithmetic`);
      }
    }
  } else if (o.lease !== undefined && deps.redis !== undefined) {
    throw new TypeError('options.lease needs distributed mode (options.distributed is false)');
  }
}

/**
 * Publishes the limiter's spec in shared memory (so a worker can open it by name) or checks that
 * an existing one matches.
 */
function publishSpec(rt: ThreadRuntime, name: string, spec: LimiterSpec | undefined): LimiterSpec {
  const text = spec === undefined ? '' : JSON.stringify(spec);
  const bytes = new TextEncoder().encode(text);
  if (bytes.length > SPEC_BYTES - 68) throw new RangeError(`limiter "${name}": options too large to share`);
  if (spec === undefined && rt.arena.find(`hotpath:ls:${name}`) === undefined) {
    throw new TypeError(`limiter "${name}" does not exist yet: create it with options first`);
  }
  let created = false;
  const offset = openTableRegion(rt, `hotpath:ls:${name}`, SPEC_BYTES, SPEC_READY,
    (_big, u32) => {
      u32[0] = bytes.length;
      new Uint8Array(rt.memory.buffer, u32.byteOffset + 64, bytes.length).set(bytes);
      created = true;
    },
    () => true);
  if (created) return spec!;
  const len = new Uint32Array(rt.memory.buffer, offset, 1)[0]!;
  const stored = new TextDecoder().decode(new Uint8Array(rt.memory.buffer, offset + 64, len).slice());
  if (spec !== undefined && stored !== text) {
    throw new RegionConflictError(`hotpath:ls:${name}`, SPEC_BYTES, SPEC_BYTES,
      `limiter "${name}" already exists with other options (${stored}); every thread must open it with the same algorithm, limit, window, burst and maxKeys`);
  }
  return JSON.parse(stored) as LimiterSpec;
}

export class Limiter implements RateLimiter {
  readonly name: string;
  readonly algorithm: Algorithm;
  readonly windowMs: number;
  /** The validated shape of the limiter (shared by every thread that opens the name). */
  readonly spec: LimiterSpec;
  readonly #clock: Clock;
  /** Set when the clock is the coarse system clock: local decisions are then counted in batches. */
  readonly #coarse: CoarseClock | undefined;
  #pendingAllowed = 0;
  #pendingDenied = 0;
  #countedAt = 0;
  readonly #gcra: GcraTable | undefined;
  readonly #window: WindowTable | undefined;
  readonly #adaptive: AdaptiveLimit | undefined;
  readonly #maxCost: number;
  readonly #redis: RedisConnector | undefined;
  readonly #script: Script | undefined;
  readonly #resetScript: Script | undefined;
  readonly #scriptArgs: Array<string | number>;
  readonly #timeoutMs: number;
  readonly #insurance: Insurance;
  readonly #lease: { tokens: number; ttlMs: number; table: LeaseTable } | undefined;
  /** Until then (ms), the lease table had no room for a grant: no lease is asked for (see #send). */
  #leaseFullUntil = 0;
  readonly #fetching = new Map<string, Promise<void>>();
  readonly #prefix: string;
  readonly #counters: Counters | undefined;
  #queue: Pending[] = [];
  #fallback = false;

  /**
   * Creates the limiter `name`, or opens it when another thread created it with the same
   * options. Without `options`, opens an existing limiter by name (e.g. in a worker).
   * @throws TypeError / RangeError naming a bad option; RegionConflictError when `name` exists
   *   with another shape; ArenaExhaustedError when the shared memory has no room for its table.
   */
  constructor(name: string, options: LimiterOptions | undefined, deps: LimiterDeps) {
    this.name = checkName(name);
    const rt = deps.runtime;
    const o = resolveLimiterOptions(options);
    // Everything that can refuse these options is checked before the spec is published: a spec
    // published for options that then failed made the name unusable for the life of the process,
    // even with good options (review41). (Opening by name reads the spec its creator checked.)
    if (options !== undefined) {
      checkForRedis(o, deps);
      const s = o.spec;
      const capacity = powerOfTwo(s.maxKeys);
      const bucket = s.algorithm === 'token-bucket' || s.algorithm === 'gcra';
      if (bucket) gcraTimeBase({ limit: s.limit, windowMs: s.windowMs, burst: s.burst }); // its RangeError, before publishing
      const need = (bucket ? gcraTableBytes(capacity) : windowTableBytes(capacity)) + 4096;
      if (rt.arena.find(`hotpath:ls:${name}`) === undefined && rt.arena.freeBytes < need) {
        throw new ArenaExhaustedError(`hotpath:l:${name}`, need, rt.arena.freeBytes, rt.arena.totalBytes);
      }
    }
    const spec = publishSpec(rt, name, options === undefined ? undefined : o.spec);
    this.spec = spec;
    this.algorithm = spec.algorithm;
    this.windowMs = spec.windowMs;
    const source = deps.clock ?? SYSTEM_CLOCK;
    this.#coarse = source === SYSTEM_CLOCK ? new CoarseClock(source) : undefined;
    this.#clock = this.#coarse ?? source;
    const now = source.now();
    const capacity = powerOfTwo(spec.maxKeys);
    const bucket = spec.algorithm === 'token-bucket' || spec.algorithm === 'gcra';
    if (bucket) {
      this.#gcra = new GcraTable(rt, `hotpath:l:${name}`, { limit: spec.limit, windowMs: spec.windowMs, burst: spec.burst }, { epochMs: now, capacity });
      this.#maxCost = spec.burst;
    } else {
      // Windows align to multiples of the window since the Unix epoch, as on Redis.
      const epoch = Math.floor(now / spec.windowMs) * spec.windowMs;
      this.#window = new WindowTable(rt, `hotpath:l:${name}`, spec.windowMs, spec.algorithm !== 'fixed-window', capacity, epoch);
      if (spec.adaptive !== undefined) this.#adaptive = new AdaptiveLimit(rt, `hotpath:la:${name}`, spec.adaptive, now);
      this.#maxCost = spec.adaptive?.max ?? spec.limit;
    }
    this.#insurance = o.insurance;
    this.#timeoutMs = o.timeoutMs ?? deps.redisTimeoutMs ?? 50;
    this.#prefix = `hotpath:l:${name}:`;
    if (deps.redis !== undefined && o.distributed) {
      this.#redis = deps.redis;
      if (bucket) {
        const { T, tau, scale } = gcraTimeBase({ limit: spec.limit, windowMs: spec.windowMs, burst: spec.burst });
        this.#script = deps.redis.defineScript('hotpath:limiter:gcra:v5', GCRA_SCRIPT);
        this.#scriptArgs = [T, Number(tau), scale];
      } else {
        this.#script = deps.redis.defineScript('hotpath:limiter:window:v5', WINDOW_SCRIPT);
        this.#scriptArgs = [spec.windowMs];
      }
      this.#resetScript = deps.redis.defineScript('hotpath:limiter:reset:v1', RESET_SCRIPT);
      if (o.lease !== undefined) {
        this.#lease = { ...o.lease, table: new LeaseTable(rt, `hotpath:ll:${name}`, capacity, now) };
      }
    } else {
      this.#scriptArgs = [];
    }
    this.#coarse?.onIdle(this.#flushCounts);
    if (o.metrics && rt.metrics.enabled) {
      const decisions = rt.metrics.counter('hotpath_limiter_decisions_total', ['limiter', 'result', 'source']);
      const by = (outcome: string): CounterChild[] => SOURCES.map((s) => decisions.labels(name, outcome, s));
      this.#counters = {
        allowed: by('allowed'),
        denied: by('denied'),
        fallback: rt.metrics.gauge('hotpath_limiter_fallback', ['limiter']).labels(name),
      };
    }
  }

  /** Requests per window now (for `adaptive`, the current limit). */
  get limit(): number {
    return this.#adaptive === undefined ? this.spec.limit : this.#adaptive.current(this.#clock.now());
  }

  /** True while `allow()` decides by the insurance policy because Redis is unavailable. */
  get fallback(): boolean {
    return this.#fallback;
  }

  /** True when `allow()` goes to Redis (while it is available). */
  get distributed(): boolean {
    return this.#redis !== undefined;
  }

  /**
   * Decides from local shared-memory state, on any thread, without I/O.
   * @throws TypeError for a non-string key; RangeError for a cost that is not an integer in 1 .. burst (or limit).
   */
  allowSync(key: string, cost = 1): Decision {
    this.#check(key, cost);
    const d = this.#local(key, cost, false);
    if (this.#coarse === undefined) this.#count(d.allowed, SRC_LOCAL);
    else {
      // Batched: plain adds here, one shared add per outcome per clock tick (and when the clock
      // goes idle), so metrics cost ~1 ns, not a WASM call, per decision. A scrape can miss at most
      // the last tick's (~1 ms of) decisions of a thread that is still busy.
      if (d.allowed) this.#pendingAllowed++;
      else this.#pendingDenied++;
      if (this.#lastNow !== this.#countedAt) this.#flushCounts();
    }
    return d;
  }

  readonly #flushCounts = (): void => {
    const c = this.#counters;
    this.#countedAt = this.#lastNow;
    if (c !== undefined) {
      if (this.#pendingAllowed > 0) c.allowed[SRC_LOCAL]!.inc(this.#pendingAllowed);
      if (this.#pendingDenied > 0) c.denied[SRC_LOCAL]!.inc(this.#pendingDenied);
    }
    this.#pendingAllowed = 0;
    this.#pendingDenied = 0;
  };

  /** What `allowSync` would answer, without taking anything. */
  peek(key: string, cost = 1): Decision {
    this.#check(key, cost);
    return this.#local(key, cost, true);
  }

  /**
   * Decides on Redis when distributed (one script round trip), else locally. Never rejects for
   * Redis trouble: the insurance policy answers instead.
   * @throws TypeError / RangeError synchronously for a bad key or cost (as allowSync).
   */
  allow(key: string, cost = 1): Promise<Decision> {
    if (this.#redis === undefined) return Promise.resolve(this.allowSync(key, cost));
    this.#check(key, cost);
    if (this.#lease !== undefined) return this.#leased(key, cost);
    return this.#remote(key, cost, cost);
  }

  /**
   * Gives `key` its full allowance back: locally, and on Redis when distributed.
   * @throws (rejects) ERR_HOTPATH_REDIS_UNAVAILABLE / ERR_HOTPATH_REDIS_ERROR when the Redis part
   *   fails (the local part is done by then).
   */
  async reset(key: string): Promise<void> {
    this.#check(key, 1);
    const now = this.#clock.now();
    this.#gcra?.reset(key, now);
    this.#window?.reset(key, now);
    // This process's lease too, before Redis writes its tokens off (review74: kept, they were
    // spent on top of the full allowance). Other processes' leases lapse on their own (ttlMs).
    this.#lease?.table.reset(key, now);
    if (this.#resetScript !== undefined) {
      await this.#resetScript.run([hashTagged(this.#prefix, key)], [], { timeoutMs: this.#timeoutMs });
    }
  }

  /** adaptive: a request finished well. */
  recordSuccess(): void {
    this.#adaptiveOnly('recordSuccess').success(this.#clock.now());
  }

  /** adaptive: a request failed (counts as a drop signal). */
  recordFailure(): void {
    this.#adaptiveOnly('recordFailure').failure(this.#clock.now());
  }

  /** adaptive: a request took `ms` (a success; a drop signal above `targetLatencyMs`). */
  recordLatency(ms: number): void {
    if (typeof ms !== 'number' || !(ms >= 0)) throw new RangeError(`recordLatency(ms) needs a number ≥ 0, got ${describe(ms)}`);
    this.#adaptiveOnly('recordLatency').latency(ms, this.#clock.now());
  }

  #adaptiveOnly(method: string): AdaptiveLimit {
    if (this.#adaptive === undefined) throw new TypeError(`${method}() applies to algorithm 'adaptive' only; limiter "${this.name}" is ${this.algorithm}`);
    return this.#adaptive;
  }

  #check(key: string, cost: number): void {
    if (typeof key !== 'string') throw new TypeError(`limiter "${this.name}": key must be a string, got ${describe(key)}`);
    if (typeof cost !== 'number' || !Number.isInteger(cost) || cost < 1 || cost > this.#maxCost) {
      throw new RangeError(`limiter "${this.name}": cost must be an integer between 1 and ${this.#maxCost}, got ${describe(cost)}`);
    }
  }

  #lastNow = 0;

  #local(key: string, cost: number, peek: boolean): Decision {
    const now = this.#clock.now();
    this.#lastNow = now;
    if (this.#gcra !== undefined) return peek ? this.#gcra.peek(key, cost, now) : this.#gcra.take(key, cost, now);
    const limit = this.#adaptive === undefined ? this.spec.limit : this.#adaptive.current(now);
    return this.#window!.take(key, cost, limit, now, peek);
  }

  #count(allowed: boolean, source: Source): void {
    const c = this.#counters;
    if (c !== undefined) (allowed ? c.allowed : c.denied)[source]!.inc();
  }

  #setFallback(on: boolean): void {
    if (this.#fallback === on) return;
    this.#fallback = on;
    this.#counters?.fallback.set(on ? 1 : 0);
  }

  /**
   * Queues a decision for Redis taking `cost` (with `want` > cost: a lease request, granted up to
   * `want`). Decisions asked for in one tick go to Redis together: one script call per hash slot
   * (at most BATCH keys each), so 64 concurrent callers cost one round trip, not 64.
   */
  #remote(key: string, cost: number, want: number): Promise<Decision> {
    if (!this.#redis!.available) return Promise.resolve(this.#insure(key, cost));
    return new Promise<Decision>((resolve) => {
      this.#queue.push({ key, cost, want, resolve });
      if (this.#queue.length === 1) queueMicrotask(this.#flush);
    });
  }

  readonly #flush = (): void => {
    const items = this.#queue;
    this.#queue = [];
    if (!this.#redis!.isCluster) {
      for (let at = 0; at < items.length; at += BATCH) void this.#send(items.slice(at, at + BATCH));
      return;
    }
    const bySlot = new Map<number, Pending[]>();
    // The slot of the key Redis sees, after ioredis's keyPrefix (a prefix that is a hash tag puts
    // every key in one slot: one batch, not one per key's own slot).
    const keyPrefix = this.#redis!.keyPrefix;
    for (const item of items) {
      const slot = calculateSlot(keyPrefix + hashTagged(this.#prefix, item.key));
      const group = bySlot.get(slot);
      if (group === undefined) bySlot.set(slot, [item]);
      else group.push(item);
    }
    for (const group of bySlot.values()) {
      for (let at = 0; at < group.length; at += BATCH) void this.#send(group.slice(at, at + BATCH));
    }
  };

  /** One script call for `items`; every item resolves (by Redis, or by the insurance policy). */
  async #send(items: Pending[]): Promise<void> {
    const limit = this.#adaptive === undefined ? this.spec.limit : this.#adaptive.current(this.#clock.now());
    const args: Array<string | number> = this.#gcra !== undefined
      ? [...this.#scriptArgs, 0]
      : [this.windowMs, limit, this.algorithm === 'fixed-window' ? 0 : 1, 0];
    const keys = new Array<string>(items.length);
    const first = items[0]!;
    let uniform = true;
    for (let j = 0; j < items.length; j++) {
      const item = items[j]!;
      keys[j] = hashTagged(this.#prefix, item.key);
      if (item.cost !== first.cost || item.want !== first.want) uniform = false;
    }
    // One cost and want for the whole batch when every decision has the same (the usual case:
    // cost 1, no lease): two arguments instead of two per key, on both sides of the socket.
    if (uniform) args.push(first.cost, first.want);
    else for (const item of items) args.push(item.cost, item.want);
    let r: number[];
    try {
      r = (await this.#script!.run(keys, args, { timeoutMs: this.#timeoutMs, direct: true })) as number[];
    } catch {
      // Unavailable, timed out, or Redis answered an error (all HotpathErrors from the
      // connector): the insurance policy decides; nothing rejects, nothing is left pending.
      for (const item of items) item.resolve(this.#insure(item.key, item.cost));
      return;
    }
    this.#setFallback(false);
    const now = this.#clock.now();
    // Three numbers per key (redis-scripts.ts): remaining, or -1 - remaining when denied; resetMs;
    // granted when allowed, retryAfterMs (-1 = never) when denied.
    for (let j = 0; j < items.length; j++) {
      const item = items[j]!;
      const o = j * 3;
      const v = r[o]!;
      const x = r[o + 2]!;
      const allowed = v >= 0;
      if (item.want > item.cost && allowed) {
        const granted = x - item.cost; // this call spends `cost` of what Redis granted
        if (granted > 0 && this.#lease!.table.grant(item.key, granted, now, this.#lease!.ttlMs) < 0) {
          // No room in the lease table (full, or this key's probe window full): those tokens are
          // lost (taken on Redis, held nowhere). Until a lease could have expired, keys without
          // one ask Redis for their cost only — else every request burnt a whole lease (review41:
          // 20 of 1000 admitted instead of 1000).
          this.#leaseFullUntil = now + this.#lease!.ttlMs;
        }
        this.#count(true, SRC_LEASE);
      } else {
        this.#count(allowed, SRC_REDIS);
      }
      item.resolve(allowed
        ? { allowed, limit, remaining: v, resetMs: r[o + 1]!, retryAfterMs: 0 }
        : { allowed, limit, remaining: -1 - v, resetMs: r[o + 1]!, retryAfterMs: x < 0 ? NEVER : x });
    }
  }

  #insure(key: string, cost: number): Decision {
    this.#setFallback(true);
    let d: Decision;
    if (this.#insurance === 'local') d = this.#local(key, cost, false);
    else {
      // Nothing is known of the key: numbers no state contradicts (review74: remaining went
      // negative for a cost over the limit, and resetMs 0 said the key was whole again).
      const allowed = this.#insurance === 'allow';
      const limit = this.limit;
      d = { allowed, limit, remaining: allowed ? Math.max(0, limit - cost) : 0, resetMs: this.#wholeAfterMs(), retryAfterMs: allowed ? 0 : this.windowMs };
    }
    this.#count(d.allowed, SRC_INSURANCE);
    return d;
  }

  /**
   * The longest a key can take to be whole again after a decision, for a decision made without
   * its state (insurance 'allow'/'deny', a lease): a bucket refills its burst, a fixed window
   * ends, a sliding window's count (adaptive's too) leaves its previous window as well.
   */
  #wholeAfterMs(): number {
    const { algorithm, windowMs, burst, limit } = this.spec;
    if (algorithm === 'token-bucket' || algorithm === 'gcra') return Math.ceil((burst * windowMs) / limit);
    // (adaptive counts in a sliding window too: review75)
    return algorithm === 'fixed-window' ? windowMs : 2 * windowMs;
  }

  /**
   * Lease mode: spend from the local lease (any thread's grant); when it is empty, one request per
   * key and thread goes to Redis for up to `tokens` more (callers meanwhile wait for it and then
   * try the lease again).
   */
  async #leased(key: string, cost: number): Promise<Decision> {
    const lease = this.#lease!;
    for (let attempt = 0; ; attempt++) {
      const left = lease.table.spend(key, cost, this.#clock.now());
      if (left >= 0) {
        this.#count(true, SRC_LEASE);
        // resetMs: the key's state is on Redis, not here: the longest it can take to be whole.
        return { allowed: true, limit: this.limit, remaining: left, resetMs: this.#wholeAfterMs(), retryAfterMs: 0 };
      }
      const pending = this.#fetching.get(key);
      if (pending === undefined || attempt > 0) break;
      await pending;
    }
    let done!: () => void;
    const fetching = new Promise<void>((resolve) => (done = resolve));
    this.#fetching.set(key, fetching);
    try {
      const want = this.#clock.now() < this.#leaseFullUntil ? cost : Math.max(cost, lease.tokens);
      return await this.#remote(key, cost, want);
    } finally {
      this.#fetching.delete(key);
      done();
    }
  }
}
