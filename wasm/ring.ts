// Consistent hashing: the lookups of the three algorithms of engine/balance/ring.ts (HashRing) and
// the build steps that are loops over many entries. The wrapper owns every table below, in a
// WebAssembly.Memory private to one HashRing (the balancer runs on one thread and the tables change
// on add/remove, so they do not belong in the engine's fixed shared arena): plain loads and stores,
// no atomics. Nothing here allocates, reads a clock, or checks bounds: the wrapper sizes the tables.
// Keys arrive as 32-bit hashes (xxHash32 of the key's UTF-8 bytes, computed in JS for short keys:
// DESIGN pitfall 8).
//
// 1. 'ring' — ketama-style virtual nodes (D. Karger et al., "Consistent hashing and random trees",
//    STOC 1997; libketama, last.fm 2007). Each node has `vnodes × weight` points on a 2^32 circle;
//    a key belongs to the first point clockwise from its hash. Layout (byte offsets the wrapper
//    passes; each table 64-byte aligned):
//      hashes  u32[n]          point hashes, ascending (ties ordered by node id: deterministic)
//      slots   u32[n]          the node slot of each point (read by the wrapper, not here)
//      index   u32[2^bits + 1] index[j] = first point whose hash >= j << (32 - bits);
//                              index[2^bits] = n. A radix index over the top bits of the hash.
//    ringFind is then two loads of the index and a scan of the points of one bucket (P / 2^bits of
//    them: under one on average with the wrapper's 2^bits >= P), its first two steps branch-free.
//    Measured on this 2-core VM (one JS→WASM call per lookup of a precomputed random hash, best of
//    7 × 1M; the bare call is 3 ns): at 20,000 points ringFind 18 ns, ringFindBinary (branch-free
//    binary search) 23 ns, a binary search in JS 89 ns; at 200,000 points 25 vs 34 ns; at 2,000
//    points (all in L1) 19 vs 18 ns. Twice the buckets (2^bits >= 2P) gave 16 ns at 20,000 points
//    for twice the index memory: not taken. Eytzinger layout was not tried: the radix index already
//    makes the search one cache line. A whole get costs ≈ 43 ns, of which ≈ 23 ns is the key's
//    xxHash32 in JS (bench/balance.bench.ts). ringFindBinary is kept for that comparison and tests.
//
// 2. 'jump' — J. Lamping, E. Veach, "A Fast, Minimal Memory, Consistent Hash Algorithm",
//    arXiv:1406.2294 (2014). Buckets 0 .. n-1 in the order the wrapper assigned them; a removed
//    node's buckets stay as holes (DEAD), and a key whose bucket is a hole tries again with the next
//    seed of a fixed sequence (attempt a = 0, 1, …: seed = splitmix64(a << 32 | hash)), so only the
//    keys of a removed node move, spread evenly over the others. Layout:
//      buckets u32[n]          node slot of each bucket, or DEAD (0xffffffff) for a hole
//
// 3. 'maglev' — D. E. Eisenbud et al., "Maglev: A Fast and Reliable Software Network Load
//    Balancer", NSDI 2016, section 3.4 (the lookup table population, Pseudocode 1). The lookup is
//    table[hash % m], done by the wrapper from a typed-array view (one load: a call would cost
//    more); the population, O(m log m), is here. Layout of the build:
//      table   u32[m]          node slot of each entry (m prime); filled by maglevBuild
//      cur     u32[e]          per virtual backend: its next preferred position (starts at offset)
//      skip    u32[e]          per virtual backend: its permutation step, in [1, m-1]
//      owner   u32[e]          per virtual backend: its node slot
//    The wrapper lists virtual backends in a fixed order (node id, then replica), so the table does
//    not depend on the order nodes were added.

/** A hole in the jump bucket table (a removed node's bucket). */
const DEAD: u32 = 0xffffffff;
/** Attempts of the jump sequence before the wrapper falls back to a linear scan (engine/balance/ring.ts). */
const JUMP_ATTEMPTS: u32 = 32;

