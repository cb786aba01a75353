// GCRA (the generic cell rate algorithm, i.e. a token bucket in "virtual scheduling" form) over a
// shared open-addressing table of keys. One 64-bit word of state per key, updated with one CAS,
// so every thread sharing the memory enforces one exact limit.
//
// Time is integer "units": one unit is 1/scale ms, where scale = limit / gcd(limit, window), so
// that one token returns exactly every T = window / gcd(limit, window) units — no float drift.
// Times are relative to the table's epoch (ms), so `(now - epoch) * scale` stays far below 2^63
// (the TypeScript side refuses a scale that would overflow within 100 years), plus one: `now` is
// never 0, so a tat of `now` is a non-zero "whole" state (reset, and a claimed slot left unwritten).
//
// Table layout (byte offsets from `table`, 16-byte aligned):
//   +0   i64 epochMs        +8  i64 T (units per token)   +16 i64 tau (burst tolerance, units)
//   +24  i64 scale (units per ms)   +32 .. +39 unused   +40 ready flag (table-region.ts)
//   +44  u32 capacity (power of two)   +48 u32 maxProbe   +52 u32 probe seed (table.ts: capAt + 8;
//        until 2026-11-25 capacity sat at +32 and the seed at +40, under the ready flag: review75)
//   +64  slots[capacity]: { i64 key; i64 tat }   key 0 = empty, key -1 = being reclaimed
//   after the slots: one overflow slot { i64 key; i64 tat } shared by keys that found no room
//
// Decision for `cost` tokens at `now` (units): tat' = max(tat, now) + cost*T; allowed iff
// tat' - now <= tau. A key never seen (or reclaimed) has tat = 0 <= now: a full bucket of
// tau / T = burst tokens.
//
// Protocol: find the key's slot (insert by CAS 0 -> key), load tat, re-check that the slot still
// holds the key, then CAS tat -> tat'. A slot is reclaimed for another key only when its bucket
// is full again (tat <= now): the reclaimer CASes key -> -1, CASes tat from that (non-zero) value
// to 0, then publishes the new key. Any thread that loaded the old tat fails its CAS (tat only
// grows while a key owns the slot, and a fresh owner's tat is > now >= the old one), so an
// update can never land on another key's state.
//
// Slot lookup, insertion and reclaim (and the table's one known edge): table.ts.
//
// Results go to `out` (the calling thread's scratch): f64 remaining, f64 resetMs, f64 retryAfterMs.

import { findSlot, lookupSlot, overflowSlot } from './table';

const H_EPOCH: usize = 0;
const H_T: usize = 8;
const H_TAU: usize = 16;
const H_SCALE: usize = 24;
const H_CAPACITY: usize = 44;
const SLOT: usize = 16;

/**
 * Takes (or, with `peek` set, only tests) `cost` tokens for the key (hi, lo) at `nowMs`.
 * Returns 1 when allowed. Writes remaining / resetMs / retryAfterMs at `out`.
 */
export function gcraTake(table: usize, hi: u32, lo: u32, nowMs: f64, cost: u32, peek: u32, out: usize): i32 {
  const key: i64 = ((<i64>hi) << 32) | (<i64>lo);
  const scale = load<i64>(table + H_SCALE);
  const T = load<i64>(table + H_T);
  const tau = load<i64>(table + H_TAU);
  const now = unitsNow(table, nowMs, scale);
  const inc: i64 = (<i64>cost) * T;
  for (;;) {
    // A peek claims nothing (0: no slot of its own, a full bucket).
    const s = peek != 0 ? lookupSlot(table, key, now, SLOT, H_CAPACITY) : findSlot(table, key, now, SLOT, H_CAPACITY);
    const own = s != 0 && s != overflowSlot(table, H_CAPACITY, SLOT);
    const stored = s == 0 ? 0 : atomic.load<i64>(s + 8);
    if (own && atomic.load<i64>(s) != key) continue; // reclaimed under us: look again
    const tat: i64 = stored > now ? stored : now;
    const next: i64 = tat + inc;
    const allowed = next - now <= tau;
    const after: i64 = allowed && peek == 0 ? next : tat;
    if (allowed && peek == 0) {
      if (atomic.cmpxchg<i64>(s + 8, stored, next) != stored) continue; // raced: decide again
    } else if (peek == 0 && own && stored == 0) {
      atomic.cmpxchg<i64>(s + 8, 0, now); // claimed, denied: whole, not "never used" (table.ts)
    }
    // remaining: whole tokens still available after this decision
    const room: i64 = tau - (after - now);
    store<f64>(out, room <= 0 ? 0 : <f64>(room / T));
    // resetMs: until the bucket is full again
    const full: i64 = after - now;
    store<f64>(out + 8, full <= 0 ? 0 : <f64>((full + scale - 1) / scale));
    // retryAfterMs: until a request of this cost would pass (0 when allowed)
    const wait: i64 = allowed ? 0 : next - now - tau;
    store<f64>(out + 16, wait <= 0 ? 0 : <f64>((wait + scale - 1) / scale));
    return allowed ? 1 : 0;
  }
}

@inline function unitsNow(table: usize, nowMs: f64, scale: i64): i64 {
  let rel: i64 = <i64>Math.floor(nowMs) - load<i64>(table + H_EPOCH);
  if (rel < 0) rel = 0; // a thread whose clock is behind the table's creator's
  return rel * scale + 1;
}

/**
 * Forgets the key's state: its bucket is full again. A key without a slot is full already (no
 * slot is claimed for it); one with a slot gets tat = now — whole, and non-zero, so the slot can
 * be reclaimed later (0 would mean "never used", which the reclaimer skips: review74). By CAS
 * after re-checking the key, so a slot reclaimed for another key meanwhile is left alone; a
 * stale CAS of this key's fails (the tat it expects is gone).
 */
export function gcraReset(table: usize, hi: u32, lo: u32, nowMs: f64): void {
  const key: i64 = ((<i64>hi) << 32) | (<i64>lo);
  const now = unitsNow(table, nowMs, load<i64>(table + H_SCALE));
  for (;;) {
    const s = lookupSlot(table, key, now, SLOT, H_CAPACITY);
    if (s == 0 || s == overflowSlot(table, H_CAPACITY, SLOT)) return;
    const stored = atomic.load<i64>(s + 8);
    if (atomic.load<i64>(s) != key) return; // reclaimed: the key has no state left
    if (stored != 0 && stored <= now) return; // full already
    if (atomic.cmpxchg<i64>(s + 8, stored, now) == stored) return;
  }
}
