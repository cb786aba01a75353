/**
 * Hit-ratio simulator: hotpath's L1 (W-TinyLFU and LRU) against lru-cache on deterministic,
 * seeded traces, with the best any fixed set of C keys can do (the "top-C bound": the sum of the C
 * largest probabilities; a policy that knew the distribution and never changed its mind).
 *
 * Traces (each: a warm-up that is not counted, then the measured requests):
 *  - Zipf s=0.99 over 500 000 keys, capacity 500 (DESIGN pitfall 13's trace);
 *  - Zipf s=0.9 and s=1.0 over 1 000 000 keys, capacity 10 000 (the key universe that gives the
 *    quoted top-C bounds, 51.6% and 68.0%; lru-cache's 39.5% and 58.5% are reproduced here);
 *  - recency-biased: a loop over 1.5 × C keys, a working set of C keys that slides by one key
 *    every few requests, and a Zipf whose popular keys change every phase.
 * Keys are strings `k<id>`; their 32-bit hash is the Cache's own (KeyHash.lo).
 * Every figure is recorded with suite.note (unit %), so it lands in bench/results.
 * HOTPATH_BENCH_QUICK=1 shortens every trace (figures then vary by a point or two).
 */
import { LRUCache } from 'lru-cache';
import { L1Store } from '../engine/cache/l1.js';
import { KeyHash } from '../engine/runtime/key-hash.js';
import { kernelModule } from '../engine/runtime/wasm.js';
import { QUICK, Suite } from './harness.js';
import { rng, Zipf } from './traces.js';

export interface Trace {
  name: string;
  capacity: number;
  /** Key ids, warm-up first. */
  ids: Int32Array;
  warmup: number;
  /** Number of distinct ids (ids are 0..universe-1). */
  universe: number;
  bound?: number;
}

export function zipfTrace(name: string, n: number, s: number, capacity: number, warmup: number, requests: number, seed: number): Trace {
  const z = new Zipf(n, s);
  const u = rng(seed);
  const ids = new Int32Array(warmup + requests);
  for (let i = 0; i < ids.length; i++) ids[i] = z.sample(u());
  return { name, capacity, ids, warmup, universe: n, bound: z.topC(capacity) };
}

/** A loop over `length` keys, repeated. */
export function loopTrace(name: string, length: number, capacity: number, warmup: number, requests: number): Trace {
  const ids = new Int32Array(warmup + requests);
  for (let i = 0; i < ids.length; i++) ids[i] = i % length;
  return { name, capacity, ids, warmup, universe: length };
}

/** Uniform picks from a working set of `width` consecutive keys that slides one key every `every` requests. */
export function slidingTrace(name: string, width: number, every: number, capacity: number, warmup: number, requests: number, seed: number): Trace {
  const u = rng(seed);
  const ids = new Int32Array(warmup + requests);
  for (let i = 0; i < ids.length; i++) ids[i] = Math.floor(i / every) + Math.floor(u() * width);
  return { name, capacity, ids, warmup, universe: Math.floor(ids.length / every) + width };
}

/** Zipf(s) over n keys whose ranking is re-drawn every `phase` requests (popularity that shifts). */
export function shiftingZipfTrace(name: string, n: number, s: number, phase: number, capacity: number, warmup: number, requests: number, seed: number): Trace {
  const z = new Zipf(n, s);
  const u = rng(seed);
  const ids = new Int32Array(warmup + requests);
  let offset = 0;
  for (let i = 0; i < ids.length; i++) {
    if (i % phase === 0) offset = Math.floor(u() * 1e9);
    ids[i] = (z.sample(u()) * 7919 + offset) % (n * 8); // a fresh mapping of ranks to keys per phase
  }
  return { name, capacity, ids, warmup, universe: n * 8 };
}

