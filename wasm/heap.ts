// The task queue's priority heap: a 4-ary min-heap of 16-byte entries (key, seq, slot), ordered by
// key ascending, then seq ascending (FIFO among equal keys). The caller (engine/queue/heap.ts)
// computes the key (a priority, or priority + enqueueMs / agingMs with aging; any finite double),
// assigns seq from a u32 counter and renumbers before it would wrap (heapRenumber). The slot is
// the queue's task slot (< 2^31, so that pop can answer -1 for "empty").
//
// This memory is thread-private (the queue's heap is used by the one thread that owns the queue;
// each TaskHeap has a WebAssembly.Memory of its own): plain loads and stores, no atomics. Nothing
// here allocates, and nothing checks bounds beyond `capacity`: the wrapper grows the memory and
// raises `capacity` before a push would overflow.
//
// Layout (byte offsets from `base`; base is 64-byte aligned):
//   +0   u32 size        live entries
//   +4   u32 capacity    entries the memory holds (set by the wrapper)
//   +8   u32 touch       written by pops, never read (keeps the early loads alive; see Pop)
//   +12 .. +47           reserved
//   +48  entries[0 .. capacity): 16 bytes each
//          +0 u64 key   +8 u32 seq   +12 u32 slot
//        The key is stored as the u64 whose unsigned order is the f64 order (sortableKey: sign bit
//        set for positives, every bit flipped for negatives; -0 folded into +0, as the f64
//        comparison has them equal). Integer comparisons are cheaper than f64 ones in the sift
//        loops (no NaN/parity handling: ~8% per push+pop measured), and the radix sort reads the
//        bytes as they are. heapPeekKey converts back.
//
// Why +48: entry j sits at base + 48 + 16j, so the four children of i (4i+1 .. 4i+4) start at
// base + 64(i + 1): one 64-byte cache line per sibling group. A sift-down level then costs one
// line, and a 4-ary heap has half the levels of a binary one (10 instead of 20 for 1M entries).
//
// Pop (Floyd's "bottom-up" deletion, Knuth TAOCP 5.2.3 ex. 18; Wegener 1993): the hole left by the
// root moves down along the path of smallest children to a leaf (3 comparisons per level, none
// against the moved element), and the last entry is then sifted up from there; it is usually among
// the largest, so that stops after a level or two. At each level the descent also loads one word
// of each of the 4 cache lines holding the grandchildren (256 contiguous bytes): wasm has no
// prefetch instruction, and the next level's line is otherwise fetched only once the comparisons
// have chosen it, so at 1M entries (16 MiB, beyond L2) every deep level paid a full miss in series.
// Measured with a kernel-only loop (push 1M, pop all; medians of 5, noisy 2-core VM): these loads
// made pops 1.4-1.7x faster at 1M entries; Floyd's vs the top-down sift within noise (Floyd's
// ahead on random keys); a binary heap 1.8x slower than 4-ary; 8-ary (two lines per group) and a
// split layout (keys apart from seq/slot, compared on keys first) no faster than 4-ary.
//
// Large batch pops sort instead (heapSort): popping n of size entries costs n sift-downs, each a
// chain of dependent cache misses on a big heap, while an in-place MSD radix sort (American flag
// sort: McIlroy, Bostic & McIlroy, "Engineering Radix Sort", Computing Systems 1993) streams
// through memory. An ascending array is a valid heap, so after the sort the first n entries are
// the answer and the rest, moved to the front (heapDropFront), is still a heap. The sort key is
// the 12 bytes (key as an order-preserving u64, with -0 folded into +0 as the f64 comparison does;
// seq), most significant byte first; buckets of at most 24 entries get an insertion sort. When
// a range shares its leading bytes (equal keys: a queue's few priority levels), one pass finds the
// first byte that differs instead of one counting pass per shared byte.
// Its scratch (counts and bucket ends for each of the 12 digit levels, 2 KiB each) is at `scratch`,
// given by the caller.
//
// Batches (heapPushBatch / heapPopBatch) take and give plain arrays in the caller's staging area
// (keys f64[], slots u32[]), so JS fills and drains them with TypedArray.set (memcpy): one crossing
// for many entries.

const H_SIZE: usize = 0;
const H_CAPACITY: usize = 4;
/** Sink of the descent's early loads (never read). */
const H_TOUCH: usize = 8;
/** Bytes from base to entry 0. */
const ENTRIES: usize = 48;
const ENTRY_SHIFT: usize = 4;

// @ts-ignore: decorator
@inline
function at(base: usize, i: u32): usize {
  return base + ENTRIES + ((<usize>i) << ENTRY_SHIFT);
}

