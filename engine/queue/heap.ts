/**
 * The task queue's priority heap: (key, seq, slot) entries in a 4-ary min-heap kernel
 * (wasm/heap.ts), ordered by key ascending and then by seq, which this wrapper assigns from a
 * counter, so tasks of equal key come out first-in first-out.
 *
 * The heap is used by the one thread that owns the queue, so it does not live in the engine's
 * shared arena (whose size is fixed at start-up): each TaskHeap instantiates the kernels against a
 * private WebAssembly.Memory that starts small and doubles as the heap grows, up to the
 * `maxEntries` it was created for (the queue's `maxQueued`). The memory is `shared: true` only
 * because the kernel module imports a shared memory; no other thread ever sees it.
 *
 * Private memory layout (byte offsets):
 * ```
 * 0           .. ARENA_BASE   kernel static data (below __heap_base)
 * STAGE_KEYS  32 KiB          batch staging: STAGE_ENTRIES × f64 keys
 * STAGE_SLOTS 16 KiB          batch staging: STAGE_ENTRIES × u32 slots (pushBatch in, popBatch out)
 * SCRATCH     24 KiB          the kernel's sort scratch (heapSort, heapRenumber)
 * HEAP        …               the heap: 48-byte header, then 16-byte entries (wasm/heap.ts);
 *                             64-byte aligned so each group of four siblings is one cache line
 * ```
 * The staging area and the root entry lie within the initial memory and never move, so their
 * views are made once: a grown SharedArrayBuffer keeps old views valid over their old length.
 * Views over the whole heap (popBatch's sorted path, `entries`) are made when needed.
 *
 * Sequence numbers are u32. Before the counter would pass `seqLimit` (2^32), the live entries are
 * renumbered 0 .. size-1 in pop order (heapRenumber: an in-place radix sort, O(n), once per
 * 4 billion pushes) and the counter continues from `size`; the pop order is unchanged.
 *
 * A popBatch that takes at least half of a large heap sorts it instead of popping entry by entry
 * (wasm/heap.ts explains why; about 4× faster at 1M entries). A single `pop` never sorts: its cost
 * stays O(log n), with no pause proportional to the backlog.
 */
import { ARENA_BASE } from '../runtime/arena.js';
import { instantiateKernels, kernelModule, MAX_MEMORY, type KernelExports } from '../runtime/wasm.js';

/** Raw exports of wasm/heap.ts (declared once, in KernelExports). */
type HeapKernels = Pick<
  KernelExports,
  | 'heapInit'
  | 'heapSetCapacity'
  | 'heapSize'
  | 'heapSetSize'
  | 'heapPush'
  | 'heapPop'
  | 'heapPeekSlot'
  | 'heapPeekKey'
  | 'heapPushBatch'
  | 'heapPopBatch'
  | 'heapSort'
  | 'heapDropFront'
  | 'heapRenumber'
>;

const PAGE = 65536;
/** Entries per batch crossing (pushBatch / popBatch go through the staging area in chunks). */
export const STAGE_ENTRIES = 4096;
const STAGE_KEYS = ARENA_BASE;
const STAGE_SLOTS = STAGE_KEYS + STAGE_ENTRIES * 8;
const SCRATCH = STAGE_SLOTS + STAGE_ENTRIES * 4;
const HEAP = SCRATCH + 24 * 1024; // 64-byte aligned
const ENTRIES = HEAP + 48;
const ENTRY_BYTES = 16;
/** Largest slot: slots are non-negative i32 so that an empty pop can answer -1. */
export const MAX_SLOT = 0x7fffffff;
/** The most entries one TaskHeap can hold (its memory stays below MAX_MEMORY). */
export const MAX_HEAP_ENTRIES = Math.floor((MAX_MEMORY - ENTRIES) / ENTRY_BYTES);
/** Sequence numbers are u32: renumber before the counter reaches 2^32. */
const SEQ_LIMIT = 2 ** 32;
/** Default initial room (entries): 16 KiB of entries. */
const DEFAULT_INITIAL = 1024;
/**
 * Heaps smaller than this are popped entry by entry even by a large popBatch. Measured per popped
 * entry (random keys): a full drain by sorting beats pops at every size (18 vs 27 ns at 256
 * entries, 40 vs 91 ns at 256k), but a half drain pays for sorting the other half too: about even
 * at 4096 (43 vs 48 ns), a loss below (60 vs 37 ns at 1024).
 */
