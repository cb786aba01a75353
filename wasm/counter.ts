// Shared counters: one 64-bit word per counter, updated with a single seq-cst atomic add.
//
// Layout of a counter block (any 8-byte aligned region):
//   +0   i64 counter[0]
//   +8   i64 counter[1]
//   ...
// Any thread may add; readers sum nothing (each counter is one word, so a load is never torn).

/** Adds 1 to the i32 at `ptr` `times` times, one atomic add each (used by the stress tests). */
export function counterBump32(ptr: usize, times: u32): void {
  for (let i: u32 = 0; i < times; i++) atomic.add<i32>(ptr, 1);
}

// Number-typed on purpose: no BigInt crosses the JS↔WASM boundary on the metrics hot path.

/** Atomically adds the integer `delta` to the i64 at `ptr`. */
export function counterInc(ptr: usize, delta: i32): void {
  atomic.add<i64>(ptr, <i64>delta);
}

/** Atomically adds `delta` (truncated to an integer) to the i64 at `ptr`. */
export function counterAddF(ptr: usize, delta: f64): void {
  atomic.add<i64>(ptr, <i64>delta);
}

/** Atomically stores `value` (truncated to an integer) in the i64 at `ptr`. */
export function counterStoreF(ptr: usize, value: f64): void {
  atomic.store<i64>(ptr, <i64>value);
}

/** Atomically reads the i64 at `ptr` as a double (exact below 2^53). */
export function counterReadF(ptr: usize): f64 {
  return <f64>atomic.load<i64>(ptr);
}
