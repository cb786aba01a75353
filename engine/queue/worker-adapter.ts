/**
 * Worker side of a module handler (see executor.ts): the pool loads the user's module and hands
 * its export to `adaptHandler`, once per worker; what it returns runs each call. It reads the
 * call's id and attempt, decodes the payload, and gives the handler its context: `ctx.signal`
 * (the pool's interrupt), `ctx.limiter(name)` and `ctx.cache` over this worker's view of the
 * shared memory — the same limits and the same L2 as every other thread of the engine.
 */
import type { TaskContext } from '../runtime/worker.js';
import type { ThreadRuntime } from '../runtime/thread.js';
import { Limiter } from '../limiter/limiter.js';
import { Cache } from '../cache/cache.js';
import { CircuitBreaker } from '../resilience/breaker.js';
import type { RateLimiter } from '../limiter/types.js';
import type { HandlerContext, HandlerFunction } from './types.js';
import { CALL_HEADER, RAW_PAYLOAD } from './executor.js';

/** Per-thread views, opened on first use (one ThreadRuntime per worker; keyed so nothing is global). */
interface Views { limiters: Map<string, Limiter>; breakers: Map<string, CircuitBreaker>; cache: Cache | undefined }
const views = new WeakMap<ThreadRuntime, Views>();

function viewsOf(rt: ThreadRuntime): Views {
  let v = views.get(rt);
  if (v === undefined) {
    v = { limiters: new Map(), breakers: new Map(), cache: undefined };
    views.set(rt, v);
  }
  return v;
}

class WorkerHandlerContext implements HandlerContext {
  readonly id: string;
  readonly attempt: number;
  readonly #task: TaskContext;

  constructor(id: string, attempt: number, task: TaskContext) {
    this.id = id;
    this.attempt = attempt;
    this.#task = task;
  }

  get signal(): AbortSignal {
    return this.#task.signal;
  }

  limiter(name: string): RateLimiter {
    const v = viewsOf(this.#task.runtime);
    let l = v.limiters.get(name);
    if (l === undefined) {
      l = new Limiter(name, undefined, { runtime: this.#task.runtime });
      v.limiters.set(name, l);
    }
    return l;
  }

  breaker(name: string): CircuitBreaker {
    const v = viewsOf(this.#task.runtime);
    let b = v.breakers.get(name);
    if (b === undefined) {
      b = CircuitBreaker.shared(this.#task.runtime, name);
      v.breakers.set(name, b);
    }
    return b;
  }

  get cache(): Cache {
    const v = viewsOf(this.#task.runtime);
    return (v.cache ??= Cache.open(this.#task.runtime));
  }
}

/** The pool's adapter hook: wraps a handler so it receives `(payload, HandlerContext)`. */
export function adaptHandler(fn: HandlerFunction): (call: Buffer, task: TaskContext) => unknown {
  return (call, task) => {
    const attempt = call.readUInt32LE(0);
    const word = call.readUInt16LE(4);
    const idLen = word & ~RAW_PAYLOAD;
    const id = call.toString('utf8', CALL_HEADER, CALL_HEADER + idLen);
    const start = CALL_HEADER + idLen;
    // A raw payload is the call's own bytes (the call is this worker's copy, out of the ring).
    const payload = (word & RAW_PAYLOAD) !== 0 ? call.subarray(start) : start === call.length ? undefined : task.runtime.codec.decode(call.subarray(start));
    return fn(payload, new WorkerHandlerContext(id, attempt, task));
  };
}