export const DRAIN_SORT_MIN = 4096;

/** Options of {@link TaskHeap} beyond its sizes. */
export interface TaskHeapOptions {
  /** The compiled kernels (default `kernelModule()`). */
  module?: WebAssembly.Module;
  /**
   * For tests: the sequence counter renumbers when it reaches this value (default 2^32, the u32
   * range). At least `maxEntries`, at most 2^32.
   */
  seqLimit?: number;
  /**
   * For tests: the smallest heap a large popBatch sorts instead of popping (default
   * DRAIN_SORT_MIN).
   */
  drainSortMin?: number;
  /** For tests: the first sequence number (default 0), e.g. just below seqLimit. */
  seqStart?: number;
}

function pagesFor(entries: number): number {
  return Math.ceil((ENTRIES + entries * ENTRY_BYTES) / PAGE);
}

/**
 * A min-heap of task slots by (key, arrival): `pop` returns the slot with the smallest key, and
 * among equal keys the one pushed first. Not thread-safe: one owner thread.
 *
 * Keys are finite doubles (a priority, or priority + enqueueMs / agingMs with aging). Slots are
 * integers in [0, MAX_SLOT]. Push is O(log n) (4-ary: about half the levels of a binary heap);
 * pop is O(log n).
 */
export class TaskHeap {
  readonly #k: HeapKernels;
  readonly #memory: WebAssembly.Memory;
  readonly #max: number;
  readonly #seqLimit: number;
  readonly #drainSortMin: number;
  /** Entries the memory holds now (mirrors the kernel header's capacity). */
  #capacity: number;
  /** Live entries (mirrors the kernel header's size: the hot paths need not read it back). */
  #size = 0;
  /** The next sequence number. */
  #seq = 0;
  readonly #stageKeys: Float64Array;
  readonly #stageSlots: Uint32Array;
  /** The root entry's u32 words (seq at +2, slot at +3): peekSlot reads memory directly. */
  readonly #rootWords: Uint32Array;

