/**
 * The frequency sketch of the L1 cache's W-TinyLFU admission policy: a 4-bit count-min sketch with
 * a doorkeeper (wasm/sketch.ts), in a thread-private WebAssembly.Memory with its own instance of
 * the kernel module (as the LZ4 workspace: nothing here is shared between threads, and the engine's
 * fixed arena is not spent on per-thread state).
 *
 * Reads are buffered: `increment` writes the hash into a 256-slot buffer in the sketch's memory and
 * the kernel takes the whole buffer in one call when it fills, or before any estimate (`frequency`,
 * `compare` flush first). Increments are applied in order either way, so the estimates are exactly
 * those of unbuffered increments — only the JS→WASM crossings are batched (a crossing costs about
 * as much as an L1 hit, and a hit records one increment).
 *
 * Private memory layout (byte offsets):
 * ```
 * 0        .. 64 KiB   kernel static data (below __heap_base)
 * BUFFER   1 KiB       read buffer: 256 × i32 hashes
 * SKETCH   …           the sketch (header, table, doorkeeper: layout in wasm/sketch.ts)
 * ```
 */
import { instantiateKernels, type KernelExports } from '../runtime/wasm.js';

/** Raw exports of wasm/sketch.ts (declared once, in KernelExports). */
type SketchKernels = Pick<KernelExports, 'sketchInit' | 'sketchReset' | 'sketchIncrement' | 'sketchIncrementBatch' | 'sketchFrequency' | 'sketchCompare' | 'sketchAdditions'>;

/**
 * How the sketch is sized for a cache of `capacity` entries. Defaults chosen on the hit-ratio
 * simulator (bench/cache-hitratio.bench.ts; DESIGN pitfall 13): see SKETCH_DEFAULTS.
 */
export interface SketchTuning {
  /** u64 words (16 counters each) per cache entry, rounded up to a power of two of 64-byte blocks. */
  wordsPerEntry: number;
  /** Additions between two halvings, in multiples of the capacity (Caffeine: 10). */
  samplePeriodFactor: number;
  /** Doorkeeper bits per cache entry, rounded up to a power of two (0: no doorkeeper). */
  doorkeeperBitsPerEntry: number;
  /** Conservative update: raise only the counters at the key's current minimum. */
  conservative: boolean;
}

/** The tuning the L1 uses unless told otherwise (measured: README "Cache", bench/cache-hitratio.bench.ts). */
export const SKETCH_DEFAULTS: Readonly<SketchTuning> = Object.freeze({
  // Caffeine's 1 word and 10 × capacity measured 46.3% on Zipf 0.99 / 500k keys / C=500 (top-C
  // bound 47.9%); a wider table, a longer period and conservative update reach 47.2%, and
  // 51.0% / 67.3% on Zipf 0.9 / 1.0 with C=10k (bounds 51.6% / 68.0%). A doorkeeper (8 bits per
  // entry) bought nothing on top of that and cost 1.8 points on a shifting Zipf: off by default.
  wordsPerEntry: 2,
  samplePeriodFactor: 80,
  doorkeeperBitsPerEntry: 0,
  conservative: true,
});

const PAGE = 65536;
/** Where the private memory's free space starts (the kernels' static data sits below). */
const BUFFER = 64 * 1024;
/** Slots of the read buffer. */
export const READ_BUFFER = 256;
const SKETCH = BUFFER + READ_BUFFER * 4;
const HEADER = 64;
/** Largest table: 2^18 blocks × 64 B = 16 MiB (enough for ~2M entries at 1 word per entry). */
const MAX_BLOCKS_LOG2 = 18;
const MAX_DK_LOG2 = 27;

/** The sizes the sketch picks for `capacity` entries under `tuning`. */
export function sketchShape(capacity: number, tuning: SketchTuning): { blocksLog2: number; dkLog2: number; samplePeriod: number; bytes: number } {
  const words = Math.max(8, capacity * tuning.wordsPerEntry);
  const blocksLog2 = Math.min(MAX_BLOCKS_LOG2, Math.ceil(Math.log2(words / 8)));
  const dkBits = capacity * tuning.doorkeeperBitsPerEntry;
  const dkLog2 = dkBits <= 0 ? 0 : Math.min(MAX_DK_LOG2, Math.max(6, Math.ceil(Math.log2(dkBits))));
  const samplePeriod = Math.min(0x7fffffff, Math.max(16, Math.round(capacity * tuning.samplePeriodFactor)));
  const bytes = HEADER + 64 * 2 ** blocksLog2 + (dkLog2 === 0 ? 0 : 2 ** dkLog2 / 8);
  return { blocksLog2, dkLog2, samplePeriod, bytes };
}

