/**
 * The runtime of one engine: the fixed shared memory, the arena, the main thread's kernels and
 * hasher, and the worker pool. Components take what they need from it (a region, the kernels,
 * the pool) and never own threads or memory themselves.
 */
import type { ResourceLimits } from 'node:worker_threads';
import type { Region } from './arena.js';
import { poolSlots, WorkerPool, type RunOptions } from './pool.js';
import { MAIN_STRIPE, metricsStripes, ThreadRuntime } from './thread.js';
import { createSharedMemory, kernelModule, type KernelExports } from './wasm.js';
import type { KeyHasher } from './hash.js';
import type { Arena } from './arena.js';

/** Resolved runtime settings (see EngineOptions for the user-facing names and defaults). */
export interface RuntimeSettings {
  memoryBytes: number;
  workers: number;
  ringBytes: number;
  spinUs: number;
  spinWorkers: number;
  scratchBytes: number;
  /** Series in the shared metrics table; 0 = metrics off. */
  metricsCapacity: number;
  startTimeoutMs: number;
  resourceLimits?: ResourceLimits;
}

export class Runtime {
  /** The one shared memory (fixed size, never grown). */
  readonly memory: WebAssembly.Memory;
  /** The compiled kernels (shared with every worker). */
  readonly module: WebAssembly.Module;
  /** The worker pool; the channel is its transport. */
  readonly pool: WorkerPool;
  readonly #main: ThreadRuntime;

  private constructor(settings: RuntimeSettings) {
    this.module = kernelModule();
    this.memory = createSharedMemory(settings.memoryBytes);
    this.#main = new ThreadRuntime(this.memory, this.module, 'hotpath:scratch:main', settings.scratchBytes, {
      capacity: settings.metricsCapacity, stripes: metricsStripes(poolSlots(settings.workers)), stripe: MAIN_STRIPE,
    }, true);
    this.pool = new WorkerPool(this.#main.arena, this.#main.codec, {
      workers: settings.workers,
      ringCapacity: settings.ringBytes,
      spinUs: settings.spinUs,
      spinWorkers: settings.spinWorkers,
      scratchBytes: settings.scratchBytes,
      metricsCapacity: settings.metricsCapacity,
      startTimeoutMs: settings.startTimeoutMs,
      ...(settings.resourceLimits ? { resourceLimits: settings.resourceLimits } : {}),
    });
  }

  /** Creates the memory and kernels, starts the workers, resolves when they all listen. */
  static async create(settings: RuntimeSettings): Promise<Runtime> {
    const rt = new Runtime(settings);
    try {
      await rt.pool.start(rt.module);
    } catch (err) {
      await rt.pool.close(0);
      throw err;
    }
    return rt;
  }

  /** The main thread's arena view. */
  get arena(): Arena {
    return this.#main.arena;
  }

  /** The main thread's kernel instance (raw exports). */
  get kernels(): KernelExports {
    return this.#main.kernels;
  }

  /** The main thread's key hasher. */
  get hasher(): KeyHasher {
    return this.#main.hasher;
  }

  /** The main thread's view of the runtime (its kernels, hasher, metrics). */
  get thread(): ThreadRuntime {
    return this.#main;
  }

  /** Every region of the shared arena: `{ name, offset, bytes }`, in creation order. */
  regions(): Region[] {
    return this.#main.arena.regions();
  }

  /** Finds or creates a named region (see Arena.region). */
  region(name: string, bytes: number, align?: number): Region & { created: boolean } {
    return this.#main.arena.region(name, bytes, align);
  }

  /** Runs a registered task on a worker (see WorkerPool.run). */
  run(task: string, payload?: unknown, options?: RunOptions): Promise<unknown> {
    return this.pool.run(task, payload, options);
  }

  /** Stops the workers (see WorkerPool.close). */
  close(timeoutMs?: number): Promise<void> {
    return this.pool.close(timeoutMs);
  }
}
