/**
 * The shared metrics table: counters and gauges that every thread of the engine updates in shared
 * memory without a message or a lock, read (and, for counters, summed) at scrape time.
 *
 * Region "hotpath:metrics" (capacity C series, S value stripes):
 * ```
 * +0            i32 lock (guards appends only)   +4 i32 count (published series)   +8 i32 C   +12 i32 S
 * +64           values: S stripes of C' × 8 bytes, stripe-major (C' = C rounded up to a multiple of 8:
 *                 a stripe starts on its own 64-byte line, so two threads' cells never share one)
 *                 stripe 0      i64 per series, atomic add/store/load: every gauge, and the counters
 *                               of a thread that has no stripe of its own
 *                 stripe s ≥ 1  f64 per series (counters only), written by one thread alone: the
 *                               main thread has stripe 1, the worker in pool slot k has stripe k + 2
 * +64 + 8C'S    keys:   C × 128 bytes              [u8 kind][u8 length][series key, UTF-8, ≤ 126]
 * ```
 * A counter's value is its stripe-0 word plus its cell in every other stripe. Why stripes: a
 * counter bumped with an atomic add costs a locked read-modify-write (~6 ns here, most of it the
 * lock prefix), and threads bumping one counter bounce its cache line between cores. A cell with
 * a single writer needs neither: the owner adds with a plain load and store (~3 ns, the counter
 * row of bench/platform.bench.ts), and the stripes of different threads lie on different lines.
 * Nothing is lost: only the owner writes a cell, and a pool slot — so its stripe — passes to a new
 * worker only after the old one is dead (pool.ts recycles slots of dead threads only); the cell
 * keeps the dead worker's counts and the new one adds to them. A reader on another thread loads
 * each cell with one aligned 8-byte load, which 64-bit CPUs never tear (a plain JS Float64Array
 * access compiles to one); on a 32-bit CPU every thread counts on the shared word instead. A
 * reader may miss adds still in the owner's store buffer, as any scrape misses the adds after it.
 * Cells are doubles: exact to 2^53 counts per thread (≈ 285 years at 10^6 adds/s; the shared
 * word is an i64).
 *
 * A series key is `name` or `name{label="value",…}` with the labels in the order declared.
 * Appending takes the lock, writes the key, then publishes with a seq-cst store of `count`;
 * lookups scan published keys without the lock and are cached per thread, so the hot path is
 * a cached index and one add, with no allocation.
 */
import type { Arena } from '../runtime/arena.js';
import { lockWord, unlockWord } from '../runtime/lock.js';
import type { KernelExports } from '../runtime/wasm.js';

export const KIND_COUNTER = 1;
export const KIND_GAUGE = 2;
const HEADER = 64;
const KEY_BYTES = 128;
/** The longest series key (UTF-8 bytes). */
export const KEY_MAX = KEY_BYTES - 2;
/** find(): the table is full and the series is not in it. */
export const NO_ROOM = -1;
/** find(): the series key is longer than KEY_MAX bytes. */
export const KEY_TOO_LONG = -2;

/**
 * f64 elements from one stripe to the next: the capacity rounded up to a 64-byte line, so no two
 * threads' cells share a cache line.
 */
function stripeStride(capacity: number): number {
  return (capacity + 7) & ~7;
}

/** Bytes of a table of `capacity` series with `stripes` value stripes. */
export function tableBytes(capacity: number, stripes = 1): number {
  return HEADER + stripeStride(capacity) * 8 * stripes + capacity * KEY_BYTES;
}

/** 64-bit CPUs, whose aligned 8-byte loads and stores are single-copy atomic. */
const WIDE = ['x64', 'arm64', 'ppc64', 's390x', 'riscv64', 'loong64'].includes(process.arch);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One series as read at scrape time. */
export interface SeriesValue {
  kind: number;
  key: string;
  value: number;
}

