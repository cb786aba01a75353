// Fixed-window and sliding-window counters over a shared open-addressing table of keys, updated
// lock-free so every thread sharing the memory enforces one exact limit per key.
//
// Time: window index n = floor((nowMs - epochMs) / W) + BASE (3), so n >= 3: a zero word means
// "never used", and (n - 2, 0) — an expired, empty word — is never zero (the "whole" state a reset
// or a claimed slot left unwritten stores: table.ts). Words compare as unsigned 64-bit numbers:
// the index fills 32 bits (2^32 windows: 13.6 years of table life at W = 100 ms; as signed numbers
// they turned negative at 2^31, review74). The limit is an argument of each call (the adaptive
// limiter moves it).
//
// Table layout (byte offsets from `table`):
//   +0   i64 epochMs        +8  i64 W (window, ms)
//   +16  u32 capacity (power of two)   +20 u32 maxProbe   +24 u32 probe seed   +40 ready flag (table-region.ts)
//   +64  slots[capacity]: { i64 key; i64 cur; i64 prev; i64 reserved }   (32 bytes)
//          cur  = (window index << 32) | count admitted in that window
//          prev = (window index << 32) | count of the window before `cur`'s (sliding only)
//          key 0 = empty, key -1 = being reclaimed
//   after the slots: one overflow slot shared by keys that found no room
//
// Fixed window: admitted in window n = cur.count if cur.index == n, else 0; allow iff
// count + cost <= limit; admit by CAS cur -> (n, count + cost).
//
// Sliding window (the two-window weighted counter): with e ms elapsed in window n, the estimate
// is prev * (W - e) / W + cur; allow iff prev * (W - e) + (cur + cost) * W <= limit * W
// (integers: prev, cur <= 1e9 and W < 2^31 keep every product below 2^62).
// Rolling cur from window m < n to n: prev' = (n - 1, m == n - 1 ? cur.count : 0) is written
// to `prev` FIRST (by a CAS that only ever raises it: (index, count) compared as one number,
// and counts only grow inside a window, so the final count of window n - 1 wins), THEN cur is
// CASed to (n, cost). A thread that sees cur.index == n therefore finds prev.index >= n - 1;
// if prev.index > n - 1, cur has moved on meanwhile and it starts over.
//
// Reclaim (table.ts): a slot is expired when cur.index < n - 1 (both windows over), i.e. when
// cur <= pack(n - 1, 0) - 1.
//
// Results go to `out` (the calling thread's scratch): f64 remaining, f64 resetMs,
// f64 retryAfterMs.

import { findSlot, lookupSlot, overflowSlot } from './table';

const H_EPOCH: usize = 0;
const H_W: usize = 8;
const H_CAPACITY: usize = 16;
const SLOT: usize = 32;
/** The window index of the table's first window (see the header). */
const BASE: i64 = 3;

@inline function idxOf(word: i64): i64 {
  return word >>> 32;
}

@inline function countOf(word: i64): i64 {
  return word & 0xffffffff;
}

@inline function pack(index: i64, count: i64): i64 {
  return (index << 32) | count;
}

/** Raises the `prev` word to `want` unless it already holds as much. */
@inline function raisePrev(at: usize, want: i64): void {
  let seen = atomic.load<i64>(at);
  while (<u64>seen < <u64>want) {
    const got = atomic.cmpxchg<i64>(at, seen, want);
    if (got == seen) return;
    seen = got;
  }
}

@inline function ceilDiv(a: i64, b: i64): i64 {
  return a <= 0 ? 0 : (a + b - 1) / b;
}

/**
 * Takes (or, with `peek` set, only tests) `cost` requests for the key (hi, lo) at `nowMs` under
 * `limit` per window. `sliding` 0 = fixed window, 1 = sliding. Returns 1 when allowed.
 */
