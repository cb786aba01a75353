/**
 * The arena: a bump allocator over the engine's one shared `WebAssembly.Memory`, with a
 * registry of named regions that lives in that same memory, so any thread finds a region by
 * name without a message.
 *
 * Memory map (offsets in bytes from the start of the memory):
 * ```
 * 0            ARENA_BASE (64 KiB)    reserved for the AssemblyScript module's static data
 * ARENA_BASE   header, 64 bytes
 *                +0  u32 magic 'HPA1'       +4  u32 registry capacity (entries)
 *                +8  i32 lock (0 free, 1 held; guards allocation only)
 *                +12 u32 count  (published entries; readers need no lock)
 *                +16 u32 bump   (next free byte)   +20 u32 end (memory size)
 *                +24 u32 +28 u32   the key-hash seed of the creating thread (key-hash.ts)
 * ARENA_BASE+64  registry: capacity × 64-byte entries
 *                +0 u32 offset  +4 u32 bytes  +8 u32 name length  +12 u32 reserved
 *                +16 .. +63  name, UTF-8, at most 48 bytes
 * after that     regions, each aligned (64 bytes by default: one cache line)
 * ```
 * Protocol: a writer takes the lock (CAS 0→1), writes the entry in full, then publishes it with
 * a seq-cst store of `count + 1`. Entries never change after publication and regions are never
 * freed (they live as long as the engine), so a reader only loads `count` and scans.
 * Fresh memory is zeroed and never reused, so every new region starts all zero bytes.
 */
import { isWellFormed } from '../text.js';
import { ArenaExhaustedError, RegionConflictError } from '../errors.js';
import { lockWord, unlockWord } from './lock.js';
import { adoptKeyHashSeed, keyHashSeed } from './key-hash.js';

/** A named slice of the shared memory. */
export interface Region {
  /** The name it was registered under. */
  readonly name: string;
  /** Byte offset from the start of the shared memory. */
  readonly offset: number;
  /** Size in bytes. */
  readonly bytes: number;
}

/** Bytes below this offset are left to the WebAssembly module's own static data. */
export const ARENA_BASE = 64 * 1024;
const MAGIC = 0x31415048; // 'HPA1' little-endian
const HEADER = 64;
const ENTRY = 64;
/** Longest region name (UTF-8 bytes); names made of a prefix and a user's name check theirs against it. */
export const REGION_NAME_MAX = 48;
/** Registry entries; enough for every limiter, cache tier and channel of a large service. */
export const REGISTRY_CAPACITY = 1024;

