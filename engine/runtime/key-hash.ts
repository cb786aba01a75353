/**
 * The 64-bit hash of a short string key that the shared tables (limiter, cache L2, bloom filter,
 * single-flight slots) index by. Every thread of a process runs this same function, with the same
 * secret seed (see keyHashSeed).
 */
import { randomInt } from 'node:crypto';

/**
 * String.prototype.charCodeAt, called as `charCodeAt.call(s, i)` in the hashing loops. Why not
 * `s.charCodeAt(i)`: once any class in the process extends String (node-redis does: `class
 * VerbatimString extends String` in @redis/client), V8 stops inlining the method form and every
 * char costs a builtin call — KeyHash.set of a short key went 13 → 65 ns, and the cache's setSync
 * 143 → 204 ns, from merely loading @redis/client (Node 20 and 24 alike). Through this captured
 * function the char load stays inlined either way. A module-local const: through an imported
 * binding it is not inlined (40 ns).
 */
const charCodeAt: (this: string, index: number) => number = String.prototype.charCodeAt;
/**
 * The process's secret seed, 64 bits, drawn when this module loads: without it a client who
 * chooses keys could compute keys that collide — the limiter's tables tell keys apart by this
 * hash alone, so two colliding keys share one budget, and a key aimed at another client's takes
 * that client's allowance (review74: unseeded, two colliding keys took 0.3 s to find and a key
 * colliding with a given one a 2^32 scan). Every thread of an engine must hash alike: the arena
 * records the seed of the thread that creates it, and a thread attaching to it adopts that seed
 * (engine/runtime/arena.ts); the threads of one process therefore share it.
 */
interface Seed {
  hi: number;
  lo: number;
  /** Whether an arena records it (created by this thread, or adopted): it may not change then. */
  inUse: boolean;
}

/**
 * Kept on globalThis under a registered symbol, so every copy of this module in one thread — two
 * installed versions, or the sources beside the build in the tests — hashes alike.
 */
const SEED: Seed = ((globalThis as { [k: symbol]: Seed | undefined })[Symbol.for('hotpath.keyHashSeed')] ??= {
  hi: randomInt(0x100000000), lo: randomInt(0x100000000), inUse: false,
});

/** This thread's key-hash seed (two u32), for an arena it creates: from then on the seed is fixed. */
export function keyHashSeed(): [hi: number, lo: number] {
  SEED.inUse = true;
  return [SEED.hi, SEED.lo];
}

/**
 * Adopts the seed of the arena this thread attaches to, before it hashes any of its keys.
 * @throws Error when this thread already hashes by another seed (an arena of another process's
 *   seed attached beside one of its own: their tables could not both be read).
 */
export function adoptKeyHashSeed(hi: number, lo: number): void {
  hi >>>= 0;
  lo >>>= 0;
  if (hi === SEED.hi && lo === SEED.lo) {
    SEED.inUse = true;
    return;
  }
  if (SEED.inUse) throw new Error('this thread already hashes keys for an engine with another key-hash seed: one thread cannot attach to the shared memory of engines created by different processes');
  SEED.hi = hi;
  SEED.lo = lo;
  SEED.inUse = true;
}

/**
 * A reusable 64-bit key hash: `set(key)` leaves it in `hi`/`lo` without allocating.
 *
 * Two 32-bit multiply-rotate lanes (murmur3's constants and finalizer) over the key's UTF-16
 * units, two units per step, in one pass — about 3× cheaper than two xxHash32 passes for short keys
 * (bench/limiter.bench.ts) — started from the secret seed, and mixed into each other at the end so
 * the 64 bits spread. Not the project's xxHash32: these hashes never leave the process, so no
 * other implementation must agree with them.
 * 0 and all-ones are reserved by the tables (empty, being reclaimed) and mapped away.
 */
export class KeyHash {
  hi = 0;
  lo = 0;

  set(key: string): void {
    const len = key.length;
    let h1 = SEED.hi ^ 0x9747b28c ^ len;
    let h2 = SEED.lo ^ 0x5bd1e995 ^ Math.imul(len, 0x27d4eb2f);
    let i = 0;
    for (; i + 1 < len; i += 2) {
      const k = charCodeAt.call(key, i) | (charCodeAt.call(key, i + 1) << 16);
      h1 = Math.imul(h1 ^ k, 0xcc9e2d51);
      h1 = Math.imul((h1 << 15) | (h1 >>> 17), 0x1b873593);
      h2 = Math.imul(h2 ^ k, 0x85ebca6b);
      h2 = Math.imul((h2 << 13) | (h2 >>> 19), 0xc2b2ae35);
    }
    if (i < len) {
      const k = charCodeAt.call(key, i);
      h1 = Math.imul(h1 ^ k, 0xcc9e2d51);
      h2 = Math.imul(h2 ^ k, 0x85ebca6b);
    }
    h1 = fmix(h1 ^ h2);
    h2 = fmix(h2 + h1);
    let hi = h1 >>> 0;
    let lo = h2 >>> 0;
    if (hi === 0 && lo === 0) lo = 1;
    else if (hi === 0xffffffff && lo === 0xffffffff) lo = 0xfffffffe;
    this.hi = hi;
    this.lo = lo;
  }
}

/** murmur3's 32-bit finalizer (signed result; `>>> 0` for unsigned). */
export function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h;
}
