/**
 * The queue's option defaults and their one validation (DESIGN convention 2): every check of a
 * caller's option or argument lives here, shared by the in-memory and the durable queue.
 */
import { isWellFormed } from '../text.js';
import { CancelledError } from '../errors.js';
import { MAX_TIMER_MS } from '../timer.js';
import {
  MAX_PRIORITY, PRIORITY_LEVELS, type BackoffFunction, type Handler, type QueueOptions, type RetryOptions, type SubmitOptions,
} from './types.js';

export const QUEUE_DEFAULTS = {
  maxQueued: 1_000_000,
  timeout: 0,
  killAfterMs: 1000,
  agingMs: 0,
  statusRetention: 10_000,
  deadLetterRetention: 10_000,
  deadLetterBytes: 64 * 1024 * 1024,
  retry: { attempts: 1, backoff: 'exponential', delayMs: 100, maxDelayMs: 10_000, jitter: 'full' },
} as const;


export interface ResolvedRetry {
  attempts: number;
  backoff: 'fixed' | 'exponential' | BackoffFunction;
  delayMs: number;
  maxDelayMs: number;
  jitter: 'full' | 'decorrelated' | 'none';
  retryable: (error: unknown) => boolean;
}

export interface ResolvedQueueOptions {
  handler: Handler;
  handlerExport: string;
  /** undefined: the caller's default (1 for a function, the worker count for a module). */
  concurrency: number | undefined;
  retry: ResolvedRetry;
  maxQueued: number;
  timeout: number;
  killAfterMs: number;
  agingMs: number;
  statusRetention: number;
  deadLetterRetention: number;
  deadLetterBytes: number;
  durable: boolean;
}

/** Every error is worth retrying except a cancellation. */
export function defaultRetryable(error: unknown): boolean {
  try {
    return !(error instanceof CancelledError);
  } catch {
    return true; // a revoked Proxy, say: not a cancellation (review64)
  }
}

const KNOWN = new Set(['handler', 'handlerExport', 'concurrency', 'retry', 'maxQueued', 'timeout', 'killAfterMs', 'agingMs', 'statusRetention', 'deadLetterRetention', 'deadLetterBytes', 'durable']);
const KNOWN_RETRY = new Set(['attempts', 'backoff', 'delayMs', 'maxDelayMs', 'jitter', 'retryable']);
const KNOWN_SUBMIT = new Set(['priority', 'id', 'delayMs', 'timeout', 'signal']);

function int(name: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new RangeError(`${name} must be an integer between ${min} and ${max}, got ${describe(v)}`);
  }
  return v;
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'function') return 'a function';
  try {
    return typeof v === 'object' && v !== null ? JSON.stringify(v) ?? String(v) : String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

function oneOf<T extends string>(name: string, v: unknown, values: readonly T[]): T {
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) {
    throw new RangeError(`${name} must be one of ${values.map((x) => `'${x}'`).join(', ')}, got ${describe(v)}`);
  }
  return v as T;
}

function checkHandler(h: unknown): Handler {
  if (typeof h === 'function') return h as Handler;
  if (h instanceof URL) {
    if (h.protocol !== 'file:' && h.protocol !== 'data:') throw new TypeError(`options.handler must be a file: URL of an ES module, got ${h.href}`);
    return h;
  }
  if (typeof h === 'string') {
    let url: URL;
    try {
      url = new URL(h);
    } catch {
      throw new TypeError(`options.handler must be a function or a module URL (new URL('./job.js', import.meta.url)), got ${describe(h)}`);
    }
    if (url.protocol !== 'file:' && url.protocol !== 'data:') throw new TypeError(`options.handler must be a file: URL of an ES module, got ${h}`);
    return url.href;
  }
  throw new TypeError(`options.handler must be a function or a module URL (new URL('./job.js', import.meta.url)), got ${describe(h)}`);
}

