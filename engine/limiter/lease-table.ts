/**
 * The quota-lease table in shared memory (kernel wasm/lease.ts: layout and protocol): tokens a
 * process took from Redis in a batch, spent by every thread with one CAS each.
 */
import type { ThreadRuntime } from '../runtime/thread.js';
import { KeyHash, openTableRegion } from './table-region.js';
import { randomInt } from 'node:crypto';

const HEADER = 64;
const SLOT = 16;
const MAX_PROBE = 32;
const READY = 0x4c454153; // 'LEAS'

export class LeaseTable {
  readonly #rt: ThreadRuntime;
  readonly #base: number;
  readonly #hash: KeyHash;

  constructor(rt: ThreadRuntime, name: string, capacity: number, epochMs: number) {
    this.#rt = rt;
    this.#hash = new KeyHash();
    this.#base = openTableRegion(rt, name, HEADER + (capacity + 1) * SLOT, READY,
      (big, u32) => {
        big[0] = BigInt(Math.floor(epochMs));
        u32[4] = capacity;
        u32[5] = MAX_PROBE;
        u32[6] = randomInt(0x100000000); // the probe seed (wasm/table.ts findSlot)
      },
      (_big, u32) => u32[4] === capacity);
  }

  /** Spends `cost` leased tokens of `key`: the tokens left, or -1 (nothing spent) without a live lease holding them. */
  spend(key: string, cost: number, nowMs: number): number {
    const h = this.#hash;
    h.set(key);
    return this.#rt.kernels.leaseSpend(this.#base, h.hi, h.lo, nowMs, cost);
  }

  /** Drops `key`'s lease (the limiter's reset). */
  reset(key: string, nowMs: number): void {
    const h = this.#hash;
    h.set(key);
    this.#rt.kernels.leaseReset(this.#base, h.hi, h.lo, nowMs);
  }

  /** Adds `tokens` to `key`'s lease, live until now + ttlMs. Returns the tokens held, or -1 without room. */
  grant(key: string, tokens: number, nowMs: number, ttlMs: number): number {
    const h = this.#hash;
    h.set(key);
    return this.#rt.kernels.leaseGrant(this.#base, h.hi, h.lo, nowMs, tokens, ttlMs);
  }
}
