/**
 * The task protocol spoken over the channel between the main thread and each worker.
 *
 * A message is (tag, a, b, body) — see channel.ts. Here:
 *   tag bits 0..3  kind, bits 4..7 payload encoding, bit 8 (RUN) answer STARTED when it starts
 *   request  RUN       a = request id, b = task id,   body = encoded payload
 *   request  REGISTER  a = task id,                   body = codec { name, module, export, adapter? }
 *   request  INTERRUPT a = request id                 aborts the running task's ctx.signal
 *   response RESULT    a = request id,                body = encoded result
 *   response ERROR     a = request id,                body = codec { name, message, code, stack }
 *   response STARTED   a = request id                 the task was taken from the ring and starts now
 */
import type { ValueCodec } from '../codec/codec.js';

export const KIND_RUN = 1;
export const KIND_REGISTER = 2;
export const KIND_INTERRUPT = 3;
export const KIND_RESULT = 1;
export const KIND_ERROR = 2;
export const KIND_STARTED = 3;
/** RUN flag: answer STARTED (published at once) when the task starts. */
export const RUN_NOTIFY_START = 1 << 8;

export const ENC_UNDEFINED = 0;
export const ENC_BYTES = 1;
export const ENC_CODEC = 2; // engine/codec/ (version byte + msgpack)

/** Slot table layout (region "hotpath:pool"). See pool.ts for the protocol. */
export const POOL_HEADER = 64;
export const P_GENERATION = 0; // i32 index: bumped when a worker attaches
export const P_BELL_SEQ = 1; // the main thread's doorbell (all response rings ring it)
export const P_BELL_SLEEPING = 2;
export const P_CLOSING = 3; // 1 once the pool closes: worker loops end
export const SLOT_BYTES = 16;
export const S_OWNER = 0; // threadId of the worker that holds the slot, 0 when free
export const S_READY = 1; // 1 once the worker listens on the slot's request ring
/**
 * RUN requests the worker has started or answered, in the order they came (counted just before it
 * starts each one). When a worker dies, the main thread re-sends the requests it sent beyond this
 * count to another worker: they never started.
 */
export const S_TAKEN = 2;

/** What the main thread hands every worker through piscina's workerData. */
export interface WorkerBootstrap {
  memory: WebAssembly.Memory;
  module: WebAssembly.Module;
  poolOffset: number;
  slots: number;
  ringOffsets: Array<[request: number, response: number]>;
  ringCapacity: number;
  spinUs: number;
  spinWorkers: number;
  scratchBytes: number;
  metricsCapacity: number;
}

/**
 * A payload encoded ahead of time (e.g. when a task is queued, so a value that cannot travel is
 * refused at once and later mutation of the caller's object changes nothing): passed to
 * `WorkerPool.run/call` as it is.
 */
export class EncodedPayload {
  constructor(readonly enc: number, readonly body: Uint8Array | null) {}
}

/** Encodes a payload: its encoding id and body bytes (Uint8Arrays travel as they are). */
export function encodePayload(codec: ValueCodec, value: unknown, what = 'payload'): [enc: number, body: Uint8Array | null] {
  if (value === undefined) return [ENC_UNDEFINED, null];
  if (value instanceof EncodedPayload) return [value.enc, value.body];
  if (value instanceof Uint8Array) return [ENC_BYTES, value];
  return [ENC_CODEC, codec.encode(value, what)];
}

/**
 * Decodes a body. A body in the ring (shared memory) is copied out first, as the ring space is
 * reused; a reassembled fragmented body is already a buffer of its own and is used as it is.
 */
export function decodePayload(codec: ValueCodec, enc: number, u8: Uint8Array, off: number, len: number): unknown {
  if (enc === ENC_UNDEFINED) return undefined;
  const copy = u8.buffer instanceof SharedArrayBuffer ? u8.slice(off, off + len) : u8.subarray(off, off + len);
  const buf = Buffer.from(copy.buffer, copy.byteOffset, copy.byteLength);
  if (enc === ENC_BYTES) return buf;
  return codec.decode(buf);
}

/** A serialisable picture of an error thrown by a task. */
export interface WireError {
  name: string;
  message: string;
  code?: string;
  stack?: string;
  /** The error's own `cause`, as a wire error (at most CAUSE_DEPTH deep). */
  cause?: WireError;
  /** A cause that is a primitive (a string, a number, null …), as it was. */
  causeValue?: string | number | boolean | bigint | null;
  /** An AggregateError's `errors` (at most AGGREGATE_MAX of them; see `errorsOmitted`). */
  errors?: WireError[];
  /** How many of an AggregateError's `errors` did not cross (over AGGREGATE_MAX or the budget). */
  errorsOmitted?: number;
}