/** The key as a u64 whose unsigned order is the f64 order (-0 folded into +0; never NaN). */
// @ts-ignore: decorator
@inline
function sortableKey(key: f64): u64 {
  const b = reinterpret<u64>(key + 0.0); // -0 + 0 = +0
  // Negative: flip every bit (larger magnitude sorts first); positive: set the sign bit.
  return b ^ (<u64>(<i64>b >> 63) | 0x8000000000000000);
}

/** The inverse of sortableKey. */
// @ts-ignore: decorator
@inline
function keyOf(k: u64): f64 {
  return reinterpret<f64>(k >> 63 != 0 ? k ^ 0x8000000000000000 : ~k);
}

/** The 16-byte entry (key already sortable). */
// @ts-ignore: decorator
@inline
function entry(k: u64, seq: u32, slot: u32): v128 {
  return i32x4.replace_lane(i32x4.replace_lane(i64x2.splat(k), 2, seq), 3, slot);
}

/** (k1, s1) orders before (k2, s2): key ascending, then seq ascending. Branch-free. */
// @ts-ignore: decorator
@inline
function before(k1: u64, s1: u32, k2: u64, s2: u32): bool {
  return (k1 < k2) | ((k1 == k2) & (s1 < s2));
}

/** Entry at `p` orders before entry at `q`. */
// @ts-ignore: decorator
@inline
function entryBefore(p: usize, q: usize): bool {
  return before(load<u64>(p), load<u32>(p, 8), load<u64>(q), load<u32>(q, 8));
}

/**
 * Sifts an entry (key, seq, the 16 bytes `e`) up from the hole at `i` and stores it where it
 * belongs. Moves whole entries as one v128.
 */
// @ts-ignore: decorator
@inline
function siftUp(base: usize, i: u32, key: u64, seq: u32, e: v128): void {
  while (i > 0) {
    const parent = (i - 1) >>> 2;
    const pp = at(base, parent);
    if (!before(key, seq, load<u64>(pp), load<u32>(pp, 8))) break;
    v128.store(at(base, i), v128.load(pp));
    i = parent;
  }
  v128.store(at(base, i), e);
}

/**
 * Index of the smallest of the children of `i`, given that the first child `c` = 4i + 1 exists
 * (c < size).
 */
// @ts-ignore: decorator
@inline
function minChild(base: usize, c: u32, size: u32): u32 {
  const p = at(base, c);
  if (c + 3 < size) {
    // All four: a tournament, the comparisons independent of each other in the first round.
    const a = select<u32>(c + 1, c, entryBefore(p + 16, p));
    const b = select<u32>(c + 3, c + 2, entryBefore(p + 48, p + 32));
    return select<u32>(b, a, entryBefore(at(base, b), at(base, a)));
  }
  let m = c;
  for (let j = c + 1; j < size; j++) {
    if (entryBefore(at(base, j), at(base, m))) m = j;
  }
  return m;
}

/**
 * Removes the root (Floyd: hole to the bottom, then the last entry up). `size` is the size before
 * the removal (≥ 1). Returns the new size.
 */
// @ts-ignore: decorator
@inline
function removeRoot(base: usize, size: u32): u32 {
  const n = size - 1;
  if (n == 0) return 0;
  const lp = at(base, n);
  const last = v128.load(lp);
  const lastKey = load<u64>(lp);
  const lastSeq = load<u32>(lp, 8);
  let i: u32 = 0;
  let c: u32 = 1;
  let touch: u32 = 0;
  while (c < n) {
    // The four groups of grandchildren: 4c+1 .. 4c+16, four cache lines (see the top).
    const g = (c << 2) + 1;
    if (g + 15 < n) {
      const q = at(base, g);
      touch += load<u32>(q, 12) + load<u32>(q, 76) + load<u32>(q, 140) + load<u32>(q, 204);
    }
    const m = minChild(base, c, n);
    v128.store(at(base, i), v128.load(at(base, m)));
    i = m;
    c = (m << 2) + 1;
  }
  // The loads must not be dead code: keep their sum in a reserved header word.
  store<u32>(base + H_TOUCH, touch);
  siftUp(base, i, lastKey, lastSeq, last);
  return n;
}

/** Prepares an empty heap at `base` (64-byte aligned) holding up to `capacity` entries. */
export function heapInit(base: usize, capacity: u32): void {
  store<u32>(base + H_SIZE, 0);
  store<u32>(base + H_CAPACITY, capacity);
}

/** Sets the capacity after the wrapper grew the memory (entries stay where they are). */
export function heapSetCapacity(base: usize, capacity: u32): void {
  store<u32>(base + H_CAPACITY, capacity);
}

/** Live entries. */
export function heapSize(base: usize): u32 {
  return load<u32>(base + H_SIZE);
}

