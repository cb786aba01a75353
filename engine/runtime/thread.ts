/**
 * What one thread holds of the shared runtime: the memory, its arena view, its own instance of
 * the kernels, and its own key hasher (with a scratch region nobody else writes). The main
 * thread and every worker build one of these over the same memory.
 */
import { Arena } from './arena.js';
import { KeyHasher } from './hash.js';
import { instantiateKernels, type KernelExports } from './wasm.js';
import { MetricsTable } from '../observe/table.js';
import { ThreadMetrics } from '../observe/thread-metrics.js';
import { ValueCodec } from '../codec/codec.js';
import { SharedStructures } from '../codec/structures.js';

/** Where a thread's counters go in the metrics table (table.ts: stripes). */
export interface MetricsLayout {
  /** Series the table holds; 0 turns metrics off (no table is carved). */
  capacity: number;
  /** Value stripes: the shared one, the main thread's, one per pool slot (metricsStripes). */
  stripes: number;
  /** This thread's own stripe (MAIN_STRIPE, or workerStripe(slot)). */
  stripe: number;
}

/** No metrics table (a runtime for a component alone: tests, benches). */
export const NO_METRICS: MetricsLayout = { capacity: 0, stripes: 1, stripe: 0 };

/** The main thread's counter stripe. */
export const MAIN_STRIPE = 1;
/** The counter stripe of the worker in pool slot `slot` (a slot has one live thread at a time). */
export const workerStripe = (slot: number): number => slot + 2;
/** Stripes of an engine whose pool has `slots` slots: shared (0), main (1), one per slot. */
export const metricsStripes = (slots: number): number => slots + 2;

export class ThreadRuntime {
  /** The engine's one shared memory. */
  readonly memory: WebAssembly.Memory;
  /** The compiled kernels this thread instantiated (components may instantiate them privately). */
  readonly module: WebAssembly.Module;
  /** This thread's view of the arena (regions by name). */
  readonly arena: Arena;
  /** This thread's instance of the kernels (raw exports). */
  readonly kernels: KernelExports;
  /** This thread's key hasher. */
  readonly hasher: KeyHasher;
  /** Int32 view of the whole shared memory. */
  readonly i32: Int32Array;
  /** Shared counters/gauges and this thread's histograms (no-ops when metrics are off). */
  readonly metrics: ThreadMetrics;
  /** The engine-local value codec (record structures shared by every thread of the engine). */
  readonly codec: ValueCodec;
  /** Byte offset of this thread's 64-byte result area for kernels that return several values. */
  readonly out: number;
  /** f64 view of that area. */
  readonly outF64: Float64Array;

  constructor(memory: WebAssembly.Memory, module: WebAssembly.Module, scratchName: string, scratchBytes: number, metrics: MetricsLayout, initArena = false) {
    this.memory = memory;
    this.module = module;
    this.arena = new Arena(memory, initArena);
    this.kernels = instantiateKernels(module, memory);
    const scratch = this.arena.region(scratchName, scratchBytes);
    this.hasher = new KeyHasher(this.kernels, memory, scratch.offset, scratch.bytes);
    this.i32 = new Int32Array(memory.buffer);
    this.codec = new ValueCodec({ structures: new SharedStructures(this.arena) });
    this.out = this.arena.region(`${scratchName}:out`, 64).offset;
    this.outF64 = new Float64Array(memory.buffer, this.out, 8);
    this.metrics = new ThreadMetrics(metrics.capacity > 0 ? new MetricsTable(this.arena, this.kernels, metrics.capacity, metrics.stripes, metrics.stripe) : undefined);
  }
}
