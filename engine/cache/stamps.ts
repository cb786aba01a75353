/**
 * Stamps: how a thread's private L1 learns, without a message, that the shared L2 changed a key.
 *
 * A table of 2^k i32 words in the shared arena, indexed by the low bits of a key's hash, plus one
 * epoch word. Whoever changes a key in L2 (set, delete, a refused oversized set that drops the old
 * value) bumps the key's word inside the L2 stripe lock, AFTER publishing the change; `clear()`
 * bumps the epoch after emptying L2. An L1 records the (stamp, epoch) it loaded BEFORE reading L2
 * (or the stamp L2's writer returned) next to each entry, and treats an entry whose word or epoch
 * has moved on as a miss. Publish-then-bump plus load-before-read means an L1 entry's value is
 * never older than the stamp it records: a reader may pair a new value with an old stamp (a
 * spurious miss later), never an old value with a new stamp (a stale hit for good).
 *
 * Keys share words (2^k words for any number of keys): a change to one key also invalidates the
 * L1 entries of the keys sharing its word — a spurious miss, never a stale hit. Size the table at
 * a few times the number of keys the L1s hold to keep that rare. Words wrap at 2^32 bumps, which
 * could only alias if an L1 entry survived exactly 2^32 changes of its word.
 *
 * Region layout (`bytes` = 128 + 4 · 2^k):
 * ```
 * +0   u32 layout version   +4 u32 log2(words)
 * +8   i64 the last write version handed out in this process (nextVersion)
 * +16..+39 reserved
 * +40  i32 ready flag 'STP1' (openTableRegion)   +44..+63 reserved
 * +64  i32 epoch  (own cache line: read by every L1 lookup, written only by clear)
 * +128 i32 stamp[2^k]
 * ```
 */
import { openTableRegion } from '../limiter/table-region.js';
import type { ThreadRuntime } from '../runtime/thread.js';

/** Sizing of a {@link StampTable}. */
export interface StampOptions {
  /** Number of stamp words, a power of two in [64, 2^24]. Default 65 536 (256 KiB). */
  words?: number;
}

const MAGIC = 0x31505453; // 'STP1'
const LAYOUT = 1;
const EPOCH_AT = 64;
const WORDS_AT = 128;
const DEFAULT_WORDS = 1 << 16;

/**
 * The furthest ahead of this process's wall clock a version it observes may be: a day. Honest
 * clocks are skewed by far less (a clock a minute ahead was not followed at first, and another
 * instance's later writes then lost to it: review35); a hostile version near 2^53 is refused.
 */
export const MAX_AHEAD_MS = 24 * 3_600_000;

/**
 * The shared stamp words of one cache (see the file comment). Any thread opens it by name;
 * every method is one atomic operation, lock-free and allocation-free.
 */
export class StampTable {
  readonly #i32: Int32Array;
  /** i32 index of stamp word 0. */
  readonly #base: number;
  /** i32 index of the epoch word. */
  readonly #epoch: number;
  readonly #mask: number;
  readonly #big: BigInt64Array;
  /** BigInt64 index of the version clock. */
  readonly #clock: number;
  /** Number of stamp words. */
  readonly words: number;
  /**
   * For an L1 hit's validity check only (Cache.getSync): the shared words, the epoch's index, and
   * stamp word 0's index (a key's word is `stampBase + (hashLo & (words - 1))`). That check reads
   * them with plain loads — Atomics.load is a builtin call here (~4.5 ns, not inlined by V8 11),
   * which was a fifth of an L1 hit. README "Architecture" says why a plain load is enough there;
   * everything that records a stamp or epoch (before reading L2 or Redis) uses the methods below.
   */
  readonly view: { readonly i32: Int32Array; readonly epochIndex: number; readonly stampBase: number };

