/**
 * The L1 tier: live objects on one thread, bounded by entries and by bytes, with W-TinyLFU
 * admission (the default) or plain LRU. It knows nothing of time: the Cache checks expiry itself.
 *
 * W-TinyLFU (Einziger, Friedman & Manes, "TinyLFU: A Highly Efficient Cache Admission Policy",
 * ACM ToS 2017; the adaptive window of Caffeine, after "Adaptive Software Cache Management",
 * Middleware 2018):
 * ```
 *            new entries                     a marked victim → protected (its oldest
 *                │                           unmarked entry is demoted back to probation's
 *                ▼                           MRU end when over)
 *   ┌──────── window LRU ────────┐  overflow  ┌─ probation ───┐   ┌─ protected (CLOCK) ┐
 *   │ ≈1% of capacity (adaptive) │ ─────────► │  candidates   │   │ 80% of the main   │
 *   └────────────────────────────┘            │ … victim (LRU)│   │ area              │
 *                                             └───────────────┘   └───────────────────┘
 * ```
 * Entries pushed out of the window become candidates at probation's MRU end; while the store is
 * over a bound, the newest candidate and probation's LRU entry (the victim) compete by their
 * estimated frequency (engine/cache/sketch.ts: a 4-bit count-min sketch in WASM, conservative
 * update, halved every 80 × maxEntries additions; its doorkeeper is available but off, as measured):
 * the candidate is admitted only when it is strictly more frequent — or, when it is frequent
 * itself (≥ 6), with probability 1/128, so an attacker cannot pin a victim by flooding its hash
 * (Caffeine's hash-flooding guard; the random source is a seeded xorshift: runs are reproducible).
 * The loser is evicted (`rejected` counts candidates that lost).
 *
 * The window's share adapts by hill climbing on the hit ratio, after Caffeine's climber but with
 * a significance test: every `10 × maxEntries` requests the last move is judged against the hit
 * ratio before its run (details at #climb). Caffeine's plain climber (repeat a step if the hit
 * ratio rose, reverse it if not, steps decaying by 0.98) random-walks on small caches, where a
 * 5 000-request sample is noisier than one step's effect: on the Zipf 0.99 / C=500 trace it froze
 * at a 15% window (46.5%, against 47.2% here), and it could not reach a full window on a sliding
 * working set (64%, against LRU's 71.6% and 71.4% here). A frequency-biased workload (Zipf)
 * settles the window at 1 entry; a recency-biased one (loops, sliding working sets) grows it
 * towards maxEntries - 1, which behaves as an LRU.
 *
 * Hits in the main area only mark the entry (a reference bit in its `#queue` byte, as CLOCK's
 * second chance); the moves happen when an area overflows:
 * - probation: when an eviction finds a marked entry at the victim's place, that entry is promoted
 *   to protected (unmarked) instead of facing the candidate — at most PROMOTE_MAX per entry
 *   evicted; past that a marked victim is weighed as an unmarked one. SLRU promotes on the hit
 *   itself; promoting when the entry would otherwise leave keeps what was hit in probation all
 *   the same, and takes the moves (and the demotion that follows) off the hit.
 * - protected: when it overflows, its oldest marked entries go round to the MRU end, unmarked,
 *   instead of being demoted (at most SPIN_MAX per call; past that the oldest is demoted, marked
 *   or not), and the first unmarked one is demoted to probation's MRU end.
 * An SLRU moves an entry on every main-area hit: two neighbours' links rewritten (on a large
 * cache, two cache misses per hit), and a probation hit also demotes. Measured against the
 * SLRU version with the simulator's traces: hit ratios within 0.05 points on every trace but the
 * re-ranked Zipf (35.90 → 35.52% at C=1000; such shifting traces lose a little more at smaller
 * capacities: 28.10 → 27.67% at C=200, 34.00 → 33.15% at C=500, all well above LRU); the store's
 * `get` against lru-cache's, uniform random hits (bench/cache-l1.bench.ts, the runs recorded in
 * aa93341 and 27513cb, the VM at different speeds): 10k 0.70× → 0.92×, 100k 0.48× → 1.08×,
 * 1M 0.93× → 1.02×.
 * The window stays an exact LRU: under second chance a window entry hit once would push a
 * newcomer out before it was ever seen again (the window exists to give newcomers that time), and
 * on recency-biased traces, where the climber makes the window nearly the whole cache, CLOCK fell
 * 2.4 points below LRU. `policy: 'lru'` is an exact LRU too.
 *
 * Every access of a key (hit or miss) is one sketch increment, recorded by `get`/`find` (or
 * `findHit` + `recordMiss`) — `set` records
 * none (the Cache's set of a key it just missed is the same access). Increments are buffered and
 * applied before any admission decision (sketch.ts), so decisions are exact.
 *
 * Representation (as lru-cache: slot indexes, links in typed arrays, so a hit allocates nothing
 * and moves an entry with a few integer stores): slots 0, 1, 2 are the sentinel heads of three
 * circular doubly-linked lists (window, probation, protected; LRU first), entries live in slots
 * 3…; freed slots are chained through `next`. Arrays start small and double up to maxEntries + 4
 * slots (a new entry is linked before the eviction that makes room for it).
 * The key → slot index is a Map, as in lru-cache. An open-addressing table over the caller's
 * KeyHash.lo was measured first: half the cost of Map.get at 10k keys with the hash given, but the
 * hash costs more than the lookup when computed per call, while V8 keeps a string's own hash in
 * the string — so a Cache hit through the Map hashes nothing in JS (`findHit`). The 32-bit hash is
 * still stored per slot: the sketch counts by it, and the Cache indexes its stamp words by it.
 * Callers pass KeyHash.lo (engine/runtime/key-hash.ts) where a hash is asked for; calls without
 * one compute it.
 */
