/**
 * Built-in worker tasks. Each is `(payload, ctx) => result`; they run on the worker threads.
 *  - noop:   answers undefined (the round-trip benchmark).
 *  - echo:   answers its payload.
 *  - hash32: xxHash32 (WASM) of a Buffer or string payload, computed in the worker.
 *  - sleep:  resolves after `payload` ms (an async task, for tests of in-flight work).
 */
import type { TaskContext } from './worker.js';

export function noop(): undefined {
  return undefined;
}

export function echo(payload: unknown): unknown {
  return payload;
}

export function hash32(payload: unknown, ctx: TaskContext): number {
  if (typeof payload === 'string') return ctx.runtime.hasher.hash(payload);
  if (payload instanceof Uint8Array) return ctx.runtime.hasher.hashBytes(payload);
  throw new TypeError('hash32 expects a string or a Buffer');
}

export function sleep(payload: unknown): Promise<undefined> {
  const ms = typeof payload === 'number' ? payload : 0;
  return new Promise((resolve) => setTimeout(() => resolve(undefined), ms));
}
