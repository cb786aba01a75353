/**
 * Every error hotpath raises on purpose is a {@link HotpathError} with a stable `code`.
 * Caller mistakes (bad options, bad arguments) throw `TypeError` / `RangeError` synchronously
 * and name the option; runtime failures reject with a `HotpathError` subclass and keep `cause`.
 */

/** The stable error codes. Match on `err.code`, never on the message. */
export const ErrorCodes = {
  CLOSED: 'ERR_HOTPATH_CLOSED',
  ARENA_EXHAUSTED: 'ERR_HOTPATH_ARENA_EXHAUSTED',
  REGION_CONFLICT: 'ERR_HOTPATH_REGION_CONFLICT',
  WORKER_EXITED: 'ERR_HOTPATH_WORKER_EXITED',
  TASK_FAILED: 'ERR_HOTPATH_TASK_FAILED',
  UNKNOWN_TASK: 'ERR_HOTPATH_UNKNOWN_TASK',
  TIMEOUT: 'ERR_HOTPATH_TIMEOUT',
  CANCELLED: 'ERR_HOTPATH_CANCELLED',
  WASM_LOAD: 'ERR_HOTPATH_WASM_LOAD',
  BREAKER_OPEN: 'ERR_HOTPATH_BREAKER_OPEN',
  REDIS_UNAVAILABLE: 'ERR_HOTPATH_REDIS_UNAVAILABLE',
  REDIS_ERROR: 'ERR_HOTPATH_REDIS_ERROR',
  VALUE_TOO_LARGE: 'ERR_HOTPATH_VALUE_TOO_LARGE',
  CORRUPT_VALUE: 'ERR_HOTPATH_CORRUPT_VALUE',
  CORRUPT_FRAME: 'ERR_HOTPATH_CORRUPT_FRAME',
  UNKNOWN_FORMAT: 'ERR_HOTPATH_UNKNOWN_FORMAT',
  OUTPUT_LIMIT: 'ERR_HOTPATH_OUTPUT_LIMIT',
  CODEC_UNAVAILABLE: 'ERR_HOTPATH_CODEC_UNAVAILABLE',
  QUEUE_FULL: 'ERR_HOTPATH_QUEUE_FULL',
  POOL_TIMEOUT: 'ERR_HOTPATH_POOL_TIMEOUT',
  POOL_FULL: 'ERR_HOTPATH_POOL_FULL',
  POOL_CREATE_FAILED: 'ERR_HOTPATH_POOL_CREATE_FAILED',
  NO_BACKEND: 'ERR_HOTPATH_NO_BACKEND',
  UPSTREAM_FAILED: 'ERR_HOTPATH_UPSTREAM_FAILED',
  BAD_REQUEST: 'ERR_HOTPATH_BAD_REQUEST',
} as const;

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes];

/** Base class of every error with a hotpath `code`. */
export class HotpathError extends Error {
  /** A stable identifier such as `ERR_HOTPATH_CLOSED`. */
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }

  override get name(): string {
    return this.constructor.name;
  }
}

/** The engine (or the part of it that was called) has been closed. */
export class ClosedError extends HotpathError {
  constructor(what: string) {
    super(ErrorCodes.CLOSED, `${what} is closed`);
  }
}

/** The fixed shared-memory arena has no room for a requested region. */
export class ArenaExhaustedError extends HotpathError {
  readonly requested: number;
  readonly available: number;
  /**
   * `registryFull`: every entry of the arena's region registry is taken (a fixed number of named
   * regions, whatever `memory` is): raising `memory` does not help then.
   */
  constructor(name: string, requested: number, available: number, total: number, registryFull?: { capacity: number }) {
    super(
      ErrorCodes.ARENA_EXHAUSTED,
      registryFull !== undefined
        ? `shared memory arena exhausted: region "${name}" cannot be registered, all ${registryFull.capacity} named regions ` +
          'are taken (each limiter takes 2–4, each cache 3–5): use fewer limiters or caches — e.g. one limiter keyed by route and client instead of one per route; raising `memory` does not help'
        : `shared memory arena exhausted: region "${name}" needs ${requested} bytes, ` +
          `${available} of ${total} bytes are free; raise the \`memory\` option of createEngine()`,
    );
    this.requested = requested;
    this.available = available;
  }
}

/** A region exists under this name with a different size than the one asked for. */
export class RegionConflictError extends HotpathError {
  constructor(name: string, existing: number, requested: number, detail?: string) {
    super(
      ErrorCodes.REGION_CONFLICT,
      detail ?? `shared memory region "${name}" already exists with ${existing} bytes; ${requested} were requested`,
    );
  }
}

/** The worker thread running a task exited (process.exit, uncaught error, out of memory). */
export class WorkerExitedError extends HotpathError {
  readonly exitCode: number | undefined;
  constructor(message: string, exitCode?: number, cause?: unknown) {
    super(ErrorCodes.WORKER_EXITED, message, { cause });
    this.exitCode = exitCode;
  }
}

