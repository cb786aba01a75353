/**
 * The short exclusive lock used by every shared-memory writer that must append (the arena's
 * registry, the metrics table, the codec's structure list): one i32 word, 0 free, 1 held.
 * Critical sections are a few stores, so a short CAS spin nearly always wins; past that,
 * `Atomics.wait` with a 1 ms timeout bounds the rare long case (Node allows it on the main
 * thread too). No fairness: callers must not rely on order.
 */

/** Takes the lock word `index` of `i32`. */
export function lockWord(i32: Int32Array, index: number): void {
  for (let spins = 0; Atomics.compareExchange(i32, index, 0, 1) !== 0; spins++) {
    if (spins > 100) Atomics.wait(i32, index, 1, 1);
  }
}

/** Releases it and wakes one waiter. */
export function unlockWord(i32: Int32Array, index: number): void {
  Atomics.store(i32, index, 0);
  Atomics.notify(i32, index, 1);
}
