/**
 * Shared record structures for the codec, in shared memory: every thread of one engine encodes
 * objects of a known shape as a short record id instead of repeating its keys, and decodes ids
 * that another thread defined. This is msgpackr's shared-structures protocol
 * (getStructures/saveStructures) backed by a region instead of a file.
 *
 * Region "hotpath:codec:structures":
 * ```
 * +0   i32 lock      guards writers only
 * +4   i32 seq       seqlock: odd while a writer rewrites the data
 * +8   i32 length    bytes of data
 * +64  data         plain msgpack of the structures array (array of key arrays)
 * ```
 * Readers copy the data between two equal, even `seq` reads (retrying otherwise), so they never
 * see a torn list. Structures only grow (msgpackr adds them compatibly), up to msgpackr's
 * `maxSharedStructures`; a value encoded with an older list decodes with any later one.
 */
import { Packr } from 'msgpackr';
import type { Arena } from '../runtime/arena.js';
import { lockWord, unlockWord } from '../runtime/lock.js';

const HEADER = 64;
export const STRUCTURES_BYTES = 256 * 1024;
/** Objects with more keys than this are never shared (dictionary-like objects would fill the region). */
export const MAX_SHARED_KEYS = 64;

/** The shared structures region cannot hold one more shape. */
export class StructuresFullError extends Error {
  constructor(needed: number, capacity: number) {
    super(`shared record structures need ${needed} bytes; the region holds ${capacity}`);
    this.name = 'StructuresFullError';
  }
}

export class SharedStructures {
  readonly #i32: Int32Array;
  readonly #u8: Uint8Array;
  readonly #h: number;
  readonly #data: number;
  readonly #capacity: number;
  readonly #plain = new Packr({ useRecords: false });

  constructor(arena: Arena, bytes = STRUCTURES_BYTES) {
    const r = arena.region('hotpath:codec:structures', bytes);
    this.#i32 = new Int32Array(arena.memory.buffer);
    this.#u8 = new Uint8Array(arena.memory.buffer);
    this.#h = r.offset >>> 2;
    this.#data = r.offset + HEADER;
    this.#capacity = r.bytes - HEADER;
  }

  /** The current structures (a copy). */
  get(): unknown[] {
    for (;;) {
      const s1 = Atomics.load(this.#i32, this.#h + 1);
      if ((s1 & 1) === 1) continue; // a writer is mid-rewrite
      const len = Atomics.load(this.#i32, this.#h + 2);
      const copy = this.#u8.slice(this.#data, this.#data + len);
      if (Atomics.load(this.#i32, this.#h + 1) !== s1) continue;
      return len === 0 ? [] : (this.#plain.unpack(copy) as unknown[]);
    }
  }

  /**
   * msgpackr's saveStructures: stores `structures` if `isCompatible(existing)` says the caller
   * started from the stored list; else returns false and msgpackr merges and re-packs.
   */
  save(structures: unknown[], isCompatible: ((existing: unknown[]) => boolean) | boolean): boolean {
    const lock = this.#h;
    lockWord(this.#i32, lock);
    try {
      const existing = this.get();
      const ok = typeof isCompatible === 'function' ? isCompatible(existing) : isCompatible !== false;
      if (!ok) return false;
      const bytes = this.#plain.pack([...structures]);
      // Returning false here would make msgpackr reload and retry forever: fail this pack
      // instead (the codec then writes the value self-contained).
      if (bytes.length > this.#capacity) throw new StructuresFullError(bytes.length, this.#capacity);
      Atomics.add(this.#i32, this.#h + 1, 1); // odd: rewriting
      this.#u8.set(bytes, this.#data);
      Atomics.store(this.#i32, this.#h + 2, bytes.length);
      Atomics.add(this.#i32, this.#h + 1, 1); // even: stable
      return true;
    } finally {
      unlockWord(this.#i32, lock);
    }
  }
}