/**
 * Sets the size after the caller rewrote the entries in place (TaskHeap.retain compacts them, then
 * sorts: any order of entries becomes a heap again with heapSort). At most the capacity.
 */
export function heapSetSize(base: usize, size: u32): void {
  const capacity = load<u32>(base + H_CAPACITY);
  store<u32>(base + H_SIZE, size < capacity ? size : capacity);
}

/**
 * Inserts (key, seq, slot); O(log4 n). Returns the new size, or the old one unchanged when the heap
 * is at capacity (the wrapper grows before that happens; this only keeps a bug from writing past
 * the entries).
 */
export function heapPush(base: usize, key: f64, seq: u32, slot: u32): u32 {
  const size = load<u32>(base + H_SIZE);
  if (size >= load<u32>(base + H_CAPACITY)) return size;
  store<u32>(base + H_SIZE, size + 1);
  const k = sortableKey(key);
  siftUp(base, size, k, seq, entry(k, seq, slot));
  return size + 1;
}

/** Removes the first entry; returns its slot, or -1 when the heap is empty. */
export function heapPop(base: usize): i32 {
  const size = load<u32>(base + H_SIZE);
  if (size == 0) return -1;
  const slot = load<i32>(at(base, 0), 12);
  store<u32>(base + H_SIZE, removeRoot(base, size));
  return slot;
}

/** The first entry's slot, or -1 when empty. */
export function heapPeekSlot(base: usize): i32 {
  return load<u32>(base + H_SIZE) == 0 ? -1 : load<i32>(at(base, 0), 12);
}

/** The first entry's key, or NaN when empty. */
export function heapPeekKey(base: usize): f64 {
  return load<u32>(base + H_SIZE) == 0 ? NaN : keyOf(load<u64>(at(base, 0)));
}

/**
 * Inserts n entries: keys[i] (f64 at keys + 8i), slots[i] (u32 at slots + 4i), seq seq0 + i.
 * Same heap as n calls of heapPush in order. Pushes only as many as the capacity allows; returns
 * the new size.
 */
export function heapPushBatch(base: usize, keys: usize, slots: usize, seq0: u32, n: u32): u32 {
  let size = load<u32>(base + H_SIZE);
  const room = load<u32>(base + H_CAPACITY) - size;
  if (n > room) n = room;
  for (let j: u32 = 0; j < n; j++) {
    const k = sortableKey(load<f64>(keys + ((<usize>j) << 3)));
    const slot = load<u32>(slots + ((<usize>j) << 2));
    const seq = seq0 + j;
    siftUp(base, size, k, seq, entry(k, seq, slot));
    size++;
  }
  store<u32>(base + H_SIZE, size);
  return size;
}

/**
 * Removes up to n entries in order, writing their slots to dst (u32 at dst + 4i); returns how many.
 * Same result as that many heapPop calls.
 */
export function heapPopBatch(base: usize, dst: usize, n: u32): u32 {
  let size = load<u32>(base + H_SIZE);
  if (n > size) n = size;
  for (let j: u32 = 0; j < n; j++) {
    store<u32>(dst + ((<usize>j) << 2), load<u32>(at(base, 0), 12));
    size = removeRoot(base, size);
  }
  store<u32>(base + H_SIZE, size);
  return n;
}

/**
 * Sorts the entries ascending in place (pop order; still a valid heap). `scratch`: 24 KiB the
 * sort may use (12 digit levels × 2 KiB).
 */
export function heapSort(base: usize, scratch: usize): void {
  flagSort(base + ENTRIES, scratch, 0, load<u32>(base + H_SIZE), 0);
}

/**
 * Removes the first n entries of a sorted heap (after heapSort): the rest moves to the front and,
 * being ascending, is a valid heap. Returns the new size.
 */
export function heapDropFront(base: usize, n: u32): u32 {
  const size = load<u32>(base + H_SIZE);
  if (n >= size) {
    store<u32>(base + H_SIZE, 0);
    return 0;
  }
  memory.copy(at(base, 0), at(base, n), (<usize>(size - n)) << ENTRY_SHIFT);
  store<u32>(base + H_SIZE, size - n);
  return size - n;
}

/**
 * Renumbers the sequence numbers 0 .. size-1 in pop order, keeping that order (the wrapper's u32
 * counter is about to reach its limit; it continues from `size`): a sort, then seq = index.
 * `scratch` as for heapSort.
 */
export function heapRenumber(base: usize, scratch: usize): void {
  const size = load<u32>(base + H_SIZE);
  heapSort(base, scratch);
  for (let j: u32 = 0; j < size; j++) store<u32>(at(base, j), j, 8);
}

// ---- the sort: American flag sort of the entries [lo, hi) at E by (key, seq) ----

