/**
 * The LZ4 kernels' working memory: a thread-private WebAssembly.Memory with its own instance of
 * the kernel module (the build for a plain memory, privateKernelModule: copies in and out are
 * memcpy, not the relaxed atomic copies V8 makes for a SharedArrayBuffer). Compression needs
 * buffers as large as a block (up to 4 MiB in and out), which do not belong in the engine's fixed
 * shared arena: nothing here is shared between threads. The
 * memory grows to the largest block seen on this thread and stays there (at most about
 * 2 × 4 MiB + 64 KiB + 128 KiB per thread); inputs larger than a block are processed block by
 * block, so a 1 GiB input needs no more.
 *
 * Layout (byte offsets in the private memory):
 * ```
 * 0        .. 64 KiB     kernel static data (below __heap_base)
 * TABLE    16 KiB        lz4Compress hash table (4096 × u32)
 * STATE    64 B          streaming xxHash32 state (copied in and out per call: callers keep their own)
 * IN       inCap + WILD  input block
 * WINDOW   64 KiB        the previous output (linked blocks reach back into it)
 * OUT      outCap + WILD output block (immediately after WINDOW)
 * ```
 * Every call copies its input in and its output out, so the workspace holds no state between
 * calls and one workspace serves any number of interleaved streams on its thread. A view a call
 * returns is valid until the next call: copy it out before passing it back in (a call that grows
 * the plain memory detaches the buffer under that view).
 */
import { instantiateKernels, privateKernelModule } from '../runtime/wasm.js';

/** Raw exports of the kernels this workspace uses (see wasm/lz4.ts, wasm/hash.ts). */
interface Lz4Kernels {
  lz4Compress(src: number, srcLen: number, dst: number, table: number, acceleration: number): number;
  lz4Decompress(src: number, srcLen: number, dst: number, dstCap: number, windowStart: number): number;
  xxh32Reset(state: number, seed: number): void;
  xxh32Update(state: number, ptr: number, len: number): void;
  xxh32Digest(state: number): number;
  xxh64Reset(state: number, seed: bigint): void;
  xxh64Update(state: number, ptr: number, len: number): void;
  xxh64Digest(state: number): bigint;
}

const PAGE = 65536;
const WILD = 32;
const TABLE = 64 * 1024;
const STATE = TABLE + 16 * 1024;
const IN = STATE + 1024;
const WINDOW_BYTES = 64 * 1024;
/** Bytes of the streaming hash states a caller keeps between calls (xxh32, xxh64). */
export const HASH_STATE_BYTES = 48;
const HASH64_STATE_BYTES = 96;
/** Most bytes the workspace hashes per copy when hashing a buffer it does not hold. */
const HASH_CHUNK = 1 << 20;

/** Whether `module` imports a shared memory: it links against a shared one and not a plain one. */
function importsSharedMemory(module: WebAssembly.Module): boolean {
  try {
    new WebAssembly.Instance(module, { env: { memory: new WebAssembly.Memory({ initial: 1, maximum: 65536 }), abort() {} } });
    return false;
  } catch (err) {
    if (err instanceof WebAssembly.LinkError) return true;
    throw err;
  }
}

/** The worst-case compressed size of one LZ4 block of `n` bytes (LZ4_compressBound). */
export function lz4Bound(n: number): number {
  return n + Math.floor(n / 255) + 16;
}

/** Decoder results (wasm/lz4.ts). */
export const LZ4_CORRUPT = -1;
export const LZ4_OUTPUT = -2;

export class Lz4Workspace {
  readonly #memory: WebAssembly.Memory;
  readonly #k: Lz4Kernels;
  #u8: Uint8Array;
  #inCap = 0;
  #outCap = 0;

  /**
   * @param module the kernels; by default the build for a plain (not shared) memory, which
   *   nothing else needs to see and which V8 copies into and out of at memcpy speed (see
   *   privateKernelModule). A module built for shared memory (kernelModule()) gets a shared one.
   */
  constructor(module: WebAssembly.Module = privateKernelModule()) {
    const initial = (IN >>> 16) + 1;
    const shared = module !== privateKernelModule() && importsSharedMemory(module);
    this.#memory = new WebAssembly.Memory({ initial, maximum: 65536, shared });
    this.#k = instantiateKernels(module, this.#memory) as unknown as Lz4Kernels;
    this.#u8 = new Uint8Array(this.#memory.buffer);
  }

  /** Whether this workspace's memory is a SharedArrayBuffer (slower copies in and out). */
  get shared(): boolean {
    return this.#memory.buffer instanceof SharedArrayBuffer;
  }

  /** Bytes of private memory this workspace holds. */
  get bytes(): number {
    return this.#memory.buffer.byteLength;
  }

