/**
 * Consistent hashing for sticky routing by key: `HashRing` maps a key (a session id, a user id, a
 * cache key) to one of a set of node ids, so that the same key keeps going to the same node, and
 * adding or removing a node moves few keys. The balancer's `consistent-hash` algorithm is built on
 * it; it is usable on its own.
 *
 * Three algorithms (`options.algorithm`); wasm/ring.ts has the kernels, the papers and the layouts:
 *  - 'ring' (default): ketama-style virtual nodes. Each node has `round(vnodes × weight)` points
 *    (point i of node `id` is at xxHash32(UTF-8 of `${id}#${i}`)); a key goes to the first point
 *    clockwise from its hash. Adding a node moves only the keys it takes; removing one moves only
 *    its keys (exactly: a point's position depends on nothing but its node's id). Any positive
 *    weight. The default of 2000 points per unit of weight keeps the busiest of 5–20 equal nodes
 *    within 1.1× of the mean load (measured over 100 id sets: worst 1.08× at 20 nodes, by the
 *    arcs; 1.10× at 1000 points, 1.27× at hashring's 160). The cost: 8 bytes per point, 4–8 for
 *    the index and 8 of sort scratch (576 KiB of private memory for 10 nodes, static area
 *    included), 2000 hashes per node added, and a rebuild of ≈ 0.2 ms at 20,000 points
 *    (≈ 0.3 ms per membership change all told; bench/balance.bench.ts).
 *  - 'jump': Lamping & Veach's jump consistent hash: no table, O(log n) arithmetic per attempt,
 *    perfectly even. A node of weight w (an integer) holds w buckets, assigned in the order nodes
 *    are added, so two rings agree only if their nodes were added (and removed) in the same order.
 *    Jump hash itself can only remove the last bucket (which is done when that is the one freed);
 *    any other bucket of a removed node becomes a hole, and a key whose bucket is a hole tries the
 *    next seed of a fixed sequence (see `get`): only the removed node's keys move, spread evenly
 *    over the rest. The next node added fills the lowest holes first (and takes the keys that had
 *    been routed around them, and no others). The cost: with h holes among n buckets, a lookup
 *    takes n / (n - h) attempts on average; after 32 attempts it scans the buckets.
 *  - 'maglev': Google's Maglev lookup table of `maglevTableSize` entries (a prime, default 65537:
 *    256 KiB; at least the total weight, best ≥ 100× it): one load per lookup, each node within
 *    ±1 entry of its share. Adding or removing a node rebuilds the table; a few keys of other
 *    nodes move too ("minimal disruption", not none: the paper's trade for the even table). The
 *    table does not depend on the order nodes were added. Integer weights.
 *
 * Keys are hashed with xxHash32 (seed 0) of their UTF-8 bytes — in JS for short keys, by the WASM
 * kernel for keys of 32+ UTF-16 units (DESIGN pitfall 8; engine/runtime/hash.ts has the
 * measurements) — so a string and its UTF-8 bytes route alike, in every process.
 *
 * The tables live in a private WebAssembly.Memory per HashRing (the balancer uses its ring from one
 * thread, and the ring changes size on add/remove, so it does not belong in the engine's fixed
 * shared arena), instantiated against the one compiled kernel module like engine/queue/heap.ts.
 * There is nothing to free (`close()` does nothing): the memory goes with the object. Changes are applied lazily: `add` and
 * `remove` only record them, and the next `get` rebuilds the ring or the Maglev table once for all
 * changes made since ('jump' updates its bucket table at once; it needs no rebuild).
 *
 * Private memory layout (byte offsets):
 * ```
 * 0          .. ARENA_BASE   kernel static data (below __heap_base)
 * SCRATCH    4 KiB           UTF-8 of a long key, hashed there by the xxh32 kernel
 * DATA       …               'ring':   hashes u32[P] | slots u32[P] | index u32[2^bits + 1]
 *                                       | sort scratch: u32[P] | u32[P] | 4 KiB of counts
 *                            'jump':   buckets u32[n]
 *                            'maglev': table u32[m] | cur u32[e] | skip u32[e] | owner u32[e]
 *                            (each table 64-byte aligned; wasm/ring.ts describes them)
 * ```
 * Why a kernel: the lookup after the key hash (radix index + one bucket, wasm/ring.ts) costs 18 ns
 * per call at 20,000 points where a binary search in JS costs 89 ns; Lamping & Veach's jump needs
 * 64-bit multiplies (BigInt in JS); the ring's rebuild sorts in the kernel (≈ 0.2 ms for 20,000
 * points, against ≈ 2 ms with Float64Array.prototype.sort and decoding); Maglev's population is a
 * tight loop over 65537 entries (≈ 0.9 ms). Measured by bench/balance.bench.ts and wasm/ring.ts.
 */