import { KeyHash } from '../runtime/key-hash.js';
import { kernelModule } from '../runtime/wasm.js';
import { FrequencySketch, READ_BUFFER, type SketchTuning } from './sketch.js';

/**
 * The default entry shape (a value and its size). Any value may be stored: `set` takes the size
 * as its fourth argument (default `entry.bytes`). The Cache stores bare values, their numbers in `meta`.
 */
export interface L1Entry {
  value: unknown;
  /** Size for the `maxBytes` bound (the Cache's sizeOf, or the encoded size). */
  bytes: number;
}

/** L1 store settings. */
export interface L1Options {
  /** Most entries (a positive integer). */
  maxEntries: number;
  /** Most bytes (sum of entries' `bytes`). Default Infinity. */
  maxBytes?: number;
  /** 'tinylfu' (W-TinyLFU, default) or 'lru'. */
  policy?: 'tinylfu' | 'lru';
  /** The compiled kernels (`kernelModule()`); needed by 'tinylfu' (default: loaded on demand). */
  module?: WebAssembly.Module;
  /**
   * Advanced (the hit-ratio simulator's knobs): sketch sizing, the initial window share
   * (default 0.01), and whether the window adapts (default true).
   */
  tuning?: { sketch?: Partial<SketchTuning>; window?: number; adaptive?: boolean; climber?: Partial<ClimberTuning> };
  /** Numbers the owner keeps per entry in `meta` (the Cache: expiry, stale time, version, stamp, epoch). Default 0. */
  metaLanes?: number;
}

/** The hill climber's knobs (the simulator's; defaults in CLIMBER). */
export interface ClimberTuning {
  /** Requests per sample, in multiples of maxEntries. */
  sample: number;
  /** Fewest requests per sample. */
  minSample: number;
  /** First step, as a share of maxEntries (doubles while a direction keeps paying). */
  step: number;
  /** Standard errors a change of hit ratio must exceed to count. */
  z: number;
  /** A growth not significantly better is undone when below the anchor by more than `flat` × the noise margin, else kept. */
  flat: number;
}

const WINDOW = 0;
const PROBATION = 1;
const PROTECTED = 2;
/** Added to a probation or protected entry's area in `#queue` when it was hit since it last moved. */
const REF = 4;
/** An entry's area in `#queue`, without REF. */
const AREA = 3;
/**
 * Most marked entries one overflow of protected moves round to the MRU end before the oldest
 * leaves regardless: bounded work per call. Protected overflows only when an eviction promotes,
 * so this is off the hit path. With promotion at eviction, 8 gave the best hit ratios of 4 and 8
 * (47.27 vs 47.24% on Zipf 0.99 / C=500, 35.52 vs 35.36% on the re-ranked Zipf; the others within
 * 0.03 points) at no measurable cost.
 */
const SPIN_MAX = 8;
/**
 * Most marked probation entries promoted per entry evicted (a marked victim past that faces the
 * candidate, or goes, as an unmarked one would): bounded work per eviction.
 */
const PROMOTE_MAX = 8;
/** The first entry slot (0..2 are the list heads). */
const FIRST = 3;
const INITIAL_SLOTS = 1024;
/** Protected share of the main area. */
const PROTECTED_SHARE = 0.8;
/** A candidate this frequent may win a tie by chance (1/128): the hash-flooding guard. */
const ADMIT_RANDOM_FROM = 6;
/** Most entries demoted from protected per call (bounds the work of one get or set). */
const DEMOTE_MAX = 8;
/** The hill climber's defaults (Caffeine's, except as measured on bench/cache-hitratio.bench.ts). */
const CLIMBER = { sample: 10, minSample: 0, step: 0.0625, z: 2, flat: 0 };
/** Climber states: what the last sample's move was. */
const IDLE = 0;
const GROW = 1;
const SHRINK = 2;
const UNDO = 3;
/** Longest back-off between two probes (or two shrink attempts), in samples. */
const WAIT_MAX = 16;

/**
 * One thread's L1: string keys to entries, bounded by entries and bytes. Not thread-safe (one per
 * thread by design). See the file comment for the policy.
 */
export class L1Store<E = L1Entry> {
  /**
   * Called for each entry removed to make room (capacity evictions, including a candidate that
   * lost admission — possibly the entry `set` just inserted). Not for delete/clear/replace.
   * It must not call this store at all — not even get/find/findHit, which mark an entry and
   * could move an eviction's candidate under it.
   */
  onEvict?: (key: string, entry: E) => void;

