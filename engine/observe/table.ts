/**
 * The shared metrics table: counters and gauges that any thread updates with one atomic add in
 * shared memory, summed by nobody — each series is one 64-bit word — and read at scrape time.
 *
 * Region "hotpath:metrics" (capacity C series):
 * ```
 * +0            i32 lock (guards appends only)    +4 i32 count (published series)   +8 i32 C
 * +64           values: C × i64                    one word per series, atomic add/store/load
 * +64 + 8C      keys:   C × 128 bytes              [u8 kind][u8 length][series key, UTF-8, ≤ 126]
 * ```
 * A series key is `name` or `name{label="value",…}` with the labels in the order declared.
 * Appending takes the lock, writes the key, then publishes with a seq-cst store of `count`;
 * lookups scan published keys without the lock and are cached per thread, so the hot path is
 * a cached index and one WASM call (`counterInc`), with no allocation.
 */
import type { Arena } from '../runtime/arena.js';
import { lockWord, unlockWord } from '../runtime/lock.js';
import type { KernelExports } from '../runtime/wasm.js';

export const KIND_COUNTER = 1;
export const KIND_GAUGE = 2;
const HEADER = 64;
const KEY_BYTES = 128;
const KEY_MAX = KEY_BYTES - 2;

/** Bytes of a table of `capacity` series. */
export function tableBytes(capacity: number): number {
  return HEADER + capacity * (8 + KEY_BYTES);
}

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
  readonly #index = new Map<string, number>(); // this thread's cache: key → series index
  #seen = 0;

  constructor(arena: Arena, kernels: KernelExports, capacity: number) {
    this.capacity = capacity;
    this.#k = kernels;
    const r = arena.region('hotpath:metrics', tableBytes(capacity));
    this.#base = r.offset;
    this.#values = r.offset + HEADER;
    this.#keys = this.#values + capacity * 8;
    this.#i32 = new Int32Array(arena.memory.buffer);
    this.#u8 = new Uint8Array(arena.memory.buffer);
    Atomics.compareExchange(this.#i32, (r.offset >>> 2) + 2, 0, capacity);
  }

  /** Byte address of series `key` (created on first use). @throws RangeError when full or the key is too long. */
  address(kind: number, key: string): number {
    let i = this.#index.get(key);
    if (i === undefined) i = this.#lookupOrAppend(kind, key);
    return this.#values + i * 8;
  }

  /** The raw kernel export that adds an i32 to an i64 word: series hold it to skip a call layer. */
  get incrementer(): (address: number, delta: number) => void {
    return this.#k.counterInc;
  }

  /** Adds an integer to the word at `address` (one atomic add). */
  add(address: number, delta: number): void {
    if ((delta | 0) === delta) this.#k.counterInc(address, delta);
    else this.#k.counterAddF(address, delta);
  }

  /** Stores an integer in the word at `address`. */
  set(address: number, value: number): void {
    this.#k.counterStoreF(address, value);
  }

  /** Reads the word at `address`. */
  read(address: number): number {
    return this.#k.counterReadF(address);
  }

  /** Every published series with its current value. */
  snapshot(): SeriesValue[] {
    this.#refresh();
    const out: SeriesValue[] = [];
    for (const [key, i] of this.#index) {
      const at = this.#keys + i * KEY_BYTES;
      out.push({ kind: this.#u8[at]!, key, value: this.#k.counterReadF(this.#values + i * 8) });
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

  #lookupOrAppend(kind: number, key: string): number {
    this.#refresh();
    const hit = this.#index.get(key);
    if (hit !== undefined) return hit;
    const bytes = encoder.encode(key);
    if (bytes.length > KEY_MAX) throw new RangeError(`metric series key is ${bytes.length} bytes; at most ${KEY_MAX}: ${key.slice(0, 60)}…`);
    const lock = this.#base >>> 2;
    lockWord(this.#i32, lock);
    try {
      this.#refresh();
      const raced = this.#index.get(key);
      if (raced !== undefined) return raced;
      const count = Atomics.load(this.#i32, lock + 1);
      if (count >= this.capacity) {
        throw new RangeError(`the shared metrics table is full (${this.capacity} series); raise the metricsCapacity option`);
      }
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
