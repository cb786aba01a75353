// The open-addressing key table shared by the limiter kernels (gcra.ts, window.ts, lease.ts).
//
// A table is a 64-byte header followed by `capacity` (a power of two) slots of `slotSize` bytes
// and one overflow slot shared by keys that found no room. Each slot starts with
//   +0 i64 key   (0 = empty, -1 = being reclaimed)
//   +8 i64 state (0 = never used; otherwise the kernel's word, non-negative)
// and the kernel's further words. Where the header keeps `capacity`, `maxProbe` and the probe
// seed (u32 each) is the kernel's choice (`capAt`, `capAt + 4`, `capAt + 8`).
//
// Lookup probes linearly from the key's hash for at most maxProbe slots: the key's own slot wins;
// else the first empty slot is claimed by CAS 0 -> key. A slot whose state is non-zero and
// <= `expired` (the caller's encoding of "its allowance is whole again"; states compare as
// unsigned 64-bit numbers) may be reclaimed for another key when no empty slot was met: CAS key
// -> -1, CAS state (that value) -> 0, zero the words after it, publish the new key. Any thread
// that loaded the old state then fails its CAS (the state it expects is gone). A never-used slot
// (state 0) is not reclaimed: a fresh owner's first CAS from 0 cannot be taken by a stale thread
// of the old owner.
//
// So no operation may leave a slot it claimed at state 0 (review74: peek, reset, a denied first
// request and a lease spend did, and such slots were never freed: once a probe window was full
// of them, every new key shared the overflow slot for good). An operation that gives a key no
// state of its own (peek, a lease spend, a reset) looks the key up without claiming (lookupSlot);
// a take that claims a slot and then writes nothing stores the kernel's non-zero "whole" state.
//
// Known edge: when no probe position is free and two threads meet a new key at the same moment,
// each may reclaim a different expired slot for it; that key's state is then split across two
// slots (a window of double allowance for it, until one slot expires). It cannot happen while the
// table has free slots: size it (the limiter's maxKeys) above the number of keys active at once.

export const RECLAIMING: i64 = -1;

/** murmur3's 32-bit finalizer: every bit of the input moves the probe start. */
@inline function fmix32(h: u32): u32 {
  h ^= h >>> 16;
  h *= 0x85ebca6b;
  h ^= h >>> 13;
  h *= 0xc2b2ae35;
  h ^= h >>> 16;
  return h;
}
export const HEADER: usize = 64;

@inline export function overflowSlot(table: usize, capAt: usize, slotSize: usize): usize {
  return table + HEADER + (<usize>load<u32>(table + capAt)) * slotSize;
}

/** Finds (or inserts, or reclaims) the slot of `key`; returns its address (maybe the overflow slot). */
@inline export function findSlot(table: usize, key: i64, expired: i64, slotSize: usize, capAt: usize): usize {
  const capacity = load<u32>(table + capAt);
  const mask = capacity - 1;
  const maxProbe = load<u32>(table + capAt + 4);
  // The probe start mixes in the table's random seed (set when the table was created): a client
  // who knows the key hash (fixed, public) cannot aim keys at one key's probe window and crowd it
  // into the shared overflow slot (review41: 133 requests denied a chosen key).
  const start = fmix32(<u32>key ^ <u32>(key >>> 32) ^ load<u32>(table + capAt + 8)) & mask;
  let reclaimable: usize = 0;
  for (let p: u32 = 0; p < maxProbe; p++) {
    const s = table + HEADER + (<usize>((start + p) & mask)) * slotSize;
    let k = atomic.load<i64>(s);
    if (k == key) return s;
    if (k == 0) {
      k = atomic.cmpxchg<i64>(s, 0, key);
      if (k == 0 || k == key) return s;
    }
    if (reclaimable == 0 && k != RECLAIMING) {
      const w = atomic.load<i64>(s + 8);
      if (w != 0 && <u64>w <= <u64>expired) reclaimable = s;
    }
  }
  if (reclaimable != 0) {
    const s = reclaimable;
    const old = atomic.load<i64>(s);
    if (old != RECLAIMING && old != key && atomic.cmpxchg<i64>(s, old, RECLAIMING) == old) {
      const w = atomic.load<i64>(s + 8);
      if (w != 0 && <u64>w <= <u64>expired && atomic.cmpxchg<i64>(s + 8, w, 0) == w) {
        for (let at: usize = 16; at < slotSize; at += 8) atomic.store<i64>(s + at, 0);
        atomic.store<i64>(s, key);
        return s;
      }
      atomic.store<i64>(s, old); // its owner used it meanwhile: leave it be
    }
  }
  return overflowSlot(table, capAt, slotSize);
}

/**
 * The slot `findSlot` would give `key`, found without claiming or reclaiming anything: its own
 * slot; 0 when it has none and would get a fresh one (an empty slot, or a reclaimable one, in its
 * probe window), whose state reads as "never used"; or the overflow slot, which it would share.
 * Probes as findSlot does: past reclaimable slots (the key may sit behind one that went quiet
 * after it was placed — review75: stopping there hid the key from peek, reset and the leases),
 * stopping at the key, at an empty slot (a key's slot is never past one: keys are claimed at the
 * first empty slot, reclaimed only where none is left, and never go back to 0), or at the window's end.
 */
@inline export function lookupSlot(table: usize, key: i64, expired: i64, slotSize: usize, capAt: usize): usize {
  const capacity = load<u32>(table + capAt);
  const mask = capacity - 1;
  const maxProbe = load<u32>(table + capAt + 4);
  const start = fmix32(<u32>key ^ <u32>(key >>> 32) ^ load<u32>(table + capAt + 8)) & mask;
  let fresh = false;
  for (let p: u32 = 0; p < maxProbe; p++) {
    const s = table + HEADER + (<usize>((start + p) & mask)) * slotSize;
    const k = atomic.load<i64>(s);
    if (k == key) return s;
    if (k == 0) return 0;
    if (!fresh && k != RECLAIMING) {
      const w = atomic.load<i64>(s + 8);
      if (w != 0 && <u64>w <= <u64>expired) fresh = true;
    }
  }
  return fresh ? 0 : overflowSlot(table, capAt, slotSize);
}