/** A task threw (or rejected) inside a worker; `cause` carries the worker's error. */
export class TaskFailedError extends HotpathError {
  constructor(task: string, cause: unknown) {
    const detail = cause instanceof Error ? cause.message : String(cause);
    super(ErrorCodes.TASK_FAILED, `task "${task}" failed: ${detail}`, { cause });
  }
}

/** The worker pool has no task registered under this name. */
export class UnknownTaskError extends HotpathError {
  constructor(task: string) {
    super(ErrorCodes.UNKNOWN_TASK, `no task named "${task}" is registered on the worker pool`);
  }
}

/** Loading or instantiating the WebAssembly kernels failed. */
export class WasmLoadError extends HotpathError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.WASM_LOAD, message, { cause });
  }
}

/** The caller cancelled the operation (an AbortSignal, or an explicit cancel). */
export class CancelledError extends HotpathError {
  constructor(what: string, cause?: unknown) {
    super(ErrorCodes.CANCELLED, `${what} was cancelled`, { cause });
  }
}

/** An operation did not finish in time. */
export class TimeoutError extends HotpathError {
  constructor(what: string, ms: number) {
    super(ErrorCodes.TIMEOUT, `${what} timed out after ${ms} ms`);
  }
}

/** Redis cannot be used right now: not connected, the breaker is open, or the call timed out. */
export class RedisUnavailableError extends HotpathError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.REDIS_UNAVAILABLE, message, { cause });
  }
}

/** Redis answered with an error (a script error, a wrong type, …): Redis itself is fine. */
export class RedisCommandError extends HotpathError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.REDIS_ERROR, message, { cause });
  }
}

/** A value encodes to more bytes than the configured maximum. */
export class ValueTooLargeError extends HotpathError {
  readonly bytes: number;
  readonly maxBytes: number;
  /** `atLeast`: `bytes` is a lower bound, found before the value was written out. */
  constructor(bytes: number, maxBytes: number, what = 'value', atLeast = false) {
    super(ErrorCodes.VALUE_TOO_LARGE, `${what} encodes to ${atLeast ? 'at least ' : ''}${bytes} bytes, over the limit of ${maxBytes} (maxValueBytes)`);
    this.bytes = bytes;
    this.maxBytes = maxBytes;
  }
}

/** Bytes that are not a value this codec wrote: empty, wrong version, truncated or garbage. */
export class CorruptValueError extends HotpathError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.CORRUPT_VALUE, message, { cause });
  }
}

/** Compressed data that is truncated, malformed or fails its checksum. */
export class CorruptFrameError extends HotpathError {
  constructor(message: string, cause?: unknown) {
    super(ErrorCodes.CORRUPT_FRAME, message, { cause });
  }
}

/** Bytes in no format the decompressor recognises (the message says what it saw). */
export class UnknownFormatError extends HotpathError {
  constructor(message: string) {
    super(ErrorCodes.UNKNOWN_FORMAT, message);
  }
}

/** Decompressed data would exceed `maxOutputBytes` (a decompression bomb, or a limit set too low). */
export class OutputLimitError extends HotpathError {
  readonly maxOutputBytes: number;
  constructor(maxOutputBytes: number, detail = '') {
    super(ErrorCodes.OUTPUT_LIMIT, `decompressed data exceeds maxOutputBytes (${maxOutputBytes})${detail === '' ? '' : `: ${detail}`}`);
    this.maxOutputBytes = maxOutputBytes;
  }
}

/** A codec this runtime cannot run (zstd compression before Node 22.15). */
export class CodecUnavailableError extends HotpathError {
  constructor(message: string) {
    super(ErrorCodes.CODEC_UNAVAILABLE, message);
  }
}

/** A queue holds `maxQueued` tasks already (`submit`; `trySubmit` answers false instead). */
export class QueueFullError extends HotpathError {
  constructor(queue: string, maxQueued: number) {
    super(ErrorCodes.QUEUE_FULL, `queue "${queue}" is full: ${maxQueued} tasks are queued or delayed (options.maxQueued)`);
  }
}

/** A resource pool could not hand out a resource within `acquireTimeoutMs`. */
export class PoolTimeoutError extends HotpathError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.POOL_TIMEOUT, message, options);
  }
}

/** A resource pool's `create` failed (or its breaker is open after repeated failures); `cause` is the last failure. */
export class PoolCreateError extends HotpathError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.POOL_CREATE_FAILED, message, options);
  }
}

/** A balancer has no backend it may pick: none configured, or every one is down or refused by its breaker. */
export class NoBackendError extends HotpathError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.NO_BACKEND, message, options);
  }
}

/** An upstream of the proxy failed (refused, reset, timed out, or answered with a broken response). */
export class UpstreamError extends HotpathError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.UPSTREAM_FAILED, message, options);
  }
}

/** A resource pool already has `maxWaiters` callers waiting: `acquire` refuses at once instead of queueing more. */
export class PoolFullError extends HotpathError {
  constructor(message: string) {
    super(ErrorCodes.POOL_FULL, message);
  }
}
