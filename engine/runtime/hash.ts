/**
 * Hashing of keys. One function — xxHash32 of the key's UTF-8 bytes — computed two ways:
 *  - in JavaScript over char codes, for short keys: copying a short string into WASM memory
 *    costs more than hashing it in JS (DESIGN pitfall 8);
 *  - by the WASM kernel after `encodeInto` into this thread's scratch region, for long keys.
 * Both give the same value for the same key, so a key hashes alike in every thread and tier.
 * The switch-over length is `WASM_HASH_MIN_LENGTH`, chosen from bench/runtime.bench.ts
 * ("hash N-char key"): on this project's 2-core VM JS wins up to 24 chars once the dispatch is
 * counted (24: 49 ns JS vs 56 ns through the WASM path) and WASM from 32 (53 vs 58 ns; 8× at
 * 1 KiB). README "Hashing" quotes the figures.
 */
import type { KernelExports } from './wasm.js';
/** String.prototype.charCodeAt, called as `charCodeAt.call(s, i)`: see runtime/key-hash.ts for why. */
const charCodeAt: (this: string, index: number) => number = String.prototype.charCodeAt;

const P1 = 0x9e3779b1 | 0;
const P2 = 0x85ebca77 | 0;
const P3 = 0xc2b2ae3d | 0;
const P4 = 0x27d4eb2f | 0;
const P5 = 0x165667b1 | 0;

/** Keys of at least this many UTF-16 units hash in WASM; shorter ones in JS. */
export const WASM_HASH_MIN_LENGTH = 32;

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

function round(acc: number, lane: number): number {
  acc = (acc + Math.imul(lane, P2)) | 0;
  return Math.imul(rotl(acc, 13), P1);
}

function avalanche(h: number): number {
  h ^= h >>> 15;
  h = Math.imul(h, P2);
  h ^= h >>> 13;
  h = Math.imul(h, P3);
  h ^= h >>> 16;
  return h >>> 0;
}

/** xxHash32 of `len` bytes of `u8` from `off`, in JavaScript. The plain-TS reference too. */
export function xxh32Bytes(u8: Uint8Array, off: number, len: number, seed = 0): number {
  let p = off;
  const end = off + len;
  let h: number;
  if (len >= 16) {
    let v1 = (seed + P1 + P2) | 0;
    let v2 = (seed + P2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - P1) | 0;
    const limit = end - 16;
    do {
      v1 = round(v1, u8[p]! | (u8[p + 1]! << 8) | (u8[p + 2]! << 16) | (u8[p + 3]! << 24));
      v2 = round(v2, u8[p + 4]! | (u8[p + 5]! << 8) | (u8[p + 6]! << 16) | (u8[p + 7]! << 24));
      v3 = round(v3, u8[p + 8]! | (u8[p + 9]! << 8) | (u8[p + 10]! << 16) | (u8[p + 11]! << 24));
      v4 = round(v4, u8[p + 12]! | (u8[p + 13]! << 8) | (u8[p + 14]! << 16) | (u8[p + 15]! << 24));
      p += 16;
    } while (p <= limit);
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + P5) | 0;
  }
  h = (h + len) | 0;
  while (p + 4 <= end) {
    h = (h + Math.imul(u8[p]! | (u8[p + 1]! << 8) | (u8[p + 2]! << 16) | (u8[p + 3]! << 24), P3)) | 0;
    h = Math.imul(rotl(h, 17), P4);
    p += 4;
  }
  while (p < end) {
    h = (h + Math.imul(u8[p]!, P5)) | 0;
    h = Math.imul(rotl(h, 11), P1);
    p++;
  }
  return avalanche(h);
}

/**
 * xxHash32 of an ASCII string's bytes straight from its char codes, or -1 if the string holds a
 * non-ASCII char (the caller then hashes its UTF-8 encoding).
 */