import { ARENA_BASE } from '../runtime/arena.js';
import { WASM_HASH_MIN_LENGTH, xxh32Ascii, xxh32Bytes } from '../runtime/hash.js';
import { fmix } from '../runtime/key-hash.js';
import { instantiateKernels, kernelModule, type KernelExports } from '../runtime/wasm.js';

/** The consistent-hash algorithm of a {@link HashRing}. */
export type RingAlgorithm = 'ring' | 'jump' | 'maglev';

/** Options of {@link HashRing}; all optional. */
export interface HashRingOptions {
  /** 'ring' (default), 'jump' or 'maglev': see the module documentation for when to use each. */
  algorithm?: RingAlgorithm;
  /**
   * 'ring' only: points on the circle per unit of weight; an integer in [1, 65536], default
   * {@link DEFAULT_VNODES} (2000). Memory is 8 bytes per point plus the index (4–8 bytes per
   * point); fewer points make rebuilds faster and the spread of load wider (about 1/√vnodes).
   */
  vnodes?: number;
  /**
   * 'maglev' only: entries of the lookup table, a prime in [2, 16777213], at least the total
   * weight of the nodes (best ≥ 100× it, for an even spread); default 65537 (256 KiB).
   */
  maglevTableSize?: number;
  /** The compiled kernels (default `kernelModule()`). */
  module?: WebAssembly.Module;
}

/** Default points per unit of weight of the 'ring' algorithm. */
export const DEFAULT_VNODES = 2000;
/** Default Maglev table size (a prime). */
export const DEFAULT_MAGLEV_TABLE_SIZE = 65537;
/** The most points a 'ring' holds (sum over nodes of round(vnodes × weight)). */
export const MAX_RING_POINTS = 1 << 24;
/** The most buckets a 'jump' ring holds (the sum of the weights, holes included). */
export const MAX_JUMP_BUCKETS = (1 << 24) - 1;
/** The largest `maglevTableSize` (the largest prime below 2^24). */
export const MAX_MAGLEV_TABLE_SIZE = 16777213;
/** The most nodes one HashRing holds. */
export const MAX_NODES = 1 << 20;
/** 'jump' and 'maglev': attempts of the alternate sequence before the linear scan (wasm/ring.ts has 32 too). */
export const RING_ATTEMPTS = 32;

const MAX_VNODES = 65536;
const DEFAULTS = { algorithm: 'ring', vnodes: DEFAULT_VNODES, maglevTableSize: DEFAULT_MAGLEV_TABLE_SIZE } as const;
const ALGORITHMS: readonly RingAlgorithm[] = ['ring', 'jump', 'maglev'];
const RING = 0;
const JUMP = 1;
const MAGLEV = 2;

const PAGE = 65536;
const SCRATCH = ARENA_BASE;
const SCRATCH_BYTES = 4096;
const DATA = SCRATCH + SCRATCH_BYTES;
/**
 * The largest table area: a 'ring' of MAX_RING_POINTS points (hashes, slots, index of 2^24 + 1
 * entries, sort scratch: 20 bytes a point, plus alignment and the counts), which also covers the
 * largest Maglev table with its build arrays (16 bytes an entry) and the most jump buckets.
 */
const MAX_DATA_BYTES = 20 * MAX_RING_POINTS + 65536;
/** A hole in the jump bucket table. */
const DEAD = 0xffffffff;

const encoder = new TextEncoder();

/** xxHash32 of the UTF-8 bytes of `s` (build-time hashing of ids; the hot path has its own). */
function hashUtf8(s: string, seed: number): number {
  const h = xxh32Ascii(s, seed);
  if (h >= 0) return h;
  const bytes = encoder.encode(s);
  return xxh32Bytes(bytes, 0, bytes.length, seed);
}

/** murmur3's 32-bit finalizer, unsigned: the Maglev alternate positions. */
function fmix32(h: number): number {
  return fmix(h) >>> 0;
}

