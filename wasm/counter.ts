// Shared counters: one 64-bit word per counter, updated with a single seq-cst atomic add.
//
// Layout of a counter block (any 8-byte aligned region):
//   +0   i64 counter[0]
//   +8   i64 counter[1]
//   ...
// Any thread may add; readers sum nothing (each counter is one word, so a load is never torn).

/** Atomically adds `delta` to the i64 at `ptr`; returns the previous value. */
export function counterAdd(ptr: usize, delta: i64): i64 {
  return atomic.add<i64>(ptr, delta);
}

/** Atomically reads the i64 at `ptr`. */
export function counterLoad(ptr: usize): i64 {
  return atomic.load<i64>(ptr);
}

/** Adds 1 to the i32 at `ptr` `times` times, one atomic add each (used by the stress tests). */
export function counterBump32(ptr: usize, times: u32): void {
  for (let i: u32 = 0; i < times; i++) atomic.add<i32>(ptr, 1);
}
