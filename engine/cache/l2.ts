/**
 * L2: a key/value store in the engine's shared memory that the main thread and every worker read
 * and write directly (no messages). Values are opaque bytes (the cache stores the codec's
 * encoding). Plain JavaScript over typed-array views of the shared memory — every thread runs this
 * same code — rather than a WASM kernel: the work per call is a few dozen loads and one byte copy,
 * which a JS↔WASM call and the key copy into WASM memory would cost more than (DESIGN pitfall 8).
 *
 * ## Region layout (all offsets in bytes from the region start; i32 unless noted)
 * ```
 * +0     header: u32 layout, bytes, maxValueBytes, pageSize, slots, stripes, pages, classes
 *        +32 u32 seed hi, +36 u32 seed lo (random, drawn by the thread that creates the store)
 *        +40 ready flag 'L2S1' (openTableRegion)
 * +64    counters: entries, tombstones, bytes (of blocks in use), evictions, expired, refused
 * +128   allocator line: lock, tick (evictions so far), free pages, free-page cursor
 * +192   class table: 64 × 32 B   free-list head (block offset, 0 = none), pages, CLOCK hand
 *        (page, block), tick of last eviction, tick of last page steal, evictions since then, used
 * +2240  stripe lines: stripes × 64 B   lock word, segment CLOCK hand   (one line each: no false
 *        sharing between writers of different stripes)
 * +…     move counters: stripes × i32 (seqlock-style, odd while a backward shift runs; read by
 *        readers, so kept apart from the lock lines that writers hammer)
 * +…     page table: pages × 8 B   class + 1 (0 = free page), blocks in use
 * +…     index: slots × 32 B, a power of two, split into `stripes` equal segments:
 *          +0 seq (odd while a writer is inside)  +4 hash hi  +8 hash lo  +12 block (abs. offset)
 *          +16 value length  +20 key length  +24 state (0 empty, 1 value, 2 tombstone)
 *          +28 referenced bit (CLOCK; set by readers on a hit)
 * +…     slab: pages × pageSize; a page belongs to one size class (64 B up, ×1.25, multiples of 8)
 *        and is cut into blocks of that size:
 *          +0 i32 owner (slot index + 1; 0 = free; RESERVED while its writer fills it)
 *          +8 f64 expires  +16 f64 stale  +24 f64 version   +32 key (UTF-8), then value bytes
 *          free blocks reuse +4/+8 as next/prev of their class's doubly linked free list
 * ```
 *
 * ## Seeded slots
 * A key's stripe and home slot come from its KeyHash mixed with the store's random seed
 * (`fmix(hi ^ seedHi)`, `fmix(lo ^ seedLo)`, a bijection: the index stores and compares the mixed
 * pair). KeyHash is seeded per process (since 2026-11-25), but one seed serves every table of the
 * process, and until then it was fixed and public: without this seed a client choosing the keys of a
 * cache (keys made of request data) could compute offline keys that share one segment and home,
 * and make every get and set of a chosen key walk a full probe chain, or evict it. The stamp
 * table keeps the caller's unmixed `lo` (L1 reads stamps with it).
 *
 * ## Protocols
 * - Writers (set/delete/clear, eviction) take the stripe lock of the key: stripe = hash hi &
 *   (stripes - 1). A key lives only in its stripe's segment (linear probing from hash lo, wrapping
 *   inside the segment), so the one lock covers every slot it can occupy. Locks are three-state
 *   (0 free, 1 held, 2 held with waiters): a CAS, a short spin, then `Atomics.wait`; unlock only
 *   calls `Atomics.notify` when someone waits.
 * - The allocator (page table, class table, free lists, tick) has its own lock. Lock order: stripe
 *   → allocator. The allocator evicting an entry of another stripe only ever `tryLock`s it and
 *   skips a busy one, so no thread waits for a stripe while holding the allocator: no deadlock.
 *   `clear()` takes every stripe in ascending order, then the allocator.
 * - Readers never lock: per slot, a seqlock. Load seq (odd: a writer is inside, start over), load
 *   the fields, compare the key bytes, copy the value out, load seq again: unchanged means the copy
 *   is a snapshot of the slot at one instant. A writer makes seq odd before it changes a slot and
 *   even after, and frees (or reuses) a block only after the seq of the slot that owned it moved,
 *   so a reader copying a block that is being reused always fails its check. Bounded retries, then
 *   a miss (a miss is always safe); values read from torn fields are range-checked before use.
 * - Deletion is Knuth's algorithm R (backward shift, no tombstone slots): entries behind the hole
 *   move back toward their home. A reader probing past a slot at that moment could miss an entry
 *   that moved behind it, so the shift runs inside the stripe's move counter (odd while it runs)
 *   and a reader only trusts a miss when that counter was even and unchanged across its probe.
 *   Inserting never moves entries, so a hit needs no such check.
 * - Readers load seq and the move counters with `Atomics.load` and everything between with plain
 *   loads (8× cheaper here: an `Atomics.load` is ~8 ns on this VM, and a get would do 14): the
 *   atomic loads keep V8 from caching or moving the plain ones across them, and the seq check
 *   throws away whatever a racing writer made inconsistent. (On x86-64 loads are not reordered
 *   with loads; on weaker hardware this relies on V8 fencing around its atomics.)
 *
 * ## Allocation and eviction
 * A block (header + key + value) comes from its size class's free list; an empty list takes a free
 * page; with none left, CLOCK over the class's blocks evicts one entry (an entry past its stale
 * time goes at once; otherwise a referenced entry loses its bit and is passed over). Pages move
 * between classes so the slab follows the workload (memcached's slab rebalancing): a class with no
 * page, or that has evicted a page's worth of blocks since its last steal, takes the emptiest page
 * of the class that has gone longest without evicting (and has not evicted since), evicting the
 * entries on it. An index segment that is full evicts one of its own entries the same way (CLOCK
 * over the segment). When nothing can be evicted (everything busy), `set` answers 'no-room'.
 *
 * ## TTL and versions
 * `get` is a miss past an entry's `stale` time (the caller tells fresh from stale with `expires`);
 * dead entries are reclaimed by eviction or overwritten. Every entry and tombstone has a version
 * (larger is newer): `set` is refused ('older') while the key's live entry or live tombstone has a
 * greater version, and so is a versioned `delete`. A versioned delete with `tombstoneUntil` leaves
 * a tombstone (key, version, no value) that `get` never returns, until that time — unless memory
 * pressure evicts it earlier (then a late older `set` could land: tombstones are best effort).
 *
 * ## Stamps
 * With a {@link StampTable}, every successful change (set stored, delete, a refused too-large /
 * no-room set, which drops the old value) bumps the key's stamp inside the stripe lock after the
 * change is published, and `clear()` bumps the epoch after emptying the store. `get` loads the
 * stamp before it reads the slot and returns it with the hit (see stamps.ts for why).
 */
import { getRandomValues } from 'node:crypto';
import { RegionConflictError } from '../errors.js';
import { openTableRegion } from '../limiter/table-region.js';
import type { ThreadRuntime } from '../runtime/thread.js';
import { fmix } from '../runtime/key-hash.js';
import type { StampTable } from './stamps.js';
/** String.prototype.charCodeAt, called as `charCodeAt.call(s, i)`: see runtime/key-hash.ts for why. */
const charCodeAt: (this: string, index: number) => number = String.prototype.charCodeAt;

/** Sizing of a {@link SharedStore}. */
export interface L2Options {
  /** Bytes of shared memory for the whole store (index, tables and slab). At least 512 KiB. */
  bytes: number;
  /**
   * Largest key + value in bytes (UTF-8 key length + encoded value length); larger sets answer
   * 'too-large'. Default: pageSize - 32, with pageSize = bytes / 128 rounded down to a power of two
   * and clamped to [64 KiB, 1 MiB] (16 MiB of L2 → 128 KiB values).
   */
  maxValueBytes?: number;
  /** The stamp table to bump on every change (for L1 invalidation); none by default. */
  stamps?: StampTable;
}

/** The times and version of an entry. */
export interface L2Meta {
  /** ms timestamp after which the entry is stale (Infinity: never). */
  expires: number;
  /** ms timestamp after which the entry is gone (a miss); ≥ expires (Infinity: never). */
  stale: number;
  /** Version, an integer as a float64; larger is newer. */
  version: number;
}

