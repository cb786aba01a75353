/**
 * What the limiter's shared tables have in common: a region in the arena whose 64-byte header is
 * written once by the thread that creates it and published with a ready flag, and 64-bit key
 * hashes (two xxHash32 lanes) with the two values the tables reserve kept out.
 */
import { RegionConflictError } from '../errors.js';
import type { ThreadRuntime } from '../runtime/thread.js';

/**
 * i32 index (from the header start) of the ready flag: +40, in every table kind (the cache's L2,
 * stamps and bloom filter too). A header keeps its own fields clear of it (review75: the GCRA
 * table's probe seed sat there, so every bucket table probed from the flag's value).
 */
const READY_AT = 10;

/**
 * Finds or creates the region `name` and returns its offset. A creator runs `init` on the header
 * and then publishes it; anyone else waits for the flag (a few stores away) and runs `matches`.
 * @throws RegionConflictError when the region exists with another layout (`matches` false).
 */
export function openTableRegion(
  rt: ThreadRuntime, name: string, bytes: number, magic: number,
  init: (big: BigInt64Array, u32: Uint32Array) => void,
  matches: (big: BigInt64Array, u32: Uint32Array) => boolean,
): number {
  const r = rt.arena.region(name, bytes, 64);
  const big = new BigInt64Array(rt.memory.buffer, r.offset, 8);
  const u32 = new Uint32Array(rt.memory.buffer, r.offset, 16);
  const i32 = rt.i32;
  const flag = (r.offset >>> 2) + READY_AT;
  if (r.created) {
    init(big, u32);
    Atomics.store(i32, flag, magic); // publishes the header
  } else {
    // Its creator publishes the header a few stores after carving the region. A creator that died
    // in between (terminated mid-constructor) would leave it unpublished for good: give up after
    // a second with a typed error instead of hanging.
    for (let spins = 0; Atomics.load(i32, flag) !== magic; spins++) {
      if (spins > 100) Atomics.wait(i32, flag, 0, 1);
      if (spins > 1100) {
        throw new RegionConflictError(name, r.bytes, bytes, `shared memory region "${name}" was carved but never initialised (did the thread creating it die?)`);
      }
    }
    if (r.bytes !== bytes || !matches(big, u32)) throw new RegionConflictError(name, r.bytes, bytes);
  }
  return r.offset;
}

// The key hash moved to the runtime layer (the cache uses it too); re-exported for the limiter.
export { KeyHash } from '../runtime/key-hash.js';
