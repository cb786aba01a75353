/**
 * A GCRA (token bucket) table in shared memory: the state behind `token-bucket` and `gcra`
 * limiters. Each key owns one 64-bit word (its theoretical arrival time), updated by the WASM
 * kernel (wasm/gcra.ts, where the layout and the protocol are documented) with one CAS, so the
 * main thread and every worker enforce one exact limit on one key.
 *
 * Semantics (DESIGN.md): `limit` per `windowMs` is the rate; `burst` (default `limit`) tokens can
 * be taken at once from a full bucket; a new key starts full; one token returns every
 * windowMs / limit ms exactly — integer time units of 1/scale ms, scale = limit / gcd(limit,
 * windowMs), so there is no float drift.
 */
import type { ThreadRuntime } from '../runtime/thread.js';
import { KeyHash, openTableRegion } from './table-region.js';
import type { Decision } from './types.js';
import { randomInt } from 'node:crypto';

export interface GcraParams {
  limit: number;
  windowMs: number;
  burst: number;
}

export interface GcraTableOptions {
  /** Slots (keys held at once); rounded up to a power of two. Default 65 536. */
  capacity?: number;
  /** The epoch (ms) written into a table this call creates; all times are relative to it. */
  epochMs: number;
}

const HEADER = 64;
const SLOT = 16;
const MAX_PROBE = 32;
const READY = 0x47435241; // 'GCRA'
/** Units per ms above this would overflow i64 time within 100 years. */
const MAX_SCALE = Math.floor(2 ** 62 / (100 * 365.25 * 24 * 3600 * 1000));

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/** Bytes of a table with `capacity` slots (plus the shared overflow slot). */
export function gcraTableBytes(capacity: number): number {
  return HEADER + (capacity + 1) * SLOT;
}

/**
 * Validates the parameters (naming them) and derives the integer time base.
 * @throws RangeError for values out of range or a limit/window pair too fine for 64-bit time.
 */
export function gcraTimeBase(p: GcraParams): { scale: number; T: number; tau: bigint } {
  const int = (name: string, v: number, max: number): void => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
      throw new RangeError(`options.${name} must be an integer between 1 and ${max}, got ${String(v)}`);
    }
  };
  int('limit', p.limit, 1e9);
  int('window', p.windowMs, 2 ** 31 - 1);
  int('burst', p.burst, 1e9);
  const g = gcd(p.limit, p.windowMs);
  const scale = p.limit / g;
  if (scale > MAX_SCALE) {
    throw new RangeError(
      `options.limit ${p.limit} per ${p.windowMs} ms needs ${scale} time units per ms; at most ${MAX_SCALE} fit in 64-bit time ` +
        '(choose a limit and window with a larger common divisor, e.g. round the limit)',
    );
  }
  return { scale, T: p.windowMs / g, tau: BigInt(p.burst) * BigInt(p.windowMs / g) };
}

export class GcraTable {
  readonly params: GcraParams;
  readonly capacity: number;
  readonly #rt: ThreadRuntime;
  readonly #base: number;
  readonly #hash: KeyHash;

  /**
   * Finds or creates the table `name` in the arena. Every thread that opens one name must give
   * the same parameters.
   * @throws RegionConflictError when `name` exists with other parameters or capacity.
   */
  constructor(rt: ThreadRuntime, name: string, params: GcraParams, options: GcraTableOptions) {
    const { scale, T, tau } = gcraTimeBase(params);
    let capacity = 1;
    const want = options.capacity ?? 65_536;
    if (!Number.isInteger(want) || want < 1 || want > 1 << 24) throw new RangeError(`options.maxKeys must be an integer between 1 and 2^24, got ${want}`);
    while (capacity < want) capacity *= 2;
    this.params = params;
    this.capacity = capacity;
    this.#rt = rt;
    this.#hash = new KeyHash();
    this.#base = openTableRegion(rt, name, gcraTableBytes(capacity), READY,
      (big, u32) => {
        big[0] = BigInt(Math.floor(options.epochMs));
        big[1] = BigInt(T);
        big[2] = tau;
        big[3] = BigInt(scale);
        // (+44, +48, +52: wasm/gcra.ts; +40 is the ready flag)
        u32[11] = capacity;
        u32[12] = MAX_PROBE;
        u32[13] = randomInt(0x100000000); // the probe seed (wasm/table.ts findSlot)
      },
      (big, u32) => big[1] === BigInt(T) && big[2] === tau && big[3] === BigInt(scale) && u32[11] === capacity);
  }

  /** Takes `cost` tokens for `key` at `nowMs` if the bucket holds them. */
  take(key: string, cost: number, nowMs: number): Decision {
    return this.#decide(key, cost, nowMs, 0);
  }

  /** What `take` would answer, without taking. */
  peek(key: string, cost: number, nowMs: number): Decision {
    return this.#decide(key, cost, nowMs, 1);
  }

  /** Refills `key`'s bucket. */
  reset(key: string, nowMs: number): void {
    const h = this.#hash;
    h.set(key);
    this.#rt.kernels.gcraReset(this.#base, h.hi, h.lo, nowMs);
  }

  #decide(key: string, cost: number, nowMs: number, peek: number): Decision {
    const h = this.#hash;
    h.set(key);
    const rt = this.#rt;
    const allowed = rt.kernels.gcraTake(this.#base, h.hi, h.lo, nowMs, cost, peek, rt.out) === 1;
    const out = rt.outF64;
    return { allowed, limit: this.params.limit, remaining: out[0]!, resetMs: out[1]!, retryAfterMs: out[2]! };
  }
}