/**
 * A reusable buffer `get` copies into (grown — replaced — when a value does not fit). Past a hit's
 * length it holds what earlier reads left: decode only `[0, length)` (ValueCodec.decodeCopying
 * reads through a view of exactly that).
 */
export interface L2Scratch {
  buf: Buffer;
}

/**
 * A hit: the value's bytes and what was stored with them. Without a scratch buffer `bytes` is a
 * private copy, exactly the value; with one it is the scratch buffer, valid up to `length` and
 * until the next `get` into it.
 */
export interface L2Hit extends L2Meta {
  bytes: Uint8Array;
  /** The value's length in `bytes`. */
  length: number;
  /** The key's stamp, loaded before the slot was read (0 without a stamp table). */
  stamp: number;
}

/**
 * 'stored'; 'older' (a live entry or tombstone with a greater version exists; nothing changed);
 * 'too-large' (key + value over maxValueBytes) and 'no-room' (no block could be freed): in both
 * the key's previous value is removed, so no thread reads it any more, and a tombstone one version
 * below the write's may refuse older sets meanwhile (best effort; see {@link L2Hold}).
 */
export type L2SetResult = 'stored' | 'older' | 'too-large' | 'no-room';

/**
 * Where and how long a set that L2 cannot hold ('too-large', 'no-room') leaves the tombstone one
 * version below it (its "held place"). Without one, `set` leaves it for every such set, until the
 * write's stale time.
 */
export interface L2Hold {
  /** The tombstone lives until min(the write's stale time, now + `ms`). */
  ms: number;
  /**
   * For a key the store holds no entry of (value or tombstone, live or not): whether a tombstone is
   * wanted anyway — a read or load of the key that may store an older value is in flight. Without
   * an entry and without this answering true, the set leaves no tombstone. Called with the stripe
   * lock held: it must not touch the store.
   */
  wanted(key: string, hi: number, lo: number, now: number): boolean;
}

/** Counters of the store (shared by every thread). */
export interface L2Stats {
  /** Entries holding a value (live or not yet reclaimed). */
  entries: number;
  /** Tombstones. */
  tombstones: number;
  /** Bytes of the blocks in use (size-class rounded: header, key and value). */
  bytes: number;
  /** Bytes of the slab (pages × page size). */
  capacityBytes: number;
  /** Entries evicted before their stale time to make room. */
  evictions: number;
  /** Dead entries (past stale) reclaimed by eviction. */
  expired: number;
  /** Sets refused: 'older', 'too-large' or 'no-room'. */
  refused: number;
}

const MAGIC = 0x3153324c; // 'L2S1'
const LAYOUT = 1;
const MIN_PAGE = 64 * 1024;
const MAX_DEFAULT_PAGE = 1024 * 1024;
const MIN_PAGES = 4;
const MAX_CLASSES = 64;
const MIN_BLOCK = 64;
/** Block header: owner, (free-list links), expires, stale, version. */
const DATA = 32;
const SLOT_WORDS = 8;
const SEGMENT_MIN = 16;
const MAX_STRIPES = 256;
/** Whole-probe restarts a reader allows itself before answering a miss. */
const READ_ATTEMPTS = 256;
const RESERVED = 0x7fffffff;

// region offsets
/** u32 indexes of the seeds in the header. */
const H_SEED_HI = 8;
const H_SEED_LO = 9;
const COUNTERS = 64;
const ALLOC = 128;
const CLASSES = 192;
const CLASS_BYTES = 32;
const STRIPES_AT = CLASSES + MAX_CLASSES * CLASS_BYTES; // 2240
const LINE = 64;

// counters (i32 index from COUNTERS)
const C_ENTRIES = 0;
const C_TOMBS = 1;
const C_BYTES = 2;
const C_EVICT = 3;
const C_EXPIRED = 4;
const C_REFUSED = 5;
// allocator line
const A_LOCK = 0;
const A_TICK = 1;
const A_FREE_PAGES = 2;
const A_CURSOR = 3;
// class entry
const K_FREE = 0;
const K_PAGES = 1;
const K_HAND_PAGE = 2;
const K_HAND_BLOCK = 3;
const K_LAST_EVICT = 4;
const K_STEAL_TICK = 5;
const K_PRESSURE = 6;
const K_USED = 7;
// stripe line
const L_LOCK = 0;
const L_HAND = 1;
// slot
const S_SEQ = 0;
const S_HI = 1;
const S_LO = 2;
const S_BLOCK = 3;
const S_VLEN = 4;
const S_KLEN = 5;
const S_STATE = 6;
const S_REF = 7;
const EMPTY = 0;
const VALUE = 1;
const TOMB = 2;

/** Everything derived from (bytes, maxValueBytes); every thread computes the same. */
interface Plan {
  bytes: number;
  maxValueBytes: number;
  pageSize: number;
  slots: number;
  stripes: number;
  pages: number;
  sizes: number[];
  movesAt: number;
  pageTableAt: number;
  indexAt: number;
  slabAt: number;
}

function pow2floor(n: number): number {
  return n < 1 ? 0 : 2 ** Math.floor(Math.log2(n));
}

function pow2ceil(n: number): number {
  return 2 ** Math.ceil(Math.log2(n));
}

function roundUp(n: number, to: number): number {
  return Math.ceil(n / to) * to;
}

/** The layout of a store of `bytes` (validated by the caller). */
function plan(rawBytes: number, maxValueBytes: number | undefined): Plan {
  const bytes = Math.floor(rawBytes / LINE) * LINE;
  const pageSize = maxValueBytes === undefined
    ? Math.min(MAX_DEFAULT_PAGE, Math.max(MIN_PAGE, pow2floor(bytes / 128)))
    : Math.max(MIN_PAGE, pow2ceil(roundUp(maxValueBytes + DATA, 8)));
  const maxValue = maxValueBytes ?? pageSize - DATA;
  const largest = roundUp(maxValue + DATA, 8);
  const sizes: number[] = [];
  for (let s = MIN_BLOCK; ; s = roundUp(Math.max(s + 8, s * 1.25), 8)) {
    if (s >= largest) {
      sizes.push(largest);
      break;
    }
    sizes.push(s);
  }
  // About a quarter (between 1/8 and 1/4) of the region for the index: 32-byte slots, enough for
  // entries of ~200 B on average at a load factor under 0.9.
  const slots = Math.max(SEGMENT_MIN, pow2floor(bytes / 128));
  const stripes = Math.min(MAX_STRIPES, slots / SEGMENT_MIN);
  const movesAt = STRIPES_AT + stripes * LINE;
  const pageTableAt = roundUp(movesAt + stripes * 4, LINE);
  const indexFixed = slots * SLOT_WORDS * 4;
  // pages × (pageSize + 8 bytes of page table) + alignment slack must fit what is left.
  const pages = Math.max(0, Math.floor((bytes - pageTableAt - indexFixed - 2 * LINE) / (pageSize + 8)));
  const indexAt = roundUp(pageTableAt + pages * 8, LINE);
  const slabAt = indexAt + indexFixed;
  return { bytes, maxValueBytes: maxValue, pageSize, slots, stripes, pages, sizes, movesAt, pageTableAt, indexAt, slabAt };
}

/**
 * The shared L2 store (see the file comment for the layout and protocols). One instance per
 * thread per store; all of them see the same entries.
 */
export class SharedStore {
  /** Largest UTF-8 key length + value length accepted by `set`. */
  readonly maxValueBytes: number;
  /** Bytes of the region. */
  readonly regionBytes: number;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #f64: Float64Array;
  readonly #stamps: StampTable | undefined;
  /** i32 indexes of the region's parts. */
  readonly #counters: number;
  readonly #alloc: number;
  readonly #classes: number;
  readonly #locks: number;
  readonly #moves: number;
  readonly #pageTable: number;
  readonly #index: number;
  /** Absolute byte offsets of the slab. */
  readonly #slabBase: number;
  readonly #slabEnd: number;
  readonly #pageSize: number;
  readonly #pages: number;
  readonly #stripeMask: number;
  /** The store's seeds (header +32, +36): see "Seeded slots". */
  readonly #seedHi: number;
  readonly #seedLo: number;
  readonly #segShift: number;
  readonly #segMask: number;
  /** Block size and blocks per page of each class. */
  readonly #sizes: Int32Array;
  readonly #perPage: Int32Array;
  #contended = 0;

