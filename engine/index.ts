/**
 * hotpath — the main entry point. Importing it starts no thread and opens no handle.
 */
export { createEngine, Engine } from './engine.js';
export type { EngineOptions, ChannelOptions, Clock } from './options.js';
export { DEFAULTS } from './options.js';
export {
  HotpathError, ErrorCodes, ClosedError, ArenaExhaustedError, RegionConflictError, WorkerExitedError,
  TaskFailedError, UnknownTaskError, WasmLoadError, QueueFullError, TimeoutError, CancelledError,
} from './errors.js';
export type { ErrorCode } from './errors.js';
export type { Region } from './runtime/arena.js';
export type { Runtime } from './runtime/runtime.js';
export type { WorkerPool, RunOptions, TaskDefinition } from './runtime/pool.js';
export type { TaskContext, TaskFunction } from './runtime/worker.js';
export { xxh32Bytes } from './runtime/hash.js';
