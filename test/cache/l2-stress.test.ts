/**
 * L2 across threads: two workers write (each its own keys, increasing sequence numbers, values
 * that carry their key, sequence and a checksum), while they and the main thread read every key
 * continuously. The checker fails on a torn value, another key's value, a read older than one the
 * same reader saw before, or older than what the writer had published (through an Atomics word)
 * before the read began. A second run does the same in a store far too small for the data, so
 * eviction and page moves between size classes race with the readers; afterwards the structure
 * and its counters must verify.
 *
 * Bounded work (a fixed number of rounds), no timing assertions. Workers run dist/: build first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SharedStore } from '../../engine/cache/l2.js';
import { createEngine, type Engine } from '../../engine/index.js';
// @ts-expect-error -- a plain .mjs worker fixture, shared with the main thread's side of the test
import { Reader } from '../fixtures/l2-tasks.mjs';

const TASKS = new URL('../fixtures/l2-tasks.mjs', import.meta.url).href;

let engine: Engine;
beforeAll(async () => {
  engine = await createEngine({ workers: 2, memory: 48 << 20, channel: { ringBytes: 64 * 1024 } });
  engine.runtime.pool.register('l2Hammer', TASKS, 'hammer');
});
afterAll(() => engine.close());

interface WorkerResult { stored: number; noRoom: number; deletes: number; hits: number; misses: number; errors: string[] }

async function race(name: string, bytes: number, opts: { keys: number; rounds: number; maxLen: number; evicting: boolean }) {
  const rt = engine.runtime.thread;
  const store = SharedStore.open(rt, name, { bytes });
  const control = engine.runtime.region(`${name}:control`, 64).offset;
  const published = engine.runtime.region(`${name}:published`, 4 * opts.keys).offset;
  const i32 = rt.i32;
  const runs = [0, 1].map((writer) => engine.run('l2Hammer', {
    name, writer, control, published, readsPerWrite: 2, ...opts,
  }) as Promise<WorkerResult>);
  while (Atomics.load(i32, control >>> 2) < 2) await new Promise((r) => setImmediate(r));
  Atomics.store(i32, (control >>> 2) + 1, 1); // go
  // The main thread reads until both writers are done (they count themselves out even when they
  // throw; the deadline only guards against a worker that died).
  const reader = new Reader(store, i32, published, opts.keys, !opts.evicting);
  const deadline = Date.now() + 60_000;
  let id = 0;
  while (Atomics.load(i32, (control >>> 2) + 2) < 2 && Date.now() < deadline) {
    for (let k = 0; k < 256; k++) reader.read((id = (id + 7) % opts.keys), 1_800_000_000_000);
  }
  const results = await Promise.all(runs);
  return { store, reader, results };
}

describe('L2 across threads', () => {
  it('never returns a torn, foreign or stale value (2 writers, readers on 3 threads)', async () => {
    const { store, reader, results } = await race('test:l2-stress', 16 << 20, { keys: 1024, rounds: 60, maxLen: 300, evicting: false });
    for (const r of results) expect(r.errors).toEqual([]);
    expect(reader.errors).toEqual([]);
    // Every set was stored; the readers really read values (not just misses).
    expect(results.map((r) => r.stored)).toEqual([512 * 60, 512 * 60]);
    expect(results.every((r) => r.hits > 512 * 60)).toBe(true);
    expect(results[0]!.deletes).toBe((1024 / 8) * 15); // writer 0 owns the deletable keys (ids ≡ 0 mod 8)
    expect(reader.hits).toBeGreaterThan(0);
    // Quiescent: every key is at its last round, the counters match the structure.
    const last = new Reader(store, engine.runtime.thread.i32, engine.runtime.thread.arena.find('test:l2-stress:published')!.offset, 1024, true);
    for (let k = 0; k < 1024; k++) expect(last.read(k, 1_800_000_000_000)).toBe(60);
    expect(store.verify()).toEqual([]);
    expect(store.stats()).toMatchObject({ entries: 1024, evictions: 0, refused: 0 });
  });

  it('eviction racing with readers and writers never corrupts (a store far smaller than the data)', async () => {
    const bytes = SharedStore.minimumBytes();
    const { store, reader, results } = await race('test:l2-evict', bytes, { keys: 4096, rounds: 12, maxLen: 3000, evicting: true });
    for (const r of results) expect(r.errors).toEqual([]);
    expect(reader.errors).toEqual([]);
    const st = store.stats();
    expect(st.evictions).toBeGreaterThan(1000);
    expect(st.bytes).toBeLessThanOrEqual(st.capacityBytes);
    expect(results.reduce((a, r) => a + r.stored, 0)).toBeGreaterThan(0.9 * 4096 * 12);
    expect(results.every((r) => r.hits > 0)).toBe(true);
    expect(store.verify()).toEqual([]);
    // Whatever is left reads back intact, and the entry counter is exactly what is there.
    const check = new Reader(store, engine.runtime.thread.i32, engine.runtime.thread.arena.find('test:l2-evict:published')!.offset, 4096);
    let present = 0;
    for (let k = 0; k < 4096; k++) if (check.read(k, 1_800_000_000_000) !== undefined) present++;
    expect(check.errors).toEqual([]);
    expect(present).toBe(st.entries);
  });
});
