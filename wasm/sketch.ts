// A 4-bit count-min sketch with a doorkeeper: the frequency estimator of the L1 cache's W-TinyLFU
// admission policy (Einziger, Friedman & Manes, "TinyLFU: A Highly Efficient Cache Admission
// Policy", ACM ToS 2017). The table follows Caffeine's FrequencySketch (v3): counters are packed
// 16 per u64 word and grouped in 64-byte blocks (8 words), and all four counters of a key live in
// one block, so an increment or an estimate touches one cache line.
//
// This memory is thread-private (each L1 store owns a WebAssembly.Memory of its own, see
// engine/cache/sketch.ts): plain loads and stores, no atomics. Nothing here allocates.
//
// Layout (byte offsets from `base`, 64-byte aligned):
//   +0   u32 blockMask     number of 64-byte blocks - 1 (blocks a power of two)
//   +4   u32 samplePeriod  additions after which every counter is halved ("reset", aging)
//   +8   u32 additions     additions since the last reset (an increment that changed something)
//   +12  u32 flags         bit 0: conservative update (raise only the counters at the minimum)
//   +16  u32 resets        how many resets ran (for tests and stats)
//   +20  u32 dkShift       32 - log2(doorkeeper bits); 0 = no doorkeeper
//   +24  u32 dkWords       doorkeeper size in u32 words
//   +28 .. +63             reserved
//   +64  table: (blockMask + 1) blocks × 8 u64 words; word w holds counters 0..15, counter c in
//        bits 4c .. 4c+3
//   then the doorkeeper: dkWords u32 words of bits (bit i in word i >>> 5 at bit i & 31)
//
// Indexing (from the caller's 32-bit key hash h; the caller hashes the string in JS, DESIGN
// pitfall 8). h must be well mixed in all 32 bits — the Cache's KeyHash.lo ends with murmur3's
// finalizer — so the kernel does not mix it again as Caffeine's spread() does for Java's weak
// hashCode(): that avalanche cost 2 ns of the 8 ns an increment took.
//   blockHash   = h
//   counterHash = rehash(blockHash)
//   block       = blockHash & blockMask
//   row i (0..3): byte b = counterHash >>> 8i;  word = block*8 + 2i + (b & 1); counter = (b >>> 1) & 15
//   doorkeeper bits: (blockHash * 0x9E3779B1) >>> dkShift  and  (counterHash * 0x85EBCA6B) >>> dkShift
//
// Increment: with a doorkeeper, a key whose two doorkeeper bits are not both set only gets them
// set (a one-hit wonder never reaches the counters); otherwise its four counters are raised by one
// (saturating at 15; with conservative update only those equal to the current minimum). Either
// way, when something changed, `additions` counts one, and at `samplePeriod` every counter is
// halved and the doorkeeper is cleared.
// Frequency: the minimum of the four counters, plus 1 when the doorkeeper holds the key (0..16).
// Reset: counters halve (w >>> 1 & 0x7777…); additions = (additions - odd/4) >>> 1, where odd is
// the number of odd counters (the increments the halving truncated, counted once per key rather
// than per row) — Caffeine's bookkeeping.

const H_BLOCK_MASK: usize = 0;
const H_SAMPLE: usize = 4;
const H_ADDITIONS: usize = 8;
const H_FLAGS: usize = 12;
const H_RESETS: usize = 16;
const H_DK_SHIFT: usize = 20;
const H_DK_WORDS: usize = 24;
/** Bytes before the table. */
const HEADER: usize = 64;

const FLAG_CONSERVATIVE: u32 = 1;
const RESET_MASK: u64 = 0x7777777777777777;
const ONE_MASK: u64 = 0x1111111111111111;

// @ts-ignore: decorator
@inline
function rehash(x: u32): u32 {
  x *= 0x31848bab;
  x ^= x >>> 14;
  return x;
}

// @ts-ignore: decorator
@inline
function doorkeeper(base: usize): usize {
  return base + HEADER + ((<usize>load<u32>(base + H_BLOCK_MASK) + 1) << 6);
}

/**
 * Initialises a sketch at `base` (64-byte aligned): 2^blocksLog2 blocks of 64 bytes, reset after
 * `samplePeriod` additions, a doorkeeper of 2^dkLog2 bits (dkLog2 0 = none; else 5..31), and
 * `flags` (bit 0: conservative update). Zeroes the table and the doorkeeper. The caller sizes the
 * memory: 64 + 64 · 2^blocksLog2 + 2^dkLog2 / 8 bytes (sketchBytes in engine/cache/sketch.ts).
 */
