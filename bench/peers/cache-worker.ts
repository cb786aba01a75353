/** Worker-side task of bench/cache.bench.ts: sets a key in the engine's cache from a worker thread. */
import { Cache } from '../../engine/cache/cache.js';
import type { TaskContext } from '../../engine/runtime/worker.js';

let cache: Cache | undefined;

export async function benchCacheSet(payload: { name: string; key: string; value: unknown }, ctx: TaskContext): Promise<boolean> {
  cache ??= Cache.open(ctx.runtime, payload.name);
  await cache.set(payload.key, payload.value);
  return true;
}