/**
 * Index of the first point with hash >= h, via the radix index; 0 when h is beyond the last point
 * (the circle wraps). n >= 1.
 */
export function ringFind(hashes: usize, n: u32, index: usize, shift: u32, h: u32): u32 {
  const j = <usize>(h >>> shift) << 2;
  let lo = load<u32>(index + j);
  const hi = load<u32>(index + j, 4);
  // The first two steps without branches (most buckets hold 0–2 points: a loop's exit would be
  // mispredicted about every other lookup); loads past the bucket read the next bucket's points or,
  // past the last point, the slots table that follows: the answer never depends on them.
  lo += <u32>((lo < hi) & (load<u32>(hashes + (<usize>lo << 2)) < h));
  lo += <u32>((lo < hi) & (load<u32>(hashes + (<usize>lo << 2)) < h));
  while (lo < hi && load<u32>(hashes + (<usize>lo << 2)) < h) lo++;
  return select<u32>(0, lo, lo == n);
}

/** The same answer as ringFind by a branch-free binary search (no index): for the measurement. */
export function ringFindBinary(hashes: usize, n: u32, h: u32): u32 {
  let base: usize = hashes;
  let len = n;
  while (len > 1) {
    const half = len >>> 1;
    const mid = base + (<usize>half << 2);
    base = select<usize>(mid, base, load<u32>(mid) < h);
    len -= half;
  }
  const i = <u32>((base - hashes) >>> 2) + <u32>(load<u32>(base) < h);
  return select<u32>(0, i, i == n);
}

/**
 * Fills the radix index of `n` ascending hashes: index[j] = first point with hash >= j << shift
 * for j < 2^(32 - shift), and index[2^(32 - shift)] = n. One pass over both arrays.
 */
export function ringIndexBuild(hashes: usize, n: u32, index: usize, shift: u32): void {
  const buckets: u32 = <u32>1 << (32 - shift);
  let p: u32 = 0;
  for (let j: u32 = 0; j < buckets; j++) {
    // Points of earlier buckets: hash >>> shift < j.
    while (p < n && (load<u32>(hashes + (<usize>p << 2)) >>> shift) < j) p++;
    store<u32>(index + (<usize>j << 2), p);
  }
  store<u32>(index + (<usize>buckets << 2), n);
}

/**
 * Sorts n (hash, slot) pairs by hash, stably (LSD radix sort: 4 passes of 8 bits, a pass skipped
 * when every hash has the same digit there), leaving the result in place. The wrapper writes the
 * points node by node in id order, so equal hashes end up ordered by node id. `tmpH`/`tmpS` are
 * n-entry scratch arrays, `counts` 4 KiB of scratch.
 * Measured at 20,000 points (10 nodes × 2000): a whole rebuild (this sort, the index and the
 * copies) takes ≈ 0.2 ms, where sorting the same pairs as doubles (hash × 2^20 + rank) with
 * Float64Array.prototype.sort took 1.5 ms and decoding them in JS another 0.3–0.9 ms.
 */
