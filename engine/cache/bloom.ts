/**
 * A bloom filter in the shared arena (bits set by the WASM kernel, wasm/bloom.ts): the cache's
 * set of keys that may exist in Redis, so that a miss for a key nobody ever wrote skips the Redis
 * round trip. Every thread opens the same filter by name and sees every other thread's adds.
 *
 * A plain bloom filter only grows; keys that left Redis would stay "maybe" forever and the
 * filter would saturate. So the bits are split into three GENERATIONS of equal size. With
 * g = floor(now / horizonMs):
 *  - `add` sets the key's bits in array g % 3;
 *  - `mightContain` tests arrays g % 3 and (g - 1) % 3;
 *  - array (g + 1) % 3 is zeroed ("prepared" for generation g + 1) during the second half of
 *    generation g, by the first thread to get there, and at the latest by the first thread to
 *    enter g + 1 (the others wait for it: nobody adds to an array before it was zeroed).
 * Hence a key added at t is found until at least t + horizonMs (in fact until the end of the
 * generation after t's), and a key no longer added is forgotten after at most 2 × horizonMs.
 *
 * Region layout (`bytes` = 64 + 3 × bits / 8):
 * ```
 * +0   i64 claim        the highest generation a thread has claimed to prepare (CAS, only grows)
 * +8   i64 prepared     the highest generation whose arrays are ready (CAS max, only grows)
 * +16  i64 trustedFrom  ms; `trusted(now)` is now ≥ this (CAS max in the kernel, only grows)
 * +24  u32 mask (bits - 1)   +28 u32 hashes (k)   +32 f64 horizonMs
 * +40  i32 ready flag 'BLM1' (openTableRegion)   +44 u32 arrays zeroed by generation changes
 * +48 .. +63 reserved
 * +64             array 0: bits / 8 bytes   (layout of one array: wasm/bloom.ts)
 * +64 + bits/8    array 1
 * +64 + 2·bits/8  array 2
 * ```
 * Preparing generation x (claim CAS from c < x to x, then): zero array x % 3, and also array
 * (x - 1) % 3 when the prepared generation was older than x - 1 (an idle gap: nobody added during
 * x - 1, and that array still holds keys from x - 4 or before); then raise `prepared` to x and
 * notify waiters. A thread uses generation g only once prepared ≥ g.
 *
 * Clock assumption: the `now` values of different threads agree within horizonMs / 2. Array
 * (g + 1) % 3 is read by threads still in g - 1 and is zeroed only from the middle of g on, so a
 * thread whose `now` lags the fastest thread's by less than half a horizon never misses a key it
 * should find. (Same process, same clock: microseconds apart; the engine's coarse clock is
 * ≤ 1 ms stale.) A `now` further behind than that reads and writes arrays of other generations:
 * its adds may be lost early (a false negative), which is why the cache must never feed it
 * timestamps from another machine.
 *
 * The false-positive rate: every array is sized for `expectedKeys` distinct keys per horizon, and
 * a lookup tests two arrays, so each gets p1 = 1 - sqrt(1 - falsePositiveRate) (two tests together
 * stay within the rate asked). bits = m is the smallest power of two at or above the optimum
 * -n·ln(p1) / ln(2)² where an integer k meets p1 (so m is up to 2× the optimum, rarely 4×); k is
 * then the smallest number of probes whose theoretical rate (1 - e^(-kn/m))^k meets p1 — fewer
 * probes (memory touches) per call than the k that would minimise the rate at that m, and still
 * the rate asked for. (Defaults, 1M keys at 1%: m = 2^24, k = 3, 6 MiB for the three arrays.)
 *
 * Every bit operation is a kernel call (wasm/bloom.ts). A JS path over an Int32Array view of the
 * same bits with Atomics.load / Atomics.or measured 3–4× slower on Node 20 (add of a new key +
 * a two-array lookup: ~60 ns by the kernel, ~200–240 ns in JS), so there is none.
 */
import { RegionConflictError } from '../errors.js';
import { openTableRegion } from '../limiter/table-region.js';
import type { KernelExports } from '../runtime/wasm.js';
import type { ThreadRuntime } from '../runtime/thread.js';

/** Sizing and ageing of a {@link SharedBloom}. */
export interface BloomOptions {
  /** Distinct keys added per horizon that the filter is sized for. Default 1 000 000. */
  expectedKeys?: number;
  /** The rate of "maybe" answers for keys never added, at `expectedKeys` keys per horizon. Default 0.01. */
  falsePositiveRate?: number;
  /** ms a key stays in the filter at least (it is forgotten after at most twice this). Required. */
  horizonMs: number;
}