const H_MAGIC = 0;
const H_CAPACITY = 1;
const H_LOCK = 2;
const H_COUNT = 3;
const H_BUMP = 4;
const H_END = 5;
const H_SEED = 6; // and 7

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class Arena {
  readonly #memory: WebAssembly.Memory;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  /** Index (in 32-bit words) of the header. */
  readonly #h: number;
  /** Lookups by name, filled lazily from the shared registry; entries never change. */
  readonly #cache = new Map<string, Region>();
  #cachedCount = 0;

  /**
   * Attaches to the arena in `memory`. The thread that creates the memory passes `init: true`
   * once, before any other thread attaches.
   */
  constructor(memory: WebAssembly.Memory, init = false) {
    this.#memory = memory;
    const buffer = memory.buffer;
    this.#i32 = new Int32Array(buffer);
    this.#u8 = new Uint8Array(buffer);
    this.#h = ARENA_BASE >>> 2;
    if (init) {
      const first = ARENA_BASE + HEADER + REGISTRY_CAPACITY * ENTRY;
      if (first > buffer.byteLength) {
        throw new RangeError(`shared memory of ${buffer.byteLength} bytes is too small for the arena`);
      }
      Atomics.store(this.#i32, this.#h + H_CAPACITY, REGISTRY_CAPACITY);
      Atomics.store(this.#i32, this.#h + H_COUNT, 0);
      Atomics.store(this.#i32, this.#h + H_BUMP, first);
      Atomics.store(this.#i32, this.#h + H_END, buffer.byteLength >>> 0);
      const [hi, lo] = keyHashSeed();
      Atomics.store(this.#i32, this.#h + H_SEED, hi | 0);
      Atomics.store(this.#i32, this.#h + H_SEED + 1, lo | 0);
      Atomics.store(this.#i32, this.#h + H_MAGIC, MAGIC); // (published last)
    } else if (Atomics.load(this.#i32, this.#h + H_MAGIC) !== MAGIC) {
      throw new Error('shared memory holds no hotpath arena (was it created by createEngine?)');
    } else {
      // Every thread of the engine hashes keys alike (its shared tables index by KeyHash).
      adoptKeyHashSeed(Atomics.load(this.#i32, this.#h + H_SEED), Atomics.load(this.#i32, this.#h + H_SEED + 1));
    }
  }

  /** The shared memory this arena carves. */
  get memory(): WebAssembly.Memory {
    return this.#memory;
  }

  /** Total bytes of the shared memory. */
  get totalBytes(): number {
    return Atomics.load(this.#i32, this.#h + H_END) >>> 0;
  }

  /** Bytes not yet given to a region. */
  get freeBytes(): number {
    return this.totalBytes - (Atomics.load(this.#i32, this.#h + H_BUMP) >>> 0);
  }

  /** The region registered under `name`, or `undefined`. Lock-free; any thread. */
  find(name: string): Region | undefined {
    const hit = this.#cache.get(name);
    if (hit !== undefined) return hit;
    this.#refresh();
    return this.#cache.get(name);
  }

  /** Every region, in creation order. */
  regions(): Region[] {
    this.#refresh();
    return [...this.#cache.values()];
  }

  /**
   * The region named `name`, created with `bytes` bytes (rounded up to `align`) if it does not
   * exist yet. Any thread may call it; the first caller creates, the others find.
   * @throws RangeError for a bad name, size or alignment.
   * @throws ArenaExhaustedError when the arena has no room (raise the `memory` option).
   * @throws RegionConflictError when `name` exists with a different size.
   */
  region(name: string, bytes: number, align = 64): Region & { created: boolean } {
    const nameBytes = encoder.encode(name);
    if (nameBytes.length === 0 || nameBytes.length > REGION_NAME_MAX) {
      throw new RangeError(`region name must be 1..${REGION_NAME_MAX} UTF-8 bytes, got ${JSON.stringify(name)}`);
    }
    // Names are kept as UTF-8: "n\ud800" and "n\ufffd" would be one region (review46).
    if (!isWellFormed(name)) throw new RangeError(`region name must be well-formed UTF-16 (no lone surrogate), got ${JSON.stringify(name)}`);
    if (!Number.isInteger(bytes) || bytes <= 0 || bytes > 0xffff_0000) {
      throw new RangeError(`region "${name}": bytes must be a positive integer, got ${bytes}`);
    }
    if (!Number.isInteger(align) || align < 8 || (align & (align - 1)) !== 0) {
      throw new RangeError(`region "${name}": align must be a power of two ≥ 8, got ${align}`);
    }
    const size = roundUp(bytes, 8);
    const existing = this.find(name);
    if (existing !== undefined) return checkSize(existing, size);

    lockWord(this.#i32, this.#h + H_LOCK);
    try {
      // Someone may have created it between our lookup and the lock.
      this.#refresh();
      const raced = this.#cache.get(name);
      if (raced !== undefined) return checkSize(raced, size);

      const count = Atomics.load(this.#i32, this.#h + H_COUNT) >>> 0;
      const capacity = Atomics.load(this.#i32, this.#h + H_CAPACITY) >>> 0;
      const bump = Atomics.load(this.#i32, this.#h + H_BUMP) >>> 0;
      const end = this.totalBytes;
      const offset = roundUp(bump, align);
      if (count >= capacity) throw new ArenaExhaustedError(name, size, Math.max(0, end - offset), end, { capacity });
      if (offset + size > end) throw new ArenaExhaustedError(name, size, Math.max(0, end - offset), end);
      const entry = ARENA_BASE + HEADER + count * ENTRY;
      const e = entry >>> 2;
      this.#i32[e] = offset;
      this.#i32[e + 1] = size;
      this.#i32[e + 2] = nameBytes.length;
      this.#u8.set(nameBytes, entry + 16);
      Atomics.store(this.#i32, this.#h + H_BUMP, offset + size);
      Atomics.store(this.#i32, this.#h + H_COUNT, count + 1); // publishes the entry
      const region = { name, offset, bytes: size };
      this.#cache.set(name, region);
      this.#cachedCount = count + 1;
      return { ...region, created: true };
    } finally {
      unlockWord(this.#i32, this.#h + H_LOCK);
    }
  }

  #refresh(): void {
    const count = Atomics.load(this.#i32, this.#h + H_COUNT) >>> 0;
    for (let i = this.#cachedCount; i < count; i++) {
      const entry = ARENA_BASE + HEADER + i * ENTRY;
      const e = entry >>> 2;
      const offset = this.#i32[e]! >>> 0;
      const bytes = this.#i32[e + 1]! >>> 0;
      const len = this.#i32[e + 2]!;
      // TextDecoder refuses views of shared memory: copy the (≤ 48) name bytes out first.
      const name = decoder.decode(this.#u8.slice(entry + 16, entry + 16 + len));
      this.#cache.set(name, { name, offset, bytes });
    }
    this.#cachedCount = count;
  }
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

function checkSize(region: Region, size: number): Region & { created: boolean } {
  if (region.bytes !== size) throw new RegionConflictError(region.name, region.bytes, size);
  return { ...region, created: false };
}