  /**
   * @param maxEntries the most entries it will hold (the queue's `maxQueued`); a positive integer
   *   up to MAX_HEAP_ENTRIES. Memory for them is reserved, not committed: it grows as needed.
   * @param initialEntries room to start with (default 1024, at most maxEntries).
   * @throws RangeError when a size is not a positive integer in range.
   */
  constructor(maxEntries: number, initialEntries = DEFAULT_INITIAL, options: TaskHeapOptions = {}) {
    if (!Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > MAX_HEAP_ENTRIES) {
      throw new RangeError(`maxEntries must be an integer in [1, ${MAX_HEAP_ENTRIES}], got ${maxEntries}`);
    }
    if (!Number.isInteger(initialEntries) || initialEntries < 1) {
      throw new RangeError(`initialEntries must be a positive integer, got ${initialEntries}`);
    }
    const seqLimit = options.seqLimit ?? SEQ_LIMIT;
    if (!Number.isInteger(seqLimit) || seqLimit < maxEntries || seqLimit > SEQ_LIMIT) {
      throw new RangeError(`options.seqLimit must be an integer in [maxEntries, 2^32], got ${seqLimit}`);
    }
    this.#max = maxEntries;
    this.#seqLimit = seqLimit;
    this.#drainSortMin = options.drainSortMin ?? DRAIN_SORT_MIN;
    this.#seq = options.seqStart ?? 0;
    if (!Number.isInteger(this.#seq) || this.#seq < 0 || this.#seq > seqLimit) {
      throw new RangeError(`options.seqStart must be an integer in [0, seqLimit], got ${this.#seq}`);
    }
    const maximum = pagesFor(maxEntries);
    const initial = Math.min(maximum, pagesFor(Math.min(initialEntries, maxEntries)));
    this.#memory = new WebAssembly.Memory({ initial, maximum, shared: true });
    this.#k = instantiateKernels(options.module ?? kernelModule(), this.#memory) as unknown as HeapKernels;
    this.#capacity = this.#room();
    this.#k.heapInit(HEAP, this.#capacity);
    const buffer = this.#memory.buffer;
    this.#stageKeys = new Float64Array(buffer, STAGE_KEYS, STAGE_ENTRIES);
    this.#stageSlots = new Uint32Array(buffer, STAGE_SLOTS, STAGE_ENTRIES);
    this.#rootWords = new Uint32Array(buffer, ENTRIES, 4);
  }

  /** Entries the current memory holds (whole pages), capped at maxEntries. */
  #room(): number {
    return Math.min(this.#max, Math.floor((this.#memory.buffer.byteLength - ENTRIES) / ENTRY_BYTES));
  }

  /** Live entries. */
  get size(): number {
    return this.#size;
  }

  /** The most entries it holds (the constructor's maxEntries). */
  get maxEntries(): number {
    return this.#max;
  }

  /** Entries the memory has room for now (grows ×2 up to maxEntries). */
  get capacity(): number {
    return this.#capacity;
  }

  /** Bytes of private memory committed (whole pages, the kernels' static area and staging included). */
  get memoryBytes(): number {
    return this.#memory.buffer.byteLength;
  }

  /**
   * Adds `slot` with `key`. O(log n).
   * @throws RangeError when the heap holds maxEntries already, or `key` is not finite, or `slot`
   *   is not an integer in [0, MAX_SLOT].
   */
  push(key: number, slot: number): void {
    if (this.#size === this.#capacity) this.#grow(1);
    // key - key is 0 for every finite number, NaN for NaN and ±Infinity: one check for both.
    if (key - key !== 0 || (slot & MAX_SLOT) !== slot) this.#badEntry(key, slot);
    if (this.#seq === this.#seqLimit) this.#renumber();
    this.#k.heapPush(HEAP, key, this.#seq++, slot);
    this.#size++;
  }

  /** Removes the first slot (smallest key, then oldest) and returns it; -1 when empty. */
  pop(): number {
    if (this.#size === 0) return -1;
    this.#size--;
    return this.#k.heapPop(HEAP);
  }

  /** The first slot without removing it; -1 when empty. */
  peekSlot(): number {
    return this.#size === 0 ? -1 : this.#rootWords[3]!;
  }

  /** The first slot's key (a key pushed as -0 reads +0); NaN when empty. */
  peekKey(): number {
    return this.#size === 0 ? NaN : this.#k.heapPeekKey(HEAP);
  }

  /** Removes every entry (the memory stays as large as it grew) and restarts the sequence. */
  clear(): void {
    this.#k.heapInit(HEAP, this.#capacity);
    this.#size = 0;
    this.#seq = 0;
  }

  /**
   * Adds `slots[i]` with `keys[i]` for i < n, in that order (FIFO among equal keys as with n
   * pushes). All or nothing: nothing is added when one entry is invalid or they do not all fit.
   * @throws RangeError when n exceeds either array, size + n exceeds maxEntries, a key is not
   *   finite or a slot exceeds MAX_SLOT.
   */
  pushBatch(keys: Float64Array, slots: Uint32Array, n: number = keys.length): void {
    if (!Number.isInteger(n) || n < 0 || n > keys.length || n > slots.length) {
      throw new RangeError(`n must be an integer in [0, ${Math.min(keys.length, slots.length)}], got ${n}`);
    }
    if (n === 0) return;
    for (let i = 0; i < n; i++) {
      const key = keys[i]!;
      const slot = slots[i]!;
      if (key - key !== 0 || slot > MAX_SLOT) this.#badEntry(key, slot);
    }
    if (this.#size + n > this.#capacity) this.#grow(n);
    if (this.#seq + n > this.#seqLimit) this.#renumber();
    const k = this.#k;
    for (let off = 0; off < n; off += STAGE_ENTRIES) {
      const m = Math.min(STAGE_ENTRIES, n - off);
      this.#stageKeys.set(off === 0 && m === keys.length ? keys : keys.subarray(off, off + m));
      this.#stageSlots.set(off === 0 && m === slots.length ? slots : slots.subarray(off, off + m));
      k.heapPushBatch(HEAP, STAGE_KEYS, STAGE_SLOTS, this.#seq, m);
      this.#seq += m;
    }
    this.#size += n;
  }

  /**
   * Removes up to `n` (default out.length) first slots, in order, into `out`; returns how many
   * (fewer when the heap runs out). Same order as that many pops. Taking at least half of a heap
   * of DRAIN_SORT_MIN entries or more sorts the heap (O(size), in place) instead of popping.
   * @throws RangeError when n is not a non-negative integer.
   */
  popBatch(out: Uint32Array, n: number = out.length): number {
    if (!Number.isInteger(n) || n < 0) throw new RangeError(`n must be a non-negative integer, got ${n}`);
    if (n > out.length) n = out.length;
    if (n > this.#size) n = this.#size;
    const k = this.#k;
    if (n * 2 >= this.#size && this.#size >= this.#drainSortMin) {
      // Sort (ascending: a valid heap), read the first n slots, drop them.
      k.heapSort(HEAP, SCRATCH);
      const words = new Uint32Array(this.#memory.buffer, ENTRIES, n * 4);
      for (let i = 0; i < n; i++) out[i] = words[i * 4 + 3]!;
      this.#size = k.heapDropFront(HEAP, n);
      return n;
    }
    let done = 0;
    while (done < n) {
      const m = k.heapPopBatch(HEAP, STAGE_SLOTS, Math.min(STAGE_ENTRIES, n - done));
      out.set(m === STAGE_ENTRIES ? this.#stageSlots : this.#stageSlots.subarray(0, m), done);
      done += m;
    }
    this.#size -= done;
    return done;
  }

  /**
   * Keeps only the entries whose slot passes `keep` (called once per entry, in no particular
   * order) and returns how many were removed. The order among those kept is unchanged (they keep
   * their sequence numbers). O(n): a pass in JS, then the kernel's radix sort restores the heap.
   * For the queue's lazy deletion: dropping cancelled tasks' entries in one go instead of popping
   * and re-pushing every entry (measured at 1M entries, 4 keys, 10% dropped: 66-84 ms, where
   * peekKey + pop of every entry and a push of each live one took 260-440 ms).
   * If `keep` throws, the entries it had not seen yet are kept and the heap stays consistent.
   */
  retain(keep: (slot: number) => boolean): number {
    const size = this.#size;
    if (size === 0) return 0;
    const words = new Uint32Array(this.#memory.buffer, ENTRIES, size * 4);
    let kept = 0;
    let i = 0;
    try {
      for (; i < size; i++) {
        const w = i * 4;
        if (!keep(words[w + 3]!)) continue;
        if (kept !== i) words.copyWithin(kept * 4, w, w + 4);
        kept++;
      }
    } finally {
      // Also when `keep` throws: the entries not yet looked at stay, the heap stays consistent.
      if (i < size) {
        words.copyWithin(kept * 4, i * 4, size * 4);
        kept += size - i;
      }
      if (kept !== size) {
        this.#k.heapSetSize(HEAP, kept);
        this.#k.heapSort(HEAP, SCRATCH);
        this.#size = kept;
      }
    }
    return size - kept;
  }

  /**
   * The live entries in heap (array) order, copied: for tests and diagnostics.
   * @internal
   */
  entries(): Array<{ key: number; seq: number; slot: number }> {
    const u32 = new Uint32Array(this.#memory.buffer, ENTRIES, this.#size * 4);
    // Keys are stored in their order-preserving u64 form (wasm/heap.ts): undo it.
    const bits = new Uint32Array(2);
    const f64 = new Float64Array(bits.buffer);
    const list: Array<{ key: number; seq: number; slot: number }> = [];
    for (let i = 0; i < this.#size; i++) {
      const lo = u32[i * 4]!;
      const hi = u32[i * 4 + 1]!;
      const positive = hi >>> 31 === 1;
      bits[0] = positive ? lo : ~lo;
      bits[1] = positive ? hi ^ 0x80000000 : ~hi;
      list.push({ key: f64[0]!, seq: u32[i * 4 + 2]!, slot: u32[i * 4 + 3]! });
    }
    return list;
  }

  /** Makes room for `more` entries beyond size: doubles the memory (at least) up to maxEntries. */
  #grow(more: number): void {
    const need = this.#size + more;
    if (need > this.#max) {
      throw new RangeError(`TaskHeap is full: ${this.#size} of maxEntries ${this.#max} entries${more > 1 ? `, cannot add ${more}` : ''}`);
    }
    const pages = this.#memory.buffer.byteLength / PAGE;
    const target = Math.min(pagesFor(this.#max), Math.max(pages * 2, pagesFor(need)));
    this.#memory.grow(target - pages);
    this.#capacity = this.#room();
    this.#k.heapSetCapacity(HEAP, this.#capacity);
  }

  #renumber(): void {
    this.#k.heapRenumber(HEAP, SCRATCH);
    this.#seq = this.#size;
  }

  #badEntry(key: number, slot: number): never {
    if (key - key !== 0) throw new RangeError(`key must be a finite number, got ${key}`);
    throw new RangeError(`slot must be an integer in [0, ${MAX_SLOT}], got ${slot}`);
  }
}