export function xxh32Ascii(s: string, seed = 0): number {
  const len = s.length;
  let p = 0;
  let h: number;
  let or = 0;
  let c0: number, c1: number, c2: number, c3: number;
  if (len >= 16) {
    let v1 = (seed + P1 + P2) | 0;
    let v2 = (seed + P2) | 0;
    let v3 = seed | 0;
    let v4 = (seed - P1) | 0;
    const limit = len - 16;
    do {
      c0 = charCodeAt.call(s, p); c1 = charCodeAt.call(s, p + 1); c2 = charCodeAt.call(s, p + 2); c3 = charCodeAt.call(s, p + 3);
      or |= c0 | c1 | c2 | c3;
      v1 = round(v1, c0 | (c1 << 8) | (c2 << 16) | (c3 << 24));
      c0 = charCodeAt.call(s, p + 4); c1 = charCodeAt.call(s, p + 5); c2 = charCodeAt.call(s, p + 6); c3 = charCodeAt.call(s, p + 7);
      or |= c0 | c1 | c2 | c3;
      v2 = round(v2, c0 | (c1 << 8) | (c2 << 16) | (c3 << 24));
      c0 = charCodeAt.call(s, p + 8); c1 = charCodeAt.call(s, p + 9); c2 = charCodeAt.call(s, p + 10); c3 = charCodeAt.call(s, p + 11);
      or |= c0 | c1 | c2 | c3;
      v3 = round(v3, c0 | (c1 << 8) | (c2 << 16) | (c3 << 24));
      c0 = charCodeAt.call(s, p + 12); c1 = charCodeAt.call(s, p + 13); c2 = charCodeAt.call(s, p + 14); c3 = charCodeAt.call(s, p + 15);
      or |= c0 | c1 | c2 | c3;
      v4 = round(v4, c0 | (c1 << 8) | (c2 << 16) | (c3 << 24));
      p += 16;
    } while (p <= limit);
    h = (rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18)) | 0;
  } else {
    h = (seed + P5) | 0;
  }
  h = (h + len) | 0;
  while (p + 4 <= len) {
    c0 = charCodeAt.call(s, p); c1 = charCodeAt.call(s, p + 1); c2 = charCodeAt.call(s, p + 2); c3 = charCodeAt.call(s, p + 3);
    or |= c0 | c1 | c2 | c3;
    h = (h + Math.imul(c0 | (c1 << 8) | (c2 << 16) | (c3 << 24), P3)) | 0;
    h = Math.imul(rotl(h, 17), P4);
    p += 4;
  }
  while (p < len) {
    c0 = charCodeAt.call(s, p);
    or |= c0;
    h = (h + Math.imul(c0, P5)) | 0;
    h = Math.imul(rotl(h, 11), P1);
    p++;
  }
  return or > 0x7f ? -1 : avalanche(h);
}

const encoder = new TextEncoder();

/**
 * Hashes string keys to xxHash32 of their UTF-8 bytes, choosing JS or WASM by length.
 * One per thread: it owns a scratch area in the shared memory that no other thread touches.
 */
export class KeyHasher {
  readonly #kernels: KernelExports;
  readonly #scratch: Uint8Array; // this thread's scratch, a view of the shared memory
  readonly #scratchOffset: number;
  readonly #local = new Uint8Array(256); // non-shared, for short non-ASCII keys

  constructor(kernels: KernelExports, memory: WebAssembly.Memory, scratchOffset: number, scratchBytes: number) {
    this.#kernels = kernels;
    this.#scratch = new Uint8Array(memory.buffer, scratchOffset, scratchBytes);
    this.#scratchOffset = scratchOffset;
  }

  /** xxHash32 (seed `seed`) of the UTF-8 bytes of `key`, as an unsigned 32-bit integer. */
  hash(key: string, seed = 0): number {
    if (key.length < WASM_HASH_MIN_LENGTH) {
      const h = xxh32Ascii(key, seed);
      if (h >= 0) return h;
      if (key.length * 3 <= this.#local.length) {
        const { written } = encoder.encodeInto(key, this.#local);
        return xxh32Bytes(this.#local, 0, written, seed);
      }
    }
    // UTF-8 needs at most 3 bytes per UTF-16 unit.
    if (key.length * 3 <= this.#scratch.length) {
      const { written } = encoder.encodeInto(key, this.#scratch);
      return this.#kernels.xxh32(this.#scratchOffset, written, seed) >>> 0;
    }
    const bytes = encoder.encode(key);
    return xxh32Bytes(bytes, 0, bytes.length, seed);
  }

  /** xxHash32 of bytes. Large inputs are copied to the scratch area and hashed in WASM. */
  hashBytes(bytes: Uint8Array, seed = 0): number {
    if (bytes.length < WASM_HASH_MIN_LENGTH || bytes.length > this.#scratch.length) {
      return xxh32Bytes(bytes, 0, bytes.length, seed);
    }
    this.#scratch.set(bytes);
    return this.#kernels.xxh32(this.#scratchOffset, bytes.length, seed) >>> 0;
  }

  /** xxHash64 of bytes via the WASM kernel (BigInt). */
  hash64(bytes: Uint8Array, seed = 0n): bigint {
    if (bytes.length > this.#scratch.length) {
      throw new RangeError(`hash64 input is ${bytes.length} bytes; the scratch area holds ${this.#scratch.length}`);
    }
    this.#scratch.set(bytes);
    return BigInt.asUintN(64, this.#kernels.xxh64(this.#scratchOffset, bytes.length, BigInt.asIntN(64, seed)));
  }
}