/** How many `cause` links a task's error keeps across the channel. */
const CAUSE_DEPTH = 4;
/** How many of an AggregateError's `errors` cross the channel. */
const AGGREGATE_MAX = 16;
/** Most errors in one wire error, all causes and aggregated errors counted (nesting multiplies). */
const WIRE_NODES = 64;

/** The built-in error classes a task's error is rebuilt as when its name says so. */
const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError,
};

/** `s` cut to at most `max` UTF-16 units (≥ 0), never between the two halves of a surrogate pair. */
function cut(s: string, max: number): string {
  const n = Math.max(0, max);
  if (s.length <= n) return s;
  const c = s.charCodeAt(n - 1);
  return s.slice(0, c >= 0xd800 && c <= 0xdbff ? n - 1 : n);
}

/** `String(v)` cut to `max` characters; never throws, never longer than `max` (review45). */
function text(v: unknown, max: number): string {
  try {
    return cut(String(v), max);
  } catch {
    return cut('(unprintable)', max);
  }
}

/** Bigint causes up to this many bits cross as bigints; a larger one is described instead (review45: 140 M bits made the error unsendable). */
const BIGINT_BITS = 1024n;

/**
 * Characters of message and stack one wire error may carry in all (its causes and errors
 * included): 64 errors of 64 Ki characters each, 3 bytes apiece in UTF-8, passed the codec's
 * 16 MiB limit, and the caller then got "cannot be sent back" instead (review44).
 */
const WIRE_TEXT = 1 << 20; // messages, stacks, string causes and placeholders alike

/** An error's own fields (no cause, no errors), its text within `budget`; undefined when reading them threw. */
function shallowWire(err: Error, budget: { chars: number }): WireError | undefined {
  try {
    const code = (err as { code?: unknown }).code;
    // Read once (a getter may answer differently the second time, review44), and on its own: V8
    // formats a stack lazily from the message, so an unprintable message makes reading it throw,
    // which must cost the stack only, not the error (review45).
    let stack: unknown;
    try {
      stack = err.stack;
    } catch {
      stack = undefined;
    }
    const message = text(err.message, Math.min(64 * 1024, budget.chars));
    budget.chars -= message.length;
    const w: WireError = { name: text(err.name, 200), message };
    if (typeof code === 'string') w.code = cut(code, 200);
    if (typeof stack === 'string' && budget.chars > 0) {
      w.stack = cut(stack, Math.min(64 * 1024, budget.chars));
      budget.chars -= w.stack.length;
    }
    return w;
  } catch {
    return undefined; // a getter threw
  }
}

/** A wire error standing for something that is not a readable Error; its text counts against `budget` (review46). */
function placeholder(message: string, budget: { chars: number }): WireError {
  const m = cut(message, budget.chars);
  budget.chars -= m.length;
  return { name: 'Error', message: m };
}

/**
 * The wire picture of what a task threw: the error, its `cause` chain (CAUSE_DEPTH deep) and an
 * AggregateError's `errors` (AGGREGATE_MAX of each), at most WIRE_NODES errors in all. The budget
 * is spent breadth-first, so an error's own causes and errors cross before any of theirs
 * (review42: depth-first, the first nested aggregate took the whole budget and the root lost its
 * later errors). `errorsOmitted` counts an AggregateError's errors that did not cross.
 *
 * Never throws, whatever was thrown (an object without a prototype, a throwing getter or
 * toString, a huge message): the worker loop must survive any task. A getter that throws loses
 * what it guards (the cause, the errors, or the error's own fields), not the rest.
 */