export function sketchInit(base: usize, blocksLog2: u32, samplePeriod: u32, dkLog2: u32, flags: u32): void {
  const blocks: u32 = 1 << blocksLog2;
  store<u32>(base + H_BLOCK_MASK, blocks - 1);
  store<u32>(base + H_SAMPLE, samplePeriod);
  store<u32>(base + H_ADDITIONS, 0);
  store<u32>(base + H_FLAGS, flags);
  store<u32>(base + H_RESETS, 0);
  store<u32>(base + H_DK_SHIFT, dkLog2 == 0 ? 0 : 32 - dkLog2);
  store<u32>(base + H_DK_WORDS, dkLog2 == 0 ? 0 : (<u32>1 << dkLog2) >>> 5);
  memory.fill(base + HEADER, 0, ((<usize>blocks) << 6) + ((<usize>load<u32>(base + H_DK_WORDS)) << 2));
}

/** Halves every counter and clears the doorkeeper (aging); counts the reset. */
export function sketchReset(base: usize): void {
  const start = base + HEADER;
  const end = start + ((<usize>load<u32>(base + H_BLOCK_MASK) + 1) << 6);
  let odd: u64 = 0;
  for (let p = start; p < end; p += 8) {
    const w = load<u64>(p);
    odd += popcnt<u64>(w & ONE_MASK);
    store<u64>(p, (w >>> 1) & RESET_MASK);
  }
  const dkWords = load<u32>(base + H_DK_WORDS);
  if (dkWords != 0) memory.fill(end, 0, (<usize>dkWords) << 2);
  const additions = load<u32>(base + H_ADDITIONS);
  const lost = <u32>(odd >>> 2);
  store<u32>(base + H_ADDITIONS, (additions > lost ? additions - lost : 0) >>> 1);
  store<u32>(base + H_RESETS, load<u32>(base + H_RESETS) + 1);
}

/** Records one occurrence of the key with 32-bit hash `hash`. */
export function sketchIncrement(base: usize, hash: u32): void {
  if (increment(base, hash)) {
    const additions = load<u32>(base + H_ADDITIONS) + 1;
    store<u32>(base + H_ADDITIONS, additions);
    if (additions >= load<u32>(base + H_SAMPLE)) sketchReset(base);
  }
}

/**
 * Records `n` occurrences, in order, of the u32 hashes at `ptr` (the L1 store's read buffer):
 * one boundary crossing for a batch of reads. Same result as n calls of sketchIncrement.
 */
export function sketchIncrementBatch(base: usize, ptr: usize, n: u32): void {
  const end = ptr + ((<usize>n) << 2);
  const sample = load<u32>(base + H_SAMPLE);
  let additions = load<u32>(base + H_ADDITIONS);
  for (let p = ptr; p < end; p += 4) {
    if (increment(base, load<u32>(p)) && ++additions >= sample) {
      store<u32>(base + H_ADDITIONS, additions);
      sketchReset(base);
      additions = load<u32>(base + H_ADDITIONS);
    }
  }
  store<u32>(base + H_ADDITIONS, additions);
}

/** The estimated frequency (0..16) of the key with 32-bit hash `hash`. */
export function sketchFrequency(base: usize, hash: u32): i32 {
  const blockHash = hash;
  const counterHash = rehash(blockHash);
  const block = base + HEADER + ((<usize>(blockHash & load<u32>(base + H_BLOCK_MASK))) << 6);
  let min: u32 = 15;
  for (let i: u32 = 0; i < 4; i++) {
    const b = counterHash >>> (i << 3);
    const w = block + ((<usize>((i << 1) + (b & 1))) << 3);
    const c = <u32>(load<u64>(w) >>> ((<u64>((b >>> 1) & 15)) << 2)) & 15;
    if (c < min) min = c;
  }
  return <i32>(min + (dkHas(base, blockHash, counterHash) ? 1 : 0));
}

/**
 * Compares two keys' frequencies in one call (the admission decision needs both): returns
 * (frequency(candidate) << 8) | frequency(victim).
 */