/**
 * A frequency sketch for a cache of `capacity` entries. Not thread-safe (one per L1 store).
 * Hashes are 32-bit integers, well mixed in every bit (the Cache's KeyHash.lo): the kernel uses
 * them as they are (wasm/sketch.ts).
 */
export class FrequencySketch {
  readonly #k: SketchKernels;
  readonly #memory: WebAssembly.Memory;
  readonly #buf: Int32Array;
  #n = 0;
  readonly #shape: ReturnType<typeof sketchShape>;
  readonly #flags: number;

  /** @param module the compiled kernels (`kernelModule()` from engine/runtime/wasm.ts). */
  constructor(module: WebAssembly.Module, capacity: number, tuning: Partial<SketchTuning> = {}) {
    const t = { ...SKETCH_DEFAULTS, ...tuning };
    this.#shape = sketchShape(capacity, t);
    const pages = Math.ceil((SKETCH + this.#shape.bytes) / PAGE);
    this.#memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    this.#k = instantiateKernels(module, this.#memory) as unknown as SketchKernels;
    this.#buf = new Int32Array(this.#memory.buffer, BUFFER, READ_BUFFER);
    this.#flags = t.conservative ? 1 : 0;
    this.#init();
  }

  #init(): void {
    const s = this.#shape;
    this.#k.sketchInit(SKETCH, s.blocksLog2, s.samplePeriod, s.dkLog2, this.#flags);
    this.#n = 0;
  }

  /** Records one access of the key with hash `hash` (buffered; applied in order). */
  increment(hash: number): void {
    this.#buf[this.#n] = hash;
    if (++this.#n === READ_BUFFER) this.flush();
  }

  /**
   * The read buffer itself, for a caller that fills it inline (the L1 store's hot path) and then
   * applies it with `drain(n)`. Use either this or `increment`, not both.
   */
  get readBuffer(): Int32Array {
    return this.#buf;
  }

  /** Applies the first `n` hashes of the read buffer, in order. */
  drain(n: number): void {
    this.#k.sketchIncrementBatch(SKETCH, BUFFER, n);
  }

  /** Applies the buffered increments now. */
  flush(): void {
    if (this.#n === 0) return;
    this.#k.sketchIncrementBatch(SKETCH, BUFFER, this.#n);
    this.#n = 0;
  }

  /** The estimated frequency of `hash`, 0..16 (counters saturate at 15; +1 from the doorkeeper). */
  frequency(hash: number): number {
    this.flush();
    return this.#k.sketchFrequency(SKETCH, hash);
  }

  /** Both frequencies in one call: `(frequency(candidate) << 8) | frequency(victim)`. */
  compare(candidate: number, victim: number): number {
    if (this.#n !== 0) this.flush();
    return this.#k.sketchCompare(SKETCH, candidate, victim);
  }

  /** Halves every counter and clears the doorkeeper now (aging; normally every samplePeriod). */
  reset(): void {
    this.flush();
    this.#k.sketchReset(SKETCH);
  }

  /** Forgets everything. */
  clear(): void {
    this.#init();
  }

  /** Additions since the last reset (after flushing). */
  get additions(): number {
    this.flush();
    return this.#k.sketchAdditions(SKETCH);
  }

  /** Resets (halvings) so far (after flushing). */
  get resets(): number {
    this.flush();
    return new Uint32Array(this.#memory.buffer, SKETCH + 16, 1)[0]!;
  }

  /** The sketch's geometry: 2^blocksLog2 blocks of 64 B, 2^dkLog2 doorkeeper bits (0: none), sample period. */
  get shape(): Readonly<{ blocksLog2: number; dkLog2: number; samplePeriod: number; bytes: number }> {
    return this.#shape;
  }

  /** Bytes of private memory held (whole pages, including the kernels' static area). */
  get memoryBytes(): number {
    return this.#memory.buffer.byteLength;
  }

  /** A copy of the table's u64 words and the doorkeeper's u32 words (after flushing; for tests). */
  snapshot(): { table: BigUint64Array; doorkeeper: Uint32Array; additions: number } {
    this.flush();
    const s = this.#shape;
    const table = new BigUint64Array(this.#memory.buffer, SKETCH + HEADER, 8 * 2 ** s.blocksLog2).slice();
    const dkWords = s.dkLog2 === 0 ? 0 : 2 ** s.dkLog2 / 32;
    const doorkeeper = new Uint32Array(this.#memory.buffer, SKETCH + HEADER + 64 * 2 ** s.blocksLog2, dkWords).slice();
    return { table, doorkeeper, additions: this.#k.sketchAdditions(SKETCH) };
  }
}