/** What {@link SharedBloom.plan} derives from the options. */
export interface BloomPlan {
  /** Bits per generation array (a power of two). */
  bits: number;
  /** Probes per key (k). */
  hashes: number;
  /** Bytes of the shared region (header + three arrays). */
  bytes: number;
  /** Theoretical false-positive rate of one array holding `expectedKeys` keys. */
  arrayFalsePositiveRate: number;
}

/** Counters of this thread's instance (plain fields: nothing shared is touched per call). */
export interface BloomStats {
  /** `add` calls on this instance. */
  adds: number;
  /** Of those, the adds that set at least one new bit (a key new to the current generation). */
  freshAdds: number;
  /** `mightContain` calls on this instance. */
  checks: number;
  /** Of those, the "maybe" answers. */
  positives: number;
  /** The generation this instance last worked in (floor(now / horizonMs); NaN before its first call). */
  generation: number;
  /** Arrays zeroed by generation changes, by any thread, since the filter was created. */
  arraysCleared: number;
  /** ms from which the filter's "no" is trusted (see {@link SharedBloom.trusted}). */
  trustedFrom: number;
}

const HEADER = 64;
const READY = 0x314d4c42; // 'BLM1'
const MIN_BITS = 512; // 64 bytes: every array starts on a cache line
const MAX_BITS = 2 ** 32; // u32 bit indexes
const MAX_HASHES = 32;
const NONE = -(2n ** 63n); // "no generation yet" in claim / prepared
// i64 indexes in the header
const W_CLAIM = 0;
const W_PREPARED = 1;
const W_TRUST_AT = 16; // byte offset of trustedFrom
// u32 indexes in the header
const U_MASK = 6;
const U_HASHES = 7;
const U_CLEARED = 11;
/** How long a thread waits for another to prepare a generation before going ahead without it. */
const PREPARE_WAIT_MS = 1000;

/**
 * A generational bloom filter shared by every thread of an engine (see the module comment for
 * the guarantees and the layout). Open it with {@link SharedBloom.open}; hash keys in JS (e.g.
 * `KeyHash` of engine/runtime/key-hash.ts) and pass the two 32-bit halves.
 */
export class SharedBloom {
  /** Bits per generation array (m, a power of two). */
  readonly bits: number;
  /** Probes per key (k). */
  readonly hashes: number;
  /** Bytes of the shared region (header + three arrays). */
  readonly bytes: number;
  /** ms a key is kept at least (see the module comment). */
  readonly horizonMs: number;

  readonly #k: KernelExports;
  readonly #base: number;
  readonly #mask: number;
  readonly #arrayBytes: number;
  readonly #big: BigInt64Array;
  readonly #u32: Uint32Array;
  // This thread's view of the current generation: refreshed when `now` leaves [#start, #edge).
  #g = Number.NaN;
  #start = Number.POSITIVE_INFINITY;
  #edge = Number.NEGATIVE_INFINITY;
  #cur = 0;
  #prev = 0;
  // Thread-local counters.
  #adds = 0;
  #fresh = 0;
  #checks = 0;
  #positives = 0;