  #max: number;
  readonly #maxBytes: number;
  readonly #lfu: boolean;
  /**
   * The index: key → slot. A Map, because V8 caches a string's hash in the string itself: a lookup
   * with a key string seen before hashes nothing, where our own table needed the caller's JS hash
   * of the key on every call (2.3× slower than lru-cache's get at 10k entries, hash included).
   * The 32-bit hash is still kept per slot, for the sketch and the Cache's stamps.
   */
  readonly #index = new Map<string, number>();
  #keys: Array<string | undefined>;
  #vals: Array<E | undefined>;
  #next: Uint32Array;
  #prev: Uint32Array;
  #queue: Uint8Array;
  #hash: Int32Array;
  /** Each held entry's size (what `maxBytes` counts). */
  #sizes: Float64Array;
  /** `metaLanes` numbers per slot that the owner keeps beside each entry (see `meta`). */
  #meta: Float64Array;
  readonly #lanes: number;
  #lastSlot = 0;
  /** For the delete / peek / has calls that come without a hash. */
  readonly #hasher = new KeyHash();
  /** Slots allocated in the arrays. */
  #slots: number;
  /** The lowest slot never used. */
  #top = FIRST;
  /** Head of the free-slot chain (0: empty). */
  #free = 0;
  #size = 0;
  #bytes = 0;
  #evictions = 0;
  #rejected = 0;

  // W-TinyLFU
  readonly #sketch: FrequencySketch | undefined;
  /** The sketch's read buffer, filled here (the hot path) and drained into the sketch. */
  readonly #reads: Int32Array;
  #readCount = 0;
  /** maxBytes is finite: the areas' byte sizes are tracked (else they are not even read). */
  readonly #bounded: boolean;
  #windowMax = 0;
  /** Byte bounds of the window and protected areas (their shares of maxBytes). */
  #windowMaxB = Infinity;
  #protectedMaxB = Infinity;
  #windowCount = 0;
  #windowBytes = 0;
  #protectedMax = 0;
  #protectedCount = 0;
  #protectedBytes = 0;
  readonly #adaptive: boolean;
  /** Requests and misses of the climber's current sample (requests = reads drained + reads buffered). */
  #requests = 0;
  #misses = 0;
  #sampleSize: number;
  #prevHitRate = 0;
  #step: number;
  #lastKind = IDLE;
  #anchorRate = 0;
  #full = false;
  #anchorWindow = 0;
  #idle = 0;
  #probeWait = 1;
  #shrinkWait = 1;
  readonly #climber: typeof CLIMBER;
  #seed = 0x2545f491;

  /**
   * @throws TypeError / RangeError naming `options.l1.<field>` for a bad maxEntries, maxBytes or
   *   policy.
   */
  constructor(options: L1Options) {
    if (options === null || typeof options !== 'object') throw new TypeError('options.l1 must be an object');
    const { maxEntries, maxBytes = Infinity, policy = 'tinylfu' } = options;
    if (typeof maxEntries !== 'number' || !Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > 0x3ffffff0) {
      throw new RangeError(`options.l1.maxEntries must be a positive integer (at most ${0x3ffffff0}), got ${String(maxEntries)}`);
    }
    if (typeof maxBytes !== 'number' || Number.isNaN(maxBytes) || !(maxBytes > 0)) {
      throw new RangeError(`options.l1.maxBytes must be a positive number, got ${String(maxBytes)}`);
    }
    if (policy !== 'tinylfu' && policy !== 'lru') {
      throw new TypeError(`options.l1.policy must be 'tinylfu' or 'lru', got ${JSON.stringify(policy)}`);
    }
    this.#max = maxEntries;
    this.#maxBytes = maxBytes;
    this.#lfu = policy === 'tinylfu';
    this.#bounded = maxBytes !== Infinity;
    this.#slots = Math.min(maxEntries + 1, INITIAL_SLOTS) + FIRST;
    this.#next = new Uint32Array(this.#slots);
    this.#prev = new Uint32Array(this.#slots);
    this.#queue = new Uint8Array(this.#slots);
    this.#hash = new Int32Array(this.#slots);
    this.#sizes = new Float64Array(this.#slots);
    this.#lanes = options.metaLanes ?? 0;
    this.#meta = new Float64Array(this.#slots * this.#lanes);
    this.#keys = new Array<string | undefined>(this.#slots).fill(undefined);
    this.#vals = new Array<E | undefined>(this.#slots).fill(undefined);
    for (let q = 0; q < FIRST; q++) {
      this.#next[q] = q;
      this.#prev[q] = q;
    }
    const tuning = options.tuning ?? {};
    this.#adaptive = tuning.adaptive !== false;
    this.#climber = { ...CLIMBER, ...tuning.climber };
    this.#sampleSize = Math.max(this.#climber.minSample, this.#climber.sample * maxEntries);
    this.#step = Math.max(1, Math.round(this.#climber.step * maxEntries));
    if (this.#lfu) {
      const module = options.module ?? kernelModule();
      this.#sketch = new FrequencySketch(module, maxEntries, tuning.sketch);
      this.#reads = this.#sketch.readBuffer;
      this.#resizeWindow(maxEntries - Math.floor((1 - (tuning.window ?? 0.01)) * maxEntries));
    } else {
      this.#sketch = undefined;
      this.#reads = new Int32Array(0);
      this.#windowMax = maxEntries;
    }
  }