function resolveRetry(r: unknown): ResolvedRetry {
  const d = QUEUE_DEFAULTS.retry;
  if (r === undefined) return { ...d, retryable: defaultRetryable };
  if (typeof r !== 'object' || r === null) throw new TypeError(`options.retry must be an object, got ${describe(r)}`);
  for (const k of Object.keys(r)) if (!KNOWN_RETRY.has(k)) throw new TypeError(`options.retry.${k} is not an option (known: ${[...KNOWN_RETRY].join(', ')})`);
  const o = r as RetryOptions;
  const attempts = o.attempts === undefined ? d.attempts : int('options.retry.attempts', o.attempts, 1, 1_000_000);
  let backoff: ResolvedRetry['backoff'] = d.backoff;
  if (o.backoff !== undefined) backoff = typeof o.backoff === 'function' ? o.backoff : oneOf('options.retry.backoff', o.backoff, ['fixed', 'exponential'] as const);
  const delayMs = o.delayMs === undefined ? d.delayMs : int('options.retry.delayMs', o.delayMs, 0, MAX_TIMER_MS);
  const maxDelayMs = o.maxDelayMs === undefined ? Math.max(d.maxDelayMs, delayMs) : int('options.retry.maxDelayMs', o.maxDelayMs, 0, MAX_TIMER_MS);
  if (maxDelayMs < delayMs) throw new RangeError(`options.retry.maxDelayMs (${maxDelayMs}) must be at least options.retry.delayMs (${delayMs})`);
  const jitter = o.jitter === undefined ? d.jitter : oneOf('options.retry.jitter', o.jitter, ['full', 'decorrelated', 'none'] as const);
  if (o.retryable !== undefined && typeof o.retryable !== 'function') throw new TypeError(`options.retry.retryable must be a function, got ${describe(o.retryable)}`);
  return { attempts, backoff, delayMs, maxDelayMs, jitter, retryable: o.retryable ?? defaultRetryable };
}

/**
 * Validates queue options.
 * @throws TypeError / RangeError naming the option.
 */
export function resolveQueueOptions(options: unknown): ResolvedQueueOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError(`queue options must be an object with a handler, got ${describe(options)}`);
  for (const k of Object.keys(options)) if (!KNOWN.has(k)) throw new TypeError(`options.${k} is not a queue option (known: ${[...KNOWN].join(', ')})`);
  const o = options as QueueOptions;
  if (o.handler === undefined) throw new TypeError('options.handler is required: a function, or a module URL whose default export runs on the workers');
  const handler = checkHandler(o.handler);
  if (o.handlerExport !== undefined && (typeof o.handlerExport !== 'string' || o.handlerExport.length === 0)) {
    throw new TypeError(`options.handlerExport must be a non-empty string, got ${describe(o.handlerExport)}`);
  }
  if (o.durable !== undefined && typeof o.durable !== 'boolean' && (typeof o.durable !== 'object' || o.durable === null)) {
    throw new TypeError(`options.durable must be a boolean or the durable queue's settings, got ${describe(o.durable)}`);
  }
  const d = QUEUE_DEFAULTS;
  return {
    handler,
    handlerExport: o.handlerExport ?? 'default',
    concurrency: o.concurrency === undefined ? undefined : int('options.concurrency', o.concurrency, 1, 1_000_000),
    retry: resolveRetry(o.retry),
    maxQueued: o.maxQueued === undefined ? d.maxQueued : int('options.maxQueued', o.maxQueued, 1, 100_000_000),
    timeout: o.timeout === undefined ? d.timeout : int('options.timeout', o.timeout, 0, MAX_TIMER_MS),
    killAfterMs: o.killAfterMs === undefined ? d.killAfterMs : int('options.killAfterMs', o.killAfterMs, 0, MAX_TIMER_MS),
    agingMs: o.agingMs === undefined ? d.agingMs : int('options.agingMs', o.agingMs, 0, MAX_TIMER_MS),
    statusRetention: o.statusRetention === undefined ? d.statusRetention : int('options.statusRetention', o.statusRetention, 0, 10_000_000),
    deadLetterRetention: o.deadLetterRetention === undefined ? d.deadLetterRetention : int('options.deadLetterRetention', o.deadLetterRetention, 0, 10_000_000),
    deadLetterBytes: o.deadLetterBytes === undefined ? d.deadLetterBytes : int('options.deadLetterBytes', o.deadLetterBytes, 0, Number.MAX_SAFE_INTEGER),
    durable: o.durable !== undefined && o.durable !== false,
  };
}