export function sketchCompare(base: usize, candidate: u32, victim: u32): i32 {
  return (sketchFrequency(base, candidate) << 8) | sketchFrequency(base, victim);
}

/** Additions since the last reset (header word; for tests). */
export function sketchAdditions(base: usize): u32 {
  return load<u32>(base + H_ADDITIONS);
}

// @ts-ignore: decorator
@inline
function dkHas(base: usize, blockHash: u32, counterHash: u32): bool {
  const shift = load<u32>(base + H_DK_SHIFT);
  if (shift == 0) return false;
  const dk = doorkeeper(base);
  const i1 = (blockHash * 0x9e3779b1) >>> shift;
  const i2 = (counterHash * 0x85ebca6b) >>> shift;
  return ((load<u32>(dk + ((<usize>(i1 >>> 5)) << 2)) >>> (i1 & 31)) & (load<u32>(dk + ((<usize>(i2 >>> 5)) << 2)) >>> (i2 & 31)) & 1) != 0;
}

/** Raises the key's counters (or its doorkeeper bits). True when anything changed. */
// @ts-ignore: decorator
@inline
function increment(base: usize, hash: u32): bool {
  const blockHash = hash;
  const counterHash = rehash(blockHash);
  const shift = load<u32>(base + H_DK_SHIFT);
  if (shift != 0) {
    const dk = doorkeeper(base);
    const i1 = (blockHash * 0x9e3779b1) >>> shift;
    const i2 = (counterHash * 0x85ebca6b) >>> shift;
    const w1 = dk + ((<usize>(i1 >>> 5)) << 2);
    const w2 = dk + ((<usize>(i2 >>> 5)) << 2);
    const b1: u32 = 1 << (i1 & 31);
    const b2: u32 = 1 << (i2 & 31);
    if ((load<u32>(w1) & b1) == 0 || (load<u32>(w2) & b2) == 0) {
      store<u32>(w1, load<u32>(w1) | b1);
      store<u32>(w2, load<u32>(w2) | b2);
      return true;
    }
  }
  const block = base + HEADER + ((<usize>(blockHash & load<u32>(base + H_BLOCK_MASK))) << 6);
  // Row i's byte b = counterHash >>> 8i picks word 2i + (b & 1) and counter (b >>> 1) & 15.
  const w0 = block + ((<usize>(counterHash & 1)) << 3);
  const w1 = block + 16 + ((<usize>((counterHash >>> 8) & 1)) << 3);
  const w2 = block + 32 + ((<usize>((counterHash >>> 16) & 1)) << 3);
  const w3 = block + 48 + ((<usize>((counterHash >>> 24) & 1)) << 3);
  const s0: u64 = <u64>(((counterHash >>> 1) & 15) << 2);
  const s1: u64 = <u64>(((counterHash >>> 9) & 15) << 2);
  const s2: u64 = <u64>(((counterHash >>> 17) & 15) << 2);
  const s3: u64 = <u64>(((counterHash >>> 25) & 15) << 2);
  const v0 = load<u64>(w0);
  const v1 = load<u64>(w1);
  const v2 = load<u64>(w2);
  const v3 = load<u64>(w3);
  const c0 = <u32>(v0 >>> s0) & 15;
  const c1 = <u32>(v1 >>> s1) & 15;
  const c2 = <u32>(v2 >>> s2) & 15;
  const c3 = <u32>(v3 >>> s3) & 15;
  // Conservative update raises only the counters at the minimum; the standard one all below 15.
  let top: u32 = 15;
  if ((load<u32>(base + H_FLAGS) & FLAG_CONSERVATIVE) != 0) {
    top = min<u32>(min<u32>(c0, c1), min<u32>(c2, c3));
    if (top == 15) return false;
    top += 1;
  }
  // Branch-free: which counters sit at the minimum is a coin toss per key, and four mispredicted
  // branches cost more than four stores (the four words are distinct: rows use disjoint words).
  const i0 = <u64>(c0 < top);
  const i1 = <u64>(c1 < top);
  const i2 = <u64>(c2 < top);
  const i3 = <u64>(c3 < top);
  store<u64>(w0, v0 + (i0 << s0));
  store<u64>(w1, v1 + (i1 << s1));
  store<u64>(w2, v2 + (i2 << s2));
  store<u64>(w3, v3 + (i3 << s3));
  return (i0 | i1 | i2 | i3) != 0;
}
