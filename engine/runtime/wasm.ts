/**
 * The WebAssembly kernels: compiled once per process, instantiated in every thread against the
 * engine's one shared Memory. Hot paths call these raw exports directly (no loader wrapper: the
 * @assemblyscript/loader costs about twice a raw call, DESIGN pitfall 3).
 */
import { readFileSync } from 'node:fs';
import { WasmLoadError } from '../errors.js';
import { ARENA_BASE } from './arena.js';
import { distUrl } from './paths.js';

/** The raw exports of wasm/index.ts. Pointers are byte offsets into the shared memory. */
export interface KernelExports {
  noop(x: number): number;
  xxh32(ptr: number, len: number, seed: number): number;
  /** Adds `len` bytes at `ptr` to the streaming xxHash32 state (48 bytes) at `state` (wasm/hash.ts). */
  xxh32Update(state: number, ptr: number, len: number): void;
  xxh64(ptr: number, len: number, seed: bigint): bigint;
  /** One independent LZ4 block from `src` to `dst` (wasm/lz4.ts); `table`: 16 KiB of scratch. */
  lz4Compress(src: number, srcLen: number, dst: number, table: number, acceleration: number): number;
  counterBump32(ptr: number, times: number): void;
  counterInc(ptr: number, delta: number): void;
  counterAddF(ptr: number, delta: number): void;
  counterStoreF(ptr: number, value: number): void;
  counterReadF(ptr: number): number;
  gcraTake(table: number, hi: number, lo: number, nowMs: number, cost: number, peek: number, out: number): number;
  gcraReset(table: number, hi: number, lo: number, nowMs: number): void;
  windowTake(table: number, hi: number, lo: number, nowMs: number, cost: number, limit: number, sliding: number, peek: number, out: number): number;
  windowReset(table: number, hi: number, lo: number, nowMs: number): void;
  leaseSpend(table: number, hi: number, lo: number, nowMs: number, cost: number): number;
  leaseGrant(table: number, hi: number, lo: number, nowMs: number, tokens: number, ttlMs: number): number;
  leaseReset(table: number, hi: number, lo: number, nowMs: number): void;
  bloomAdd(bits: number, mask: number, k: number, h1: number, h2: number): number;
  bloomHas(bits: number, mask: number, k: number, h1: number, h2: number): number;
  bloomHas2(a: number, b: number, mask: number, k: number, h1: number, h2: number): number;
  bloomZero(bits: number, bytes: number): void;
  bloomCount(bits: number, bytes: number): number;
  bloomDistrust(word: number, t: number): void;
  bloomTrustedFrom(word: number): number;
  sketchInit(base: number, blocksLog2: number, samplePeriod: number, dkLog2: number, flags: number): void;
  sketchReset(base: number): void;
  sketchIncrement(base: number, hash: number): void;
  sketchIncrementBatch(base: number, ptr: number, n: number): void;
  sketchFrequency(base: number, hash: number): number;
  sketchCompare(base: number, candidate: number, victim: number): number;
  sketchAdditions(base: number): number;
  heapInit(base: number, capacity: number): void;
  heapSetCapacity(base: number, capacity: number): void;
  heapSize(base: number): number;
  heapSetSize(base: number, size: number): void;
  heapPush(base: number, key: number, seq: number, slot: number): number;
  heapPop(base: number): number;
  heapPeekSlot(base: number): number;
  heapPeekKey(base: number): number;
  heapPushBatch(base: number, keys: number, slots: number, seq0: number, n: number): number;
  heapPopBatch(base: number, dst: number, n: number): number;
  heapSort(base: number, scratch: number): void;
  heapDropFront(base: number, n: number): number;
  heapRenumber(base: number, scratch: number): void;
  ringFind(hashes: number, n: number, index: number, shift: number, h: number): number;
  ringFindBinary(hashes: number, n: number, h: number): number;
  ringIndexBuild(hashes: number, n: number, index: number, shift: number): void;
  ringSort(hashes: number, slots: number, n: number, tmpH: number, tmpS: number, counts: number): void;
  jumpBucket(h: number, a: number, n: number): number;
  jumpGet(buckets: number, n: number, h: number, a: number): number;
  maglevBuild(table: number, m: number, cur: number, skip: number, owner: number, e: number): void;
}

const PAGE = 65536;
/** The largest shared memory: 4 GiB less one page (u32 offsets in the arena registry). */
export const MAX_MEMORY = 65535 * PAGE;

let compiled: WebAssembly.Module | undefined; // memo of an immutable value, safe to share

/**
 * The compiled kernel module (synchronous compile of ~1 KiB, once per process).
 * Workers get the Module object from the main thread instead of compiling again.
 */
export function kernelModule(debug = false): WebAssembly.Module {
  if (!debug && compiled !== undefined) return compiled;
  const url = distUrl(debug ? 'wasm/hotpath.debug.wasm' : 'wasm/hotpath.wasm');
  let bytes: Buffer;
  try {
    bytes = readFileSync(url);
  } catch (err) {
    throw new WasmLoadError(`cannot read the hotpath kernels at ${url.pathname}; run \`npm run build\``, err);
  }
  const mod = new WebAssembly.Module(bytes as unknown as BufferSource);
  if (!debug) compiled = mod;
  return mod;
}

let compiledPrivate: WebAssembly.Module | undefined;

/**
 * The same kernels built for a memory that is not shared (asconfig.json target "private"), for
 * thread-private working memory such as the LZ4 workspace. V8 copies into and out of a
 * SharedArrayBuffer with relaxed atomic stores (word by word, or byte by byte when source and
 * destination are not aligned alike): 1.7× a memcpy on Node 20 and up to 6× on Node 24, and
 * the workspace copies every block in and out. On a plain memory those copies are memcpy.
 */
export function privateKernelModule(): WebAssembly.Module {
  if (compiledPrivate !== undefined) return compiledPrivate;
  const url = distUrl('wasm/hotpath.private.wasm');
  let bytes: Buffer;
  try {
    bytes = readFileSync(url);
  } catch (err) {
    throw new WasmLoadError(`cannot read the hotpath kernels at ${url.pathname}; run \`npm run build\``, err);
  }
  compiledPrivate = new WebAssembly.Module(bytes as unknown as BufferSource);
  return compiledPrivate;
}

/** A fixed-size shared memory: `bytes` rounded up to whole 64 KiB pages, never grown. */
export function createSharedMemory(bytes: number): WebAssembly.Memory {
  const pages = Math.ceil(bytes / PAGE);
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

/** Instantiates the kernels against `memory` (in whichever thread calls it). */
export function instantiateKernels(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  try {
    const instance = new WebAssembly.Instance(module, {
      env: {
        memory,
        abort(_msg: number, _file: number, line: number, column: number): never {
          throw new WasmLoadError(`hotpath kernel aborted at ${line}:${column}`);
        },
      },
    });
    const exports = instance.exports as unknown as KernelExports & { __heap_base?: WebAssembly.Global };
    const heapBase = exports.__heap_base === undefined ? 0 : Number(exports.__heap_base.value);
    if (heapBase > ARENA_BASE) {
      throw new WasmLoadError(`kernel static data (${heapBase} bytes) overlaps the arena at ${ARENA_BASE}`);
    }
    return exports;
  } catch (err) {
    if (err instanceof WasmLoadError) throw err;
    throw new WasmLoadError(`cannot instantiate the hotpath kernels: ${(err as Error).message}`, err);
  }
}