export function ringSort(hashes: usize, slots: usize, n: u32, tmpH: usize, tmpS: usize, counts: usize): void {
  memory.fill(counts, 0, 4096);
  for (let i: u32 = 0; i < n; i++) {
    const h = load<u32>(hashes + (<usize>i << 2));
    const c0 = counts + ((<usize>(h & 0xff)) << 2);
    store<u32>(c0, load<u32>(c0) + 1);
    const c1 = counts + 1024 + ((<usize>((h >>> 8) & 0xff)) << 2);
    store<u32>(c1, load<u32>(c1) + 1);
    const c2 = counts + 2048 + ((<usize>((h >>> 16) & 0xff)) << 2);
    store<u32>(c2, load<u32>(c2) + 1);
    const c3 = counts + 3072 + ((<usize>(h >>> 24)) << 2);
    store<u32>(c3, load<u32>(c3) + 1);
  }
  let srcH = hashes;
  let srcS = slots;
  let dstH = tmpH;
  let dstS = tmpS;
  for (let pass: u32 = 0; pass < 4; pass++) {
    const c = counts + (<usize>pass << 10);
    const shift = pass << 3;
    // One digit value for all: this pass would not move anything.
    if (load<u32>(c + ((<usize>((load<u32>(srcH) >>> shift) & 0xff)) << 2)) == n) continue;
    // Counts → starting offsets.
    let sum: u32 = 0;
    for (let d: usize = 0; d < 256; d++) {
      const k = load<u32>(c + (d << 2));
      store<u32>(c + (d << 2), sum);
      sum += k;
    }
    for (let i: u32 = 0; i < n; i++) {
      const h = load<u32>(srcH + (<usize>i << 2));
      const slot = c + ((<usize>((h >>> shift) & 0xff)) << 2);
      const at = load<u32>(slot);
      store<u32>(slot, at + 1);
      store<u32>(dstH + (<usize>at << 2), h);
      store<u32>(dstS + (<usize>at << 2), load<u32>(srcS + (<usize>i << 2)));
    }
    const th = srcH;
    const ts = srcS;
    srcH = dstH;
    srcS = dstS;
    dstH = th;
    dstS = ts;
  }
  if (srcH != hashes) {
    memory.copy(hashes, srcH, <usize>n << 2);
    memory.copy(slots, srcS, <usize>n << 2);
  }
}

/** splitmix64's output function (S. Vigna; Steele, Lea & Flood, OOPSLA 2014). */
// @ts-ignore: decorator
@inline
function splitmix64(x: u64): u64 {
  let z = x + 0x9e3779b97f4a7c15;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9;
  z = (z ^ (z >> 27)) * 0x94d049bb133111eb;
  return z ^ (z >> 31);
}

/** Lamping & Veach's jump consistent hash of a 64-bit key into n >= 1 buckets (their Figure 1). */
// @ts-ignore: decorator
@inline
function jump(key: u64, n: i64): i64 {
  let b: i64 = -1;
  let j: i64 = 0;
  while (j < n) {
    b = j;
    key = key * 2862933555777941757 + 1;
    j = <i64>(<f64>(b + 1) * (<f64>(<i64>1 << 31) / <f64>((key >> 33) + 1)));
  }
  return b;
}

/** The jump bucket of hash h at attempt a, among n >= 1 buckets (holes included). */
export function jumpBucket(h: u32, a: u32, n: u32): u32 {
  return <u32>jump(splitmix64((<u64>a << 32) | <u64>h), <i64>n);
}

/**
 * The first attempt a' >= a (a' < JUMP_ATTEMPTS) whose bucket is not a hole: returns
 * bucket | a' << 24 (n < 2^24), or -1 when the attempts run out. n >= 1.
 */
export function jumpGet(buckets: usize, n: u32, h: u32, a: u32): i32 {
  for (; a < JUMP_ATTEMPTS; a++) {
    const b = <u32>jump(splitmix64((<u64>a << 32) | <u64>h), <i64>n);
    if (load<u32>(buckets + (<usize>b << 2)) != DEAD) return <i32>(b | (a << 24));
  }
  return -1;
}

/**
 * Maglev's population (Pseudocode 1 of the paper): the e virtual backends take turns, in order,
 * each claiming the next position of its permutation (cur, cur + skip, … mod m) not yet taken,
 * until all m entries of the table are filled. m prime, 1 <= e <= m. `cur` is consumed.
 */
export function maglevBuild(table: usize, m: u32, cur: usize, skip: usize, owner: usize, e: u32): void {
  memory.fill(table, 0xff, <usize>m << 2);
  let filled: u32 = 0;
  while (true) {
    for (let i: u32 = 0; i < e; i++) {
      const off = <usize>i << 2;
      let c = load<u32>(cur + off);
      const s = load<u32>(skip + off);
      while (load<u32>(table + (<usize>c << 2)) != DEAD) {
        c += s;
        if (c >= m) c -= m;
      }
      store<u32>(table + (<usize>c << 2), load<u32>(owner + off));
      c += s;
      if (c >= m) c -= m;
      store<u32>(cur + off, c);
      if (++filled == m) return;
    }
  }
}