  private constructor(rt: ThreadRuntime, offset: number, p: Plan, stamps: StampTable | undefined) {
    const buffer = rt.memory.buffer;
    this.#i32 = rt.i32;
    this.#u8 = new Uint8Array(buffer);
    this.#f64 = new Float64Array(buffer, 0, buffer.byteLength >>> 3);
    this.#stamps = stamps;
    this.maxValueBytes = p.maxValueBytes;
    this.regionBytes = p.bytes;
    this.#counters = (offset + COUNTERS) >>> 2;
    this.#alloc = (offset + ALLOC) >>> 2;
    this.#classes = (offset + CLASSES) >>> 2;
    this.#locks = (offset + STRIPES_AT) >>> 2;
    this.#moves = (offset + p.movesAt) >>> 2;
    this.#pageTable = (offset + p.pageTableAt) >>> 2;
    this.#index = (offset + p.indexAt) >>> 2;
    this.#slabBase = offset + p.slabAt;
    this.#slabEnd = this.#slabBase + p.pages * p.pageSize;
    this.#pageSize = p.pageSize;
    this.#pages = p.pages;
    this.#stripeMask = p.stripes - 1;
    this.#seedHi = Atomics.load(rt.i32, (offset >>> 2) + H_SEED_HI);
    this.#seedLo = Atomics.load(rt.i32, (offset >>> 2) + H_SEED_LO);
    const segment = p.slots / p.stripes;
    this.#segShift = Math.log2(segment);
    this.#segMask = segment - 1;
    this.#sizes = Int32Array.from(p.sizes);
    this.#perPage = Int32Array.from(p.sizes, (s) => Math.floor(p.pageSize / s));
  }

  /**
   * Finds or creates the store `name` in `rt`'s arena. Any thread may call it; the first creates
   * and initialises the region, the others wait for it to be published.
   * @throws TypeError / RangeError naming `options.l2.bytes` / `options.l2.maxValueBytes` for bad
   *   or too small sizes.
   * @throws RegionConflictError when `name` exists with another size or layout.
   * @throws ArenaExhaustedError when the arena has no room for `bytes`.
   */
  static open(rt: ThreadRuntime, name: string, options: L2Options): SharedStore {
    const { bytes, maxValueBytes } = options;
    if (typeof bytes !== 'number' || !Number.isInteger(bytes) || bytes <= 0 || bytes > 0xffff_0000) {
      throw new TypeError(`options.l2.bytes must be a positive integer, got ${String(bytes)}`);
    }
    if (maxValueBytes !== undefined && (typeof maxValueBytes !== 'number' || !Number.isInteger(maxValueBytes) || maxValueBytes < 1 || maxValueBytes > 16 * 1024 * 1024)) {
      throw new RangeError(`options.l2.maxValueBytes must be an integer in [1, 16777216], got ${String(maxValueBytes)}`);
    }
    const p = plan(bytes, maxValueBytes);
    if (p.pages < MIN_PAGES) {
      const need = SharedStore.minimumBytes(maxValueBytes);
      throw new RangeError(`options.l2.bytes must be at least ${need} (${MIN_PAGES} pages of ${p.pageSize} bytes plus the index) for maxValueBytes ${p.maxValueBytes}, got ${bytes}`);
    }
    if (p.sizes.length > MAX_CLASSES) throw new RangeError(`options.l2.maxValueBytes ${p.maxValueBytes} needs too many size classes`);
    const header = [LAYOUT, p.bytes, p.maxValueBytes, p.pageSize, p.slots, p.stripes, p.pages, p.sizes.length];
    const offset = openTableRegion(rt, name, p.bytes, MAGIC,
      (_big, u32) => {
        // Zero is a valid empty store (fresh arena memory is zeroed): only the header to write.
        for (let i = 0; i < header.length; i++) u32[i] = header[i]!;
        const seeds = getRandomValues(new Uint32Array(2));
        u32[H_SEED_HI] = seeds[0]!;
        u32[H_SEED_LO] = seeds[1]!;
        Atomics.store(rt.i32, ((u32.byteOffset + ALLOC) >>> 2) + A_FREE_PAGES, p.pages);
      },
      (_big, u32) => header.every((v, i) => u32[i] === v));
    return new SharedStore(rt, offset, p, options.stamps);
  }

  /**
   * Attaches to the store `name` created by another thread, with the sizes it was created with,
   * or returns `undefined` when no such region exists.
   * @throws RegionConflictError when `name` is not an L2 store (or was never initialised).
   */
  static find(rt: ThreadRuntime, name: string, stamps?: StampTable): SharedStore | undefined {
    const r = rt.arena.find(name);
    if (r === undefined) return undefined;
    const flag = (r.offset >>> 2) + 10;
    for (let spins = 0; Atomics.load(rt.i32, flag) !== MAGIC; spins++) {
      if (spins > 100) Atomics.wait(rt.i32, flag, Atomics.load(rt.i32, flag), 1);
      if (spins > 1100) throw new RegionConflictError(name, r.bytes, r.bytes, `shared memory region "${name}" is not an initialised L2 store`);
    }
    const maxValueBytes = Atomics.load(rt.i32, (r.offset >>> 2) + 2);
    return SharedStore.open(rt, name, { bytes: r.bytes, maxValueBytes, ...(stamps ? { stamps } : {}) });
  }