export function toWireError(err: unknown): WireError {
  const fallback = (): WireError => ({ name: 'Error', message: `a task threw a non-Error: ${text(err, 1000)}` });
  let isError: boolean;
  try {
    isError = err instanceof Error; // a revoked proxy, or a getPrototypeOf trap, throws here (review43)
  } catch {
    return fallback();
  }
  if (!isError) return fallback();
  const budget = { chars: WIRE_TEXT };
  const root = shallowWire(err as Error, budget);
  if (root === undefined) return fallback();
  let left = WIRE_NODES - 1;
  const queue: Array<{ err: Error; depth: number; w: WireError }> = [{ err: err as Error, depth: 0, w: root }];
  for (let q = 0; q < queue.length; q++) {
    const { err: e, depth, w } = queue[q]!;
    // The cause (review36: it was dropped). Read on its own: a cause getter that throws loses
    // the cause, not the error (review40).
    try {
      const c: unknown = e.cause;
      if (depth < CAUSE_DEPTH && c !== undefined) {
        if (c instanceof Error) {
          const cw = left > 0 ? shallowWire(c, budget) : undefined;
          if (cw !== undefined) {
            left--;
            w.cause = cw;
            queue.push({ err: c, depth: depth + 1, w: cw });
          }
        } else if (typeof c === 'bigint') {
          const limit = 1n << BIGINT_BITS;
          if (c < limit && c > -limit) {
            w.causeValue = c;
          } else {
            // Text within the budget (review47), and whole or not at all: cut short (to '' once
            // the budget is spent) it read as a string cause that was never there (review51).
            const d = `(a bigint of more than ${BIGINT_BITS} bits)`;
            if (d.length <= budget.chars) {
              budget.chars -= d.length;
              w.causeValue = d;
            }
          }
        } else if (c === null || typeof c === 'number' || typeof c === 'boolean') {
          w.causeValue = c;
        } else if (typeof c === 'string') {
          w.causeValue = cut(c, Math.min(64 * 1024, budget.chars)); // text like a message: within the budget (review46)
          budget.chars -= w.causeValue.length;
        } else if (left > 0) {
          left--; // a wire error like any other: within the budget (review43: 16 × 16 of them made 128)
          w.cause = placeholder(`(a cause that is not an Error) ${text(c, 1000)}`, budget); // an object: its text
        }
      }
    } catch {
      delete w.cause;
      delete w.causeValue;
    }
    // An AggregateError's errors (Promise.any, a batch of failures): a getter or iterator that
    // throws drops them, not the error — and gives back the budget its entries took.
    const queuedBefore = queue.length;
    const leftBefore = left;
    const charsBefore = budget.chars;
    try {
      const list: unknown = (e as { errors?: unknown }).errors;
      if (e instanceof AggregateError && Array.isArray(list)) {
        const errors: WireError[] = [];
        let i = 0;
        if (depth < CAUSE_DEPTH) {
          for (; i < list.length && i < AGGREGATE_MAX && left > 0; i++) {
            left--;
            // Each entry on its own: one unreadable entry (a revoked proxy) becomes a placeholder
            // instead of taking its siblings with it (review44).
            let x: unknown;
            let isErr = false;
            try {
              x = list[i];
              isErr = x instanceof Error;
            } catch {
              errors.push(placeholder('(an entry that could not be read)', budget));
              continue;
            }
            const xw = isErr ? shallowWire(x as Error, budget) : undefined;
            if (xw !== undefined) {
              errors.push(xw);
              queue.push({ err: x as Error, depth: depth + 1, w: xw });
            } else {
              errors.push(placeholder(isErr ? '(an error whose fields could not be read)' : `(not an Error) ${text(x, 1000)}`, budget));
            }
          }
        }
        w.errors = errors;
        if (list.length > i) w.errorsOmitted = list.length - i;
      }
    } catch {
      delete w.errors;
      delete w.errorsOmitted;
      queue.length = queuedBefore;
      left = leftBefore;
      budget.chars = charsBefore;
    }
  }
  return root;
}

/**
 * The error a task threw, rebuilt on this side: a built-in class by its name (a TypeError stays
 * a TypeError), else an Error with that name; its code, stack and cause chain kept; an
 * AggregateError with its `errors` (the first 16; `errorsOmitted` counts the rest).
 */
export function fromWireError(w: WireError): Error {
  const options = w.cause !== undefined ? { cause: fromWireError(w.cause) } : 'causeValue' in w ? { cause: w.causeValue } : undefined;
  let e: Error;
  if (w.errors !== undefined || w.name === 'AggregateError') {
    e = new AggregateError((w.errors ?? []).map(fromWireError), w.message, options);
    if (w.errorsOmitted !== undefined) (e as Error & { errorsOmitted?: number }).errorsOmitted = w.errorsOmitted;
  } else {
    const Ctor = Object.hasOwn(BUILTIN_ERRORS, w.name) ? BUILTIN_ERRORS[w.name]! : Error;
    e = new Ctor(w.message, options);
  }
  if (e.name !== w.name) e.name = w.name;
  if (w.code !== undefined) (e as Error & { code?: string }).code = w.code;
  if (w.stack !== undefined) e.stack = w.stack;
  return e;
}
