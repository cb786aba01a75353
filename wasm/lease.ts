// Quota leases: tokens a process took from Redis in a batch, spent locally by every thread.
// One word per key, updated by CAS, so threads never spend one token twice.
//
// Table layout (byte offsets from `table`; slot lookup and reclaim: table.ts):
//   +0   i64 epochMs     +16 u32 capacity (power of two)   +20 u32 maxProbe   +24 u32 probe seed   +40 ready flag
//   +64  slots[capacity]: { i64 key; i64 lease }   lease = (expiry << 24) | tokens
//          expiry: ms after epochMs when the lease lapses (40 bits: ~17 years of uptime)
//          tokens: unspent tokens (24 bits, < 16 777 216)
//   after the slots: one overflow slot shared by keys that found no room
// A slot is expired (reclaimable) when its expiry <= now: lease <= (now << 24) | 0xffffff.

import { findSlot, lookupSlot, overflowSlot } from './table';

const H_EPOCH: usize = 0;
const H_CAPACITY: usize = 16;
const SLOT: usize = 16;
const TOKENS: i64 = 0xffffff;

@inline function relNow(table: usize, nowMs: f64): i64 {
  const rel: i64 = <i64>Math.floor(nowMs) - load<i64>(table + H_EPOCH);
  return rel < 0 ? 0 : rel;
}

/**
 * Spends `cost` tokens of the key's lease. Returns the tokens left after spending, or -1 when the
 * key holds no live lease with `cost` tokens (nothing is spent then).
 */
export function leaseSpend(table: usize, hi: u32, lo: u32, nowMs: f64, cost: u32): i32 {
  const key: i64 = ((<i64>hi) << 32) | (<i64>lo);
  const now = relNow(table, nowMs);
  // Looked up, not claimed: a key without a slot holds no lease (review74: a slot claimed here
  // for every key asked about, and left "never used" when no lease came, was never freed).
  const s = lookupSlot(table, key, (now << 24) | TOKENS, SLOT, H_CAPACITY);
  if (s == 0 || s == overflowSlot(table, H_CAPACITY, SLOT)) return -1; // no lease for this key
  for (;;) {
    const w = atomic.load<i64>(s + 8);
    if (atomic.load<i64>(s) != key) return -1; // reclaimed under us: its lease is gone anyway
    const tokens = w & TOKENS;
    if ((w >>> 24) <= now || tokens < <i64>cost) return -1;
    if (atomic.cmpxchg<i64>(s + 8, w, w - <i64>cost) == w) return <i32>(tokens - <i64>cost);
  }
  return -1; // not reached (asc's flow analysis wants it)
}

/**
 * Adds `tokens` to the key's lease and sets its expiry to now + ttlMs (a lapsed lease is
 * replaced). Returns the tokens it holds afterwards (capped at 2^24 - 1), or -1 without room.
 */
export function leaseGrant(table: usize, hi: u32, lo: u32, nowMs: f64, tokens: u32, ttlMs: u32): i32 {
  const key: i64 = ((<i64>hi) << 32) | (<i64>lo);
  const now = relNow(table, nowMs);
  const s = findSlot(table, key, (now << 24) | TOKENS, SLOT, H_CAPACITY);
  if (s == overflowSlot(table, H_CAPACITY, SLOT)) return -1;
  for (;;) {
    const w = atomic.load<i64>(s + 8);
    if (atomic.load<i64>(s) != key) return -1;
    let have: i64 = (w >>> 24) > now ? w & TOKENS : 0;
    have += <i64>tokens;
    if (have > TOKENS) have = TOKENS;
    const next: i64 = ((now + <i64>ttlMs) << 24) | have;
    if (atomic.cmpxchg<i64>(s + 8, w, next) == w) return <i32>have;
  }
  return -1; // not reached (asc's flow analysis wants it)
}

/**
 * Drops the key's lease (the limiter's reset: its tokens were counted on Redis, which the reset
 * writes off — kept, they would be spent on top of the full allowance, review74). The word is
 * set lapsed at now with no tokens, or 1 token when now is 0: lapsed either way, and non-zero so
 * the slot can be reclaimed. A key without a slot has no lease.
 */
export function leaseReset(table: usize, hi: u32, lo: u32, nowMs: f64): void {
  const key: i64 = ((<i64>hi) << 32) | (<i64>lo);
  const now = relNow(table, nowMs);
  const lapsed: i64 = now == 0 ? 1 : now << 24;
  for (;;) {
    const s = lookupSlot(table, key, (now << 24) | TOKENS, SLOT, H_CAPACITY);
    if (s == 0 || s == overflowSlot(table, H_CAPACITY, SLOT)) return;
    const w = atomic.load<i64>(s + 8);
    if (atomic.load<i64>(s) != key) return;
    if (w != 0 && (w >>> 24) <= now) return; // lapsed already
    if (atomic.cmpxchg<i64>(s + 8, w, lapsed) == w) return;
  }
}
