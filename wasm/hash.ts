// xxHash32 and xxHash64 over bytes in linear memory.
//
// Specification: Yann Collet, "xxHash fast digest algorithm", doc/xxhash_spec.md (v0.1.1).
// Both functions read `len` bytes at `ptr` with plain (non-atomic) loads: the caller owns those
// bytes (its per-thread scratch region), so no other thread writes them while we hash.
// They never allocate and never read a clock.

const P32_1: u32 = 0x9e3779b1;
const P32_2: u32 = 0x85ebca77;
const P32_3: u32 = 0xc2b2ae3d;
const P32_4: u32 = 0x27d4eb2f;
const P32_5: u32 = 0x165667b1;

@inline function round32x4(acc: v128, input: v128): v128 {
  acc = i32x4.add(acc, i32x4.mul(input, i32x4.splat(P32_2)));
  acc = v128.or(i32x4.shl(acc, 13), i32x4.shr_u(acc, 19));
  return i32x4.mul(acc, i32x4.splat(P32_1));
}

/** The end of xxHash32 (one-shot and streaming): the last < 16 bytes at p..end, then the avalanche. */
@inline function finish32(h: u32, p: usize, end: usize): u32 {
  while (p + 4 <= end) {
    h += load<u32>(p) * P32_3;
    h = rotl<u32>(h, 17) * P32_4;
    p += 4;
  }
  while (p < end) {
    h += <u32>load<u8>(p) * P32_5;
    h = rotl<u32>(h, 11) * P32_1;
    p++;
  }
  h ^= h >> 15;
  h *= P32_2;
  h ^= h >> 13;
  h *= P32_3;
  h ^= h >> 16;
  return h;
}

/** xxHash32 of `len` bytes at `ptr` with `seed`. */
export function xxh32(ptr: usize, len: u32, seed: u32): u32 {
  const end = ptr + <usize>len;
  let p = ptr;
  let h: u32;
  if (len >= 16) {
    const limit = end - 16;
    // The four lanes side by side in one v128: one SIMD round per 16-byte stripe.
    let acc = i32x4(seed + P32_1 + P32_2, seed + P32_2, seed, seed - P32_1);
    do {
      acc = round32x4(acc, v128.load(p));
      p += 16;
    } while (p <= limit);
    h = rotl<u32>(i32x4.extract_lane(acc, 0), 1) + rotl<u32>(i32x4.extract_lane(acc, 1), 7) +
      rotl<u32>(i32x4.extract_lane(acc, 2), 12) + rotl<u32>(i32x4.extract_lane(acc, 3), 18);
  } else {
    h = seed + P32_5;
  }
  return finish32(h + len, p, end);
}

// Streaming xxHash32: the same digest as xxh32() over bytes that arrive in pieces (the content
// checksum of an LZ4 frame, block by block). The caller owns a 48-byte state:
//   +0 u32 v1 +4 v2 +8 v3 +12 v4   the four lanes
//   +16 u64 total                  bytes seen
//   +24 u32 buffered               bytes waiting in the buffer (0..15)
//   +28 u32 seed
//   +32 16 bytes buffer
const S_TOTAL: usize = 16;
const S_BUFFERED: usize = 24;
const S_SEED: usize = 28;
const S_BUF: usize = 32;

/** Starts a streaming xxHash32 in the 48 bytes at `state`. */
export function xxh32Reset(state: usize, seed: u32): void {
  store<u32>(state, seed + P32_1 + P32_2);
  store<u32>(state, seed + P32_2, 4);
  store<u32>(state, seed, 8);
  store<u32>(state, seed - P32_1, 12);
  store<u64>(state + S_TOTAL, 0);
  store<u32>(state + S_BUFFERED, 0);
  store<u32>(state + S_SEED, seed);
}

@inline function stripes(state: usize, p: usize, limit: usize): usize {
  let acc = v128.load(state); // v1..v4, one lane each
  while (p + 16 <= limit) {
    acc = round32x4(acc, v128.load(p));
    p += 16;
  }
  v128.store(state, acc);
  return p;
}

