// A bloom filter over bits in shared memory: any thread adds (atomic OR) and tests (atomic loads)
// with no lock, so the main thread and every worker share one set of "keys that may exist".
//
// Bit array layout (any 8-byte aligned block of m / 8 bytes, m a power of two ≥ 512):
//   +0       u32 word[0]   bits 0..31   (bit i lives in word i >>> 5, at bit i & 31)
//   +4       u32 word[1]   bits 32..63
//   ...
//   +m/8-4   u32 word[m/32 - 1]
// SharedBloom (engine/cache/bloom.ts) keeps three such arrays back to back, one per generation.
//
// Probes (Kirsch & Mitzenmacher, "Less hashing, same performance: building a better bloom filter",
// ESA 2006): the k bit indexes of a key are (h1 + i·h2) mod m for i = 0..k-1, from two 32-bit
// hashes the caller computed in JS (DESIGN pitfall 8: hashing a short string in JS is cheaper than
// copying it into WASM memory). m is a power of two, so "mod m" is "& mask" (mask = m - 1) and
// u32 wrap-around is harmless; h2 is forced odd so the k indexes never collapse onto one bit
// (an odd step is a unit mod 2^b: k ≤ m distinct indexes).
// These are standard (not cache-line-blocked) bloom bits: the false-positive rate is the textbook
// p = (1 - e^(-kn/m))^k (test/cache/bloom.test.ts measures it).
//
// Measured and not kept (1M keys per generation, m = 2^24, k = 3, this VM): interleaving the three
// generation arrays word by word (both arrays of a lookup in one cache line) made adds 1.5–3× and
// lookups 1.4–2× slower (one generation then spans three times the memory: more cache and TLB
// misses), winning only on "add a new key, then test an absent one" (~15%); loading all k words
// before the locked ORs (to overlap their misses) was ~15% slower than this single pass.
//
// Concurrency: a bit, once set, stays set until its whole array is zeroed (bloomZero), which the
// caller only does to an array no thread adds to or reads (SharedBloom's generation protocol).
// Adds are monotone ORs, so concurrent adds never lose a bit; a test that races an add of the same
// key may see some of its bits and answer "absent" — it was absent when the test began.
//
// Trust word (SharedBloom's header): an i64 of ms, raised only (CAS max), read with one atomic load;
// kept in the kernel so the hot path reads it with no BigInt allocation.

/**
 * Sets the key's k bits in the array at `bits`. Returns 1 when at least one bit was newly set
 * (the key was certainly not in the array before), else 0.
 */
export function bloomAdd(bits: usize, mask: u32, k: i32, h1: u32, h2: u32): i32 {
  h2 |= 1;
  let h = h1;
  let fresh: u32 = 0;
  for (let i = 0; i < k; i++) {
    const idx = h & mask;
    const w = bits + ((<usize>(idx >>> 5)) << 2);
    const bit: u32 = 1 << (idx & 31);
    // Test first: a set bit needs no locked RMW (re-adding a hot key costs k plain loads).
    if ((atomic.load<u32>(w) & bit) == 0) fresh |= (atomic.or<u32>(w, bit) & bit) ^ bit;
    h += h2;
  }
  return fresh != 0 ? 1 : 0;
}

/** 1 when all of the key's k bits are set in the array at `bits` (the key may be present), else 0. */
export function bloomHas(bits: usize, mask: u32, k: i32, h1: u32, h2: u32): i32 {
  h2 |= 1;
  let h = h1;
  for (let i = 0; i < k; i++) {
    const idx = h & mask;
    if ((atomic.load<u32>(bits + ((<usize>(idx >>> 5)) << 2)) & (1 << (idx & 31))) == 0) return 0;
    h += h2;
  }
  return 1;
}

/**
 * 1 when the key may be in array `a` or in array `b` (same mask and k): `bloomHas(a) |
 * bloomHas(b)` in one call and one probe sequence, stopping once both have answered "absent".
 */
export function bloomHas2(a: usize, b: usize, mask: u32, k: i32, h1: u32, h2: u32): i32 {
  h2 |= 1;
  let h = h1;
  let inA: u32 = 1;
  let inB: u32 = 1;
  for (let i = 0; i < k; i++) {
    const idx = h & mask;
    const off = (<usize>(idx >>> 5)) << 2;
    const bit: u32 = 1 << (idx & 31);
    inA &= <u32>((atomic.load<u32>(a + off) & bit) != 0);
    inB &= <u32>((atomic.load<u32>(b + off) & bit) != 0);
    if ((inA | inB) == 0) return 0;
    h += h2;
  }
  return 1;
}

/** Zeroes `bytes` bytes at `bits` (whole arrays; see the concurrency note above). */
export function bloomZero(bits: usize, bytes: usize): void {
  memory.fill(bits, 0, bytes);
}

/** The number of set bits in `bytes` bytes at `bits` (a multiple of 8; for fill estimates, not a snapshot). */
export function bloomCount(bits: usize, bytes: usize): f64 {
  let n: u64 = 0;
  const end = bits + bytes;
  for (let p = bits; p < end; p += 8) n += popcnt<u64>(load<u64>(p));
  return <f64>n; // f64: 2^32 set bits do not fit a u32
}

/** Raises the i64 (ms) at `word` to `t` if it is lower (CAS loop: monotone max). */
export function bloomDistrust(word: usize, t: f64): void {
  const want: i64 = t >= 9.2e18 ? i64.MAX_VALUE : <i64>Math.ceil(t);
  for (;;) {
    const cur = atomic.load<i64>(word);
    if (cur >= want) return;
    if (atomic.cmpxchg<i64>(word, cur, want) == cur) return;
  }
}

/** The i64 (ms) at `word`, as a number (one atomic load). */
export function bloomTrustedFrom(word: usize): f64 {
  return <f64>atomic.load<i64>(word);
}