/** A priority as its number. @throws RangeError for an unknown name or a number out of range. */
export function priorityOf(p: unknown): number {
  if (p === undefined) return PRIORITY_LEVELS.normal;
  if (typeof p === 'string') {
    const v = (PRIORITY_LEVELS as Record<string, number>)[p];
    if (v === undefined || !Object.hasOwn(PRIORITY_LEVELS, p)) {
      throw new RangeError(`priority must be a number or one of 'critical', 'high', 'normal', 'low', got ${JSON.stringify(p)}`);
    }
    return v;
  }
  return int('priority', p, -MAX_PRIORITY, MAX_PRIORITY);
}

/** The checked submit options: priority as a number; undefined fields left out. */
export interface ResolvedSubmit {
  priority: number;
  id: string | undefined;
  delayMs: number;
  timeout: number | undefined;
  signal: AbortSignal | undefined;
}

/** The longest id accepted (characters). */
export const MAX_ID_LENGTH = 256;

const NO_OPTIONS: ResolvedSubmit = Object.freeze({ priority: PRIORITY_LEVELS.normal, id: undefined, delayMs: 0, timeout: undefined, signal: undefined });

/**
 * Validates per-task options.
 * @throws TypeError / RangeError naming the option.
 */
export function resolveSubmit(o: SubmitOptions | undefined): ResolvedSubmit {
  if (o === undefined) return NO_OPTIONS;
  if (typeof o !== 'object' || o === null) throw new TypeError(`submit options must be an object, got ${describe(o)}`);
  for (const k in o) if (!KNOWN_SUBMIT.has(k)) throw new TypeError(`options.${k} is not a submit option (known: ${[...KNOWN_SUBMIT].join(', ')})`);
  const id = o.id;
  if (id !== undefined && (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH)) {
    throw new TypeError(`options.id must be a non-empty string of at most ${MAX_ID_LENGTH} characters, got ${describe(id)}`);
  }
  // A lone surrogate has no UTF-8 form: Redis (the durable queue) would store U+FFFD in its place,
  // so two ids could meet and an id could not be found again (review43). Refused in both modes,
  // so an id that works in memory works durably.
  if (id !== undefined && !isWellFormed(id)) {
    throw new TypeError(`options.id must be well-formed UTF-16 (no lone surrogate), got ${describe(id)}`);
  }
  const signal = o.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw new TypeError(`options.signal must be an AbortSignal, got ${describe(signal)}`);
  return {
    priority: priorityOf(o.priority),
    id,
    delayMs: o.delayMs === undefined ? 0 : int('options.delayMs', o.delayMs, 0, MAX_TIMER_MS),
    timeout: o.timeout === undefined ? undefined : int('options.timeout', o.timeout, 0, MAX_TIMER_MS),
    signal,
  };
}

/**
 * The delay before attempt `attempt + 1` (ms), after attempt `attempt` (1-based) failed with
 * `error`. `previous` is the last delay (decorrelated jitter grows from it); `random` in [0, 1).
 */
export function backoffDelay(r: ResolvedRetry, attempt: number, error: unknown, previous: number, random: () => number = Math.random): number {
  if (typeof r.backoff === 'function') {
    const v = r.backoff(attempt, error);
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new RangeError(`options.retry.backoff returned ${describe(v)}; it must return a non-negative number of ms`);
    return Math.min(Math.round(v), MAX_TIMER_MS);
  }
  const base = r.backoff === 'fixed' ? r.delayMs : Math.min(r.maxDelayMs, r.delayMs * 2 ** Math.min(attempt - 1, 52));
  switch (r.jitter) {
    case 'none':
      return Math.min(base, r.maxDelayMs);
    case 'full':
      return Math.floor(random() * (Math.min(base, r.maxDelayMs) + 1));
    case 'decorrelated': {
      // AWS "decorrelated jitter": sleep = min(cap, uniform(base, previous × 3)).
      const lo = r.delayMs;
      const hi = Math.max(lo, (previous > 0 ? previous : r.delayMs) * 3);
      return Math.min(r.maxDelayMs, Math.floor(lo + random() * (hi - lo + 1)));
    }
  }
}