/** Buckets this small get an insertion sort. */
const INSERTION_MAX: u32 = 24;
/** Scratch bytes per digit level: 256 u32 bucket heads, then 256 u32 bucket ends. */
const LEVEL_BYTES: usize = 2048;

/** Byte d (0 = most significant) of the 12-byte sort key (u64 key, u32 seq) of entry e. */
// @ts-ignore: decorator
@inline
function digitOf(e: v128, d: u32): u32 {
  if (d < 8) return <u32>(<u64>i64x2.extract_lane(e, 0) >>> (56 - ((<u64>d) << 3))) & 255;
  return (<u32>i32x4.extract_lane(e, 2) >>> (24 - ((d - 8) << 3))) & 255;
}

/**
 * The first digit ≥ d at which the entries [lo, hi) differ (12 if none): one pass, OR-ing each
 * entry's difference from the first one.
 */
function firstDiffering(E: usize, lo: u32, hi: u32, d: u32): u32 {
  const p0 = E + ((<usize>lo) << ENTRY_SHIFT);
  const k0 = load<u64>(p0);
  const s0 = load<u32>(p0, 8);
  let dk: u64 = 0;
  let ds: u32 = 0;
  for (let i = lo + 1; i < hi; i++) {
    const p = E + ((<usize>i) << ENTRY_SHIFT);
    dk |= load<u64>(p) ^ k0;
    ds |= load<u32>(p, 8) ^ s0;
  }
  const first = dk != 0 ? <u32>clz<u64>(dk) >>> 3 : ds != 0 ? 8 + (clz<u32>(ds) >>> 3) : 12;
  return first > d ? first : d;
}

function insertionSort(E: usize, lo: u32, hi: u32): void {
  for (let i = lo + 1; i < hi; i++) {
    const p = E + ((<usize>i) << ENTRY_SHIFT);
    const e = v128.load(p);
    const key = load<u64>(p);
    const seq = load<u32>(p, 8);
    let j = i;
    while (j > lo) {
      const q = E + ((<usize>(j - 1)) << ENTRY_SHIFT);
      if (!before(key, seq, load<u64>(q), load<u32>(q, 8))) break;
      v128.store(q, v128.load(q), 16);
      j--;
    }
    v128.store(E + ((<usize>j) << ENTRY_SHIFT), e);
  }
}

function flagSort(E: usize, scratch: usize, lo: u32, hi: u32, d: u32): void {
  while (true) {
    const n = hi - lo;
    if (n <= INSERTION_MAX) {
      insertionSort(E, lo, hi);
      return;
    }
    if (d >= 12) return; // unreachable: seqs are distinct
    const heads = scratch + (<usize>d) * LEVEL_BYTES;
    const ends = heads + 1024;
    memory.fill(heads, 0, 1024);
    for (let i = lo; i < hi; i++) {
      const c = heads + ((<usize>digitOf(v128.load(E + ((<usize>i) << ENTRY_SHIFT)), d)) << 2);
      store<u32>(c, load<u32>(c) + 1);
    }
    // Every entry in one bucket (common in the key's top bytes): skip to the first byte that
    // differs, nothing to move.
    if (load<u32>(heads + ((<usize>digitOf(v128.load(E + ((<usize>lo) << ENTRY_SHIFT)), d)) << 2)) == n) {
      d = firstDiffering(E, lo, hi, d + 1);
      continue;
    }
    let pos = lo;
    for (let b: usize = 0; b < 256; b++) {
      const count = load<u32>(heads + (b << 2));
      store<u32>(heads + (b << 2), pos);
      pos += count;
      store<u32>(ends + (b << 2), pos);
    }
    // Permute in place: each entry is swapped straight into the next free place of its bucket.
    for (let b: u32 = 0; b < 256; b++) {
      const hp = heads + ((<usize>b) << 2);
      const end = load<u32>(ends + ((<usize>b) << 2));
      let h = load<u32>(hp);
      while (h < end) {
        const p = E + ((<usize>h) << ENTRY_SHIFT);
        let e = v128.load(p);
        let db = digitOf(e, d);
        while (db != b) {
          const dp = heads + ((<usize>db) << 2);
          const t = load<u32>(dp);
          store<u32>(dp, t + 1);
          const tp = E + ((<usize>t) << ENTRY_SHIFT);
          const other = v128.load(tp);
          v128.store(tp, e);
          e = other;
          db = digitOf(e, d);
        }
        v128.store(p, e);
        h++;
      }
      store<u32>(hp, h);
    }
    // Each bucket on the next digit (depth ≤ 12; level d's ends stay untouched below it).
    let start = lo;
    for (let b: usize = 0; b < 256; b++) {
      const end = load<u32>(ends + (b << 2));
      if (end - start > 1) flagSort(E, scratch, start, end, d + 1);
      start = end;
    }
    return;
  }
}