  private constructor(rt: ThreadRuntime, offset: number, words: number) {
    this.#i32 = rt.i32;
    this.#big = new BigInt64Array(rt.memory.buffer);
    this.#clock = (offset + 8) >>> 3;
    this.#base = (offset + WORDS_AT) >>> 2;
    this.#epoch = (offset + EPOCH_AT) >>> 2;
    this.#mask = words - 1;
    this.words = words;
    this.view = { i32: this.#i32, epochIndex: this.#epoch, stampBase: this.#base };
  }

  /**
   * Finds or creates the table `name` in `rt`'s arena.
   * @throws RangeError when `options.words` is not a power of two in [64, 2^24].
   * @throws RegionConflictError when `name` exists with another size.
   * @throws ArenaExhaustedError when the arena has no room.
   */
  static open(rt: ThreadRuntime, name: string, options: StampOptions = {}): StampTable {
    const words = options.words ?? DEFAULT_WORDS;
    if (!Number.isInteger(words) || words < 64 || words > 1 << 24 || (words & (words - 1)) !== 0) {
      throw new RangeError(`options.words must be a power of two in [64, 16777216], got ${words}`);
    }
    const log2 = Math.log2(words);
    const offset = openTableRegion(rt, name, WORDS_AT + 4 * words, MAGIC,
      (_big, u32) => {
        u32[0] = LAYOUT;
        u32[1] = log2;
      },
      (_big, u32) => u32[0] === LAYOUT && u32[1] === log2);
    return new StampTable(rt, offset, words);
  }

  /**
   * The version of a write that starts now (`ms`, a wall-clock time): ms × 1024, or one more than
   * the last version any thread of the process was given, whichever is larger. So within a process
   * versions are unique and follow real order (a write that begins after another finished gets a
   * larger one, whatever its thread); up to 1024 writes per millisecond keep them on the clock,
   * beyond that they run ahead until the writes slow down. Two processes may draw the same
   * version: Redis and L2 refuse the second write of a version, so one of them wins everywhere.
   * One CAS on a shared 64-bit word.
   */
  nextVersion(ms: number): number {
    const base = Math.floor(ms) * 1024;
    for (;;) {
      const last = Atomics.load(this.#big, this.#clock);
      const v = Math.max(base, Number(last) + 1);
      if (Atomics.compareExchange(this.#big, this.#clock, last, BigInt(v)) === last) return v;
    }
  }

  /**
   * Moves the version clock up to `version` (one seen from another process: a Redis entry, a bus
   * message), so every write that starts after it here draws a larger one — a hybrid logical
   * clock. Without it a quiet instance, whose clock is only the wall clock, could give a write
   * made after it read another instance's value a smaller version within the same millisecond,
   * and Redis would refuse it (review32). One CAS when it moves, none when it does not.
   */
  observe(version: number, nowMs: number): void {
    // Not from more than MAX_AHEAD_MS in the future: a hostile or broken entry (a version near
    // 2^53) would otherwise carry every later write of the process past what an entry can hold
    // (review34). A clock that far ahead of this one is not followed; its writes still compare.
    if (!Number.isSafeInteger(version) || version <= 0 || version > (Math.floor(nowMs) + MAX_AHEAD_MS) * 1024) return;
    const v = BigInt(version);
    for (;;) {
      const last = Atomics.load(this.#big, this.#clock);
      if (last >= v) return;
      if (Atomics.compareExchange(this.#big, this.#clock, last, v) === last) return;
    }
  }

  /** The current stamp of the word of a key whose hash has low half `hashLo`. */
  stamp(hashLo: number): number {
    return Atomics.load(this.#i32, this.#base + (hashLo & this.#mask));
  }

  /** Advances the key's word; returns the new stamp. (L2 calls this inside its stripe lock.) */
  bump(hashLo: number): number {
    return (Atomics.add(this.#i32, this.#base + (hashLo & this.#mask), 1) + 1) | 0;
  }

  /** The current epoch (advanced by every `clear()` of the cache). */
  epoch(): number {
    return Atomics.load(this.#i32, this.#epoch);
  }

  /** Advances the epoch; returns the new one. */
  bumpEpoch(): number {
    return (Atomics.add(this.#i32, this.#epoch, 1) + 1) | 0;
  }
}
