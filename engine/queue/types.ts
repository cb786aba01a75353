/**
 * The task queue's public types. One contract for both backends: the in-memory queue
 * (`engine.queue(name, options)`, queue.ts) and the durable one on BullMQ (`durable: true`,
 * durable.ts). Where the durable queue must ask Redis, its method returns a promise of the same
 * value: `await` works on both.
 */
import type { RateLimiter } from '../limiter/types.js';
import type { Cache } from '../cache/cache.js';
import type { CircuitBreaker } from '../resilience/breaker.js';

/** Named priority levels. Lower runs first; numbers between and around them are allowed. */
export const PRIORITY_LEVELS = { critical: 0, high: 1, normal: 2, low: 3 } as const;
export type PriorityName = keyof typeof PRIORITY_LEVELS;
/** Numeric priorities are integers in [-MAX_PRIORITY, MAX_PRIORITY]. */
export const MAX_PRIORITY = 1_000_000;

/** What a handler gets besides its payload: the process's one shared state. */
export interface HandlerContext {
  /** Aborts when the task is cancelled while running or its `timeout` passes. */
  readonly signal: AbortSignal;
  /** The task's id. */
  readonly id: string;
  /** Which attempt this is (1 for the first). */
  readonly attempt: number;
  /** The rate limiter `name` of this process (created by `engine.limiter(name, options)`). */
  limiter(name: string): RateLimiter;
  /** The circuit breaker `name` of this process (created by `engine.breaker(name, options)`; state shared by every thread). */
  breaker(name: string): CircuitBreaker;
  /** The engine's cache: this thread's L1 and the process's shared L2 (on a worker, no Redis). */
  readonly cache: Cache;
}

/** A handler: a function run on the calling thread, or an ES module run on the workers. */
export type HandlerFunction<P = unknown, R = unknown> = (payload: P, ctx: HandlerContext) => R | Promise<R>;
/**
 * A module URL (`new URL('./job.js', import.meta.url)` or a `file:` URL string) whose default export
 * (or `handlerExport`) is a {@link HandlerFunction}: runs on the worker threads.
 */
export type Handler<P = unknown, R = unknown> = HandlerFunction<P, R> | URL | string;

/** Delay before attempt n + 1 (ms), from the attempt number n (1-based) and its error. */
export type BackoffFunction = (attempt: number, error: unknown) => number;

export interface RetryOptions {
  /** Attempts in all, the first included. Default 1 (no retry). */
  attempts?: number;
  /** Default 'exponential': delayMs × 2^(attempt − 1), capped at maxDelayMs. */
  backoff?: 'fixed' | 'exponential' | BackoffFunction;
  /** Base delay (ms). Default 100. */
  delayMs?: number;
  /** Cap of any computed delay (ms). Default 10_000. */
  maxDelayMs?: number;
  /**
   * Default 'full' (uniform in [0, delay]); 'decorrelated' (AWS: uniform in [delayMs, 3 × previous],
   * capped); 'none'. Not applied to a backoff function's answer.
   */
  jitter?: 'full' | 'decorrelated' | 'none';
  /** Whether an error is worth another attempt. Default: every error except cancellation. */
  retryable?: (error: unknown) => boolean;
}

export interface QueueOptions<P = unknown, R = unknown> {
  /** Required. */
  handler: Handler<P, R>;
  /** Named export of a module handler. Default 'default'. */
  handlerExport?: string;
  /**
   * Tasks running at once. Default: 1 for a function; 128 per worker thread for a module (tasks
   * beyond one per worker wait in the worker's ring, already ordered: lower it for a stricter
   * priority order, raise it for throughput); 16 per worker for a durable queue's module (each
   * running job is locked away from the other processes).
   */
  concurrency?: number;
  retry?: RetryOptions;
  /** Tasks queued or delayed at once; `submit` beyond it throws ERR_HOTPATH_QUEUE_FULL. Default 1_000_000. */
  maxQueued?: number;
  /** Default per-task timeout (ms); 0 = none. Default 0. */
  timeout?: number;
  /**
   * After a timeout or a cancel, how long a running task may take to honour its signal (ms) before
   * its worker is recycled (module handlers) or it is abandoned (functions). Default 1000.
   */
  killAfterMs?: number;
  /**
   * Priority aging: a queued task ranks one level higher for every `agingMs` it has waited, so
   * low priorities cannot starve. Default 0 (off).
   */
  agingMs?: number;
  /** Status records kept for finished tasks (oldest dropped first). Default 10_000. */
  statusRetention?: number;
  /** Dead letters kept (oldest dropped first). Default 10_000. */
  deadLetterRetention?: number;
  /**
   * Bytes of payload the dead letters of a module handler may hold together (their encoded size;
   * the oldest dropped first, the newest always kept). Default 64 MiB. A function handler's
   * payloads are live objects of no known size: only deadLetterRetention bounds them. A durable
   * queue's letters live in Redis and are bounded by deadLetterRetention alone.
   */
  deadLetterBytes?: number;
  /**
   * In memory (false, the default). For the BullMQ-backed queue shared across processes, pass
   * `durable: true` or its settings: see DurableQueueOptions (durable.ts).
   */
  durable?: false;
}

export interface SubmitOptions {
  /** Default 'normal'. */
  priority?: number | PriorityName;
  /** An id of your own: submitting an id that is queued, delayed or running returns its handle. */
  id?: string;
  /** Run no earlier than this many ms from now. */
  delayMs?: number;
  /** Overrides the queue's timeout for this task (ms; 0 = none). */
  timeout?: number;
  /** Cancels the task when it aborts (see `cancel`). */
  signal?: AbortSignal;
}

/** What `submit` returns. `result` is pre-handled: leaving it unawaited raises no unhandled rejection. */
export interface TaskHandle<R = unknown> {
  readonly id: string;
  readonly result: Promise<R>;
}

export type TaskState = 'queued' | 'delayed' | 'running' | 'succeeded' | 'failed' | 'dead' | 'cancelled';

/** A serialisable picture of an error. */
export interface ErrorInfo {
  name: string;
  message: string;
  code?: string;
  stack?: string;
}

/** Timestamps are ms since the epoch (the queue's clock). */
export interface TaskStatus {
  id: string;
  state: TaskState;
  priority: number;
  /** Attempts started so far. */
  attempts: number;
  submittedAt: number;
  /** When a delayed task (or a retry) becomes runnable. */
  runAt?: number;
  startedAt?: number;
  finishedAt?: number;
  /** The last attempt's error. */
  error?: ErrorInfo;
}

/** A task that exhausted its attempts (or whose error was not retryable). */
export interface DeadLetter<P = unknown> {
  id: string;
  payload: P;
  priority: number;
  error: ErrorInfo;
  attempts: number;
  submittedAt: number;
  failedAt: number;
}

export interface QueueCounts {
  queued: number;
  delayed: number;
  running: number;
  dead: number;
}

/** Payloads of the queue's events (`queue.on(event, fn)`). */
export interface QueueEvents {
  queued: { id: string; priority: number; delayMs: number };
  running: { id: string; attempt: number; waitedMs: number };
  completed: { id: string; attempt: number; runMs: number };
  /** An attempt failed (a `retried` or `dead` event follows, or the task is failed for good). */
  failed: { id: string; attempt: number; error: unknown };
  retried: { id: string; attempt: number; delayMs: number };
  dead: { id: string; attempts: number; error: unknown };
  cancelled: { id: string };
}
