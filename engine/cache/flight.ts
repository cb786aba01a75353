/**
 * Single flight across the threads of one process: a table in shared memory where a thread that
 * is about to run a loader for a key claims the key's slot, and every other thread that misses
 * the same key waits on that slot (`Atomics.waitAsync`, so its event loop stays free) and then
 * reads the loaded value from the shared L2.
 *
 * Layout (region `hotpath:cache:<name>:flight`, SLOTS slots of 16 bytes, then SLOTS f64 deadlines):
 * ```
 * slot i   +0 i32 state   0 free, -1 being claimed, > 0 the owner's token (odd, never reused soon)
 *          +4 u32 hash hi  +8 u32 hash lo          (valid while state > 0)
 *          +12 reserved
 * deadline SLOTS × f64    ms timestamp after which a waiter may take the slot over (its owner died
 *                         or overran its loader timeout); written before state is published
 * seed     i32            random, odd; set by the first thread to open the table (CAS 0 → seed)
 * ```
 * A key maps to exactly one slot (`fmix(lo ^ seed) & (SLOTS-1)`: keys crafted offline from the
 * public KeyHash cannot be aimed at another key's slot to keep it busy), so two threads can never
 * both own one key:
 * the claim is one CAS 0 → -1. When the slot holds another key, the caller loads without
 * cross-thread de-duplication (counted; with 4096 slots and few loads in flight at once, rare).
 * Release: zero the hash, store state 0, `Atomics.notify` everyone waiting on the slot.
 */
import { randomInt } from 'node:crypto';
import { fmix } from '../runtime/key-hash.js';
import type { ThreadRuntime } from '../runtime/thread.js';

const SLOTS = 4096;
const SLOT_BYTES = 16;
const SEED_AT = SLOTS * SLOT_BYTES + SLOTS * 8;
const BYTES = SEED_AT + 64;

/** What `claim` found. */
export type Claim =
  | { kind: 'owner'; slot: number; token: number }
  | { kind: 'wait'; slot: number; token: number; deadline: number }
  | { kind: 'busy' };

export class FlightTable {
  readonly #i32: Int32Array;
  readonly #u32: Uint32Array;
  readonly #f64: Float64Array;
  /** i32 index of slot 0. */
  readonly #base: number;
  /** f64 index of deadline 0. */
  readonly #deadlines: number;
  #nextToken: number;
  readonly #seed: number;

  constructor(rt: ThreadRuntime, name: string) {
    const r = rt.arena.region(`hotpath:cache:${name}:flight`, BYTES, 64);
    this.#i32 = rt.i32;
    this.#u32 = new Uint32Array(rt.memory.buffer);
    this.#f64 = new Float64Array(rt.memory.buffer);
    this.#base = r.offset >>> 2;
    this.#deadlines = (r.offset + SLOTS * SLOT_BYTES) >>> 3;
    const seedAt = (r.offset + SEED_AT) >>> 2;
    Atomics.compareExchange(this.#i32, seedAt, 0, (randomInt(0x40000000) << 1) | 1);
    this.#seed = Atomics.load(this.#i32, seedAt);
    // Tokens only need to differ between the claims a waiter could confuse: odd, started at a
    // random point per thread, so a slot freed and re-claimed by another thread changes value.
    this.#nextToken = ((Math.random() * 0x3fffffff) | 1) >>> 0;
  }

  /**
   * Claims `hi/lo`'s slot for a load that may take until `deadline` (ms), or reports who holds it.
   */
  claim(hi: number, lo: number, now: number, deadline: number): Claim {
    const slot = fmix(lo ^ this.#seed) & (SLOTS - 1);
    const w = this.#base + slot * 4;
    for (let spins = 0; spins < 1000; spins++) {
      const state = Atomics.load(this.#i32, w);
      if (state === 0) {
        if (Atomics.compareExchange(this.#i32, w, 0, -1) !== 0) continue;
        return this.#publish(slot, w, hi, lo, deadline);
      }
      if (state === -1) continue; // a claimer is a few stores from publishing
      if ((Atomics.load(this.#u32, w + 1) | 0) !== (hi | 0) || (Atomics.load(this.#u32, w + 2) | 0) !== (lo | 0)) {
        if (Atomics.load(this.#i32, w) !== state) continue; // changed under us: look again
        return { kind: 'busy' };
      }
      const until = this.#f64[this.#deadlines + slot]!;
      if (Atomics.load(this.#i32, w) !== state) continue;
      if (now > until) {
        // Its owner is gone or overran: take it over (one CAS decides between competing waiters).
        if (Atomics.compareExchange(this.#i32, w, state, -1) !== state) continue;
        Atomics.notify(this.#i32, w);
        return this.#publish(slot, w, hi, lo, deadline);
      }
      return { kind: 'wait', slot, token: state, deadline: until };
    }
    return { kind: 'busy' };
  }

  /**
   * Whether a load of `hi/lo` is in flight in some thread of the process: its slot is claimed for
   * it (or being claimed: the hash is not published yet, so any key counts) and not past its
   * deadline. Read-only, a few atomic loads. A slot held by another key answers false (the stored
   * hash differs) unless the two keys' 64-bit KeyHashes are equal, or while a claim is being
   * published (true: harmless, an extra tombstone). A load that could not claim (`'busy'`: another
   * key held the slot), or that runs without a slot (a waiter loading after its owner failed), is
   * not seen. `except`: a token to ignore (the caller's own claim).
   */
  busy(hi: number, lo: number, now: number, except = 0): boolean {
    const slot = fmix(lo ^ this.#seed) & (SLOTS - 1);
    const w = this.#base + slot * 4;
    const state = Atomics.load(this.#i32, w);
    if (state === 0) return false;
    if (state === -1) return true; // a claimer a few stores from publishing (conservative)
    if (state === except) return false;
    if ((Atomics.load(this.#u32, w + 1) | 0) !== (hi | 0) || (Atomics.load(this.#u32, w + 2) | 0) !== (lo | 0)) return false;
    return now <= this.#f64[this.#deadlines + slot]!;
  }

  #publish(slot: number, w: number, hi: number, lo: number, deadline: number): Claim {
    const token = this.#nextToken;
    this.#nextToken = ((this.#nextToken + 2) & 0x3fffffff) | 1;
    Atomics.store(this.#u32, w + 1, hi);
    Atomics.store(this.#u32, w + 2, lo);
    this.#f64[this.#deadlines + slot] = deadline;
    Atomics.store(this.#i32, w, token); // publishes hash and deadline (seq-cst store after them)
    return { kind: 'owner', slot, token };
  }

  /** Releases a slot this thread owns and wakes its waiters. A slot taken over since is left alone. */
  release(slot: number, token: number): void {
    const w = this.#base + slot * 4;
    if (Atomics.load(this.#i32, w) !== token) return;
    Atomics.store(this.#u32, w + 1, 0);
    Atomics.store(this.#u32, w + 2, 0);
    if (Atomics.compareExchange(this.#i32, w, token, 0) === token) Atomics.notify(this.#i32, w);
  }

  /**
   * Resolves when the slot no longer holds `token` (released or taken over), or after `ms`.
   * Never blocks the event loop.
   */
  async wait(slot: number, token: number, ms: number): Promise<void> {
    const w = this.#base + slot * 4;
    const r = Atomics.waitAsync(this.#i32, w, token, Math.max(0, ms));
    if (r.async) await r.value;
  }
}
