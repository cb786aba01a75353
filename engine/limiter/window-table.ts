/**
 * A fixed- or sliding-window counter table in shared memory: the state behind `fixed-window`,
 * `sliding-window` and `adaptive` limiters. The kernel (wasm/window.ts, where the layout and the
 * lock-free protocol are documented) updates each key with CAS, so every thread enforces one
 * exact limit per key. The limit is an argument of each call (the adaptive limiter moves it).
 */
import type { ThreadRuntime } from '../runtime/thread.js';
import { KeyHash, openTableRegion } from './table-region.js';
import type { Decision } from './types.js';
import { randomInt } from 'node:crypto';

const HEADER = 64;
const SLOT = 32;
const MAX_PROBE = 32;
const READY = 0x57494e44; // 'WIND'

/** Bytes of a table with `capacity` slots (plus the shared overflow slot). */
export function windowTableBytes(capacity: number): number {
  return HEADER + (capacity + 1) * SLOT;
}

export class WindowTable {
  readonly windowMs: number;
  readonly sliding: boolean;
  readonly capacity: number;
  readonly #rt: ThreadRuntime;
  readonly #base: number;
  readonly #hash: KeyHash;

  /**
   * Finds or creates the table `name` (`capacity` a power of two). Every thread that opens one
   * name must give the same window and capacity.
   */
  constructor(rt: ThreadRuntime, name: string, windowMs: number, sliding: boolean, capacity: number, epochMs: number) {
    this.windowMs = windowMs;
    this.sliding = sliding;
    this.capacity = capacity;
    this.#rt = rt;
    this.#hash = new KeyHash();
    this.#base = openTableRegion(rt, name, windowTableBytes(capacity), READY,
      (big, u32) => {
        big[0] = BigInt(Math.floor(epochMs));
        big[1] = BigInt(windowMs);
        u32[4] = capacity;
        u32[5] = MAX_PROBE;
        u32[6] = randomInt(0x100000000); // the probe seed (wasm/table.ts findSlot)
      },
      (big, u32) => big[1] === BigInt(windowMs) && u32[4] === capacity);
  }

  /** Takes (or with `peek`, only tests) `cost` under `limit` per window at `nowMs`. */
  take(key: string, cost: number, limit: number, nowMs: number, peek = false): Decision {
    const h = this.#hash;
    h.set(key);
    const rt = this.#rt;
    const allowed = rt.kernels.windowTake(this.#base, h.hi, h.lo, nowMs, cost, limit, this.sliding ? 1 : 0, peek ? 1 : 0, rt.out) === 1;
    const out = rt.outF64;
    return { allowed, limit, remaining: out[0]!, resetMs: out[1]!, retryAfterMs: out[2]! };
  }

  /** Forgets `key`'s counts. */
  reset(key: string, nowMs: number): void {
    const h = this.#hash;
    h.set(key);
    this.#rt.kernels.windowReset(this.#base, h.hi, h.lo, nowMs);
  }
}
