/**
 * createEngine(): wires one runtime (shared memory, kernels, workers) for the components.
 * Convenience wiring, not a god object: every component is usable on its own.
 */
import { ClosedError } from './errors.js';
import { resolveOptions, type Clock, type EngineOptions } from './options.js';
import { Runtime } from './runtime/runtime.js';

/** One hotpath runtime and the components built on it. Create with {@link createEngine}. */
export class Engine {
  /** The shared memory, arena, kernels and worker pool. */
  readonly runtime: Runtime;
  /** The time source of every component (ms). */
  readonly clock: Clock;
  readonly #closeTimeoutMs: number;
  #closed: Promise<void> | undefined;

  /** @internal use createEngine() */
  constructor(runtime: Runtime, clock: Clock, closeTimeoutMs: number) {
    this.runtime = runtime;
    this.clock = clock;
    this.#closeTimeoutMs = closeTimeoutMs;
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.#closed !== undefined;
  }

  /**
   * Runs a task registered on the worker pool (`engine.runtime.pool.register`) with `payload`.
   * @throws (rejects) ERR_HOTPATH_CLOSED after close().
   */
  run(task: string, payload?: unknown, options?: { signal?: AbortSignal }): Promise<unknown> {
    if (this.#closed !== undefined) return Promise.reject(new ClosedError('engine'));
    return this.runtime.run(task, payload, options);
  }

  /**
   * Closes the engine: waits up to `closeTimeoutMs` for tasks in flight, rejects the rest with
   * ERR_HOTPATH_CLOSED, stops the workers. Idempotent; afterwards no handle is left open.
   */
  close(): Promise<void> {
    this.#closed ??= this.runtime.close(this.#closeTimeoutMs);
    return this.#closed;
  }

  /** `await using engine = await createEngine()` closes it at the end of the scope. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Creates an engine: a fixed shared memory with the WASM kernels, and `workers` threads
 * attached to it. Resolves when every worker listens on its channel.
 * @throws TypeError / RangeError (synchronously-validated, returned as a rejection) naming a bad option.
 */
export async function createEngine(options?: EngineOptions): Promise<Engine> {
  const settings = resolveOptions(options);
  const runtime = await Runtime.create(settings.runtime);
  return new Engine(runtime, settings.clock, settings.closeTimeoutMs);
}