/** Adds `len` bytes at `ptr` to the streaming hash at `state`. */
export function xxh32Update(state: usize, ptr: usize, len: u32): void {
  store<u64>(state + S_TOTAL, load<u64>(state + S_TOTAL) + <u64>len);
  let buffered = <usize>load<u32>(state + S_BUFFERED);
  let p = ptr;
  const end = ptr + <usize>len;
  if (buffered + <usize>len < 16) {
    memory.copy(state + S_BUF + buffered, p, len);
    store<u32>(state + S_BUFFERED, <u32>(buffered + <usize>len));
    return;
  }
  if (buffered > 0) {
    const fill: usize = 16 - buffered;
    memory.copy(state + S_BUF + buffered, p, fill);
    stripes(state, state + S_BUF, state + S_BUF + 16);
    p += fill;
  }
  p = stripes(state, p, end);
  memory.copy(state + S_BUF, p, end - p);
  store<u32>(state + S_BUFFERED, <u32>(end - p));
}

/** The digest of everything added to `state` so far (the state stays usable). */
export function xxh32Digest(state: usize): u32 {
  const total = load<u64>(state + S_TOTAL);
  let h: u32;
  if (total >= 16) {
    h = rotl<u32>(load<u32>(state), 1) + rotl<u32>(load<u32>(state, 4), 7) + rotl<u32>(load<u32>(state, 8), 12) + rotl<u32>(load<u32>(state, 12), 18);
  } else {
    h = load<u32>(state + S_SEED) + P32_5;
  }
  const p = state + S_BUF;
  return finish32(h + <u32>total, p, p + <usize>load<u32>(state + S_BUFFERED));
}

const P64_1: u64 = 0x9e3779b185ebca87;
const P64_2: u64 = 0xc2b2ae3d27d4eb4f;
const P64_3: u64 = 0x165667b19e3779f9;
const P64_4: u64 = 0x85ebca77c2b2ae63;
const P64_5: u64 = 0x27d4eb2f165667c5;

@inline function round64(acc: u64, input: u64): u64 {
  acc += input * P64_2;
  acc = rotl<u64>(acc, 31);
  return acc * P64_1;
}

@inline function merge64(acc: u64, val: u64): u64 {
  acc ^= round64(0, val);
  return acc * P64_1 + P64_4;
}

/** The four lanes of xxHash64 merged into one (one-shot and streaming). */
@inline function converge64(v1: u64, v2: u64, v3: u64, v4: u64): u64 {
  let h = rotl<u64>(v1, 1) + rotl<u64>(v2, 7) + rotl<u64>(v3, 12) + rotl<u64>(v4, 18);
  h = merge64(h, v1);
  h = merge64(h, v2);
  h = merge64(h, v3);
  return merge64(h, v4);
}

/** The end of xxHash64 (one-shot and streaming): the last < 32 bytes at p..end, then the avalanche. */
@inline function finish64(h: u64, p: usize, end: usize): u64 {
  while (p + 8 <= end) {
    h ^= round64(0, load<u64>(p));
    h = rotl<u64>(h, 27) * P64_1 + P64_4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= <u64>load<u32>(p) * P64_1;
    h = rotl<u64>(h, 23) * P64_2 + P64_3;
    p += 4;
  }
  while (p < end) {
    h ^= <u64>load<u8>(p) * P64_5;
    h = rotl<u64>(h, 11) * P64_1;
    p++;
  }
  h ^= h >> 33;
  h *= P64_2;
  h ^= h >> 29;
  h *= P64_3;
  h ^= h >> 32;
  return h;
}