/** Keys and their hashes for ids 0..universe-1. */
export function keySpace(universe: number): { keys: string[]; hashes: Int32Array } {
  const keys = new Array<string>(universe);
  const hashes = new Int32Array(universe);
  const h = new KeyHash();
  for (let i = 0; i < universe; i++) {
    const key = `k${i}`;
    keys[i] = key;
    h.set(key);
    hashes[i] = h.lo;
  }
  return { keys, hashes };
}

/** The hit ratio of "get, and set on a miss" over the measured part of the trace. */
export function simulate(trace: Trace, space: { keys: string[]; hashes: Int32Array }, make: (capacity: number) => { get(key: string, hash: number): unknown; set(key: string, hash: number): void }): number {
  const cache = make(trace.capacity);
  const { keys, hashes } = space;
  const ids = trace.ids;
  let hits = 0;
  for (let i = 0; i < ids.length; i++) {
    const id = ids[i]!;
    const key = keys[id]!;
    if (cache.get(key, hashes[id]!) !== undefined) {
      if (i >= trace.warmup) hits++;
    } else {
      cache.set(key, hashes[id]!);
    }
  }
  return hits / (ids.length - trace.warmup);
}

const VALUE = { value: 1, bytes: 1 };

/** The policies compared on each trace. */
export function policies(module: WebAssembly.Module): Array<{ name: string; make: Parameters<typeof simulate>[2] }> {
  return [
    {
      name: 'hotpath L1 tinylfu',
      make: (c) => {
        const s = new L1Store({ maxEntries: c, module });
        return { get: (k, h) => s.get(k, h), set: (k, h) => void s.set(k, h, VALUE) };
      },
    },
    {
      name: 'hotpath L1 lru',
      make: (c) => {
        const s = new L1Store({ maxEntries: c, policy: 'lru', module });
        return { get: (k, h) => s.get(k, h), set: (k, h) => void s.set(k, h, VALUE) };
      },
    },
    {
      name: 'lru-cache',
      make: (c) => {
        const s = new LRUCache<string, object>({ max: c });
        return { get: (k) => s.get(k), set: (k) => void s.set(k, VALUE) };
      },
    },
  ];
}

async function main(): Promise<void> {
  const suite = new Suite('cache-hitratio.bench');
  const q = (full: number): number => (QUICK ? Math.ceil(full / 10) : full);
  const traces: Array<() => Trace> = [
    () => zipfTrace('zipf s=0.99, 500k keys, C=500', 500_000, 0.99, 500, q(500_000), q(3_000_000), 1),
    () => zipfTrace('zipf s=0.9, 1M keys, C=10k', 1_000_000, 0.9, 10_000, q(1_000_000), q(5_000_000), 2),
    () => zipfTrace('zipf s=1.0, 1M keys, C=10k', 1_000_000, 1.0, 10_000, q(1_000_000), q(5_000_000), 3),
    () => loopTrace('loop over 1.5 × C keys, C=1000', 1500, 1000, q(100_000), q(1_000_000)),
    () => slidingTrace('sliding working set of C keys (1 key / 4 requests), C=1000', 1000, 4, 1000, q(200_000), q(2_000_000), 4),
    () => shiftingZipfTrace('zipf s=0.9 re-ranked every 50k requests, C=1000', 100_000, 0.9, 50_000, 1000, q(200_000), q(2_000_000), 5),
  ];
  const module = kernelModule();
  for (const make of traces) {
    const trace = make();
    const space = keySpace(trace.universe);
    console.log(`\n## ${trace.name}`);
    const results: Record<string, number> = {};
    for (const p of policies(module)) {
      const ratio = simulate(trace, space, p.make);
      results[p.name] = ratio;
      suite.note(trace.name, `${p.name} hit ratio`, ratio * 100, '%');
    }
    if (trace.bound !== undefined) suite.note(trace.name, 'top-C bound', trace.bound * 100, '%');
    const ours = results['hotpath L1 tinylfu']!;
    const peer = results['lru-cache']!;
    suite.note(trace.name, 'tinylfu − lru-cache', (ours - peer) * 100, 'points');
  }
  suite.finish();
}

await main();