export function windowTake(
  table: usize, hi: u32, lo: u32, nowMs: f64, cost: u32, limit: u32, sliding: u32, peek: u32, out: usize,
): i32 {
  const key: i64 = ((<i64>hi) << 32) | (<i64>lo);
  const W = load<i64>(table + H_W);
  let rel: i64 = <i64>Math.floor(nowMs) - load<i64>(table + H_EPOCH);
  if (rel < 0) rel = 0;
  let n: i64 = rel / W + BASE;
  const L = <i64>limit;
  const c = <i64>cost;
  for (;;) {
    // A peek claims nothing (0: no slot of its own, nothing counted against the key).
    const s = peek != 0 ? lookupSlot(table, key, pack(n - 1, 0) - 1, SLOT, H_CAPACITY) : findSlot(table, key, pack(n - 1, 0) - 1, SLOT, H_CAPACITY);
    const own = s != 0 && s != overflowSlot(table, H_CAPACITY, SLOT);
    const curWord = s == 0 ? 0 : atomic.load<i64>(s + 8);
    if (own && atomic.load<i64>(s) != key) continue; // reclaimed under us: look again
    let ci = idxOf(curWord);
    if (ci > n) { // another thread's clock is ahead: adopt its window
      n = ci;
      rel = (n - BASE) * W;
    }
    const e: i64 = rel - (n - BASE) * W; // ms elapsed in window n
    let cur: i64 = 0;
    let prev: i64 = 0;
    if (ci == n) {
      cur = countOf(curWord);
      if (sliding != 0) {
        const p = atomic.load<i64>(s + 16); // (ci == n: s is a slot, not 0)
        const pi = idxOf(p);
        if (pi > n - 1) {
          // prev already names window n (or later): cur moved on after we read it, or a thread
          // whose clock is in a later window raised prev and then lost its CAS on cur (and, denied
          // on its retry, never rolled cur). Adopt the later window, as for a cur ahead of us —
          // only retrying here spun for ever until another thread rolled the key (review41).
          n = pi + 1;
          rel = (n - BASE) * W;
          continue;
        }
        if (pi == n - 1) prev = countOf(p);
      }
    } else if (ci == n - 1) {
      prev = countOf(curWord);
    }
    if (sliding == 0) prev = 0;
    const weighted: i64 = prev * (W - e); // prev's share, scaled by W
    const allowed = weighted + (cur + c) * W <= L * W;
    if (allowed && peek == 0) {
      if (ci != n) {
        if (sliding != 0) raisePrev(s + 16, pack(n - 1, prev));
        if (atomic.cmpxchg<i64>(s + 8, curWord, pack(n, c)) != curWord) continue;
      } else if (atomic.cmpxchg<i64>(s + 8, curWord, pack(n, cur + c)) != curWord) continue;
      cur += c;
    } else if (peek == 0 && own && curWord == 0) {
      // Claimed, denied (a cost over the adaptive limit in force): whole, not "never used".
      atomic.cmpxchg<i64>(s + 8, 0, pack(n - 2, 0));
    }
    // remaining: whole requests still admissible now
    const room: i64 = L * W - weighted - cur * W;
    store<f64>(out, room <= 0 ? 0 : <f64>(room / W));
    // resetMs: until nothing counts against the key any more
    const toEnd: i64 = W - e;
    let reset: i64 = 0;
    if (cur > 0) reset = sliding != 0 ? toEnd + W : toEnd;
    else if (prev > 0) reset = toEnd;
    store<f64>(out + 8, <f64>reset);
    // retryAfterMs: until a request of this cost would pass (0 when allowed)
    let wait: i64 = 0;
    if (!allowed) {
      if (c > L) wait = -1; // never
      else if (sliding == 0) wait = toEnd;
      else {
        // Within this window prev's weight falls by prev per ms.
        const over: i64 = weighted + (cur + c) * W - L * W;
        const within: i64 = prev > 0 ? ceilDiv(over, prev) : toEnd;
        if (cur + c <= L && within < toEnd) wait = within;
        else {
          // Next window: cur becomes prev; need cur * (W - e') + c * W <= L * W.
          const need: i64 = cur > 0 ? W - ((L - c) * W) / cur : 0;
          wait = toEnd + (need > 0 ? need : 0);
        }
      }
    }
    store<f64>(out + 16, wait < 0 ? Infinity : <f64>wait);
    return allowed ? 1 : 0;
  }
}

/**
 * Forgets the key's counts. A key without a slot has none (no slot is claimed for it); one with a
 * slot gets (n - 2, 0) in both words: expired and empty, never zero (BASE), so the slot can be
 * reclaimed later (review74: a 0 stored in the first windows was "never used", never freed). The
 * count word by CAS after re-checking the key: a slot reclaimed for another key meanwhile is left
 * alone, and a racing CAS of this key's fails (the value it expects is gone).
 */
export function windowReset(table: usize, hi: u32, lo: u32, nowMs: f64): void {
  const key: i64 = ((<i64>hi) << 32) | (<i64>lo);
  const W = load<i64>(table + H_W);
  let rel: i64 = <i64>Math.floor(nowMs) - load<i64>(table + H_EPOCH);
  if (rel < 0) rel = 0;
  const n: i64 = rel / W + BASE;
  const empty: i64 = pack(n - 2, 0);
  for (;;) {
    const s = lookupSlot(table, key, pack(n - 1, 0) - 1, SLOT, H_CAPACITY);
    if (s == 0 || s == overflowSlot(table, H_CAPACITY, SLOT)) return;
    const cur = atomic.load<i64>(s + 8);
    if (atomic.load<i64>(s) != key) return; // reclaimed: the key has no counts left
    atomic.store<i64>(s + 16, empty);
    if (atomic.cmpxchg<i64>(s + 8, cur, empty) == cur) return;
  }
}