/** xxHash64 of `len` bytes at `ptr` with `seed`. */
export function xxh64(ptr: usize, len: u32, seed: u64): u64 {
  const end = ptr + <usize>len;
  let p = ptr;
  let h: u64;
  if (len >= 32) {
    const limit = end - 32;
    let v1 = seed + P64_1 + P64_2;
    let v2 = seed + P64_2;
    let v3 = seed;
    let v4 = seed - P64_1;
    do {
      v1 = round64(v1, load<u64>(p));
      v2 = round64(v2, load<u64>(p, 8));
      v3 = round64(v3, load<u64>(p, 16));
      v4 = round64(v4, load<u64>(p, 24));
      p += 32;
    } while (p <= limit);
    h = converge64(v1, v2, v3, v4);
  } else {
    h = seed + P64_5;
  }
  return finish64(h + <u64>len, p, end);
}

// Streaming xxHash64 (the content checksum of zstd frames, which fzstd does not verify).
// The caller owns a 96-byte state:
//   +0 u64 v1 +8 v2 +16 v3 +24 v4   +32 u64 total   +40 u64 seed   +48 u32 buffered   +64 32-byte buffer
const S64_TOTAL: usize = 32;
const S64_SEED: usize = 40;
const S64_BUFFERED: usize = 48;
const S64_BUF: usize = 64;

/** Starts a streaming xxHash64 in the 96 bytes at `state`. */
export function xxh64Reset(state: usize, seed: u64): void {
  store<u64>(state, seed + P64_1 + P64_2);
  store<u64>(state, seed + P64_2, 8);
  store<u64>(state, seed, 16);
  store<u64>(state, seed - P64_1, 24);
  store<u64>(state + S64_TOTAL, 0);
  store<u64>(state + S64_SEED, seed);
  store<u32>(state + S64_BUFFERED, 0);
}

@inline function stripes64(state: usize, p: usize, limit: usize): usize {
  let v1 = load<u64>(state);
  let v2 = load<u64>(state, 8);
  let v3 = load<u64>(state, 16);
  let v4 = load<u64>(state, 24);
  while (p + 32 <= limit) {
    v1 = round64(v1, load<u64>(p));
    v2 = round64(v2, load<u64>(p, 8));
    v3 = round64(v3, load<u64>(p, 16));
    v4 = round64(v4, load<u64>(p, 24));
    p += 32;
  }
  store<u64>(state, v1);
  store<u64>(state, v2, 8);
  store<u64>(state, v3, 16);
  store<u64>(state, v4, 24);
  return p;
}

/** Adds `len` bytes at `ptr` to the streaming hash at `state`. */
export function xxh64Update(state: usize, ptr: usize, len: u32): void {
  store<u64>(state + S64_TOTAL, load<u64>(state + S64_TOTAL) + <u64>len);
  const buffered = <usize>load<u32>(state + S64_BUFFERED);
  let p = ptr;
  const end = ptr + <usize>len;
  if (buffered + <usize>len < 32) {
    memory.copy(state + S64_BUF + buffered, p, len);
    store<u32>(state + S64_BUFFERED, <u32>(buffered + <usize>len));
    return;
  }
  if (buffered > 0) {
    const fill: usize = 32 - buffered;
    memory.copy(state + S64_BUF + buffered, p, fill);
    stripes64(state, state + S64_BUF, state + S64_BUF + 32);
    p += fill;
  }
  p = stripes64(state, p, end);
  memory.copy(state + S64_BUF, p, end - p);
  store<u32>(state + S64_BUFFERED, <u32>(end - p));
}

/** The digest of everything added to `state` so far. */
export function xxh64Digest(state: usize): u64 {
  const total = load<u64>(state + S64_TOTAL);
  let h: u64;
  if (total >= 32) {
    const v1 = load<u64>(state);
    const v2 = load<u64>(state, 8);
    const v3 = load<u64>(state, 16);
    const v4 = load<u64>(state, 24);
    h = converge64(v1, v2, v3, v4);
  } else {
    h = load<u64>(state + S64_SEED) + P64_5;
  }
  const p = state + S64_BUF;
  return finish64(h + total, p, p + <usize>load<u32>(state + S64_BUFFERED));
}