export class MetricsTable {
  readonly capacity: number;
  readonly #k: KernelExports;
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #base: number;
  readonly #values: number; // byte offset of values[0]
  readonly #keys: number; // byte offset of keys[0]
  readonly #stride: number; // f64 elements from a stripe to the next
  readonly #index = new Map<string, number>(); // this thread's cache: key → series index
  #seen = 0;
  /** Value stripes (stripe 0 shared, the others one thread's each). */
  readonly stripes: number;
  /** This thread's own stripe (≥ 1), or 0 when it has none and counts with atomic adds. */
  readonly stripe: number;
  /** f64 view of the whole memory: the counter cells (see counterCell). */
  readonly f64: Float64Array;

  /**
   * `stripes`: value stripes of the table (the same in every thread of the engine); `stripe`: this
   * thread's own (1 .. stripes-1; pass 0 for none).
   */
  constructor(arena: Arena, kernels: KernelExports, capacity: number, stripes = 1, stripe = 0) {
    if (!Number.isInteger(stripes) || stripes < 1 || !Number.isInteger(stripe) || stripe < 0 || stripe >= stripes) {
      throw new RangeError(`metrics table: stripe ${stripe} of ${stripes} stripes`);
    }
    this.capacity = capacity;
    this.stripes = stripes;
    // The cells rely on one aligned 8-byte load or store never being torn: true of 64-bit CPUs,
    // not promised on 32-bit ones (armv7, ia32), where every thread counts on the shared word.
    this.stripe = WIDE ? stripe : 0;
    this.#k = kernels;
    const r = arena.region('hotpath:metrics', tableBytes(capacity, stripes));
    this.#stride = stripeStride(capacity);
    this.#base = r.offset;
    this.#values = r.offset + HEADER;
    this.#keys = this.#values + this.#stride * 8 * stripes;
    this.#i32 = new Int32Array(arena.memory.buffer);
    this.#u8 = new Uint8Array(arena.memory.buffer);
    this.f64 = new Float64Array(arena.memory.buffer);
    // The first thread writes the shape; every other checks it (the region's size alone could
    // match another capacity × stripes).
    const h = r.offset >>> 2;
    const c = Atomics.compareExchange(this.#i32, h + 2, 0, capacity);
    const st = Atomics.compareExchange(this.#i32, h + 3, 0, stripes);
    if ((c !== 0 && c !== capacity) || (st !== 0 && st !== stripes)) {
      throw new RangeError(`the shared metrics table holds ${c || capacity} series × ${st || stripes} stripes; this thread expects ${capacity} × ${stripes}`);
    }
  }

  /**
   * The index in `f64` of this thread's own cell for the series at `address` (from `address`):
   * the owner adds to it with plain arithmetic. -1 when this thread has no stripe (then counting
   * goes through `add`, an atomic add on the shared word).
   */
  counterCell(address: number): number {
    return this.stripe === 0 ? -1 : (address >>> 3) + this.stripe * this.#stride;
  }

  /**
   * Byte address of series `key` (created on first use) in the shared stripe.
   * @throws RangeError when full or the key is too long (see {@link find} for the form that does not throw).
   * @throws TypeError when the series exists as the other kind (a counter's adds go to stripes a
   *   gauge's value never sums: they would be lost without a word).
   */
  address(kind: number, key: string): number {
    const at = this.find(kind, key);
    if (at === NO_ROOM) throw new RangeError(`the shared metrics table is full (${this.capacity} series); raise the metricsCapacity option`);
    if (at === KEY_TOO_LONG) throw new RangeError(`metric series key ${printable(key)} is ${encoder.encode(key).length} bytes; at most ${KEY_MAX}`);
    return at;
  }

  /**
   * Byte address of series `key` (created on first use), or {@link NO_ROOM} when the table is full
   * and `key` is not in it, or {@link KEY_TOO_LONG} when its UTF-8 form exceeds 126 bytes. A full
   * table is seen without taking the lock, so a thread asking again and again for series that do
   * not fit costs a map miss and one atomic load per call.
   * @throws TypeError when the series exists as the other kind.
   */
  find(kind: number, key: string): number {
    let i = this.#index.get(key);
    if (i === undefined) i = this.#lookupOrAppend(kind, key);
    if (i < 0) return i;
    const stored = this.#u8[this.#keys + i * KEY_BYTES]!;
    if (stored !== kind) {
      const name = key.split('\u0000')[0];
      throw new TypeError(`metric ${name} is a ${stored === KIND_COUNTER ? 'counter' : 'gauge'} in the shared table, not a ${kind === KIND_COUNTER ? 'counter' : 'gauge'}`);
    }
    return this.#values + i * 8;
  }

  /** The raw kernel export that adds an i32 to an i64 word (stripe 0): series hold it to skip a call layer. */
  get incrementer(): (address: number, delta: number) => void {
    return this.#k.counterInc;
  }

  /** Adds an integer to the shared word at `address` (one atomic add; stripe 0). */
  add(address: number, delta: number): void {
    if ((delta | 0) === delta) this.#k.counterInc(address, delta);
    else this.#k.counterAddF(address, delta);
  }

  /** Stores an integer in the shared word at `address` (gauges). */
  set(address: number, value: number): void {
    this.#k.counterStoreF(address, value);
  }

  /** Every published series with its current value (a counter's: its shared word plus every stripe's cell). */
  snapshot(): SeriesValue[] {
    this.#refresh();
    const out: SeriesValue[] = [];
    const stride = this.#stride;
    for (const [key, i] of this.#index) {
      const at = this.#keys + i * KEY_BYTES;
      const kind = this.#u8[at]!;
      const word = this.#values + i * 8;
      let value = this.#k.counterReadF(word);
      if (kind === KIND_COUNTER) {
        for (let s = 1, c = (word >>> 3) + stride; s < this.stripes; s++, c += stride) value += this.f64[c]!;
      }
      out.push({ kind, key, value });
    }
    return out;
  }

  #refresh(): void {
    const count = Atomics.load(this.#i32, (this.#base >>> 2) + 1);
    for (let i = this.#seen; i < count; i++) {
      const at = this.#keys + i * KEY_BYTES;
      const len = this.#u8[at + 1]!;
      this.#index.set(decoder.decode(this.#u8.slice(at + 2, at + 2 + len)), i);
    }
    this.#seen = count;
  }

  /** The series index of `key`, appended if new; NO_ROOM or KEY_TOO_LONG when it cannot be. */
  #lookupOrAppend(kind: number, key: string): number {
    this.#refresh();
    const hit = this.#index.get(key);
    if (hit !== undefined) return hit;
    const lock = this.#base >>> 2;
    // Full already: no lock, no encoding (a high-cardinality label past capacity asks every call).
    if (Atomics.load(this.#i32, lock + 1) >= this.capacity) return NO_ROOM;
    const bytes = encoder.encode(key);
    if (bytes.length > KEY_MAX) return KEY_TOO_LONG;
    lockWord(this.#i32, lock);
    try {
      this.#refresh();
      const raced = this.#index.get(key);
      if (raced !== undefined) return raced;
      const count = Atomics.load(this.#i32, lock + 1);
      if (count >= this.capacity) return NO_ROOM;
      const at = this.#keys + count * KEY_BYTES;
      this.#u8[at] = kind;
      this.#u8[at + 1] = bytes.length;
      this.#u8.set(bytes, at + 2);
      Atomics.store(this.#i32, lock + 1, count + 1);
      this.#index.set(key, count);
      this.#seen = count + 1;
      return count;
    } finally {
      unlockWord(this.#i32, lock);
    }
  }
}

/** A series key as Prometheus would print it (`name{"v1","v2"}`): no NUL separators in messages. */
export function printable(key: string): string {
  const [name, ...values] = key.split('\u0000');
  const shown = values.map((v) => JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v));
  return values.length === 0 ? name! : `${name}{${shown.join(',')}}`;
}