  get #out(): number {
    return IN + this.#inCap + WILD + WINDOW_BYTES;
  }

  /** Makes room for an input of `inBytes` and an output of `outBytes` (each with slack). */
  #ensure(inBytes: number, outBytes: number): void {
    if (inBytes <= this.#inCap && outBytes <= this.#outCap) return;
    // Round up so that a run of slightly growing blocks does not grow the memory each time.
    const round = (n: number): number => Math.max(64 * 1024, 2 ** Math.ceil(Math.log2(Math.max(1, n))));
    const inCap = Math.max(this.#inCap, round(inBytes));
    const outCap = Math.max(this.#outCap, round(outBytes));
    const need = IN + inCap + WILD + WINDOW_BYTES + outCap + WILD;
    const have = this.#memory.buffer.byteLength;
    if (need > have) {
      this.#memory.grow(Math.ceil((need - have) / PAGE));
      this.#u8 = new Uint8Array(this.#memory.buffer);
    }
    this.#inCap = inCap;
    this.#outCap = outCap;
  }

  /**
   * Compresses `src` as one independent LZ4 block. Returns a view of the block in the workspace,
   * valid until the next call on this workspace. When `hashState` is given, `src` is added to it.
   */
  compressBlock(src: Uint8Array, acceleration: number, hashState?: Uint8Array): Uint8Array {
    const n = src.length;
    this.#ensure(n, lz4Bound(n));
    const u8 = this.#u8;
    u8.set(src, IN);
    if (hashState !== undefined) this.#hashAt(hashState, IN, n);
    const out = this.#out;
    const len = this.#k.lz4Compress(IN, n, out, TABLE, acceleration);
    return u8.subarray(out, out + len);
  }

  /**
   * Decodes one LZ4 block of at most `maxBytes` output bytes. `window` (the previous output, at
   * most 64 KiB are used) lets matches reach back into it (linked blocks). Returns a view of the
   * output in the workspace (valid until the next call), or LZ4_CORRUPT / LZ4_OUTPUT.
   * When `hashState` is given, the output is added to it.
   */
  decompressBlock(src: Uint8Array, maxBytes: number, window?: Uint8Array, hashState?: Uint8Array): Uint8Array | number {
    this.#ensure(src.length, maxBytes);
    const u8 = this.#u8;
    u8.set(src, IN);
    const out = this.#out;
    let windowStart = out;
    if (window !== undefined && window.length > 0) {
      const w = window.length > WINDOW_BYTES ? window.subarray(window.length - WINDOW_BYTES) : window;
      windowStart = out - w.length;
      u8.set(w, windowStart);
    }
    const len = this.#k.lz4Decompress(IN, src.length, out, maxBytes, windowStart);
    if (len < 0) return len;
    if (hashState !== undefined) this.#hashAt(hashState, out, len);
    return u8.subarray(out, out + len);
  }

  /** A fresh streaming xxHash32 state (kept by the caller; see hashUpdate, hashDigest). */
  hashState(seed = 0): Uint8Array {
    this.#k.xxh32Reset(STATE, seed >>> 0);
    return this.#u8.slice(STATE, STATE + HASH_STATE_BYTES);
  }

  /** Adds `data` to the streaming hash `state`. */
  hashUpdate(state: Uint8Array, data: Uint8Array): void {
    for (let off = 0; off < data.length; off += HASH_CHUNK) {
      const chunk = data.subarray(off, Math.min(data.length, off + HASH_CHUNK));
      this.#ensure(chunk.length, 0);
      this.#u8.set(chunk, IN);
      this.#hashAt(state, IN, chunk.length);
    }
  }

  /** The digest of `state` (which stays usable). */
  hashDigest(state: Uint8Array): number {
    this.#u8.set(state, STATE);
    return this.#k.xxh32Digest(STATE) >>> 0;
  }

  /** A fresh streaming xxHash64 state (zstd content checksums). */
  hash64State(): Uint8Array {
    this.#k.xxh64Reset(STATE, 0n);
    return this.#u8.slice(STATE, STATE + HASH64_STATE_BYTES);
  }

  /** Adds `data` to the streaming xxHash64 `state`. */
  hash64Update(state: Uint8Array, data: Uint8Array): void {
    for (let off = 0; off < data.length; off += HASH_CHUNK) {
      const chunk = data.subarray(off, Math.min(data.length, off + HASH_CHUNK));
      this.#ensure(chunk.length, 0);
      const u8 = this.#u8;
      u8.set(chunk, IN);
      u8.set(state, STATE);
      this.#k.xxh64Update(STATE, IN, chunk.length);
      state.set(u8.subarray(STATE, STATE + HASH64_STATE_BYTES));
    }
  }

  /** The xxHash64 digest of `state`. */
  hash64Digest(state: Uint8Array): bigint {
    this.#u8.set(state, STATE);
    return BigInt.asUintN(64, this.#k.xxh64Digest(STATE));
  }

  /** xxHash32 of `data` (copied in at most 1 MiB at a time). */
  xxh32(data: Uint8Array, seed = 0): number {
    const state = this.hashState(seed);
    this.hashUpdate(state, data);
    return this.hashDigest(state);
  }

  #hashAt(state: Uint8Array, ptr: number, len: number): void {
    const u8 = this.#u8;
    u8.set(state, STATE);
    this.#k.xxh32Update(STATE, ptr, len);
    state.set(u8.subarray(STATE, STATE + HASH_STATE_BYTES));
  }
}