  /** The entry bound (`maxEntries`). */
  get maxEntries(): number {
    return this.#max;
  }

  /**
   * Changes `maxEntries` in place, keeping the entries: shrinking evicts down to the new bound at
   * once, by the policy's own choice (TinyLFU: window overflow becomes candidates, then candidates
   * against victims); growing lets new entries in. TinyLFU's window keeps its share and the
   * climber rescales its sample and step. The frequency sketch keeps its counts: it was sized for
   * the capacity the store was made with, so growing far beyond that makes its estimates coarser
   * (a new store sizes it anew). The slot arrays are not shrunk.
   * @throws RangeError for a bad maxEntries.
   */
  resize(maxEntries: number): void {
    if (typeof maxEntries !== 'number' || !Number.isInteger(maxEntries) || maxEntries < 1 || maxEntries > 0x3ffffff0) {
      throw new RangeError(`maxEntries must be a positive integer (at most ${0x3ffffff0}), got ${String(maxEntries)}`);
    }
    if (maxEntries === this.#max) return;
    const share = this.#windowMax / this.#max;
    this.#max = maxEntries;
    if (this.#lfu) {
      this.#sampleSize = Math.max(this.#climber.minSample, this.#climber.sample * maxEntries);
      this.#step = Math.max(1, Math.round(this.#climber.step * maxEntries));
      this.#resizeWindow(Math.round(share * maxEntries));
    } else {
      this.#windowMax = maxEntries;
    }
    if (this.#size > this.#max || this.#windowCount > this.#windowMax) this.#evict();
  }

  /** Entries held. */
  get size(): number {
    return this.#size;
  }

  /** Sum of the held entries' `bytes`. */
  get bytes(): number {
    return this.#bytes;
  }

  /** The policy's counters: capacity evictions (rejected candidates included), and candidates that lost admission. */
  stats(): { evictions: number; rejected: number } {
    return { evictions: this.#evictions, rejected: this.#rejected };
  }

  /**
   * The entry of `key`, recording the access (frequency and recency); undefined when absent.
   * @param hash `KeyHash.lo` of `key` (engine/runtime/key-hash.ts), which the Cache has already
   *   computed for L2; omitted, the store computes it. The sketch counts by it and it is stored
   *   with the entry: pass the same function's value everywhere.
   */
  get(key: string, hash: number = this.#hashOf(key)): E | undefined {
    const i = this.find(key, hash);
    return i === 0 ? undefined : this.#vals[i];
  }

  /**
   * `get` that answers with the entry's slot (0: absent), recording the access the same way. The
   * owner reads `valueAt(slot)` and its lanes in `meta` without touching the entry object — on a
   * large cache that object is a cache miss of its own.
   */
  find(key: string, hash: number = this.#hashOf(key)): number {
    hash |= 0;
    const i = this.#find(key, hash);
    if (this.#lfu) {
      // Every access is one sketch increment, buffered (applied before any admission decision).
      this.#reads[this.#readCount] = hash;
      if (++this.#readCount === READ_BUFFER) this.#drainReads();
      if (i === 0) {
        this.#misses++;
        return 0;
      }
      this.#touch(i);
      return i;
    }
    if (i !== 0) this.#toTail(i, WINDOW);
    return i;
  }

  /**
   * The slot of `key` when held (0 otherwise), recording a hit — and nothing on a miss: the caller
   * then hashes the key (it needs the hash for L2 anyway) and calls `recordMiss`. No hashing here:
   * the index is a Map and the hit's hash is the one stored with it.
   */
  findHit(key: string): number {
    const i = this.#index.get(key);
    if (i === undefined) return 0;
    if (this.#lfu) {
      this.#reads[this.#readCount] = this.#hash[i]!;
      if (++this.#readCount === READ_BUFFER) this.#drainReads();
      this.#touch(i);
    } else {
      this.#toTail(i, WINDOW);
    }
    return i;
  }

  /** Records the access of a miss after `findHit` answered 0 (`hash` as for get). */
  recordMiss(hash: number): void {
    if (!this.#lfu) return;
    this.#reads[this.#readCount] = hash | 0;
    if (++this.#readCount === READ_BUFFER) this.#drainReads();
    this.#misses++;
  }

  /** The slot of `key` (0: absent), recording nothing. */
  slotOf(key: string): number {
    return this.#index.get(key) ?? 0;
  }

  /** The stored hash of slot `i` (KeyHash.lo as an int32). */
  hashAt(i: number): number {
    return this.#hash[i]!;
  }

  /** The entry in slot `i` (from `find` or `lastSlot`). */
  valueAt(i: number): E {
    return this.#vals[i]!;
  }

  /**
   * The owner's numbers, `metaLanes` per slot: slot i's lanes are `meta[i * metaLanes …]`. A new
   * array after the store grows: read this property again after any `set`.
   */
  get meta(): Float64Array {
    return this.#meta;
  }

  /** The slot the last `set` put its entry in (0 when it was not kept). */
  get lastSlot(): number {
    return this.#lastSlot;
  }

  /** The entry of `key` without recording an access. `hash` as for get. */
  peek(key: string, hash: number = this.#hashOf(key)): E | undefined {
    const i = this.#find(key, hash | 0);
    return i === 0 ? undefined : this.#vals[i];
  }

  /** True when `key` is held (no access recorded). `hash` as for get. */
  has(key: string, hash: number = this.#hashOf(key)): boolean {
    return this.#find(key, hash | 0) !== 0;
  }

  /**
   * Inserts or replaces `key`'s entry, then evicts until both bounds hold. Returns whether the
   * entry is held afterwards: false when `entry.bytes` exceeds maxBytes (refused; a replaced entry
   * is dropped too, never left stale) or when the new entry lost admission at once.
   * `entry.bytes` must not change while the entry is held (the store reads it again on removal).
   * @param hash as for get.
   */
  set(key: string, hash: number, entry: E, bytes: number = (entry as L1Entry).bytes): boolean {
    hash |= 0;
    const w = bytes;
    const i = this.#find(key, hash);
    this.#lastSlot = 0;
    if (!(w <= this.#maxBytes)) {
      if (i !== 0) this.#remove(i);
      return false;
    }
    if (i !== 0) {
      // Replace: same slot, same place in its list (a write is not a read: no increment).
      const dw = w - this.#sizes[i]!;
      this.#vals[i] = entry;
      this.#sizes[i] = w;
      this.#bytes += dw;
      const q = this.#queue[i]! & AREA;
      if (!this.#bounded) {
        // Areas' bytes are not tracked.
      } else if (q === WINDOW) this.#windowBytes += dw;
      else if (q === PROTECTED) {
        this.#protectedBytes += dw;
        if (dw > 0) this.#demote();
      }
      if (dw > 0 && this.#over()) this.#evict();
      if (this.#keys[i] !== key) return false;
      this.#lastSlot = i;
      return true;
    }
    const j = this.#alloc();
    this.#keys[j] = key;
    this.#vals[j] = entry;
    this.#sizes[j] = w;
    this.#hash[j] = hash;
    this.#insert(j, hash);
    this.#link(j, WINDOW);
    this.#size++;
    this.#bytes += w;
    this.#windowCount++;
    if (this.#bounded) this.#windowBytes += w;
    if (this.#size > this.#max || this.#bytes > this.#maxBytes || this.#windowCount > this.#windowMax || this.#windowBytes > this.#windowMaxB) {
      this.#evict();
    }
    if (this.#keys[j] !== key) return false;
    this.#lastSlot = j;
    return true;
  }

  /** Removes `key`; true when it was held. `hash` as for get. */
  delete(key: string, hash: number = this.#hashOf(key)): boolean {
    const i = this.#find(key, hash | 0);
    if (i === 0) return false;
    this.#remove(i);
    return true;
  }

  /** Removes every entry (the frequency history and the window's adapted size are kept). */
  clear(): void {
    this.#index.clear();
    this.#keys.fill(undefined);
    this.#vals.fill(undefined);
    for (let q = 0; q < FIRST; q++) {
      this.#next[q] = q;
      this.#prev[q] = q;
    }
    this.#top = FIRST;
    this.#free = 0;
    this.#size = 0;
    this.#bytes = 0;
    this.#windowCount = 0;
    this.#windowBytes = 0;
    this.#protectedCount = 0;
    this.#protectedBytes = 0;
  }

  /**
   * The held keys: window, probation, protected, each in list order — oldest first: least recently
   * used in the window (and under `policy: 'lru'`); in probation and protected, least recently
   * moved (a hit there marks an entry without moving it).
   */
  *keys(): IterableIterator<string> {
    for (let q = 0; q < FIRST; q++) {
      for (let i = this.#next[q]!; i !== q; i = this.#next[i]!) yield this.#keys[i]!;
    }
  }

  /** The area a key sits in (for tests and debugging). */
  areaOf(key: string): 'window' | 'probation' | 'protected' | undefined {
    const i = this.#find(key, this.#hashOf(key));
    return i === 0 ? undefined : (['window', 'probation', 'protected'] as const)[this.#queue[i]! & AREA];
  }

  #drainReads(): void {
    this.#requests += this.#readCount;
    this.#sketch!.drain(this.#readCount);
    this.#readCount = 0;
  }

  /** The policy's internals (for tests, the simulator and debugging). */
  policy(): { windowMax: number; protectedMax: number; window: number; protected: number; sketch: FrequencySketch | undefined } {
    if (this.#readCount !== 0) this.#drainReads(); // the sketch, as a caller would inspect it, is up to date
    return { windowMax: this.#windowMax, protectedMax: this.#protectedMax, window: this.#windowCount, protected: this.#protectedCount, sketch: this.#sketch };
  }

  // ------------------------------------------------------------------ index

  #hashOf(key: string): number {
    this.#hasher.set(key);
    return this.#hasher.lo | 0;
  }

  /** The slot holding `key`, or 0. (`hash` is the caller's; the index needs none.) */
  #find(key: string, _hash: number): number {
    return this.#index.get(key) ?? 0;
  }

  #insert(i: number, _hash: number): void {
    this.#index.set(this.#keys[i]!, i);
  }

  /** Takes slot i out of the index (before its key is cleared). */
  #unindex(i: number): void {
    this.#index.delete(this.#keys[i]!);
  }

  // ------------------------------------------------------------------ lists

  /** Moves slot i to the MRU end of list q (it is in list q). */
  #toTail(i: number, q: number): void {
    const next = this.#next;
    const prev = this.#prev;
    const n = next[i]!;
    if (n === q) return; // already the MRU
    const p = prev[i]!;
    next[p] = n;
    prev[n] = p;
    const t = prev[q]!;
    next[t] = i;
    prev[i] = t;
    next[i] = q;
    prev[q] = i;
  }

  #unlink(i: number): void {
    const n = this.#next[i]!;
    const p = this.#prev[i]!;
    this.#next[p] = n;
    this.#prev[n] = p;
  }

  /** Appends slot i at the MRU end of list q and marks it as there. */
  #link(i: number, q: number): void {
    const t = this.#prev[q]!;
    this.#next[t] = i;
    this.#prev[i] = t;
    this.#next[i] = q;
    this.#prev[q] = i;
    this.#queue[i] = q;
  }

  #move(i: number, q: number): void {
    this.#unlink(i);
    this.#link(i, q);
  }

  #alloc(): number {
    if (this.#free !== 0) {
      const i = this.#free;
      this.#free = this.#next[i]!;
      return i;
    }
    if (this.#top === this.#slots) this.#grow();
    return this.#top++;
  }

  #grow(): void {
    // maxEntries + 1: a new entry takes its slot before the eviction that makes room for it.
    const slots = Math.min(this.#max + 1 + FIRST, this.#slots * 2);
    const copy = <T extends Uint32Array | Uint8Array | Int32Array>(a: T, make: new (n: number) => T): T => {
      const b = new make(slots);
      b.set(a);
      return b;
    };
    this.#next = copy(this.#next, Uint32Array);
    this.#prev = copy(this.#prev, Uint32Array);
    this.#queue = copy(this.#queue, Uint8Array);
    this.#hash = copy(this.#hash, Int32Array);
    const sizes = new Float64Array(slots);
    sizes.set(this.#sizes);
    this.#sizes = sizes;
    const meta = new Float64Array(slots * this.#lanes);
    meta.set(this.#meta);
    this.#meta = meta;
    this.#keys.length = slots;
    this.#keys.fill(undefined, this.#slots);
    this.#vals.length = slots;
    this.#vals.fill(undefined, this.#slots);
    this.#slots = slots;
  }

  /** Removes slot i from everything; frees the slot. */
  #remove(i: number): void {
    this.#unlink(i);
    this.#unindex(i);
    const w = this.#sizes[i]!;
    const aw = this.#bounded ? w : 0;
    const q = this.#queue[i]! & AREA;
    if (q === WINDOW) {
      this.#windowCount--;
      this.#windowBytes -= aw;
    } else if (q === PROTECTED) {
      this.#protectedCount--;
      this.#protectedBytes -= aw;
    }
    this.#keys[i] = undefined;
    this.#vals[i] = undefined;
    this.#size--;
    this.#bytes -= w;
    this.#next[i] = this.#free;
    this.#free = i;
  }

  #evictSlot(i: number): void {
    const key = this.#keys[i]!;
    const entry = this.#vals[i]!;
    this.#remove(i);
    this.#evictions++;
    this.onEvict?.(key, entry);
  }

  // ------------------------------------------------------------------ policy

  /** An entry's bytes as the areas count them: 0 when no byte bound (then the entry is not even read). */
  #areaWeight(i: number): number {
    return this.#bounded ? this.#sizes[i]! : 0;
  }

  /** The byte bound of an area of `entries` of the maxEntries (the same share of maxBytes). */
  #share(entries: number): number {
    return this.#maxBytes === Infinity ? Infinity : (this.#maxBytes * entries) / this.#max;
  }

  #over(): boolean {
    return this.#size > this.#max || this.#bytes > this.#maxBytes;
  }

  /** A W-TinyLFU hit on slot i: a window entry moves to the window's MRU end; a main-area entry is marked. */
  #touch(i: number): void {
    const q = this.#queue[i]!;
    if (q === WINDOW) this.#toTail(i, WINDOW);
    else if (q < REF) this.#queue[i] = q | REF;
  }

  /**
   * A marked probation entry at the victim's place: to protected's MRU end, unmarked (or, larger
   * than protected's byte bound, to probation's MRU end, unmarked); protected's leaving entries go
   * back to probation when it is over.
   */
  #promote(i: number): void {
    const w = this.#areaWeight(i);
    if (w > this.#protectedMaxB) {
      this.#toTail(i, PROBATION);
      this.#queue[i] = PROBATION;
      return;
    }
    this.#move(i, PROTECTED);
    // Unmarked: it earns its second chance with a hit in protected. (Marked on arrival, the hit
    // ratios of the simulator's Zipf traces came out lower, with promotion on the hit and with
    // promotion at eviction alike: 47.21 vs 47.24 % on Zipf 0.99 / C=500, 35.26 vs 35.36 % on the
    // re-ranked Zipf, measured with SPIN_MAX 4.)
    this.#protectedCount++;
    this.#protectedBytes += w;
    this.#demote();
  }

  /**
   * Demotes protected's entries to probation while it is over its bounds, at most DEMOTE_MAX per
   * call. The one demoted is the oldest not marked since it last moved; marked ones on the way go
   * round to the MRU end, unmarked — SPIN_MAX of them per call, after which the oldest goes
   * whatever its mark. Bounded work per call.
   */
  #demote(): void {
    const queue = this.#queue;
    let spins = SPIN_MAX;
    for (let n = 0; n < DEMOTE_MAX && (this.#protectedCount > this.#protectedMax || this.#protectedBytes > this.#protectedMaxB); n++) {
      let j = this.#next[PROTECTED]!;
      while (j !== PROTECTED && queue[j] !== PROTECTED && spins > 0) {
        spins--;
        queue[j] = PROTECTED;
        this.#toTail(j, PROTECTED);
        j = this.#next[PROTECTED]!;
      }
      if (j === PROTECTED) break;
      this.#move(j, PROBATION);
      this.#protectedCount--;
      this.#protectedBytes -= this.#areaWeight(j);
    }
  }

  /** Restores the bounds: window overflow → candidates; then candidates vs victims; then climbs. */
  #evict(): void {
    if (!this.#lfu) {
      while (this.#over()) {
        const j = this.#next[WINDOW]!;
        if (j === WINDOW) break;
        this.#evictSlot(j);
      }
      return;
    }
    this.#evictFromMain(this.#evictFromWindow());
    this.#climb();
  }

  /** Moves window entries beyond its bounds to probation's MRU end; returns how many (the candidates). */
  #evictFromWindow(): number {
    let candidates = 0;
    const maxBytes = this.#windowMaxB;
    while (this.#windowCount > this.#windowMax || this.#windowBytes > maxBytes) {
      const j = this.#next[WINDOW]!;
      if (j === WINDOW) break;
      this.#move(j, PROBATION);
      this.#windowCount--;
      this.#windowBytes -= this.#areaWeight(j);
      candidates++;
    }
    return candidates;
  }

  /**
   * While over a bound: the newest candidate (walking from probation's MRU end) against the
   * victim (probation's LRU end); then, with no candidates left, victims alone — from probation,
   * then protected, then the window (Caffeine's evictFromMain).
   */
  #evictFromMain(candidates: number): void {
    const next = this.#next;
    const prev = this.#prev;
    let victimQueue = PROBATION;
    let victim = next[PROBATION]!;
    // PROBATION (the sentinel) stands for "no candidate left".
    let candidate = candidates > 0 ? prev[PROBATION]! : PROBATION;
    let promotions = PROMOTE_MAX;
    while (this.#over()) {
      if (this.#queue[victim] === (PROBATION | REF) && promotions > 0) {
        // Hit while in probation: promoted now instead of facing the candidate. Its promotion may
        // demote protected entries to probation's MRU end (behind the candidates): read the head again.
        promotions--;
        this.#promote(victim);
        victim = next[PROBATION]!;
        continue;
      }
      if (victim === victimQueue) {
        // This list is exhausted: take victims from the next one.
        if (victimQueue === PROBATION) victimQueue = PROTECTED;
        else if (victimQueue === PROTECTED) victimQueue = WINDOW;
        else break;
        victim = next[victimQueue]!;
        continue;
      }
      promotions = PROMOTE_MAX; // per entry evicted below: bounded work per eviction
      if (candidate === PROBATION || candidate === victim) {
        // No candidate to weigh (or the two walks met): the victim goes.
        if (candidate === victim) candidate = PROBATION;
        const evict = victim;
        victim = next[victim]!;
        this.#evictSlot(evict);
        continue;
      }
      candidates--;
      if (this.#admit(this.#hash[candidate]!, this.#hash[victim]!)) {
        const evict = victim;
        victim = next[victim]!;
        this.#evictSlot(evict);
        // Read after the eviction: the victim may have been the next older candidate.
        candidate = candidates > 0 ? prev[candidate]! : PROBATION;
      } else {
        const evict = candidate;
        candidate = candidates > 0 ? prev[candidate]! : PROBATION;
        this.#rejected++;
        this.#evictSlot(evict);
      }
    }
  }