  private constructor(rt: ThreadRuntime, name: string, plan: BloomPlan, horizonMs: number) {
    this.bits = plan.bits;
    this.hashes = plan.hashes;
    this.bytes = plan.bytes;
    this.horizonMs = horizonMs;
    this.#k = rt.kernels;
    this.#mask = (plan.bits - 1) >>> 0;
    this.#arrayBytes = plan.bits / 8;
    const mask = this.#mask;
    const k = plan.hashes;
    this.#base = openTableRegion(rt, name, plan.bytes, READY,
      (big, u32) => {
        big[W_CLAIM] = NONE;
        big[W_PREPARED] = NONE;
        u32[U_MASK] = mask;
        u32[U_HASHES] = k;
        new Float64Array(u32.buffer, u32.byteOffset + 32, 1)[0] = horizonMs;
      },
      (_big, u32) => u32[U_MASK] === mask && u32[U_HASHES] === k &&
        new Float64Array(u32.buffer, u32.byteOffset + 32, 1)[0] === horizonMs);
    this.#big = new BigInt64Array(rt.memory.buffer, this.#base, 2);
    this.#u32 = new Uint32Array(rt.memory.buffer, this.#base, 16);
  }

  /**
   * The filter `name` in `rt`'s arena, created on first use. Every thread that opens one name must
   * give the same options.
   * @throws TypeError / RangeError naming `options.bloom.<field>` for a bad option.
   * @throws ArenaExhaustedError when the arena has no room (raise the engine's `memory` option).
   * @throws RegionConflictError when `name` exists with other options.
   */
  static open(rt: ThreadRuntime, name: string, options: BloomOptions): SharedBloom {
    const plan = SharedBloom.plan(options);
    try {
      return new SharedBloom(rt, name, plan, options.horizonMs);
    } catch (err) {
      if (err instanceof RegionConflictError && !/never initialised/.test(err.message)) {
        throw new RegionConflictError(name, 0, plan.bytes,
          `shared memory region "${name}" exists with another layout: a bloom filter opened with other options (every thread must give the same expectedKeys, falsePositiveRate and horizonMs), or another structure of that name`);
      }
      throw err;
    }
  }

  /**
   * The size {@link SharedBloom.open} would give a filter with these options (for planning the
   * arena), without creating anything.
   * @throws TypeError / RangeError naming `options.bloom.<field>` for a bad option.
   */
  static plan(options: BloomOptions): BloomPlan {
    if (typeof options !== 'object' || options === null) throw new TypeError(`options.bloom must be an object, got ${String(options)}`);
    const n = options.expectedKeys ?? 1_000_000;
    const p = options.falsePositiveRate ?? 0.01;
    const h = options.horizonMs;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 2 ** 31) {
      throw new RangeError(`options.bloom.expectedKeys must be an integer between 1 and 2^31, got ${String(n)}`);
    }
    if (typeof p !== 'number' || !(p > 0 && p < 0.5)) {
      throw new RangeError(`options.bloom.falsePositiveRate must be a number above 0 and below 0.5, got ${String(p)}`);
    }
    if (typeof h !== 'number' || !Number.isFinite(h) || h <= 0) {
      throw new RangeError(`options.bloom.horizonMs must be a positive number of ms, got ${String(h)}`);
    }
    const p1 = 1 - Math.sqrt(1 - p);
    const optimal = Math.ceil((-n * Math.log(p1)) / (Math.LN2 * Math.LN2));
    let m = MIN_BITS;
    while (m < optimal) m *= 2;
    if (m > MAX_BITS) {
      throw new RangeError(`options.bloom.expectedKeys ${n} at falsePositiveRate ${p} needs ${optimal} bits per generation; at most 2^32 fit (raise falsePositiveRate or lower expectedKeys)`);
    }
    // The fewest probes that meet p1. The optimum above assumes a real-valued k; when no integer k
    // reaches p1 at that m (it can happen when the optimum is itself a power of two), double m.
    for (;;) {
      for (let k = 1; k <= MAX_HASHES; k++) {
        const rate = theoreticalRate(m, k, n);
        if (rate <= p1) return { bits: m, hashes: k, bytes: HEADER + 3 * (m / 8), arrayFalsePositiveRate: rate };
      }
      m *= 2;
      if (m > MAX_BITS) {
        throw new RangeError(`options.bloom.expectedKeys ${n} at falsePositiveRate ${p} needs more than 2^32 bits per generation (raise falsePositiveRate or lower expectedKeys)`);
      }
    }
  }

  /**
   * Adds the key hashed to (hi, lo) at time `now` (ms). Lock-free; any thread.
   * @throws TypeError when `now` is not a finite number.
   */
  add(hi: number, lo: number, now: number): void {
    if (!(now >= this.#start && now < this.#edge)) this.#enter(now); // also routes NaN to the check
    this.#adds++;
    this.#fresh += this.#k.bloomAdd(this.#cur, this.#mask, this.hashes, hi, lo);
  }

  /**
   * False when the key hashed to (hi, lo) was certainly not added within the last horizonMs
   * (before `now`); true when it may have been. Lock-free; any thread.
   * @throws TypeError when `now` is not a finite number.
   */
  mightContain(hi: number, lo: number, now: number): boolean {
    if (!(now >= this.#start && now < this.#edge)) this.#enter(now);
    this.#checks++;
    if (this.#k.bloomHas2(this.#cur, this.#prev, this.#mask, this.hashes, hi, lo) === 0) return false;
    this.#positives++;
    return true;
  }

  /**
   * Do not trust the filter's "no" before `t` (ms): raises the shared "trusted from" time to `t`
   * if it is lower (it never goes down). `Infinity` distrusts it for good.
   * @throws TypeError when `t` is not a number (NaN included).
   */
  distrustUntil(t: number): void {
    if (typeof t !== 'number' || Number.isNaN(t)) throw new TypeError(`distrustUntil: t must be a number of ms, got ${String(t)}`);
    if (t <= 0) return; // the word starts at 0 and only rises
    this.#k.bloomDistrust(this.#base + W_TRUST_AT, t);
  }

  /** Whether the filter's "no" can be acted on at `now` (ms): now ≥ the "trusted from" time. */
  trusted(now: number): boolean {
    return now >= this.#k.bloomTrustedFrom(this.#base + W_TRUST_AT);
  }

  /**
   * Forgets every key (all three generations). Adds racing with it may be lost: pair it with
   * clearing what the filter stands for (the cache clears Redis) or with {@link distrustUntil}.
   */
  clear(now: number): void {
    this.#k.bloomZero(this.#array(0), 3 * this.#arrayBytes);
    this.#enter(now);
  }

  /** This thread's counters and the shared figures that cost one load each. */
  stats(): BloomStats {
    return {
      adds: this.#adds,
      freshAdds: this.#fresh,
      checks: this.#checks,
      positives: this.#positives,
      generation: this.#g,
      arraysCleared: Atomics.load(this.#u32, U_CLEARED),
      trustedFrom: this.#k.bloomTrustedFrom(this.#base + W_TRUST_AT),
    };
  }

  /**
   * Estimated distinct keys in the current and the previous generation at `now`, from the
   * fraction X of set bits (n ≈ -m/k · ln(1 - X/m), Swamidass & Baldi 2007). Counts every bit:
   * O(bits / 64) — for metrics and diagnostics, not for hot paths.
   */
  estimate(now: number): { current: number; previous: number } {
    if (!(now >= this.#start && now < this.#edge)) this.#enter(now);
    const est = (at: number): number => {
      const x = this.#k.bloomCount(at, this.#arrayBytes);
      return x >= this.bits ? Number.POSITIVE_INFINITY : Math.round((-this.bits / this.hashes) * Math.log(1 - x / this.bits));
    };
    return { current: est(this.#cur), previous: est(this.#prev) };
  }

  /** The theoretical false-positive rate of `mightContain` with `current` and `previous` distinct keys in the two generations. */
  theoreticalRate(current: number, previous = 0): number {
    const a = theoreticalRate(this.bits, this.hashes, current);
    const b = theoreticalRate(this.bits, this.hashes, previous);
    return 1 - (1 - a) * (1 - b);
  }

  #array(i: number): number {
    return this.#base + HEADER + i * this.#arrayBytes;
  }

  /** Slow path, once per half horizon per thread: moves this thread to the generation of `now`. */
  #enter(now: number): void {
    const h = this.horizonMs;
    const g = Math.floor(now / h);
    if (!Number.isFinite(g)) throw new TypeError(`now must be a finite number of ms, got ${String(now)}`);
    const start = g * h;
    this.#prepare(g);
    let edge = start + h / 2;
    if (now >= edge) {
      this.#prepare(g + 1);
      edge = start + h;
    }
    this.#g = g;
    this.#start = start;
    this.#edge = edge;
    this.#cur = this.#array(mod3(g));
    this.#prev = this.#array(mod3(g - 1));
  }

  /** Returns once generation `x` is prepared (by this thread or another). */
  #prepare(x: number): void {
    const big = this.#big;
    const want = BigInt(x);
    let waitedMs = 0;
    for (;;) {
      const p = Atomics.load(big, W_PREPARED);
      if (p >= want) return;
      const c = Atomics.load(big, W_CLAIM);
      if (c < want) {
        if (Atomics.compareExchange(big, W_CLAIM, c, want) !== c) continue;
        // Ours to prepare. Re-read `prepared`: an older claim may have finished meanwhile.
        const before = Atomics.load(big, W_PREPARED);
        this.#k.bloomZero(this.#array(mod3(x)), this.#arrayBytes);
        let cleared = 1;
        if (before < want - 1n) {
          this.#k.bloomZero(this.#array(mod3(x - 1)), this.#arrayBytes);
          cleared++;
        }
        Atomics.add(this.#u32, U_CLEARED, cleared);
        for (;;) {
          const cur = Atomics.load(big, W_PREPARED);
          if (cur >= want || Atomics.compareExchange(big, W_PREPARED, cur, want) === cur) break;
        }
        Atomics.notify(big, W_PREPARED);
        return;
      }
      // Another thread claimed x (or later) and is zeroing: wait for it (a memset of one array:
      // ~0.1–1 ms for 2 MiB). A claimer that died mid-way must not hang us: after PREPARE_WAIT_MS
      // go ahead. Its array may then hold stale bits (extra "maybe"s); only a claimer stalled,
      // alive, for over a second inside its memset could still zero some of our adds.
      if (waitedMs >= PREPARE_WAIT_MS) return;
      Atomics.wait(big, W_PREPARED, p, 1);
      waitedMs++;
    }
  }
}

/** (1 - e^(-kn/m))^k: the textbook false-positive rate of m bits, k probes, n keys. */
export function theoreticalRate(m: number, k: number, n: number): number {
  return (1 - Math.exp((-k * n) / m)) ** k;
}

function mod3(x: number): number {
  return ((x % 3) + 3) % 3;
}