  /**
   * Where `hi`/`lo` (a KeyHash) lives in this store: its stripe and its home slot inside the
   * stripe's segment, after the store's seed is mixed in (see "Seeded slots"). For tests that
   * need keys sharing a segment or a home.
   * @internal
   */
  slotOf(hi: number, lo: number): { stripe: number; home: number; segmentSlots: number } {
    return {
      stripe: fmix(hi ^ this.#seedHi) & this.#stripeMask,
      home: fmix(lo ^ this.#seedLo) & this.#segMask,
      segmentSlots: this.#segMask + 1,
    };
  }

  /** The smallest `bytes` accepted for `maxValueBytes` (default sizing when undefined). */
  static minimumBytes(maxValueBytes?: number): number {
    let bytes = 512 * 1024;
    while (plan(bytes, maxValueBytes).pages < MIN_PAGES) bytes += 64 * 1024;
    return bytes;
  }

  // ------------------------------------------------------------------------------------- reads

  /**
   * The value of `key` (whose KeyHash is `hi`/`lo`), or `undefined` when absent, a tombstone, or
   * past its stale time at `now`. Lock-free; never blocks; allocates only the result.
   */
  get(key: string, hi: number, lo: number, now: number, into?: L2Scratch): L2Hit | undefined {
    const stamp = this.#stamps === undefined ? 0 : this.#stamps.stamp(lo);
    hi = fmix(hi ^ this.#seedHi);
    lo = fmix(lo ^ this.#seedLo);
    const i32 = this.#i32;
    const stripe = hi & this.#stripeMask;
    const base = this.#index + ((stripe << this.#segShift) << 3);
    const mask = this.#segMask;
    const moves = this.#moves + stripe;
    const home = lo & mask;
    const h = hi | 0;
    const l = lo | 0;
    const slabBase = this.#slabBase;
    const slabEnd = this.#slabEnd;
    const max = this.maxValueBytes;
    let attempt = 0;
    outer: for (;;) {
      if (attempt++ >= READ_ATTEMPTS) {
        this.#contended++;
        return undefined;
      }
      const mv = Atomics.load(i32, moves);
      for (let n = 0; n <= mask; n++) {
        const w = base + (((home + n) & mask) << 3);
        const seq = Atomics.load(i32, w);
        if ((seq & 1) !== 0) continue outer;
        const state = i32[w + S_STATE]!;
        if (state === EMPTY) {
          if (Atomics.load(i32, w) !== seq) continue outer;
          if ((mv & 1) === 0 && Atomics.load(i32, moves) === mv) return undefined;
          continue outer;
        }
        if (i32[w + S_LO]! !== l || i32[w + S_HI]! !== h) continue;
        const b = i32[w + S_BLOCK]! >>> 0;
        const klen = i32[w + S_KLEN]!;
        const vlen = i32[w + S_VLEN]!;
        if (b < slabBase || klen < 0 || vlen < 0 || klen + vlen > max || b + DATA + klen + vlen > slabEnd) continue outer;
        if (!keyEquals(this.#u8, b + DATA, klen, key)) {
          if (Atomics.load(i32, w) !== seq) continue outer;
          continue;
        }
        const fi = b >>> 3;
        const stale = this.#f64[fi + 2]!;
        if (state !== VALUE || !(now <= stale)) {
          if (Atomics.load(i32, w) !== seq) continue outer;
          return undefined;
        }
        const expires = this.#f64[fi + 1]!;
        const version = this.#f64[fi + 3]!;
        const start = b + DATA + klen;
        // Node's pooled allocation: `slice()` gives each copy its own off-heap ArrayBuffer, which
        // cost ~3× the whole rest of a get (bench/cache-l2.bench.ts). The copy is still private.
        let bytes: Uint8Array;
        if (into !== undefined) {
          // The caller's reusable buffer: the same object every time (until it grows), so a
          // decoder can keep what it derives from it (the Cache's ExactViews: msgpackr makes a
          // DataView per new source object).
          if (into.buf.length < vlen) into.buf = Buffer.allocUnsafe(Math.max(vlen, into.buf.length * 2));
          bytes = into.buf;
        } else {
          bytes = vlen === 0 ? new Uint8Array(0) : Buffer.allocUnsafe(vlen);
        }
        if (vlen !== 0) bytes.set(this.#u8.subarray(start, start + vlen));
        if (Atomics.load(i32, w) !== seq) continue outer;
        if (i32[w + S_REF]! === 0) Atomics.store(i32, w + S_REF, 1);
        return { bytes, length: vlen, expires, stale, version, stamp };
      }
      // A full segment without the key.
      if ((mv & 1) === 0 && Atomics.load(i32, moves) === mv) return undefined;
    }
  }

  /**
   * How many `get`s of this instance (this thread) gave up and answered a miss because writers kept
   * changing the slots they read (a safe miss; expected to stay near zero).
   */
  get contendedMisses(): number {
    return this.#contended;
  }

  // ------------------------------------------------------------------------------------ writes

  /**
   * Stores `bytes` as the value of `key` with `meta`; see {@link L2SetResult}. Returns the key's
   * stamp after the call (bumped when anything changed). `hold`: where and how long a set it
   * cannot hold leaves its tombstone (see {@link L2Hold}; without it, always, until `meta.stale`).
   */
  set(key: string, hi: number, lo: number, bytes: Uint8Array, meta: L2Meta, now: number, hold?: L2Hold): { result: L2SetResult; stamp: number } {
    const mh = fmix(hi ^ this.#seedHi);
    const ml = fmix(lo ^ this.#seedLo);
    const stripe = mh & this.#stripeMask;
    const klen = utf8Length(key);
    this.#lock(stripe);
    try {
      const j = this.#find(key, klen, mh, ml, stripe);
      if (j >= 0 && this.#blocks(j, meta.version, now, true)) return this.#refuse('older', lo);
      if (klen + bytes.length > this.maxValueBytes) {
        this.#holdPlace(stripe, j, j >= 0, key, klen, mh, ml, hi, lo, meta, now, hold);
        return this.#refuse('too-large', lo, true);
      }
      if (!this.#put(stripe, j, key, klen, mh, ml, VALUE, bytes, meta.expires, meta.stale, meta.version, now)) {
        // (#put removed the key's entry when it failed: whether it had one is decided by `j`)
        this.#holdPlace(stripe, this.#find(key, klen, mh, ml, stripe), j >= 0, key, klen, mh, ml, hi, lo, meta, now, hold);
        return this.#refuse('no-room', lo, true);
      }
      return { result: 'stored', stamp: this.#bump(lo) };
    } finally {
      this.#unlock(stripe);
    }
  }

  /**
   * Removes `key`'s value. With `version`, the delete is refused (nothing changes, `deleted`
   * false) while a live entry or tombstone with a greater version exists, and with
   * `tombstoneUntil` (ms) it leaves a tombstone that refuses older sets until then. `deleted`:
   * whether a live value was removed. The stamp is bumped unless refused (other threads' L1 may
   * hold the value even when L2 no longer does). `onlyIfHeld`: leave the tombstone only where the
   * store has an entry (value or tombstone) for the key — for invalidations of other instances'
   * writes, which would otherwise fill the store with tombstones of keys it never held.
   */
  delete(key: string, hi: number, lo: number, now: number, version?: number, tombstoneUntil?: number, onlyIfHeld = false): { deleted: boolean; stamp: number } {
    const mh = fmix(hi ^ this.#seedHi);
    const ml = fmix(lo ^ this.#seedLo);
    const stripe = mh & this.#stripeMask;
    const klen = utf8Length(key);
    this.#lock(stripe);
    try {
      let j = this.#find(key, klen, mh, ml, stripe);
      if (version !== undefined && j >= 0 && this.#blocks(j, version, now)) {
        return { deleted: false, stamp: this.#currentStamp(lo) };
      }
      const deleted = j >= 0 && this.#state(j) === VALUE && now <= this.#f64[(this.#block(j) >>> 3) + 2]!;
      if (version !== undefined && tombstoneUntil !== undefined && tombstoneUntil >= now && (j >= 0 || !onlyIfHeld)) {
        if (!this.#put(stripe, j, key, klen, mh, ml, TOMB, undefined, tombstoneUntil, tombstoneUntil, version, now)) {
          // No room even for a tombstone: at least the value goes.
          j = this.#find(key, klen, mh, ml, stripe);
          if (j >= 0) this.#removeSlot(stripe, j, false);
        }
      } else if (j >= 0) {
        this.#removeSlot(stripe, j, false);
      }
      return { deleted, stamp: this.#bump(lo) };
    } finally {
      this.#unlock(stripe);
    }
  }

  /** Removes every entry and tombstone, then advances the stamp table's epoch. */
  clear(): void {
    const stripes = this.#stripeMask + 1;
    for (let s = 0; s < stripes; s++) this.#lock(s);
    try {
      this.#lockAlloc();
      try {
        const i32 = this.#i32;
        const slots = stripes << this.#segShift;
        for (let j = 0; j < slots; j++) {
          const w = this.#index + (j << 3);
          if (i32[w + S_STATE] === EMPTY) continue;
          Atomics.store(i32, w, i32[w]! + 1);
          i32.fill(0, w + 1, w + SLOT_WORDS);
          Atomics.store(i32, w, i32[w]! + 1);
        }
        i32.fill(0, this.#pageTable, this.#pageTable + this.#pages * 2);
        i32.fill(0, this.#classes, this.#classes + MAX_CLASSES * (CLASS_BYTES >>> 2));
        i32[this.#alloc + A_FREE_PAGES] = this.#pages;
        i32[this.#alloc + A_CURSOR] = 0;
        Atomics.store(i32, this.#counters + C_ENTRIES, 0);
        Atomics.store(i32, this.#counters + C_TOMBS, 0);
        Atomics.store(i32, this.#counters + C_BYTES, 0);
      } finally {
        this.#unlockAlloc();
      }
      this.#stamps?.bumpEpoch();
    } finally {
      for (let s = stripes - 1; s >= 0; s--) this.#unlock(s);
    }
  }

  /** The shared counters (atomic loads; a consistent snapshot only when no writer runs). */
  stats(): L2Stats {
    const i32 = this.#i32;
    const c = this.#counters;
    return {
      entries: Atomics.load(i32, c + C_ENTRIES),
      tombstones: Atomics.load(i32, c + C_TOMBS),
      bytes: Atomics.load(i32, c + C_BYTES),
      capacityBytes: this.#pages * this.#pageSize,
      evictions: Atomics.load(i32, c + C_EVICT) >>> 0,
      expired: Atomics.load(i32, c + C_EXPIRED) >>> 0,
      refused: Atomics.load(i32, c + C_REFUSED) >>> 0,
    };
  }

  /**
   * Walks the whole store under every lock and returns the broken invariants (empty when sound):
   * every entry reachable from its home slot and owning its block, free lists and page counts
   * consistent, counters equal to what is really there. For tests and diagnostics; O(size).
   * @internal
   */
  verify(): string[] {
    const problems: string[] = [];
    const stripes = this.#stripeMask + 1;
    for (let s = 0; s < stripes; s++) this.#lock(s);
    this.#lockAlloc();
    try {
      const i32 = this.#i32;
      const segment = this.#segMask + 1;
      const seen = new Set<number>();
      let values = 0;
      let tombs = 0;
      for (let j = 0; j < stripes * segment; j++) {
        const w = this.#index + (j << 3);
        const state = i32[w + S_STATE]!;
        if ((i32[w]! & 1) !== 0) problems.push(`slot ${j}: odd seq`);
        if (state === EMPTY) continue;
        if (state === VALUE) values++;
        else if (state === TOMB) tombs++;
        else problems.push(`slot ${j}: bad state ${state}`);
        const b = i32[w + S_BLOCK]! >>> 0;
        const cls = this.#classOfBlock(b);
        if (cls < 0) {
          problems.push(`slot ${j}: block ${b} outside the slab or misaligned`);
          continue;
        }
        if (seen.has(b)) problems.push(`slot ${j}: block ${b} shared`);
        seen.add(b);
        if (i32[b >>> 2] !== j + 1) problems.push(`slot ${j}: block ${b} owner ${i32[b >>> 2]}`);
        if (DATA + i32[w + S_KLEN]! + i32[w + S_VLEN]! > this.#sizes[cls]!) problems.push(`slot ${j}: data larger than its block`);
        if (state === TOMB && i32[w + S_VLEN] !== 0) problems.push(`slot ${j}: tombstone with a value`);
        // Reachable: no empty slot between its home and it.
        const segBase = j & ~this.#segMask;
        const homeAt = i32[w + S_LO]! & this.#segMask;
        if ((i32[w + S_HI]! & this.#stripeMask) !== (j >>> this.#segShift)) problems.push(`slot ${j}: in the wrong stripe`);
        for (let p = homeAt; p !== (j & this.#segMask); p = (p + 1) & this.#segMask) {
          if (i32[this.#index + ((segBase + p) << 3) + S_STATE] === EMPTY) {
            problems.push(`slot ${j}: unreachable from its home ${segBase + homeAt}`);
            break;
          }
        }
      }
      // Pages, blocks, free lists.
      let used = 0;
      let freePages = 0;
      const classPages = new Array<number>(this.#sizes.length).fill(0);
      const classUsed = new Array<number>(this.#sizes.length).fill(0);
      const freeInClass = new Array<number>(this.#sizes.length).fill(0);
      for (let pg = 0; pg < this.#pages; pg++) {
        const cls = i32[this.#pageTable + pg * 2]! - 1;
        if (cls < 0) {
          freePages++;
          continue;
        }
        classPages[cls]!++;
        let inUse = 0;
        for (let k = 0; k < this.#perPage[cls]!; k++) {
          const b = this.#slabBase + pg * this.#pageSize + k * this.#sizes[cls]!;
          const owner = i32[b >>> 2]!;
          if (owner === 0) {
            freeInClass[cls]!++;
            continue;
          }
          inUse++;
          used += this.#sizes[cls]!;
          if (owner === RESERVED) problems.push(`block ${b}: still reserved`);
          else if (!seen.has(b)) problems.push(`block ${b}: owner ${owner} does not point back`);
        }
        if (i32[this.#pageTable + pg * 2 + 1] !== inUse) problems.push(`page ${pg}: used ${i32[this.#pageTable + pg * 2 + 1]} ≠ ${inUse}`);
        classUsed[cls]! += inUse;
      }
      for (let cls = 0; cls < this.#sizes.length; cls++) {
        const k = this.#classes + cls * (CLASS_BYTES >>> 2);
        if (i32[k + K_PAGES] !== classPages[cls]) problems.push(`class ${cls}: pages ${i32[k + K_PAGES]} ≠ ${classPages[cls]}`);
        if (i32[k + K_USED] !== classUsed[cls]) problems.push(`class ${cls}: used ${i32[k + K_USED]} ≠ ${classUsed[cls]}`);
        let n = 0;
        let prev = 0;
        for (let b = i32[k + K_FREE]! >>> 0; b !== 0 && n <= this.#pages * this.#perPage[0]!; b = i32[(b >>> 2) + 1]! >>> 0, n++) {
          if (this.#classOfBlock(b) !== cls) problems.push(`class ${cls}: free block ${b} of another class`);
          if (i32[b >>> 2] !== 0) problems.push(`class ${cls}: free block ${b} has an owner`);
          if ((i32[(b >>> 2) + 2]! >>> 0) !== prev) problems.push(`class ${cls}: free block ${b} prev link`);
          prev = b;
        }
        if (n !== freeInClass[cls]) problems.push(`class ${cls}: free list holds ${n}, pages hold ${freeInClass[cls]} free blocks`);
      }
      const c = this.#counters;
      if (i32[this.#alloc + A_FREE_PAGES] !== freePages) problems.push(`free pages ${i32[this.#alloc + A_FREE_PAGES]} ≠ ${freePages}`);
      if (i32[c + C_ENTRIES] !== values) problems.push(`entries counter ${i32[c + C_ENTRIES]} ≠ ${values}`);
      if (i32[c + C_TOMBS] !== tombs) problems.push(`tombstones counter ${i32[c + C_TOMBS]} ≠ ${tombs}`);
      if (i32[c + C_BYTES] !== used) problems.push(`bytes counter ${i32[c + C_BYTES]} ≠ ${used}`);
    } finally {
      this.#unlockAlloc();
      for (let s = stripes - 1; s >= 0; s--) this.#unlock(s);
    }
    return problems;
  }

  // --------------------------------------------------------------------------- write internals

  /**
   * A set L2 cannot hold (too large, no room) is still a newer write than what L2 had: its old
   * value goes, and a tombstone one version below the write's stays until the write's stale time,
   * so a write older than it (a load that began before it) cannot store its value here afterwards
   * (review73 D1: it did, and its stamp bump then voided the newer value in the writer's L1 too).
   * One below: the write itself, read back from Redis, must still pass (and be refused as too
   * large again). Best effort, as every tombstone: with no block even for it, the old value just goes.
   *
   * With `hold` (the cache passes one), only where it can stop something: the store has an entry
   * of the key, or `hold.wanted` says a read or load of it is in flight; and only until
   * min(stale, now + hold.ms). Before (review76 N2), every such set left one until its stale time
   * (forever without a ttl), and 20 000 large sets of other keys evicted every value.
   * The tombstone is written unreferenced (CLOCK's REF bit 0): eviction takes it before any entry
   * read since the hand last passed, and nothing marks it later (reads never return tombstones).
   * Caller holds the stripe lock; `j` is the key's slot now or -1, `held` whether the store had an
   * entry of the key when the set began; `mh/ml` the mixed hash, `hi/lo` the caller's.
   */
  #holdPlace(stripe: number, j: number, held: boolean, key: string, klen: number, mh: number, ml: number, hi: number, lo: number, meta: L2Meta, now: number, hold: L2Hold | undefined): void {
    let until = meta.stale;
    if (hold !== undefined) {
      until = Math.min(until, now + hold.ms);
      if (!held && !hold.wanted(key, hi, lo, now)) {
        // Nothing stops an older store here: no tombstone, as before review73 D1.
        if (j >= 0) this.#removeSlot(stripe, j, false);
        return;
      }
    }
    if (until >= now && this.#put(stripe, j, key, klen, mh, ml, TOMB, undefined, until, until, meta.version - 1, now, 0)) return;
    const k = this.#find(key, klen, mh, ml, stripe);
    if (k >= 0) this.#removeSlot(stripe, k, false);
  }

  #refuse(result: L2SetResult, lo: number, changed = false): { result: L2SetResult; stamp: number } {
    Atomics.add(this.#i32, this.#counters + C_REFUSED, 1);
    return { result, stamp: changed ? this.#bump(lo) : this.#currentStamp(lo) };
  }

  #bump(lo: number): number {
    return this.#stamps === undefined ? 0 : this.#stamps.bump(lo);
  }

  #currentStamp(lo: number): number {
    return this.#stamps === undefined ? 0 : this.#stamps.stamp(lo);
  }

  /**
   * Whether slot `j` holds a live entry or tombstone newer than `version` — or, with `orEqual`, as
   * new (under its lock). Sets pass `orEqual`: a version is one write, so a second write carrying
   * the same version (two processes' clocks can draw one) loses instead of replacing it silently.
   */
  #blocks(j: number, version: number, now: number, orEqual = false): boolean {
    const fi = this.#block(j) >>> 3;
    const v = this.#f64[fi + 3]!;
    return now <= this.#f64[fi + 2]! && (v > version || (orEqual && v === version));
  }

  #state(j: number): number {
    return this.#i32[this.#index + (j << 3) + S_STATE]!;
  }

  #block(j: number): number {
    return this.#i32[this.#index + (j << 3) + S_BLOCK]! >>> 0;
  }

  /** The slot index holding `key`, or -1. Caller holds the stripe lock. */
  #find(key: string, klen: number, hi: number, lo: number, stripe: number): number {
    const i32 = this.#i32;
    const segBase = stripe << this.#segShift;
    const mask = this.#segMask;
    const h = hi | 0;
    const l = lo | 0;
    for (let n = 0, p = lo & mask; n <= mask; n++, p = (p + 1) & mask) {
      const j = segBase + p;
      const w = this.#index + (j << 3);
      if (i32[w + S_STATE] === EMPTY) return -1;
      if (i32[w + S_LO] === l && i32[w + S_HI] === h && i32[w + S_KLEN] === klen &&
        keyEquals(this.#u8, (i32[w + S_BLOCK]! >>> 0) + DATA, klen, key)) return j;
    }
    return -1;
  }

  /**
   * Writes an entry (value or tombstone) for `key`, replacing the one in slot `found` (-1: none).
   * Caller holds the stripe lock and has checked versions and sizes. False when no block could be had (the old
   * entry is then removed).
   */
  #put(stripe: number, found: number, key: string, klen: number, hi: number, lo: number, state: number,
    value: Uint8Array | undefined, expires: number, stale: number, version: number, now: number, ref = 1): boolean {
    const i32 = this.#i32;
    const vlen = value === undefined ? 0 : value.length;
    const sizes = this.#sizes;
    if (DATA + klen + vlen > sizes[sizes.length - 1]!) {
      // No class holds it. set() checks sizes before it gets here; a tombstone of a key longer
      // than maxValueBytes did not, and was written past its block's end (review32).
      if (found >= 0) this.#removeSlot(stripe, found, false);
      return false;
    }
    const cls = this.#classFor(DATA + klen + vlen);
    let j = found;
    if (j >= 0) {
      const w = this.#index + (j << 3);
      const b = i32[w + S_BLOCK]! >>> 0;
      if (this.#classOfBlock(b) === cls) {
        // Same size class: rewrite in place inside the slot's seqlock (the key bytes stay).
        const old = i32[w + S_STATE]!;
        Atomics.store(i32, w, i32[w]! + 1);
        this.#writeMeta(b, expires, stale, version);
        if (value !== undefined) this.#u8.set(value, b + DATA + klen);
        i32[w + S_VLEN] = vlen;
        i32[w + S_STATE] = state;
        i32[w + S_REF] = ref;
        Atomics.store(i32, w, i32[w]! + 1);
        this.#countState(old, -1);
        this.#countState(state, 1);
        return true;
      }
    }
    // A new block: fill it while nobody can see it, then publish it in the slot.
    const protect = j >= 0 ? this.#block(j) : 0;
    const nb = this.#allocate(cls, stripe, protect, now);
    // Allocation may have evicted entries of this very stripe (slots moved): look again.
    j = this.#find(key, klen, hi, lo, stripe);
    if (nb === 0) {
      if (j >= 0) this.#removeSlot(stripe, j, false);
      return false;
    }
    this.#writeMeta(nb, expires, stale, version);
    utf8Write(this.#u8, nb + DATA, key);
    if (value !== undefined) this.#u8.set(value, nb + DATA + klen);
    if (j >= 0) {
      const w = this.#index + (j << 3);
      const old = i32[w + S_BLOCK]! >>> 0;
      const oldState = i32[w + S_STATE]!;
      Atomics.store(i32, w, i32[w]! + 1);
      i32[w + S_BLOCK] = nb;
      i32[w + S_VLEN] = vlen;
      i32[w + S_STATE] = state;
      i32[w + S_REF] = ref;
      Atomics.store(i32, w, i32[w]! + 1);
      Atomics.store(i32, nb >>> 2, j + 1);
      this.#countState(oldState, -1);
      this.#countState(state, 1);
      this.#lockAlloc();
      try {
        this.#freeBlock(old); // only now: the slot's seq moved on, so a reader of `old` retries
      } finally {
        this.#unlockAlloc();
      }
      return true;
    }
    j = this.#emptySlot(stripe, lo, now);
    const w = this.#index + (j << 3);
    Atomics.store(i32, w, i32[w]! + 1);
    i32[w + S_HI] = hi;
    i32[w + S_LO] = lo;
    i32[w + S_BLOCK] = nb;
    i32[w + S_VLEN] = vlen;
    i32[w + S_KLEN] = klen;
    i32[w + S_STATE] = state;
    i32[w + S_REF] = ref;
    Atomics.store(i32, w, i32[w]! + 1);
    Atomics.store(i32, nb >>> 2, j + 1);
    this.#countState(state, 1);
    return true;
  }

  #writeMeta(b: number, expires: number, stale: number, version: number): void {
    const fi = b >>> 3;
    this.#f64[fi + 1] = expires;
    this.#f64[fi + 2] = stale;
    this.#f64[fi + 3] = version;
  }

  #countState(state: number, delta: number): void {
    if (state === VALUE) Atomics.add(this.#i32, this.#counters + C_ENTRIES, delta);
    else if (state === TOMB) Atomics.add(this.#i32, this.#counters + C_TOMBS, delta);
  }

  /**
   * The first empty slot on the probe path from `lo`'s home; when the segment is full, evicts one
   * of its entries first (CLOCK over the segment). Caller holds the stripe lock.
   */
  #emptySlot(stripe: number, lo: number, now: number): number {
    const i32 = this.#i32;
    const segBase = stripe << this.#segShift;
    const mask = this.#segMask;
    for (;;) {
      for (let n = 0, p = lo & mask; n <= mask; n++, p = (p + 1) & mask) {
        if (i32[this.#index + ((segBase + p) << 3) + S_STATE] === EMPTY) return segBase + p;
      }
      const handAt = this.#locks + stripe * (LINE >>> 2) + L_HAND;
      let hand = i32[handAt]! & mask;
      for (let n = 0; ; n++, hand = (hand + 1) & mask) {
        const j = segBase + hand;
        const w = this.#index + (j << 3);
        const expired = !(now <= this.#f64[((i32[w + S_BLOCK]! >>> 0) >>> 3) + 2]!);
        if (!expired && i32[w + S_REF] !== 0 && n <= mask) {
          i32[w + S_REF] = 0;
          continue;
        }
        i32[handAt] = (hand + 1) & mask;
        this.#removeSlot(stripe, j, false);
        Atomics.add(i32, this.#counters + (expired ? C_EXPIRED : C_EVICT), 1);
        break;
      }
    }
  }

  /**
   * Removes the entry in slot `j` (backward shift inside the segment, under the stripe's move
   * counter) and frees its block. Caller holds the stripe lock, and the allocator lock when
   * `allocHeld`.
   */
  #removeSlot(stripe: number, j: number, allocHeld: boolean): void {
    const i32 = this.#i32;
    const w0 = this.#index + (j << 3);
    const b = i32[w0 + S_BLOCK]! >>> 0;
    this.#countState(i32[w0 + S_STATE]!, -1);
    const moves = this.#moves + stripe;
    const segBase = stripe << this.#segShift;
    const mask = this.#segMask;
    Atomics.add(i32, moves, 1); // odd: readers distrust their misses
    let hole = j - segBase;
    for (let k = (hole + 1) & mask; k !== hole; k = (k + 1) & mask) {
      const wk = this.#index + ((segBase + k) << 3);
      if (i32[wk + S_STATE] === EMPTY) break;
      const home = i32[wk + S_LO]! & mask;
      const stays = hole <= k ? hole < home && home <= k : hole < home || home <= k;
      if (stays) continue;
      // Move k into the hole; k becomes the hole (it keeps a valid duplicate until overwritten).
      const wh = this.#index + ((segBase + hole) << 3);
      Atomics.store(i32, wh, i32[wh]! + 1);
      for (let f = S_HI; f < SLOT_WORDS; f++) i32[wh + f] = i32[wk + f]!;
      Atomics.store(i32, wh, i32[wh]! + 1);
      Atomics.store(i32, i32[wk + S_BLOCK]! >>> 2, segBase + hole + 1);
      hole = k;
    }
    const wh = this.#index + ((segBase + hole) << 3);
    Atomics.store(i32, wh, i32[wh]! + 1);
    i32.fill(0, wh + 1, wh + SLOT_WORDS);
    Atomics.store(i32, wh, i32[wh]! + 1);
    Atomics.add(i32, moves, 1);
    if (allocHeld) {
      this.#freeBlock(b);
    } else {
      this.#lockAlloc();
      try {
        this.#freeBlock(b);
      } finally {
        this.#unlockAlloc();
      }
    }
  }

  // -------------------------------------------------------------------------------- allocator

  /** The smallest class whose blocks hold `need` bytes. */
  #classFor(need: number): number {
    const sizes = this.#sizes;
    let lo = 0;
    let hi = sizes.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (sizes[mid]! >= need) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }

  /** The class of the block at `b`, or -1 when `b` is not the start of a block of a used page. */
  #classOfBlock(b: number): number {
    if (b < this.#slabBase || b >= this.#slabEnd) return -1;
    const rel = b - this.#slabBase;
    const page = Math.floor(rel / this.#pageSize);
    const cls = this.#i32[this.#pageTable + page * 2]! - 1;
    if (cls < 0) return -1;
    const within = rel - page * this.#pageSize;
    return within % this.#sizes[cls]! === 0 && within / this.#sizes[cls]! < this.#perPage[cls]! ? cls : -1;
  }

  #classAt(cls: number): number {
    return this.#classes + cls * (CLASS_BYTES >>> 2);
  }

  /**
   * A block of class `cls` (owner RESERVED), or 0 when none could be freed. Caller holds the lock
   * of `ownStripe`, whose entries it may evict (never the block `protect`).
   */
  #allocate(cls: number, ownStripe: number, protect: number, now: number): number {
    this.#lockAlloc();
    try {
      let b = this.#popFree(cls);
      if (b !== 0) return b;
      const i32 = this.#i32;
      if (i32[this.#alloc + A_FREE_PAGES]! > 0) {
        this.#assignPage(this.#takeFreePage(), cls);
        return this.#popFree(cls);
      }
      const k = this.#classAt(cls);
      if (i32[k + K_PAGES] === 0 || i32[k + K_PRESSURE]! >= this.#perPage[cls]!) {
        if (this.#steal(cls, ownStripe, protect, now)) return this.#popFree(cls);
      }
      b = this.#evictIn(cls, ownStripe, protect, now);
      if (b !== 0) return b;
      if (this.#steal(cls, ownStripe, protect, now)) return this.#popFree(cls);
      return 0;
    } finally {
      this.#unlockAlloc();
    }
  }

  #popFree(cls: number): number {
    const i32 = this.#i32;
    const k = this.#classAt(cls);
    const b = i32[k + K_FREE]! >>> 0;
    if (b === 0) return 0;
    this.#unlink(b, cls);
    i32[b >>> 2] = RESERVED;
    i32[this.#pageTable + this.#pageOf(b) * 2 + 1]!++;
    i32[k + K_USED]!++;
    Atomics.add(i32, this.#counters + C_BYTES, this.#sizes[cls]!);
    return b;
  }

  /** Returns block `b` (owned, any class) to its class's free list. Allocator lock held. */
  #freeBlock(b: number): void {
    const i32 = this.#i32;
    const page = this.#pageOf(b);
    const cls = i32[this.#pageTable + page * 2]! - 1;
    i32[b >>> 2] = 0;
    this.#link(b, cls);
    i32[this.#pageTable + page * 2 + 1]!--;
    i32[this.#classAt(cls) + K_USED]!--;
    Atomics.sub(i32, this.#counters + C_BYTES, this.#sizes[cls]!);
  }

  /** Pushes free block `b` on the front of `cls`'s list. */
  #link(b: number, cls: number): void {
    const i32 = this.#i32;
    const k = this.#classAt(cls);
    const head = i32[k + K_FREE]! >>> 0;
    i32[(b >>> 2) + 1] = head;
    i32[(b >>> 2) + 2] = 0;
    if (head !== 0) i32[(head >>> 2) + 2] = b;
    i32[k + K_FREE] = b;
  }

  #unlink(b: number, cls: number): void {
    const i32 = this.#i32;
    const next = i32[(b >>> 2) + 1]! >>> 0;
    const prev = i32[(b >>> 2) + 2]! >>> 0;
    if (prev === 0) i32[this.#classAt(cls) + K_FREE] = next;
    else i32[(prev >>> 2) + 1] = next;
    if (next !== 0) i32[(next >>> 2) + 2] = prev;
  }

  #pageOf(b: number): number {
    return Math.floor((b - this.#slabBase) / this.#pageSize);
  }

  #takeFreePage(): number {
    const i32 = this.#i32;
    const cursor = this.#alloc + A_CURSOR;
    for (let n = 0, pg = i32[cursor]!; n < this.#pages; n++, pg = pg + 1 === this.#pages ? 0 : pg + 1) {
      if (i32[this.#pageTable + pg * 2] === 0) {
        i32[cursor] = pg + 1 === this.#pages ? 0 : pg + 1;
        i32[this.#alloc + A_FREE_PAGES]!--;
        return pg;
      }
    }
    throw new Error('L2: free page count out of step with the page table');
  }

  /** Gives page `pg` (free) to class `cls` and cuts it into free blocks, lowest address on top. */
  #assignPage(pg: number, cls: number): void {
    const i32 = this.#i32;
    i32[this.#pageTable + pg * 2] = cls + 1;
    i32[this.#pageTable + pg * 2 + 1] = 0;
    i32[this.#classAt(cls) + K_PAGES]!++;
    const size = this.#sizes[cls]!;
    const start = this.#slabBase + pg * this.#pageSize;
    for (let n = this.#perPage[cls]! - 1; n >= 0; n--) {
      const b = start + n * size;
      i32[b >>> 2] = 0;
      this.#link(b, cls);
    }
  }

  /**
   * Evicts the entry of block `b` (owner `owner`) if its stripe can be had without waiting:
   * returns 1 evicted, 0 passed over (referenced and `honourRef`), -1 busy.
   */
  #evictBlock(b: number, ownStripe: number, protect: number, now: number, honourRef: boolean): number {
    const i32 = this.#i32;
    const owner = i32[b >>> 2]!;
    if (owner === 0) return 1;
    if (owner === RESERVED || b === protect) return -1;
    const slot = owner - 1;
    const stripe = slot >>> this.#segShift;
    if (stripe !== ownStripe && !this.#tryLock(stripe)) return -1;
    try {
      // The owner only changes under the stripe lock (entries move inside their segment), so
      // now that we hold it, it is stable; the block cannot be freed meanwhile (allocator lock).
      const current = i32[b >>> 2]!;
      if (current === RESERVED) return -1;
      if (current === 0) return 1;
      const j = current - 1;
      const w = this.#index + (j << 3);
      if ((i32[w + S_BLOCK]! >>> 0) !== b) return -1;
      const expired = !(now <= this.#f64[(b >>> 3) + 2]!);
      if (honourRef && !expired && i32[w + S_REF] !== 0) {
        i32[w + S_REF] = 0;
        return 0;
      }
      this.#removeSlot(stripe, j, true);
      Atomics.add(i32, this.#counters + (expired ? C_EXPIRED : C_EVICT), 1);
      return 1;
    } finally {
      if (stripe !== ownStripe) this.#unlock(stripe);
    }
  }

  /** CLOCK over the blocks of class `cls`: frees one and returns it (reserved), or 0. */
  #evictIn(cls: number, ownStripe: number, protect: number, now: number): number {
    const i32 = this.#i32;
    const k = this.#classAt(cls);
    const pages = i32[k + K_PAGES]!;
    if (pages === 0) return 0;
    const per = this.#perPage[cls]!;
    const size = this.#sizes[cls]!;
    const limit = Math.min(2 * pages * per + per, 1 << 17);
    let page = i32[k + K_HAND_PAGE]!;
    let blk = i32[k + K_HAND_BLOCK]!;
    for (let steps = 0; steps < limit; steps++) {
      if (blk >= per || page >= this.#pages || i32[this.#pageTable + page * 2] !== cls + 1) {
        page = this.#nextPageOf(cls, blk >= per ? page + 1 : page);
        blk = 0;
        if (page < 0) return 0;
      }
      const b = this.#slabBase + page * this.#pageSize + blk * size;
      blk++;
      if (this.#evictBlock(b, ownStripe, protect, now, true) === 1) {
        i32[k + K_HAND_PAGE] = page;
        i32[k + K_HAND_BLOCK] = blk;
        // Only CLOCK evictions count as this class's pressure (not the ones a steal makes).
        i32[k + K_LAST_EVICT] = ++i32[this.#alloc + A_TICK]!;
        i32[k + K_PRESSURE]!++;
        return this.#popFree(cls);
      }
    }
    i32[k + K_HAND_PAGE] = page;
    i32[k + K_HAND_BLOCK] = blk;
    return 0;
  }

  /** The first page of class `cls` at or after `from` (wrapping), or -1. */
  #nextPageOf(cls: number, from: number): number {
    const i32 = this.#i32;
    for (let n = 0, pg = from % this.#pages; n < this.#pages; n++, pg = pg + 1 === this.#pages ? 0 : pg + 1) {
      if (i32[this.#pageTable + pg * 2] === cls + 1) return pg;
    }
    return -1;
  }

  /**
   * Moves a page to class `cls` from the class that has gone longest without evicting (and not
   * since `cls`'s last steal; any class when `cls` has no page), emptying it first. False when no
   * class qualifies or the page has an entry whose stripe is busy.
   */
  #steal(cls: number, ownStripe: number, protect: number, now: number): boolean {
    const i32 = this.#i32;
    const k = this.#classAt(cls);
    const tick = i32[this.#alloc + A_TICK]!;
    const since = i32[k + K_STEAL_TICK]!;
    const starving = i32[k + K_PAGES] === 0;
    i32[k + K_STEAL_TICK] = tick;
    i32[k + K_PRESSURE] = 0;
    let victim = -1;
    let oldest = Infinity;
    for (let d = 0; d < this.#sizes.length; d++) {
      if (d === cls) continue;
      const kd = this.#classAt(d);
      if (i32[kd + K_PAGES] === 0) continue;
      const last = i32[kd + K_LAST_EVICT]!;
      // A class with a single page keeps it unless `cls` has none.
      if (!starving && (last > since || i32[kd + K_PAGES] === 1)) continue;
      if (last < oldest) {
        oldest = last;
        victim = d;
      }
    }
    if (victim < 0) return false;
    // Its emptiest page.
    let page = -1;
    let least = Infinity;
    for (let pg = 0; pg < this.#pages; pg++) {
      if (i32[this.#pageTable + pg * 2] !== victim + 1) continue;
      const u = i32[this.#pageTable + pg * 2 + 1]!;
      if (u < least) {
        least = u;
        page = pg;
      }
    }
    const size = this.#sizes[victim]!;
    const per = this.#perPage[victim]!;
    const start = this.#slabBase + page * this.#pageSize;
    for (let n = 0; n < per; n++) {
      if (this.#evictBlock(start + n * size, ownStripe, protect, now, false) !== 1) return false;
    }
    // Every block of the page is free now: take them off the victim's list.
    for (let n = 0; n < per; n++) this.#unlink(start + n * size, victim);
    i32[this.#classAt(victim) + K_PAGES]!--;
    this.#assignPage(page, cls);
    return true;
  }

  // ---------------------------------------------------------------------------------- locks

  #lock(stripe: number): void {
    lock(this.#i32, this.#locks + stripe * (LINE >>> 2) + L_LOCK);
  }

  #tryLock(stripe: number): boolean {
    return Atomics.compareExchange(this.#i32, this.#locks + stripe * (LINE >>> 2) + L_LOCK, 0, 1) === 0;
  }

  #unlock(stripe: number): void {
    unlock(this.#i32, this.#locks + stripe * (LINE >>> 2) + L_LOCK);
  }

  #lockAlloc(): void {
    lock(this.#i32, this.#alloc + A_LOCK);
  }

  #unlockAlloc(): void {
    unlock(this.#i32, this.#alloc + A_LOCK);
  }
}

/**
 * A three-state mutex on one i32 word (Drepper, "Futexes are tricky", mutex 2): 0 free, 1 held,
 * 2 held and someone may be waiting. Uncontended: one CAS to lock, one atomic sub to unlock, no
 * notify.
 */
function lock(i32: Int32Array, at: number): void {
  let c = Atomics.compareExchange(i32, at, 0, 1);
  if (c === 0) return;
  // Critical sections are short: spin a little before sleeping (a wake-up costs 25–40 µs here).
  for (let spins = 0; spins < 64; spins++) {
    if (Atomics.load(i32, at) === 0 && (c = Atomics.compareExchange(i32, at, 0, 1)) === 0) return;
  }
  if (c !== 2) c = Atomics.exchange(i32, at, 2);
  while (c !== 0) {
    Atomics.wait(i32, at, 2);
    c = Atomics.exchange(i32, at, 2);
  }
}

function unlock(i32: Int32Array, at: number): void {
  if (Atomics.sub(i32, at, 1) !== 1) {
    Atomics.store(i32, at, 0);
    Atomics.notify(i32, at, 1);
  }
}

// ------------------------------------------------------------------------- UTF-8 without copies

/** The UTF-8 length of `s` (lone surrogates count as U+FFFD, as TextEncoder writes them). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = charCodeAt.call(s, i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length && (charCodeAt.call(s, i + 1) & 0xfc00) === 0xdc00) {
      n += 4;
      i++;
    } else n += 3;
  }
  return n;
}

/** Writes `s` as UTF-8 at `off` (same bytes as TextEncoder); returns the bytes written. */
function utf8Write(u8: Uint8Array, off: number, s: string): number {
  let p = off;
  for (let i = 0; i < s.length; i++) {
    let c = charCodeAt.call(s, i);
    if (c < 0x80) {
      u8[p++] = c;
    } else if (c < 0x800) {
      u8[p++] = 0xc0 | (c >> 6);
      u8[p++] = 0x80 | (c & 63);
    } else {
      if (c >= 0xd800 && c <= 0xdfff) {
        const d = i + 1 < s.length ? charCodeAt.call(s, i + 1) : 0;
        if (c <= 0xdbff && (d & 0xfc00) === 0xdc00) {
          c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          i++;
          u8[p++] = 0xf0 | (c >> 18);
          u8[p++] = 0x80 | ((c >> 12) & 63);
          u8[p++] = 0x80 | ((c >> 6) & 63);
          u8[p++] = 0x80 | (c & 63);
          continue;
        }
        c = 0xfffd;
      }
      u8[p++] = 0xe0 | (c >> 12);
      u8[p++] = 0x80 | ((c >> 6) & 63);
      u8[p++] = 0x80 | (c & 63);
    }
  }
  return p - off;
}

/** Whether the `len` bytes at `off` are exactly the UTF-8 of `s` (no copy, no allocation). */
function keyEquals(u8: Uint8Array, off: number, len: number, s: string): boolean {
  const end = off + len;
  let p = off;
  const n = s.length;
  for (let i = 0; i < n; i++) {
    let c = charCodeAt.call(s, i);
    if (c < 0x80) {
      if (p >= end || u8[p++] !== c) return false;
      continue;
    }
    if (c < 0x800) {
      if (p + 2 > end || u8[p] !== (0xc0 | (c >> 6)) || u8[p + 1] !== (0x80 | (c & 63))) return false;
      p += 2;
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < n ? charCodeAt.call(s, i + 1) : 0;
      if (c <= 0xdbff && (d & 0xfc00) === 0xdc00) {
        c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        if (p + 4 > end || u8[p] !== (0xf0 | (c >> 18)) || u8[p + 1] !== (0x80 | ((c >> 12) & 63)) ||
          u8[p + 2] !== (0x80 | ((c >> 6) & 63)) || u8[p + 3] !== (0x80 | (c & 63))) return false;
        p += 4;
        continue;
      }
      c = 0xfffd;
    }
    if (p + 3 > end || u8[p] !== (0xe0 | (c >> 12)) || u8[p + 1] !== (0x80 | ((c >> 6) & 63)) || u8[p + 2] !== (0x80 | (c & 63))) return false;
    p += 3;
  }
  return p === end;
}