/**
 * The Maglev table position of key hash `h` at attempt `a` (a = 0: the key's own entry; then the
 * alternates used to skip ineligible nodes). The top 31 bits of the hash are reduced modulo m: a
 * small-integer modulo in V8 (a full u32 would take the floating-point path); the bias is below
 * m / 2^31.
 */
export function maglevPosition(h: number, a: number, m: number): number {
  return ((a === 0 ? h : fmix32((h + Math.imul(a, 0x9e3779b9)) | 0)) >>> 1) % m;
}

function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

function byCodeUnits(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function align64(n: number): number {
  return (n + 63) & ~63;
}

function describe(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : typeof v === 'number' ? String(v) : typeof v;
}

/** One node: its id, slot (index into the slot tables), weight and what each algorithm caches. */
interface RingNode {
  readonly id: string;
  readonly slot: number;
  weight: number;
  /** 'ring': its point hashes (round(vnodes × weight) of them). */
  points: Uint32Array | undefined;
  /** 'jump': its buckets, in the order they were assigned. */
  buckets: number[] | undefined;
  /** 'maglev': offset and skip of each replica (virtual backend `${id}#${r}`). */
  offsets: Uint32Array | undefined;
  skips: Uint32Array | undefined;
}

/**
 * A consistent-hash router from keys to node ids ('ring', 'jump' or 'maglev'; the module
 * documentation compares them). Not thread-safe: one owner thread, like the balancer using it.
 *
 * ```ts
 * const ring = new HashRing();               // 'ring', 2000 points per unit of weight
 * ring.add('a'); ring.add('b'); ring.add('c', 2);
 * ring.get('user:42')                        // 'a' | 'b' | 'c', the same every time
 * ring.get('user:42', (id) => healthy(id))   // the next eligible node for this key
 * ```
 */
export class HashRing {
  readonly #k: KernelExports;
  readonly #memory: WebAssembly.Memory;
  readonly #algorithm: RingAlgorithm;
  readonly #algo: number;
  readonly #vnodes: number;
  readonly #m: number;
  readonly #scratch: Uint8Array;
  readonly #nodes = new Map<string, RingNode>();
  /** slot → id (undefined: a free slot). */
  readonly #idOf: Array<string | undefined> = [];
  readonly #freeSlots: number[] = [];
  /** Per slot: the generation of the get that last asked `eligible` about it. */
  #stamp = new Uint32Array(16);
  #gen = 0;
  /** Inside an `eligible` callback: the ring must not change or be read under it. */
  #walking = false;
  /** 'ring' / 'maglev': changes since the last rebuild. */
  #dirty = false;
  /** Bytes of DATA the memory has room for. */
  #room = 0;
  // 'ring'
  #points = 0;
  #shift = 31;
  #hashesAt = DATA;
  #indexAt = DATA;
  #slotView = new Uint32Array(0);
  // 'jump'
  #n = 0;
  #buckets = new Uint32Array(0);
  /** Holes (buckets of removed nodes), ascending. */
  #holes: number[] = [];
  // 'maglev'
  #weights = 0;
  #table = new Uint32Array(0);

  /**
   * @throws TypeError when `options.algorithm` is not 'ring', 'jump' or 'maglev', or an option
   *   has the wrong type.
   * @throws RangeError when `options.vnodes` is not an integer in [1, 65536] or
   *   `options.maglevTableSize` is not a prime in [2, 16777213].
   */
  constructor(options: HashRingOptions = {}) {
    if (options === null || typeof options !== 'object') throw new TypeError(`options must be an object, got ${describe(options)}`);
    const algorithm = options.algorithm ?? DEFAULTS.algorithm;
    if (!ALGORITHMS.includes(algorithm)) {
      throw new TypeError(`options.algorithm must be one of ${ALGORITHMS.map((a) => `'${a}'`).join(', ')}, got ${describe(algorithm)}`);
    }
    const vnodes = options.vnodes ?? DEFAULTS.vnodes;
    if (typeof vnodes !== 'number') throw new TypeError(`options.vnodes must be a number, got ${describe(vnodes)}`);
    if (!Number.isInteger(vnodes) || vnodes < 1 || vnodes > MAX_VNODES) {
      throw new RangeError(`options.vnodes must be an integer in [1, ${MAX_VNODES}], got ${vnodes}`);
    }
    const m = options.maglevTableSize ?? DEFAULTS.maglevTableSize;
    if (typeof m !== 'number') throw new TypeError(`options.maglevTableSize must be a number, got ${describe(m)}`);
    if (!Number.isInteger(m) || m < 2 || m > MAX_MAGLEV_TABLE_SIZE || !isPrime(m)) {
      throw new RangeError(`options.maglevTableSize must be a prime in [2, ${MAX_MAGLEV_TABLE_SIZE}], got ${m}`);
    }
    if (options.module !== undefined && !(options.module instanceof WebAssembly.Module)) {
      throw new TypeError(`options.module must be a WebAssembly.Module, got ${describe(options.module)}`);
    }
    this.#algorithm = algorithm;
    this.#algo = ALGORITHMS.indexOf(algorithm);
    this.#vnodes = vnodes;
    this.#m = m;
    const initial = Math.ceil((DATA + 64 * 1024) / PAGE);
    this.#memory = new WebAssembly.Memory({ initial, maximum: Math.ceil((DATA + MAX_DATA_BYTES) / PAGE), shared: true });
    this.#k = instantiateKernels(options.module ?? kernelModule(), this.#memory);
    this.#room = this.#memory.buffer.byteLength - DATA;
    // Within the initial memory: the view stays valid when the memory grows.
    this.#scratch = new Uint8Array(this.#memory.buffer, SCRATCH, SCRATCH_BYTES);
  }

  /** The algorithm this ring was created with. */
  get algorithm(): RingAlgorithm {
    return this.#algorithm;
  }

  /** Number of nodes. */
  get size(): number {
    return this.#nodes.size;
  }

  /** Bytes of private memory committed (whole pages, the kernels' static area included). */
  get memoryBytes(): number {
    return this.#memory.buffer.byteLength;
  }

  /**
   * Points on the circle ('ring'), buckets holes included ('jump'), or table entries ('maglev'),
   * as of the last rebuild (a `get` applies pending changes first). For tests and diagnostics.
   */
  get tableSize(): number {
    return this.#algo === RING ? this.#points : this.#algo === JUMP ? this.#n : this.#m;
  }

  /** True when `id` is a node. */
  has(id: string): boolean {
    return this.#nodes.has(id);
  }

  /** The node ids, in the order they were first added. */
  ids(): string[] {
    return [...this.#nodes.keys()];
  }

  /** The weight `id` was added with, or undefined. */
  weight(id: string): number | undefined {
    return this.#nodes.get(id)?.weight;
  }

  /**
   * Adds node `id` with `weight` (default 1), or changes the weight of a node already there
   * (the same weight: nothing happens). A weight is a share: a node of weight 2 gets twice the
   * keys of a node of weight 1. Changing a weight moves keys only to (raised) or only from
   * (lowered) that node, for every algorithm but 'maglev' (which rebuilds its table).
   * @param weight 'ring': a positive number, round(vnodes × weight) points, at least one;
   *   'jump' and 'maglev': a positive integer (that many buckets or virtual backends).
   * @throws TypeError when `id` is not a string or `weight` not a number, or when called from an
   *   `eligible` callback of this ring.
   * @throws RangeError when `weight` is out of range, or the ring would exceed its limits
   *   (MAX_NODES nodes, MAX_RING_POINTS points, MAX_JUMP_BUCKETS buckets, or a total weight over
   *   `maglevTableSize`).
   */
  add(id: string, weight = 1): void {
    if (this.#walking) this.#reentered('add');
    if (typeof id !== 'string') throw new TypeError(`id must be a string, got ${describe(id)}`);
    if (typeof weight !== 'number') throw new TypeError(`weight must be a number, got ${describe(weight)}`);
    if (this.#algo === RING) {
      if (!(weight > 0 && weight <= MAX_RING_POINTS)) throw new RangeError(`weight must be a positive number up to ${MAX_RING_POINTS}, got ${weight}`);
    } else if (!Number.isInteger(weight) || weight < 1) {
      throw new RangeError(`weight must be a positive integer for the '${this.#algorithm}' algorithm, got ${weight}`);
    }
    const node = this.#nodes.get(id);
    if (node !== undefined && node.weight === weight) return;
    if (node === undefined && this.#nodes.size >= MAX_NODES) throw new RangeError(`a HashRing holds at most ${MAX_NODES} nodes`);
    switch (this.#algo) {
      case RING:
        this.#addRing(id, node, weight);
        break;
      case JUMP:
        this.#addJump(id, node, weight);
        break;
      default:
        this.#addMaglev(id, node, weight);
    }
  }

  /**
   * Removes node `id`; false if it was not there. Only its keys move (for 'maglev', also a few
   * others: the table is rebuilt).
   * @throws TypeError when called from an `eligible` callback of this ring.
   */
  remove(id: string): boolean {
    if (this.#walking) this.#reentered('remove');
    const node = this.#nodes.get(id);
    if (node === undefined) return false;
    this.#nodes.delete(id);
    this.#idOf[node.slot] = undefined;
    this.#freeSlots.push(node.slot);
    switch (this.#algo) {
      case RING:
        this.#points -= node.points!.length;
        this.#dirty = true;
        break;
      case JUMP:
        this.#freeBuckets(node.buckets!, node.buckets!.length);
        break;
      default:
        this.#weights -= node.weight;
        this.#dirty = true;
    }
    return true;
  }

  /**
   * The node for `key`, or undefined when the ring is empty (or no node is eligible).
   *
   * With `eligible`, nodes it refuses are skipped (the balancer passes "is up and not ejected");
   * it is called at most once per node per `get`, and must not change or query this ring. The
   * node chosen is then, deterministically:
   *  - 'ring': the first eligible node met walking clockwise from the key's point;
   *  - 'jump': the bucket of the first attempt a = 0, 1, … 31 of the key's seed sequence (the one
   *    that skips holes: seed_a = splitmix64(a · 2^32 + hash)) whose node is eligible; after 32
   *    attempts, the first eligible node scanning buckets upwards from attempt 0's;
   *  - 'maglev': the node of the first eligible table entry among positions
   *    {@link maglevPosition}(hash, a) for a = 0 … 31; then scanning the table upwards from a = 0's.
   * So a key whose node is refused goes where it would go if that node were removed ('ring'
   * exactly; 'jump' exactly unless the refused node holds the top bucket(s) — removing those
   * shrinks the bucket count, refusing them does not; 'maglev' approximately: its table is rebuilt
   * on removal), and the keys of a refused node spread over the other nodes.
   * @param key a string (hashed as its UTF-8 bytes) or bytes.
   * @throws TypeError when `key` is neither a string nor a Uint8Array, `eligible` is not a
   *   function, or `get` is called from an `eligible` callback of this ring.
   */
  get(key: string | Uint8Array, eligible?: (id: string) => boolean): string | undefined {
    if (this.#walking) this.#reentered('get');
    if (this.#dirty) this.#rebuild();
    const h = this.#hash(key);
    if (this.#nodes.size === 0) return undefined;
    if (eligible !== undefined && typeof eligible !== 'function') {
      throw new TypeError(`eligible must be a function, got ${describe(eligible)}`);
    }
    switch (this.#algo) {
      case RING: {
        const p = this.#k.ringFind(this.#hashesAt, this.#points, this.#indexAt, this.#shift, h);
        if (eligible === undefined) return this.#idOf[this.#slotView[p]!];
        return this.#walkRing(p, eligible);
      }
      case JUMP: {
        if (eligible === undefined) {
          const r = this.#k.jumpGet(DATA, this.#n, h, 0);
          return this.#idOf[this.#buckets[r >= 0 ? r & 0xffffff : this.#jumpScanStart(h)]!];
        }
        return this.#walkJump(h, eligible);
      }
      default:
        if (eligible === undefined) return this.#idOf[this.#table[(h >>> 1) % this.#m]!];
        return this.#walkMaglev(h, eligible);
    }
  }

  /**
   * Does nothing: a HashRing holds no thread, timer or handle, and its private memory is freed
   * with the object. Present so that owners can close every component alike; the ring stays usable.
   */
  close(): void {}

  /** xxHash32 (seed 0) of the key's UTF-8 bytes. */
  #hash(key: string | Uint8Array): number {
    if (typeof key === 'string') {
      if (key.length < WASM_HASH_MIN_LENGTH) {
        const h = xxh32Ascii(key, 0);
        if (h >= 0) return h;
      }
      // UTF-8 needs at most 3 bytes per UTF-16 unit.
      if (key.length * 3 <= SCRATCH_BYTES) {
        const { written } = encoder.encodeInto(key, this.#scratch);
        return this.#k.xxh32(SCRATCH, written, 0) >>> 0;
      }
      const bytes = encoder.encode(key);
      return xxh32Bytes(bytes, 0, bytes.length, 0);
    }
    if (key instanceof Uint8Array) {
      if (key.length < WASM_HASH_MIN_LENGTH || key.length > SCRATCH_BYTES) return xxh32Bytes(key, 0, key.length, 0);
      this.#scratch.set(key);
      return this.#k.xxh32(SCRATCH, key.length, 0) >>> 0;
    }
    throw new TypeError(`key must be a string or a Uint8Array, got ${describe(key)}`);
  }

  #reentered(what: string): never {
    throw new TypeError(`HashRing.${what}() must not be called from an eligible callback of the same ring`);
  }

  /** A slot for a new node (a free one first), with its stamp. */
  #takeSlot(id: string): number {
    const slot = this.#freeSlots.length > 0 ? this.#freeSlots.pop()! : this.#idOf.length;
    this.#idOf[slot] = id;
    if (slot >= this.#stamp.length) {
      const grown = new Uint32Array(this.#stamp.length * 2);
      grown.set(this.#stamp);
      this.#stamp = grown;
    }
    return slot;
  }

  #newNode(id: string, weight: number): RingNode {
    const node: RingNode = { id, slot: this.#takeSlot(id), weight, points: undefined, buckets: undefined, offsets: undefined, skips: undefined };
    this.#nodes.set(id, node);
    return node;
  }

  /** A new generation of stamps for one `get`'s eligibility walk. */
  #nextGen(): number {
    if (this.#gen === 0xffffffff) {
      this.#stamp.fill(0);
      this.#gen = 0;
    }
    return ++this.#gen;
  }

  /** Grows the memory so that DATA + bytes fits. */
  #ensure(bytes: number): void {
    if (bytes <= this.#room) return;
    const have = this.#memory.buffer.byteLength / PAGE;
    const want = Math.max(Math.ceil((DATA + bytes) / PAGE), Math.min(have * 2, Math.ceil((DATA + MAX_DATA_BYTES) / PAGE)));
    this.#memory.grow(want - have);
    this.#room = this.#memory.buffer.byteLength - DATA;
  }

  // ---- 'ring'

  #addRing(id: string, node: RingNode | undefined, weight: number): void {
    const count = Math.max(1, Math.round(this.#vnodes * weight));
    const before = node === undefined ? 0 : node.points!.length;
    if (this.#points - before + count > MAX_RING_POINTS) {
      throw new RangeError(`the ring would hold ${this.#points - before + count} points, over ${MAX_RING_POINTS} (options.vnodes × the weights)`);
    }
    // Point i of a node is the same whatever its weight: a weight change adds or drops points at
    // the end, and keys move only to or from this node.
    const points = new Uint32Array(count);
    if (node !== undefined) points.set(node.points!.subarray(0, Math.min(before, count)));
    for (let i = before; i < count; i++) points[i] = hashUtf8(`${id}#${i}`, 0);
    (node ?? this.#newNode(id, weight)).points = points;
    if (node !== undefined) node.weight = weight;
    this.#points += count - before;
    this.#dirty = true;
  }

  #rebuild(): void {
    this.#dirty = false;
    if (this.#algo === RING) this.#rebuildRing();
    else this.#rebuildMaglev();
  }

  /**
   * Sorts every point by (hash, node id) into the kernel's tables and builds the radix index.
   * Ties between points of different nodes go by id, so the ring depends only on the set of
   * (id, weight), not on the order of adds.
   */
  #rebuildRing(): void {
    const P = this.#points;
    if (P === 0) return;
    // 2^bits >= P: under one point per bucket on average.
    const bits = Math.max(1, Math.min(24, Math.ceil(Math.log2(P))));
    const slotsAt = DATA + align64(P * 4);
    const indexAt = slotsAt + align64(P * 4);
    const tmpAt = indexAt + align64(((1 << bits) + 1) * 4);
    const tmpSlotsAt = tmpAt + align64(P * 4);
    const countsAt = tmpSlotsAt + align64(P * 4);
    this.#ensure(countsAt + 4096 - DATA);
    const buffer = this.#memory.buffer;
    const hashes = new Uint32Array(buffer, DATA, P);
    const slots = new Uint32Array(buffer, slotsAt, P);
    // Node by node in id order: the kernel's stable sort then orders equal hashes by id.
    const live = [...this.#nodes.values()].sort((a, b) => byCodeUnits(a.id, b.id));
    let j = 0;
    for (const node of live) {
      const points = node.points!;
      hashes.set(points, j);
      slots.fill(node.slot, j, j + points.length);
      j += points.length;
    }
    this.#k.ringSort(DATA, slotsAt, P, tmpAt, tmpSlotsAt, countsAt);
    this.#shift = 32 - bits;
    this.#hashesAt = DATA;
    this.#indexAt = indexAt;
    this.#slotView = slots;
    this.#k.ringIndexBuild(DATA, P, indexAt, this.#shift);
  }

  /** The eligibility walk of 'ring': clockwise from point p, each node asked once. */
  #walkRing(p: number, eligible: (id: string) => boolean): string | undefined {
    const slots = this.#slotView;
    const P = this.#points;
    const stamp = this.#stamp;
    const gen = this.#nextGen();
    let left = this.#nodes.size;
    this.#walking = true;
    try {
      for (let steps = 0; steps < P; steps++) {
        const s = slots[p]!;
        if (stamp[s] !== gen) {
          stamp[s] = gen;
          const id = this.#idOf[s]!;
          if (eligible(id)) return id;
          if (--left === 0) return undefined;
        }
        if (++p === P) p = 0;
      }
      return undefined;
    } finally {
      this.#walking = false;
    }
  }

  // ---- 'jump'

  #addJump(id: string, node: RingNode | undefined, weight: number): void {
    const before = node === undefined ? 0 : node.weight;
    if (weight < before) {
      // Lowered: drop the buckets assigned last (only this node's keys move).
      this.#freeBuckets(node!.buckets!, before - weight);
      node!.weight = weight;
      return;
    }
    const more = weight - before;
    const appended = Math.max(0, more - this.#holes.length);
    if (this.#n + appended > MAX_JUMP_BUCKETS) {
      throw new RangeError(`the jump ring would hold ${this.#n + appended} buckets, over ${MAX_JUMP_BUCKETS} (the sum of the weights)`);
    }
    const target = node ?? this.#newNode(id, weight);
    target.weight = weight;
    const list = (target.buckets ??= []);
    if (appended > 0) {
      this.#ensure((this.#n + appended) * 4);
      if (this.#buckets.length < this.#room >>> 2) this.#buckets = new Uint32Array(this.#memory.buffer, DATA, this.#room >>> 2);
    }
    const buckets = this.#buckets;
    // The lowest holes first, then new buckets at the end: either way a key moves only if the
    // first live bucket of its sequence becomes this node's. (The holes taken in one splice:
    // shift() per bucket made adding w buckets into h holes O(w·h).)
    const filled = this.#holes.splice(0, Math.min(more, this.#holes.length));
    for (const b of filled) {
      buckets[b] = target.slot;
      list.push(b);
    }
    for (let i = filled.length; i < more; i++) {
      const b = this.#n++;
      buckets[b] = target.slot;
      list.push(b);
    }
  }

  /**
   * Frees the last `count` buckets of `list`: the top bucket is dropped (n - 1: jump hash's own
   * removal, and it moves no other key: a key's attempts give the same buckets below n - 1), any
   * other becomes a hole. A hole that becomes the top is kept (dropping it would move the keys
   * routed around it). An empty ring starts over at 0 buckets.
   */
  #freeBuckets(list: number[], count: number): void {
    const buckets = this.#buckets;
    const freed: number[] = [];
    for (let i = 0; i < count; i++) {
      const b = list.pop()!;
      buckets[b] = DEAD;
      if (b === this.#n - 1) {
        this.#n--;
        continue;
      }
      freed.push(b);
    }
    if (freed.length > 0) {
      // One sorted merge into the holes (a sorted insert per bucket was O(count · holes)).
      freed.sort((a, b) => a - b);
      const holes = this.#holes;
      const merged = new Array<number>(holes.length + freed.length);
      let i = 0;
      let j = 0;
      let k = 0;
      while (i < holes.length && j < freed.length) merged[k++] = holes[i]! < freed[j]! ? holes[i++]! : freed[j++]!;
      while (i < holes.length) merged[k++] = holes[i++]!;
      while (j < freed.length) merged[k++] = freed[j++]!;
      this.#holes = merged;
    }
    if (this.#holes.length === this.#n) {
      this.#holes.length = 0;
      this.#n = 0;
    }
  }

  /** The bucket where the linear scan of 'jump' starts: attempt 0's. */
  #jumpScanStart(h: number): number {
    const n = this.#n;
    const buckets = this.#buckets;
    let b = this.#k.jumpBucket(h, 0, n);
    while (buckets[b] === DEAD) if (++b === n) b = 0;
    return b;
  }

  #walkJump(h: number, eligible: (id: string) => boolean): string | undefined {
    const k = this.#k;
    const n = this.#n;
    const buckets = this.#buckets;
    const stamp = this.#stamp;
    const gen = this.#nextGen();
    let left = this.#nodes.size;
    this.#walking = true;
    try {
      let a = 0;
      while (a < RING_ATTEMPTS) {
        const r = k.jumpGet(DATA, n, h, a);
        if (r < 0) break;
        const s = buckets[r & 0xffffff]!;
        if (stamp[s] !== gen) {
          stamp[s] = gen;
          const id = this.#idOf[s]!;
          if (eligible(id)) return id;
          if (--left === 0) return undefined;
        }
        a = (r >>> 24) + 1;
      }
      let b = k.jumpBucket(h, 0, n);
      for (let i = 0; i < n; i++) {
        const s = buckets[b]!;
        if (s !== DEAD && stamp[s] !== gen) {
          stamp[s] = gen;
          const id = this.#idOf[s]!;
          if (eligible(id)) return id;
          if (--left === 0) return undefined;
        }
        if (++b === n) b = 0;
      }
      return undefined;
    } finally {
      this.#walking = false;
    }
  }

  // ---- 'maglev'

  #addMaglev(id: string, node: RingNode | undefined, weight: number): void {
    const before = node === undefined ? 0 : node.weight;
    if (this.#weights - before + weight > this.#m) {
      throw new RangeError(`the total weight would be ${this.#weights - before + weight}, over options.maglevTableSize (${this.#m})`);
    }
    const m = this.#m;
    const offsets = new Uint32Array(weight);
    const skips = new Uint32Array(weight);
    for (let r = 0; r < weight; r++) {
      // Virtual backend r of the node: its permutation (offset, skip) as in the paper, from two
      // differently seeded hashes of its name.
      const name = `${id}#${r}`;
      offsets[r] = hashUtf8(name, 1) % m;
      skips[r] = m === 2 ? 1 : (hashUtf8(name, 2) % (m - 1)) + 1;
    }
    const target = node ?? this.#newNode(id, weight);
    target.weight = weight;
    target.offsets = offsets;
    target.skips = skips;
    this.#weights += weight - before;
    this.#dirty = true;
  }

  #rebuildMaglev(): void {
    const e = this.#weights;
    if (e === 0) return;
    const m = this.#m;
    const curAt = DATA + align64(m * 4);
    const skipAt = curAt + align64(e * 4);
    const ownerAt = skipAt + align64(e * 4);
    this.#ensure(ownerAt - DATA + e * 4);
    const buffer = this.#memory.buffer;
    const cur = new Uint32Array(buffer, curAt, e);
    const skip = new Uint32Array(buffer, skipAt, e);
    const owner = new Uint32Array(buffer, ownerAt, e);
    // Virtual backends in (id, replica) order: the table depends on the set of nodes only.
    const live = [...this.#nodes.values()].sort((a, b) => byCodeUnits(a.id, b.id));
    let i = 0;
    for (const node of live) {
      cur.set(node.offsets!, i);
      skip.set(node.skips!, i);
      owner.fill(node.slot, i, i + node.weight);
      i += node.weight;
    }
    this.#k.maglevBuild(DATA, m, curAt, skipAt, ownerAt, e);
    this.#table = new Uint32Array(buffer, DATA, m);
  }

  #walkMaglev(h: number, eligible: (id: string) => boolean): string | undefined {
    const m = this.#m;
    const table = this.#table;
    const stamp = this.#stamp;
    const gen = this.#nextGen();
    let left = this.#nodes.size;
    this.#walking = true;
    try {
      for (let a = 0; a < RING_ATTEMPTS; a++) {
        const s = table[maglevPosition(h, a, m)]!;
        if (stamp[s] !== gen) {
          stamp[s] = gen;
          const id = this.#idOf[s]!;
          if (eligible(id)) return id;
          if (--left === 0) return undefined;
        }
      }
      let p = maglevPosition(h, 0, m);
      for (let i = 0; i < m; i++) {
        const s = table[p]!;
        if (stamp[s] !== gen) {
          stamp[s] = gen;
          const id = this.#idOf[s]!;
          if (eligible(id)) return id;
          if (--left === 0) return undefined;
        }
        if (++p === m) p = 0;
      }
      return undefined;
    } finally {
      this.#walking = false;
    }
  }
}