  /** True when the candidate should replace the victim (see the file comment). */
  #admit(candidateHash: number, victimHash: number): boolean {
    if (this.#readCount !== 0) this.#drainReads();
    const f = this.#sketch!.compare(candidateHash, victimHash);
    const candidateFreq = f >>> 8;
    const victimFreq = f & 0xff;
    if (candidateFreq > victimFreq) return true;
    if (candidateFreq < ADMIT_RANDOM_FROM) return false;
    // xorshift32 (Marsaglia): reproducible, no allocation.
    let x = this.#seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#seed = x;
    return (x & 127) === 0;
  }

  /**
   * The hill climber, once per sample of requests (see the file comment). A run of moves in one
   * direction is judged against an anchor — the hit ratio of the sample before the run — with a
   * significance test (a change within `z` standard errors of two binomial samples is noise):
   * - growing the window goes on while each step raises the hit ratio significantly (the anchor
   *   follows); a step that leaves it below the anchor is undone (on a frequency-biased workload a
   *   small window is what TinyLFU wants), and one that leaves it flat is kept but ends the run
   *   (near the top of a recency-biased workload the last steps gain too little to be seen);
   * - shrinking goes on while the hit ratio stays within noise of the anchor (the anchor follows
   *   a significant gain), and the whole run is undone as soon as it is significantly below — so
   *   losses too small to see one step at a time cannot pile up;
   * - steps start at `step` × maxEntries and double while a run goes on;
   * - with nothing to judge, the climber tries a shrink, else probes a growth; a run undone
   *   backs its direction off (1, 2, 4 … 16 samples), so a settled window costs little exploration.
   */
  #climb(): void {
    if (!this.#adaptive) return;
    // Every get is one read (a hit needs no counter of its own: hits = requests - misses).
    const n = this.#requests + this.#readCount;
    if (!this.#full) {
      // Until the first eviction the store is filling up, and its hit ratio rises whatever the
      // window: samples start after it.
      this.#requests = -this.#readCount;
      this.#misses = 0;
      this.#full = this.#evictions > 0;
      return;
    }
    if (n < this.#sampleSize) return;
    const c = this.#climber;
    const hitRate = (n - this.#misses) / n;
    this.#requests = -this.#readCount;
    this.#misses = 0;
    const anchor = this.#anchorRate;
    const p = (hitRate + anchor) / 2;
    const noise = c.z * Math.sqrt((2 * p * (1 - p)) / n);
    const maxStep = Math.ceil(this.#max / 4);
    const before = this.#windowMax;
    let target = before;
    let kind = this.#lastKind;
    if (kind === GROW) {
      if (hitRate > anchor + noise) {
        this.#anchorRate = hitRate;
        this.#anchorWindow = before;
        this.#probeWait = 1;
        this.#step = Math.min(this.#step * 2, maxStep);
        target = before + this.#step;
      } else if (hitRate < anchor - c.flat * noise) {
        target = this.#anchorWindow;
        kind = UNDO;
        this.#probeWait = Math.min(this.#probeWait * 2, WAIT_MAX);
      } else {
        // Flat: keep the growth, stop the run.
        kind = IDLE;
        this.#probeWait = Math.min(this.#probeWait * 2, WAIT_MAX);
      }
    } else if (kind === SHRINK) {
      if (hitRate < anchor - noise) {
        target = this.#anchorWindow;
        kind = UNDO;
        this.#shrinkWait = Math.min(this.#shrinkWait * 2, WAIT_MAX);
      } else {
        if (hitRate > anchor + noise) {
          this.#anchorRate = hitRate;
          this.#anchorWindow = before;
          this.#shrinkWait = 1;
        }
        this.#step = Math.min(this.#step * 2, maxStep);
        target = before - this.#step;
      }
    } else {
      this.#idle++;
      this.#step = Math.max(1, Math.round(c.step * this.#max));
      this.#anchorRate = hitRate;
      this.#anchorWindow = before;
      kind = IDLE;
      if (this.#idle >= this.#shrinkWait && before > 1) {
        target = before - this.#step;
        kind = SHRINK;
      } else if (this.#idle >= this.#probeWait && before < this.#max - 1) {
        target = before + this.#step;
        kind = GROW;
      }
    }
    this.#resizeWindow(target);
    // A run that hit the end of the range has nothing more to try.
    if (this.#windowMax === before && kind !== UNDO) kind = IDLE;
    if (kind !== IDLE) this.#idle = 0;
    this.#lastKind = kind;
  }

  /**
   * Sets the window's share to `entries` (clamped to 1 … maxEntries - 1) and the protected area to
   * 80% of the rest. Nothing moves now: a larger window fills with new entries while evictions
   * shrink the main area; a smaller one hands its LRU entries to probation as candidates at the
   * next eviction; protected's excess is demoted a few entries per promotion.
   */
  #resizeWindow(entries: number): void {
    const max = this.#max;
    this.#windowMax = Math.max(1, Math.min(max - 1, entries));
    this.#protectedMax = Math.floor(PROTECTED_SHARE * (max - this.#windowMax));
    this.#windowMaxB = this.#share(this.#windowMax);
    this.#protectedMaxB = this.#share(this.#protectedMax);
    this.#demote();
  }

}


